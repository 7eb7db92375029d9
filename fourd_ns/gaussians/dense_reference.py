"""Dense O(pixels x Gaussians) compositing with plain autograd: the simple baseline the tile rasterizer is timed
against (``benchmarks/rasterizer.py``). Only for small images; memory is ``C * H * W * N`` floats several times.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor


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
) -> Tuple[Float[Tensor, "C H W D"], Float[Tensor, "C H W 1"]]:
    """Same contract as ``tile_rasterizer.rasterize_to_pixels`` minus tiling: every Gaussian at every pixel."""
    renders, alphas = [], []
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=means2d.dtype) + 0.5, torch.arange(width, dtype=means2d.dtype) + 0.5, indexing="ij"
    )
    for cam in range(means2d.shape[0]):
        keep = torch.nonzero(radii[cam] > 0).squeeze(1)
        keep = keep[torch.argsort(depths[cam, keep])]
        mean, conic, opac = means2d[cam, keep], conics[cam, keep], opacities[cam, keep]
        dx = mean[:, 0] - xs[..., None]  # [H, W, n]
        dy = mean[:, 1] - ys[..., None]
        sigma = 0.5 * (conic[:, 0] * dx * dx + conic[:, 2] * dy * dy) + conic[:, 1] * dx * dy
        alpha = torch.clamp_max(opac * torch.exp(-sigma), 0.999)
        alpha = torch.where((sigma < 0) | (alpha < 1.0 / 255.0), torch.zeros_like(alpha), alpha)
        after = torch.cumprod(1.0 - alpha, dim=-1)
        alpha = torch.where(after <= 1e-4, torch.zeros_like(alpha), alpha)
        after = torch.cumprod(1.0 - alpha, dim=-1)
        before = torch.cat([torch.ones_like(after[..., :1]), after[..., :-1]], dim=-1)
        render = (alpha * before) @ colors[cam, keep]
        final = after[..., -1:] if keep.numel() else torch.ones_like(xs)[..., None]
        if backgrounds is not None:
            render = render + final * backgrounds[cam]
        renders.append(render)
        alphas.append(1.0 - final)
    return torch.stack(renders), torch.stack(alphas)
