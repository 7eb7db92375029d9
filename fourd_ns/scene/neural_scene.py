"""G3R's initial scene: LiDAR seed points and far-field Gaussians turned into a `DrivingScene` of neural states.

Every seed point becomes a 3D neural Gaussian (`fourd_ns.scene.neural_gaussians.initial_state`: its position,
colour and scale, identity rotation, opacity 0.7, a random latent); the far-field Gaussians keep their tangent
orientation, scales, colours and opacity and get a latent too. Latents are drawn from one generator in part order
(background, actors in seed order, far field), so a seed gives the same scene on every run.
"""

from __future__ import annotations

from typing import Optional

import torch

from fourd_ns.scene.driving_scene import DrivingScene
from fourd_ns.scene.gaussian_params import GaussianParams
from fourd_ns.scene.lidar_seeding import SeedPart, SeedPoints
from fourd_ns.scene.neural_gaussians import (
    DEFAULT_LATENT_DIM,
    DEFAULT_LATENT_STD,
    INITIAL_OPACITY,
    initial_state,
    state_from_params,
)


def neural_driving_scene(
    seeds: SeedPoints,
    far_field: Optional[GaussianParams] = None,
    latent_dim: int = DEFAULT_LATENT_DIM,
    latent_std: float = DEFAULT_LATENT_STD,
    opacity: float = INITIAL_OPACITY,
    generator: Optional[torch.Generator] = None,
    actor_hold_time: float = 0.0,
) -> DrivingScene:
    """A scene of neural states [N, 14 + latent_dim] from seed points (and far-field Gaussians, if given)."""

    def state(part: SeedPart) -> torch.Tensor:
        return initial_state(
            part.positions, part.colors, part.scales, opacity,
            latent_dim=latent_dim, latent_std=latent_std, generator=generator,
        )  # fmt: skip

    background = state(seeds.background)
    actors = [(seeds.tracks[track_id], state(part)) for track_id, part in seeds.actors.items()]
    far = None if far_field is None else state_from_params(far_field, latent_dim, latent_std, generator)
    return DrivingScene.from_parts(background, actors, far, actor_hold_time=actor_hold_time)
