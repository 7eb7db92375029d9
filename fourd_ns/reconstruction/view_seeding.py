"""LiDAR seed points of a reconstruction's source views: the step g3r's and flux4d's initial scenes share.

Only the source views are read: their frames' LiDAR sweeps give the points and their images the colours
(`fourd_ns.scene.lidar_seeding.seed_from_lidar`), so no target or evaluation frame reaches an initial scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

from jaxtyping import Float
from torch import Tensor

from fourd_ns.reconstruction.views import CameraView, cameras_from_views
from fourd_ns.scene.lidar_seeding import LidarSeedingConfig, SeedPoints, seed_from_lidar
from fourd_ns.sensors.driving_metadata import DrivingMetadata
from nerfstudio.cameras.cameras import Cameras


@dataclass
class ViewSeeds:
    seeds: SeedPoints
    cameras: Cameras
    """The source views' cameras (CPU), for colouring other points (the far field)."""
    images: List[Float[Tensor, "H W 3"]]


def seed_from_views(
    driving: DrivingMetadata, sources: Sequence[CameraView], config: LidarSeedingConfig, method: str
) -> ViewSeeds:
    """Seed points from the LiDAR of the source views' frames, coloured by their images; ``method`` names the
    caller in the error for views without LiDAR."""
    sweeps = sorted({view.lidar_sweep for view in sources if view.lidar_sweep >= 0})
    if not sweeps:
        raise ValueError(
            f"{driving.source or 'the log'}: none of the {len(sources)} source views has a LiDAR sweep; {method} seeds "
            "its Gaussians from LiDAR (load it with pandaset-data's --load-lidar True)"
        )
    cpu_views = [view.to("cpu") for view in sources]
    cameras = cameras_from_views(cpu_views)
    images = [view.image for view in cpu_views]
    seeds = seed_from_lidar(driving, sweeps, cameras=cameras, images=images,
                            image_sweeps=[v.lidar_sweep for v in cpu_views], config=config)  # fmt: skip
    return ViewSeeds(seeds=seeds, cameras=cameras, images=images)
