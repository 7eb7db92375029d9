"""Rendering activated Gaussians into a `CameraView`, and the photometric / LiDAR terms computed on the render.

One function, `render_view`, is the only place the reconstruction methods call the rasterizer
(`fourd_ns.gaussians.rasterize`: gsplat on CUDA, our tile rasterizer on CPU), so the learned optimizer's gradient
lifting, its training losses and the nerfstudio models all see the same image formation: colours composited over
``background``, and "ED" depth (alpha-normalised camera z, the quantity LiDAR depth maps hold).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def render_view(
    gaussians: GaussianParams,
    view: CameraView,
    background: Float[Tensor, "3"] | None = None,
    with_depth: bool = True,
) -> ViewRender:
    """Render ``gaussians`` (world frame) into ``view``'s camera at its resolution."""
    viewmat = viewmat_from_nerfstudio_c2w(view.camera_to_world[None])
    render, alpha, _ = rasterize(
        means=gaussians.means,
        quats=gaussians.quats,
        scales=gaussians.scales,
        opacities=gaussians.opacities,
        colors=gaussians.colors,
        viewmats=viewmat,
        Ks=view.intrinsics[None],
        width=view.width,
        height=view.height,
        render_mode="RGB+ED" if with_depth else "RGB",
        packed=False,
    )
    render, alpha = render[0], alpha[0, ..., 0]
    rgb = render[..., :3]
    if background is not None:
        rgb = rgb + (1.0 - alpha[..., None]) * background
    depth = torch.where(alpha > 0, render[..., 3], torch.zeros_like(alpha)) if with_depth else torch.zeros_like(alpha)
    return ViewRender(rgb=rgb.clamp(0.0, 1.0) if background is not None else rgb, depth=depth, alpha=alpha)


def lidar_depth_l1(render: ViewRender, view: CameraView) -> Tensor:
    """Mean |rendered depth − LiDAR depth| over the pixels with a return (0 when the view has none)."""
    if view.lidar_depth is None:
        return render.depth.sum() * 0.0
    returns = view.lidar_depth > 0
    if not bool(returns.any()):
        return render.depth.sum() * 0.0
    return (render.depth[returns] - view.lidar_depth[returns]).abs().mean()
