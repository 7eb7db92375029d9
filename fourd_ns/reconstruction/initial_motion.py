"""Initial motion for Flux4D's Gaussians from an initializer's velocities (``--pipeline.initial-motion initializer``).

Flux4D starts every LiDAR Gaussian at rest (v = 0) and lets f_θ predict its motion. The ``flow4r`` / ``flow3r``
initializers (`fourd_ns.initializers.feedforward`) compute a velocity for each point they seed, from a feed-forward
reconstruction of the training video; with this switch those velocities become the Gaussians' initial velocity,
and f_θ's predicted motion is added to it (the predictor's motion output is a residual on the state's motion, see
`fourd_ns.networks.flux4d_net.Flux4DPredictor.forward`).

Transfer rule: a Gaussian captured at time t_i takes the velocity of the nearest initializer point observed in the
initializer frame closest in time to t_i (a k-d tree per frame), when that point lies within ``max_distance`` (world
units) of the Gaussian; otherwise it stays at rest. The radius matters on driving logs: the initializer sees one
camera's field of view while the LiDAR covers 360°, and a Gaussian behind the car must not inherit the velocity of
whatever point happens to be nearest in front of it.

Both velocities are in output-world units per unit of normalised clip time (`fourd_ns.initializers.base` and
`fourd_ns.scene.flux4d_gaussians`), so no conversion is needed when the initializer ran on the same dataparser.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from scipy.spatial import cKDTree
from torch import Tensor


@dataclass(frozen=True)
class TransferredMotion:
    """Velocities for the Gaussians and how many of them found an initializer point within the radius."""

    velocities: Float[Tensor, "N 3"]
    matched: int


def transfer_velocities(
    positions: Float[Tensor, "N 3"],
    times: Float[Tensor, "N"],
    source_points: Float[Tensor, "M 3"],
    source_times: Float[Tensor, "M"],
    source_velocities: Float[Tensor, "M 3"],
    max_distance: float,
) -> TransferredMotion:
    """Velocity of each Gaussian from the nearest source point of the source frame nearest in time (module
    docstring); zero beyond ``max_distance``."""
    if max_distance <= 0:
        raise ValueError(f"the velocity transfer radius must be positive, got {max_distance}")
    if source_points.shape[0] == 0:
        raise ValueError("the initializer returned no points to take velocities from")
    result = torch.zeros(positions.shape[0], 3, dtype=positions.dtype)
    frame_times = torch.unique(source_times)
    nearest_frame = (times[:, None] - frame_times[None, :]).abs().argmin(dim=1)
    matched = 0
    for f, frame_time in enumerate(frame_times.tolist()):
        mine = torch.nonzero(nearest_frame == f).reshape(-1)
        if mine.numel() == 0:
            continue
        in_frame = torch.nonzero(source_times == frame_time).reshape(-1)
        tree = cKDTree(source_points[in_frame].double().numpy())
        distance, index = tree.query(positions[mine].double().numpy(), k=1)
        close = torch.from_numpy(distance <= max_distance)
        chosen = in_frame[torch.from_numpy(index).long()]
        result[mine[close]] = source_velocities[chosen[close]].to(result.dtype)
        matched += int(close.sum())
    return TransferredMotion(velocities=result, matched=matched)
