"""Flux4D's Gaussians: explicit 3DGS parameters plus a capture time and a polynomial motion, one row per Gaussian.

The state of N Gaussians is a tensor [N, 14 + 3·order + 1] whose channels are, in order:

====================  ==========  ================================================================================
``POSITION``          3           centre at the capture time, world coordinates (output-world units)
``LOG_SCALE``         3           log standard deviations
``QUAT``              4           rotation, wxyz, unnormalised (re-normalised on decoding)
``COLOR``             3           logit of RGB
``OPACITY``           1           logit of opacity
motion                3 · order   velocity v (order ≥ 1), then acceleration a (order ≥ 2), ... at the capture time,
                                  in output-world units per unit of normalised clip time (per unit², ...)
time                  1           capture time t_i in normalised clip time (fixed: never updated)
====================  ==========  ================================================================================

The first 14 channels are G3R's explicit layout (`fourd_ns.scene.neural_gaussians`), so activation, colour logits
and step sizes are shared with g3r. Motion (paper §3.2, "motion enhancement"): the position at time t′ is the
Taylor polynomial

    p_i(t′) = p_i + v_i (t′ − t_i) + ½ a_i (t′ − t_i)² + …        (order 1: Flux4D's linear motion)

and the other channels do not change with time. Keeping motion in scene units per normalised time makes
`positions_at` unit-free; `motion_in_metres_per_second` converts it for the velocity prior and scene-flow metrics
(``seconds_per_time`` = the clip's ``time_span``).

The same layout holds the far field (sky) with zero motion: it is part of the scene but never moves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from fourd_ns.scene.gaussian_params import GaussianParams
from fourd_ns.scene.neural_gaussians import EXPLICIT, EXPLICIT_CHANNELS, POSITION, activate, deactivate

FLUX4D_INITIAL_OPACITY = 0.5
"""Flux4D's initial opacity of the LiDAR Gaussians."""


@dataclass(frozen=True)
class Flux4DLayout:
    """Channel slices of a Flux4D state with motion of polynomial ``order`` (1 = constant velocity)."""

    order: int = 2

    def __post_init__(self) -> None:
        if self.order < 1:
            raise ValueError(f"Flux4D motion order must be >= 1 (1: linear velocity), got {self.order}")

    @property
    def motion_channels(self) -> int:
        return 3 * self.order

    @property
    def channels(self) -> int:
        """All channels: 14 explicit + motion + time."""
        return EXPLICIT_CHANNELS + self.motion_channels + 1

    @property
    def motion(self) -> slice:
        return slice(EXPLICIT_CHANNELS, EXPLICIT_CHANNELS + self.motion_channels)

    @property
    def velocity(self) -> slice:
        return slice(EXPLICIT_CHANNELS, EXPLICIT_CHANNELS + 3)

    @property
    def updatable(self) -> slice:
        """Channels a network or an optimizer may change (everything but the capture time)."""
        return slice(0, EXPLICIT_CHANNELS + self.motion_channels)

    @property
    def time(self) -> int:
        return self.channels - 1

    def check(self, state: Tensor, what: str = "state") -> None:
        if state.dim() != 2 or state.shape[1] != self.channels:
            raise ValueError(
                f"A Flux4D {what} with motion order {self.order} has {self.channels} channels (14 + "
                f"{self.motion_channels} + 1); got shape {tuple(state.shape)}"
            )


def displacement(
    motion: Float[Tensor, "N M"], elapsed: Union[float, Float[Tensor, "N"]], order: int
) -> Float[Tensor, "N 3"]:
    """Σ_k motion_k · Δt^k / k! for k = 1 … order (motion_k = rows' 3 channels k−1), Δt = ``elapsed``."""
    if motion.shape[1] != 3 * order:
        raise ValueError(f"motion of order {order} has {3 * order} channels; got {motion.shape[1]}")
    if not isinstance(elapsed, Tensor):
        elapsed = motion.new_full((motion.shape[0],), float(elapsed))
    elapsed = elapsed.to(motion)[:, None]
    total = motion.new_zeros(motion.shape[0], 3)
    for k in range(1, order + 1):
        total = total + motion[:, 3 * (k - 1) : 3 * k] * elapsed**k / math.factorial(k)
    return total


def positions_at(state: Float[Tensor, "N C"], time: float, layout: Flux4DLayout) -> Float[Tensor, "N 3"]:
    """Centres at normalised time ``time``: p_i + Σ motion terms of (time − t_i)."""
    layout.check(state)
    elapsed = time - state[:, layout.time]
    return state[:, POSITION] + displacement(state[:, layout.motion], elapsed, layout.order)


def velocities_at(state: Float[Tensor, "N C"], time: float, layout: Flux4DLayout) -> Float[Tensor, "N 3"]:
    """d p_i / d t at ``time`` (scene units per normalised time): v_i + a_i (time − t_i) + …"""
    layout.check(state)
    elapsed = (time - state[:, layout.time])[:, None]
    motion = state[:, layout.motion]
    total = motion[:, 0:3].clone()
    for k in range(2, layout.order + 1):
        total = total + motion[:, 3 * (k - 1) : 3 * k] * elapsed ** (k - 1) / math.factorial(k - 1)
    return total


def decode_at(state: Float[Tensor, "N C"], time: float, layout: Flux4DLayout) -> GaussianParams:
    """Activated Gaussians at ``time`` (moved centres; scale, rotation, colour, opacity as stored)."""
    layout.check(state)
    explicit = torch.cat([positions_at(state, time, layout), state[:, EXPLICIT][:, 3:]], dim=-1)
    return activate(explicit)


def motion_in_metres_per_second(
    motion: Float[Tensor, "N M"], metres_per_unit: float, seconds_per_time: float
) -> Float[Tensor, "N M"]:
    """Motion channels converted from scene units per normalised time^k to metres per second^k."""
    if not seconds_per_time > 0:
        raise ValueError(f"seconds_per_time (the clip's time span) must be positive, got {seconds_per_time}")
    order = motion.shape[1] // 3
    factors = torch.tensor(
        [metres_per_unit / seconds_per_time**k for k in range(1, order + 1)], dtype=motion.dtype, device=motion.device
    ).repeat_interleave(3)
    return motion * factors


def flux4d_state(
    params: GaussianParams,
    times: Float[Tensor, "N"],
    layout: Flux4DLayout,
    motion: Optional[Float[Tensor, "N M"]] = None,
) -> Float[Tensor, "N C"]:
    """A state whose explicit channels activate to ``params`` at capture times ``times``, with the given motion
    (zero: v_i = 0, Flux4D's initialisation)."""
    if motion is None:
        motion = params.means.new_zeros(params.num, layout.motion_channels)
    if motion.shape != (params.num, layout.motion_channels) or times.shape != (params.num,):
        raise ValueError(
            f"flux4d_state: {params.num} Gaussians need times [{params.num}] and motion [{params.num}, "
            f"{layout.motion_channels}]; got {tuple(times.shape)} and {tuple(motion.shape)}"
        )
    return torch.cat([deactivate(params), motion.to(params.means), times.to(params.means)[:, None]], dim=-1)


def random_unit_quaternions(count: int, generator: Optional[torch.Generator] = None) -> Float[Tensor, "N 4"]:
    """Uniformly random rotations (normalised standard-normal 4-vectors), Flux4D's initial rotations."""
    quats = torch.randn(count, 4, generator=generator)
    return F.normalize(quats, dim=-1)
