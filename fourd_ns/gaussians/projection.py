"""EWA projection of 3D Gaussians to 2D screen-space Gaussians, in plain torch.

This mirrors gsplat 1.4.0's ``fully_fused_projection`` (pinhole camera, ``packed=False``) so the CPU backend
produces the same ``radii``/``means2d``/``depths``/``conics`` that gsplat's CUDA kernels produce and
``DefaultStrategy`` sees the same quantities on either device. Everything is differentiable by autograd.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from fourd_ns.geometry.pinhole import project_camera_points
from fourd_ns.geometry.rotations import quat_to_rotmat


def quat_scale_to_covar(quats: Float[Tensor, "*batch 4"], scales: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3 3"]:
    """World-space covariance R diag(s)^2 R^T from rotation quaternions (wxyz) and activated scales."""
    m = quat_to_rotmat(quats) * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def world_to_camera(
    means: Float[Tensor, "N 3"], covars: Float[Tensor, "N 3 3"], viewmats: Float[Tensor, "C 4 4"]
) -> Tuple[Float[Tensor, "C N 3"], Float[Tensor, "C N 3 3"]]:
    """Transform means and covariances into every camera's frame (world-to-camera ``viewmats``)."""
    rot = viewmats[:, :3, :3]
    means_c = torch.einsum("cij,nj->cni", rot, means) + viewmats[:, None, :3, 3]
    covars_c = torch.einsum("cij,njk,clk->cnil", rot, covars, rot)
    return means_c, covars_c


def perspective_project(
    means_c: Float[Tensor, "C N 3"], covars_c: Float[Tensor, "C N 3 3"], Ks: Float[Tensor, "C 3 3"], width: int, height: int
) -> Tuple[Float[Tensor, "C N 2"], Float[Tensor, "C N 2 2"]]:
    """Pinhole projection of means (:func:`fourd_ns.geometry.pinhole.project_camera_points`, the form of gsplat's
    CUDA kernel; no skew) and first-order (EWA) projection of covariances.

    The Jacobian is evaluated at the camera-space point with x/z and y/z clamped to 1.3x the field of view, as
    gsplat does, so Gaussians far outside the frustum do not get exploding screen-space footprints.
    """
    tx, ty, tz = torch.unbind(means_c, dim=-1)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    tx_c = tz * torch.clamp(tx / tz, min=-lim_x_neg, max=lim_x_pos)
    ty_c = tz * torch.clamp(ty / tz, min=-lim_y_neg, max=lim_y_pos)
    zeros = torch.zeros_like(tz)
    jac = torch.stack(
        [fx / tz, zeros, -fx * tx_c / (tz * tz), zeros, fy / tz, -fy * ty_c / (tz * tz)], dim=-1
    ).reshape(tz.shape + (2, 3))
    covars2d = jac @ covars_c @ jac.transpose(-1, -2)
    # Unguarded division, as gsplat's: Gaussians at or behind the near plane are culled by the caller.
    means2d = project_camera_points(means_c, fx, fy, cx, cy, depth_guard="nonzero").pixels
    return means2d, covars2d


def project_gaussians(
    means: Float[Tensor, "N 3"],
    quats: Float[Tensor, "N 4"],
    scales: Float[Tensor, "N 3"],
    viewmats: Float[Tensor, "C 4 4"],
    Ks: Float[Tensor, "C 3 3"],
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    calc_compensations: bool = False,
) -> Tuple[
    Int[Tensor, "C N"], Float[Tensor, "C N 2"], Float[Tensor, "C N"], Float[Tensor, "C N 3"], Optional[Float[Tensor, "C N"]]
]:
    """Project 3D Gaussians into every camera, as gsplat's ``fully_fused_projection`` with ``packed=False``.

    Returns:
        radii: int32 pixel radius ``ceil(3 sqrt(max eigenvalue))`` of the blurred 2D covariance; 0 marks a culled
            Gaussian (behind near / beyond far plane, degenerate, radius <= ``radius_clip``, or off screen).
        means2d: projected centres in pixels.
        depths: camera-space z.
        conics: upper triangle (a, b, c) of the inverse blurred 2D covariance.
        compensations: ``sqrt(det(cov2d) / det(cov2d + eps2d I))`` for anti-aliased rendering, else None.
    """
    covars = quat_scale_to_covar(quats, scales)
    means_c, covars_c = world_to_camera(means, covars, viewmats)
    means2d, covars2d = perspective_project(means_c, covars_c, Ks, width, height)

    c00, c01, c10, c11 = covars2d[..., 0, 0], covars2d[..., 0, 1], covars2d[..., 1, 0], covars2d[..., 1, 1]
    det_orig = c00 * c11 - c01 * c10
    # eps2d is the low-pass filter that keeps sub-pixel Gaussians at least about a pixel wide.
    c00, c11 = c00 + eps2d, c11 + eps2d
    det = (c00 * c11 - c01 * c10).clamp(min=1e-10)
    compensations = torch.sqrt(torch.clamp(det_orig / det, min=0.0)) if calc_compensations else None
    conics = torch.stack([c11 / det, -(c01 + c10) / 2.0 / det, c00 / det], dim=-1)
    depths = means_c[..., 2]

    with torch.no_grad():
        b = (c00 + c11) / 2
        radius = torch.ceil(3.0 * torch.sqrt(b + torch.sqrt(torch.clamp(b * b - det, min=0.01))))
        valid = (det > 0.0) & (depths > near_plane) & (depths < far_plane) & (radius > radius_clip)
        mx, my = means2d[..., 0], means2d[..., 1]
        inside = (mx + radius > 0) & (mx - radius < width) & (my + radius > 0) & (my - radius < height)
        radii = torch.where(valid & inside, radius, torch.zeros_like(radius)).to(torch.int32)
    return radii, means2d, depths, conics, compensations
