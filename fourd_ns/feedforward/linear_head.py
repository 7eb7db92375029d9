"""The linear dense-prediction head (DUSt3R's ``LinearPts3d`` layout): one ``Linear`` per token, pixel shuffle.

Each last-layer token predicts the ``out_channels × p × p`` values of its own ``p × p`` patch; ``pixel_shuffle``
arranges them into the image (channel ``c·p² + i·p + j`` → channel ``c``, pixel ``(i, j)`` of the patch). The
parameter name ``proj`` and this channel order are what DUSt3R's ``downstream_head{1,2}.proj`` weights use. Flow4R
trains with this head in its first, low-resolution stage (paper §4).
"""

from __future__ import annotations

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn


class LinearHead(nn.Module):
    """``proj = Linear(dim, out_channels · p²)`` on the last token map, then ``pixel_shuffle(p)``."""

    def __init__(self, dim: int, out_channels: int, patch_size: int = 16) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.patch_size = patch_size
        self.proj = nn.Linear(dim, out_channels * patch_size**2)

    def forward(self, tokens: list[Float[Tensor, "B N D"]], grid_size: tuple[int, int]) -> Float[Tensor, "B C H W"]:
        """Dense output at ``(h·p, w·p)`` from the last entry of ``tokens`` (``N = h·w`` in row-major order)."""
        height, width = grid_size
        features = self.proj(tokens[-1])  # [B, N, C·p²]
        features = features.transpose(1, 2).reshape(features.shape[0], -1, height, width)
        return F.pixel_shuffle(features, self.patch_size)
