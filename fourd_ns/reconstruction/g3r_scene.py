"""G3R's initial scene for one reconstruction: LiDAR seeds of the source frames (background and actors in their
box frames) plus the far-field grid, as 3D neural Gaussians (`fourd_ns.scene.neural_scene`).

Only source views are used: their frames' LiDAR sweeps give the points, their images the colours, and their sensor
positions the far field's centre. A target or evaluation frame never reaches the initial scene.

Default budgets are sized for the CPU (100k background points, 5k per actor, a 48 × 192 far-field grid); the paper
uses 800k points in training and 1.5M / 3M at inference on a GPU — raise ``--seeding.lidar.max-background-points``
there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from fourd_ns.reconstruction.view_seeding import seed_from_views
from fourd_ns.reconstruction.views import CameraView
from fourd_ns.scene.driving_scene import DrivingScene
from fourd_ns.scene.far_field import FarFieldConfig, far_field_gaussians
from fourd_ns.scene.lidar_seeding import LidarSeedingConfig
from fourd_ns.scene.neural_gaussians import INITIAL_OPACITY
from fourd_ns.scene.neural_scene import neural_driving_scene
from fourd_ns.sensors.driving_metadata import DrivingMetadata


@dataclass
class G3RSeedingConfig:
    """How the initial neural Gaussians are placed."""

    lidar: LidarSeedingConfig = field(
        default_factory=lambda: LidarSeedingConfig(voxel_size=0.15, max_background_points=100_000,
                                                   max_points_per_actor=5_000, min_points_per_actor=200)
    )
    far_field: bool = True
    """Add the far-field (sky / distant buildings) part."""
    far: FarFieldConfig = field(default_factory=lambda: FarFieldConfig(num_latitudes=48, num_longitudes=192))
    opacity: float = INITIAL_OPACITY
    """Initial opacity of the LiDAR Gaussians (the paper: 0.7)."""
    latent_std: float = 0.1
    """Standard deviation of the random initial latents."""
    actor_hold_time: float = 0.0
    """Normalised time an actor keeps its first / last box pose beyond its annotations."""

    @classmethod
    def from_dict(cls, data: dict) -> "G3RSeedingConfig":
        """The inverse of ``dataclasses.asdict`` (as stored in a checkpoint's reconstruction.json)."""
        values = dict(data)
        lidar = LidarSeedingConfig(**values.pop("lidar", {}))
        return cls(lidar=lidar, far=FarFieldConfig.from_dict(values.pop("far", {})), **values)


def seed_g3r_scene(
    driving: DrivingMetadata,
    sources: Sequence[CameraView],
    config: G3RSeedingConfig,
    latent_dim: int,
    generator: Optional[torch.Generator] = None,
) -> DrivingScene:
    """The initial scene of neural states [N, 14 + latent_dim] from the source views' LiDAR and images."""
    found = seed_from_views(driving, sources, config.lidar, "G3R")
    seeds, cameras, images = found.seeds, found.cameras, found.images
    far = None
    if config.far_field:
        far = far_field_gaussians(config.far, seeds.centre(), seeds.extent(), cameras=cameras, images=images)
    return neural_driving_scene(
        seeds, far, latent_dim=latent_dim, latent_std=config.latent_std, opacity=config.opacity, generator=generator,
        actor_hold_time=config.actor_hold_time,
    )  # fmt: skip
