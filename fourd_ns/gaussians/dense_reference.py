"""Dense O(pixels x Gaussians) compositing with plain autograd: the simple baseline the tile rasterizer is timed
against (``benchmarks/rasterizer.py``). Every Gaussian is evaluated at every pixel; rows are processed in blocks
under activation checkpointing so the baseline fits in memory at benchmark sizes (peak about
``rows_per_block * W * N * 4 bytes`` times a dozen live tensors).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.utils.checkpoint import checkpoint


def _composite_rows(
    xs: Float[Tensor, "h W"],
    ys: Float[Tensor, "h W"],
    mean: Float[Tensor, "n 2"],
    conic: Float[Tensor, "n 3"],
    opac: Float[Tensor, "n"],
    colors: Float[Tensor, "n D"],
) -> Tuple[Float[Tensor, "h W D"], Float[Tensor, "h W 1"]]:
    dx = mean[:, 0] - xs[..., None]
    dy = mean[:, 1] - ys[..., None]
    sigma = 0.5 * (conic[:, 0] * dx * dx + conic[:, 2] * dy * dy) + conic[:, 1] * dx * dy
    alpha = torch.clamp_max(opac * torch.exp(-sigma), 0.999)
    alpha = torch.where((sigma < 0) | (alpha < 1.0 / 255.0), torch.zeros_like(alpha), alpha)
    after = torch.cumprod(1.0 - alpha, dim=-1)
    alpha = torch.where(after <= 1e-4, torch.zeros_like(alpha), alpha)
    after = torch.cumprod(1.0 - alpha, dim=-1)
    before = torch.cat([torch.ones_like(after[..., :1]), after[..., :-1]], dim=-1)
    return (alpha * before) @ colors, after[..., -1:]


def dense_rasterize_to_pixels(
    means2d: Float[Tensor, "C N 2"],
    conics: Float[Tensor, "C N 3"],
    colors: Float[Tensor, "C N D"],
    opacities: Float[Tensor, "C N"],
    radii: Int[Tensor, "C N"],
    depths: Float[Tensor, "C N"],
    width: int,
    height: int,
    backgrounds: Optional[Float[Tensor, "C D"]] = None,
    rows_per_block: Optional[int] = None,
) -> Tuple[Float[Tensor, "C H W D"], Float[Tensor, "C H W 1"]]:
    """Same contract as ``tile_rasterizer.rasterize_to_pixels`` minus tiling (``rows_per_block=None``: no blocks)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=means2d.dtype) + 0.5, torch.arange(width, dtype=means2d.dtype) + 0.5, indexing="ij"
    )
    block = rows_per_block or height
    renders, alphas = [], []
    for cam in range(means2d.shape[0]):
        keep = torch.nonzero(radii[cam] > 0).squeeze(1)
        keep = keep[torch.argsort(depths[cam, keep])]
        args = (means2d[cam, keep], conics[cam, keep], opacities[cam, keep], colors[cam, keep])
        parts = [
            checkpoint(_composite_rows, xs[r : r + block], ys[r : r + block], *args, use_reentrant=False)
            if rows_per_block
            else _composite_rows(xs[r : r + block], ys[r : r + block], *args)
            for r in range(0, height, block)
        ]
        render = torch.cat([p[0] for p in parts])
        final = torch.cat([p[1] for p in parts])
        if backgrounds is not None:
            render = render + final * backgrounds[cam]
        renders.append(render)
        alphas.append(1.0 - final)
    return torch.stack(renders), torch.stack(alphas)
