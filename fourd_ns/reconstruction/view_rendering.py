"""Rendering activated Gaussians into a `CameraView` or any nerfstudio-posed pinhole camera.

One function, `render_view`, is the only place the reconstruction methods call the rasterizer
(`fourd_ns.gaussians.rasterize`: gsplat on CUDA, our tile rasterizer on CPU), so the learned optimizer's gradient
lifting, its training losses and the nerfstudio models all see the same image formation: colours composited over
``background``, and "ED" depth (alpha-normalised camera z, the quantity LiDAR depth maps hold).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor

from fourd_ns.gaussians.rasterize import rasterize
from fourd_ns.geometry.camera_conventions import viewmat_from_nerfstudio_c2w
from fourd_ns.reconstruction.views import CameraView
from fourd_ns.scene.gaussian_params import GaussianParams


@dataclass
class ViewRender:
    rgb: Float[Tensor, "H W 3"]
    depth: Float[Tensor, "H W"]
    """Expected camera z where anything was rendered (alpha > 0), else 0."""
    alpha: Float[Tensor, "H W"]
    features: Optional[Float[Tensor, "H W F"]] = None
    """Alpha-composited extra per-Gaussian features (no background), when any were given."""


def render_camera(
    gaussians: GaussianParams,
    camera_to_world: Float[Tensor, "3 4"],
    intrinsics: Float[Tensor, "3 3"],
    width: int,
    height: int,
    background: Float[Tensor, "3"] | None = None,
    with_depth: bool = True,
    features: Optional[Float[Tensor, "N F"]] = None,
) -> ViewRender:
    """Render ``gaussians`` (world frame) into a nerfstudio-posed pinhole camera; colours are clamped to [0, 1]
    when a ``background`` is composited. ``features`` (one row per Gaussian) are rendered in the same pass, after
    the colours (e.g. Flux4D's image-plane velocities)."""
    viewmat = viewmat_from_nerfstudio_c2w(camera_to_world[None])
    colors = gaussians.colors if features is None else torch.cat([gaussians.colors, features.to(gaussians.colors)], -1)
    render, alpha, _ = rasterize(
        means=gaussians.means,
        quats=gaussians.quats,
        scales=gaussians.scales,
        opacities=gaussians.opacities,
        colors=colors,
        viewmats=viewmat,
        Ks=intrinsics[None],
        width=width,
        height=height,
        render_mode="RGB+ED" if with_depth else "RGB",
        packed=False,
    )
    render, alpha = render[0], alpha[0, ..., 0]
    rgb = render[..., :3]
    if background is not None:
        rgb = (rgb + (1.0 - alpha[..., None]) * background).clamp(0.0, 1.0)
    extra = None if features is None else render[..., 3 : 3 + features.shape[1]]
    depth = torch.where(alpha > 0, render[..., -1], torch.zeros_like(alpha)) if with_depth else torch.zeros_like(alpha)
    return ViewRender(rgb=rgb, depth=depth, alpha=alpha, features=extra)


def render_view(
    gaussians: GaussianParams,
    view: CameraView,
    background: Float[Tensor, "3"] | None = None,
    with_depth: bool = True,
    features: Optional[Float[Tensor, "N F"]] = None,
) -> ViewRender:
    """Render ``gaussians`` (world frame) into ``view``'s camera at its resolution."""
    return render_camera(
        gaussians, view.camera_to_world, view.intrinsics, view.width, view.height, background, with_depth, features
    )
