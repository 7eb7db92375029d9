"""NeRF-style frequency (positional) encodings used by the deformation networks."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn


class FrequencyEncoding(nn.Module):
    """γ(x) = [x, sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)].

    The log-sampled frequencies and the inclusion of the raw input follow the NeRF embedder that Deformable-3DGS
    uses, so an input of width ``in_dim`` becomes ``in_dim * (1 + 2 * num_frequencies)`` channels
    (63 for xyz with L=10, 21 for time with L=10, 13 for time with L=6).
    """

    def __init__(self, in_dim: int, num_frequencies: int) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.num_frequencies = num_frequencies
        self.register_buffer("frequencies", 2.0 ** torch.arange(num_frequencies, dtype=torch.float32), persistent=False)

    @property
    def out_dim(self) -> int:
        return self.in_dim * (1 + 2 * self.num_frequencies)

    def forward(self, x: Float[Tensor, "*batch in_dim"]) -> Float[Tensor, "*batch out_dim"]:
        scaled = x[..., None, :] * self.frequencies[:, None]  # [..., L, in_dim]
        # Interleave per frequency as (sin, cos) like the reference embedder: [x, sin f0, cos f0, sin f1, ...].
        sincos = torch.stack([torch.sin(scaled), torch.cos(scaled)], dim=-2)  # [..., L, 2, in_dim]
        return torch.cat([x, sincos.flatten(-3)], dim=-1)
