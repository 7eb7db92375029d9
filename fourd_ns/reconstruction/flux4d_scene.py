"""Flux4D's initial Gaussians for one clip: one per LiDAR point of each input frame, plus a sky hemisphere.

From the paper and its supplement (`../shared/notes/methods.md` §5.1): every LiDAR point of each input (source)
frame becomes a Gaussian at its world position with its capture time t_i and velocity 0; its scale is the mean
distance to its 3 nearest neighbours (isotropic), its colour the pixel it projects to in that frame's image, its
opacity 0.5 and its rotation a random unit quaternion. No boxes, tracks or labels are used (`LidarSeedingConfig`
with ``split_actors = False``): moving cars are just points at different times, and the network has to explain
them with velocities.

Budgets: the paper keeps every point of the input frames; ``lidar.max_background_points`` caps them (a fixed-seed
random subset, after optional voxel thinning) so memory is bounded on a CPU; raise it on a GPU.

Far field: Flux4D puts 1M random points on the upper hemisphere of radius 4 × the scene's extent. We use the shared
far-field grid (`fourd_ns.scene.far_field`) on the same hemisphere (`FLUX4D_HEMISPHERE`), ``far.num_latitudes`` ×
``far.num_longitudes`` Gaussians (a regular grid covers the sky without the holes a random sample leaves at equal
count), coloured from the input images, with zero motion. The far field is a separate part ``"far"`` of the
`DrivingScene` so the networks leave it alone (see `fourd_ns.networks.flux4d_net`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from fourd_ns.reconstruction.view_seeding import seed_from_views
from fourd_ns.reconstruction.views import CameraView
from fourd_ns.scene.driving_scene import DrivingScene
from fourd_ns.scene.far_field import FLUX4D_HEMISPHERE, FarFieldConfig, far_field_gaussians
from fourd_ns.scene.flux4d_gaussians import FLUX4D_INITIAL_OPACITY, Flux4DLayout, flux4d_state, random_unit_quaternions
from fourd_ns.scene.gaussian_params import GaussianParams
from fourd_ns.scene.lidar_seeding import LidarSeedingConfig
from fourd_ns.sensors.driving_metadata import DrivingMetadata


def _flux4d_lidar() -> LidarSeedingConfig:
    return LidarSeedingConfig(
        voxel_size=0.0, max_background_points=100_000, split_actors=False, scale_neighbours=3,
        scale_rule="mean-nearest", min_scale=0.02, max_scale=1.0, min_points_per_actor=0,
    )  # fmt: skip


def _flux4d_far() -> FarFieldConfig:
    return FarFieldConfig(
        num_latitudes=FLUX4D_HEMISPHERE.num_latitudes // 2, num_longitudes=FLUX4D_HEMISPHERE.num_longitudes // 2,
        latitude_range_deg=FLUX4D_HEMISPHERE.latitude_range_deg, radius_factor=FLUX4D_HEMISPHERE.radius_factor,
    )  # fmt: skip


@dataclass
class Flux4DSeedingConfig:
    """How the initial Gaussians are placed (see the module docstring)."""

    lidar: LidarSeedingConfig = field(default_factory=_flux4d_lidar)
    """LiDAR points of the input frames (no actor split: Flux4D uses no labels)."""
    far_field: bool = True
    """Add the sky hemisphere."""
    far: FarFieldConfig = field(default_factory=_flux4d_far)
    """The hemisphere's grid (Flux4D: 1M random points at 4 × the scene extent; 32 × 128 here)."""
    opacity: float = FLUX4D_INITIAL_OPACITY
    """Initial opacity of the LiDAR Gaussians."""

    def __post_init__(self) -> None:
        if self.lidar.split_actors:
            raise ValueError("Flux4D seeding uses no actor boxes: --seeding.lidar.split-actors must be False")
        if not 0.0 < self.opacity < 1.0:
            raise ValueError(f"--seeding.opacity must lie in (0, 1), got {self.opacity}")

    @classmethod
    def from_dict(cls, data: dict) -> "Flux4DSeedingConfig":
        """The inverse of ``dataclasses.asdict`` (as stored beside trained weights)."""
        values = dict(data)
        lidar = LidarSeedingConfig(**values.pop("lidar", {}))
        return cls(lidar=lidar, far=FarFieldConfig.from_dict(values.pop("far", {})), **values)


def seed_flux4d_scene(
    driving: DrivingMetadata,
    sources: Sequence[CameraView],
    config: Flux4DSeedingConfig,
    layout: Flux4DLayout,
    generator: Optional[torch.Generator] = None,
) -> DrivingScene:
    """The initial scene: part ``"background"`` (every LiDAR Gaussian, states [N, layout.channels]) and, with
    ``far_field``, part ``"far"`` (the hemisphere, time 0, no motion). Only the source views' frames are read."""
    found = seed_from_views(driving, sources, config.lidar, "Flux4D")
    seeds, cameras, images = found.seeds, found.cameras, found.images
    part = seeds.background
    if part.num == 0:
        raise ValueError(f"{driving.source or 'the log'}: the input frames' LiDAR left no points to seed Gaussians from")
    params = GaussianParams(
        means=part.positions,
        quats=random_unit_quaternions(part.num, generator),
        scales=part.scales,
        opacities=torch.full((part.num,), float(config.opacity)),
        colors=part.colors,
    )
    background = flux4d_state(params, part.times, layout)
    far = None
    if config.far_field:
        sky = far_field_gaussians(config.far, seeds.centre(), seeds.extent(), cameras=cameras, images=images)
        far = flux4d_state(sky, torch.zeros(sky.num), layout)
    return DrivingScene.from_parts(background, far=far)
