"""The step size γ(t) of G3R's update ``S(t+1) = S(t) + γ(t) · Δ`` and the encoding of the step index.

The paper says only that γ(t) is "a cosine schedule from DDIM". Ours is the squared-cosine ᾱ of Nichol & Dhariwal
(2021), read as a step size that starts at 1 and decays towards 0 over the T steps, so that early steps move the
scene far and late steps polish it:

    γ(t) = f(t) / f(0),   f(t) = cos²(π/2 · (t / T + s) / (1 + s)),   s = 0.008,   t = 0 … T−1.

With T = 24, γ falls from 1 through 0.49 at t = 12 to 0.004 at the last step; ``constant`` (the paper's "no γ(t)"
ablation) uses γ = ``constant_value`` for every step. Because the schedule is a function of t / T, the turbo setting
(T = 12) visits the same curve at half the resolution.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

COSINE_OFFSET = 0.008


def step_size(step: int, num_steps: int, kind: Literal["cosine", "constant"] = "cosine", constant_value: float = 0.5) -> float:
    """γ(step) for a reconstruction of ``num_steps`` steps (step = 0 … num_steps − 1)."""
    if not 0 <= step < num_steps:
        raise ValueError(f"step {step} outside 0..{num_steps - 1}")
    if kind == "constant":
        return float(constant_value)
    if kind != "cosine":
        raise ValueError(f"Unknown step schedule {kind!r}; use 'cosine' or 'constant'")

    def f(x: float) -> float:
        return math.cos(math.pi / 2 * (x + COSINE_OFFSET) / (1 + COSINE_OFFSET)) ** 2

    return f(step / num_steps) / f(0.0)


def step_encoding(step: int, num_steps: int, channels: int) -> Float[Tensor, "E"]:
    """Sinusoidal encoding of the progress ``step / num_steps`` (E = channels, even), injected at the U-Net's
    bottleneck so the network knows how far the reconstruction has come."""
    if channels % 2:
        raise ValueError(f"step encoding needs an even number of channels, got {channels}")
    progress = step / max(num_steps, 1)
    frequencies = 2.0 ** torch.arange(channels // 2, dtype=torch.float32)
    angles = math.pi * progress * frequencies
    return torch.cat([torch.sin(angles), torch.cos(angles)])
