"""The one rasterization entry point of fourd_ns: gsplat on CUDA, our pure-torch tile rasterizer on CPU.

Both backends follow gsplat 1.4.0's ``rasterization`` (``packed=False`` on CPU) so models, losses and gsplat's
``DefaultStrategy`` see identical outputs and ``info`` on either device.
"""

from __future__ import annotations

from typing import Dict, Literal, Optional, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

from fourd_ns.gaussians.projection import project_gaussians
from fourd_ns.gaussians.spherical_harmonics import spherical_harmonics
from fourd_ns.gaussians.tile_rasterizer import rasterize_to_pixels

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]


def rasterize(
    means: Float[Tensor, "N 3"],
    quats: Float[Tensor, "N 4"],
    scales: Float[Tensor, "N 3"],
    opacities: Float[Tensor, "N"],
    colors: Tensor,
    viewmats: Float[Tensor, "C 4 4"],
    Ks: Float[Tensor, "C 3 3"],
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[Float[Tensor, "C D"]] = None,
    render_mode: RenderMode = "RGB",
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    tile_size: int = 16,
    absgrad: bool = False,
    packed: bool = False,
    backend: Literal["auto", "gsplat", "torch"] = "auto",
) -> Tuple[Float[Tensor, "C H W X"], Float[Tensor, "C H W 1"], Dict]:
    """Render Gaussians into ``C`` pinhole cameras.

    Args:
        means, quats, scales, opacities: Gaussians; quats are wxyz (normalised here), scales and opacities are
            already activated.
        colors: ``[N, D]`` or ``[C, N, D]`` features of any width, or ``[N, K, 3]`` / ``[C, N, K, 3]`` SH
            coefficients when ``sh_degree`` is set (colour = SH + 0.5, clamped at 0, as gsplat).
        viewmats: world-to-camera matrices in OpenCV axes; Ks: pinhole intrinsics.
        backgrounds: colour blended behind the Gaussians with the final transmittance (zero for depth channels).
        render_mode: "D" is alpha-weighted accumulated depth, "ED" that divided by alpha; "RGB+D"/"RGB+ED" append it
            as the last channel.
        backend: "auto" uses gsplat for CUDA tensors and the torch tile rasterizer otherwise.

    Returns:
        ``render [C, H, W, X]``, ``alpha [C, H, W, 1]`` and ``info`` with ``means2d`` (the tensor the render depends
        on, so ``DefaultStrategy`` can read its gradient), ``radii``, ``depths``, ``conics``, ``opacities``,
        ``gaussian_ids`` (None), ``camera_ids`` (None), ``width``, ``height``, ``n_cameras``, ``tile_size``; the torch
        backend adds ``n_intersections``. With ``absgrad`` the backward also sets ``info["means2d"].absgrad``.
    """
    if backend == "gsplat" or (backend == "auto" and means.is_cuda):
        from gsplat.rendering import rasterization  # CUDA-only; imported lazily so CPU runs never touch it

        return rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip, eps2d=eps2d, sh_degree=sh_degree,
            packed=packed, tile_size=tile_size, backgrounds=backgrounds, render_mode=render_mode, sparse_grad=False,
            absgrad=absgrad, rasterize_mode=rasterize_mode,
        )  # fmt: skip
    if packed:
        raise ValueError("The torch rasterizer backend supports only packed=False; pass packed=False on CPU.")
    if render_mode not in ("RGB", "D", "ED", "RGB+D", "RGB+ED"):
        raise ValueError(f"Unknown render_mode {render_mode!r}")
    if rasterize_mode not in ("classic", "antialiased"):
        raise ValueError(f"Unknown rasterize_mode {rasterize_mode!r}")
    n_cameras = viewmats.shape[0]

    radii, means2d, depths, conics, compensations = project_gaussians(
        means, quats, scales, viewmats, Ks, width, height, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane,
        radius_clip=radius_clip, calc_compensations=rasterize_mode == "antialiased",
    )  # fmt: skip
    opacities = opacities.repeat(n_cameras, 1)
    if compensations is not None:
        opacities = opacities * compensations

    if sh_degree is None:
        colors = colors.expand(n_cameras, -1, -1) if colors.dim() == 2 else colors
    else:
        camtoworlds = torch.inverse(viewmats)
        dirs = means[None, :, :] - camtoworlds[:, None, :3, 3]
        shs = colors.expand(n_cameras, -1, -1, -1) if colors.dim() == 3 else colors
        # gsplat leaves culled Gaussians' SH colour at 0 before the +0.5; they are never composited, but mask
        # anyway so the colours match gsplat's tensor exactly.
        colors = spherical_harmonics(sh_degree, dirs, shs) * (radii > 0)[..., None]
        colors = torch.clamp_min(colors + 0.5, 0.0)

    if render_mode in ("RGB+D", "RGB+ED"):
        colors = torch.cat([colors, depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(n_cameras, 1)], dim=-1)
    elif render_mode in ("D", "ED"):
        colors = depths[..., None]
        if backgrounds is not None:
            backgrounds = backgrounds.new_zeros(n_cameras, 1)

    render, alpha, isects = rasterize_to_pixels(
        means2d, conics, colors, opacities, radii, depths, width, height, tile_size=tile_size,
        backgrounds=backgrounds, absgrad=absgrad,
    )  # fmt: skip
    if render_mode in ("ED", "RGB+ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / alpha.clamp(min=1e-10)], dim=-1)

    info = {
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": opacities,
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_cameras": n_cameras,
        "n_intersections": isects.n_intersections,
    }
    return render, alpha, info
