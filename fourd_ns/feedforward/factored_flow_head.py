"""A Flow3r-style factored-flow head on the CroCo-style two-view backbone: dense correspondences from view i to j.

Flow3r (Cong et al., CVPR 2026; notes §10.3) predicts, for an ordered pair (i, j), where each pixel of view i lands
in view j by fusing view i's patch features with a *camera* summary of view j and decoding the result with a DPT.
Adapted to our two-view backbone:

- At each of the four hooked layers ``l`` (the same hooks as the DPT geometry head), the camera token of view j is
  the mean of view j's tokens at that layer, ``c_j^l = mean_n tokens_j^l[n]`` (Flow3r averages its camera
  features over patches the same way; our backbone has no dedicated camera token).
- Every patch token of view i is concatenated with it, ``[t_i, c_j]`` (2D), and mapped back to D by an MLP
  ``Linear(2D, 2D) → GELU → Linear(2D, D)`` followed by a LayerNorm (``fusion.{l}``). Flow3r also concatenates a
  second feature stream of view i (its point features); here the decoder tokens already carry view i's geometry,
  so the fusion takes two inputs and one hidden layer.
- A DPT (:class:`fourd_ns.feedforward.dpt_head.DPTNetwork`, 2 output channels) decodes the four fused maps.

Output parametrisation: the two channels are an **offset in pixels** from the pixel's own centre, so the
correspondence is ``(u + 0.5, v + 0.5) + offset`` in view j's pixel coordinates (x right, y down, pixel centres at
integer + 0.5 — the convention of ``ViewTargets.flow_target``). Predicting an offset makes "no motion" the
zero output, which the random initialisation starts close to. Flow3r itself predicts absolute target
coordinates in flipped NDC; we do not, because no Flow3r weights are loaded here.

Real Flow3r weights (``Clara211111/flow3r``: DINOv2 ViT-L/14 encoder, π³/VGGT-style alternating-attention
decoder, 3×1024-d fusion MLPs) have a different architecture and **cannot** be loaded into this head; it is trained
with Flow4R's backbone (enable ``Flow4RConfig.factored_flow``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from jaxtyping import Float
from torch import Tensor, nn

from fourd_ns.feedforward.croco_blocks import LAYER_NORM_EPS
from fourd_ns.feedforward.dpt_head import DPT_UPSAMPLING, DPTNetwork


def pixel_centres(height: int, width: int, device: torch.device) -> Float[Tensor, "H W 2"]:
    """``(u, v) = (x + 0.5, y + 0.5)`` of every pixel."""
    vs, us = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32) + 0.5,
        torch.arange(width, device=device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    return torch.stack((us, vs), dim=-1)


class CameraTokenFusion(nn.Module):
    """``LayerNorm(MLP([token_i, camera_j]))`` for one hooked layer of width ``dim``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(
        self, tokens: Float[Tensor, "B N D"], other_tokens: Float[Tensor, "B M D"]
    ) -> Float[Tensor, "B N D"]:
        camera = other_tokens.mean(dim=1, keepdim=True).expand_as(tokens)
        return self.norm(self.mlp(torch.cat((tokens, camera), dim=-1)))


class FactoredFlowHead(nn.Module):
    """Correspondences of view i's pixels in view j from the hooked layers of both views' token lists."""

    def __init__(self, dim_tokens: Sequence[int], hooks: Sequence[int], **sizes: Any) -> None:
        """``sizes``: ``layer_dims``, ``feature_dim``, ``last_dim`` of :class:`DPTNetwork` (its defaults otherwise)."""
        super().__init__()
        if len(hooks) != 4 or len(dim_tokens) != 4:
            raise ValueError(f"the factored-flow head needs four hooked layers, got hooks={list(hooks)}")
        self.hooks = list(hooks)
        self.fusion = nn.ModuleList(CameraTokenFusion(dim) for dim in dim_tokens)
        self.dpt = DPTNetwork(dim_tokens, 2, **sizes)

    def forward(
        self,
        tokens: list[Float[Tensor, "B N D"]],
        other_tokens: list[Float[Tensor, "B N D"]],
        grid_size: tuple[int, int],
    ) -> Float[Tensor, "B H W 2"]:
        """Pixel position ``(u, v)`` in the other view of every pixel of this view (``H, W = 16·grid_size``)."""
        fused = [
            fusion(tokens[index], other_tokens[index]) for fusion, index in zip(self.fusion, self.hooks)
        ]
        offsets = self.dpt(fused, grid_size).permute(0, 2, 3, 1)  # [B, H, W, 2]
        height, width = grid_size[0] * DPT_UPSAMPLING, grid_size[1] * DPT_UPSAMPLING
        return pixel_centres(height, width, offsets.device).to(offsets.dtype) + offsets
