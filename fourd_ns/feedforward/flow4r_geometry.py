"""Geometry derived from Flow4R's property set S = {P, F, W, C} (paper §3.1, Eq. 1–9).

Every function is batched over B image views with per-pixel maps ``[B, H, W, ·]`` in OpenCV camera axes, and pixel
coordinates (u, v) with pixel centres at integer + 0.5 (see ``pair_types``). A "pose" T maps this view's camera
points to the other view's camera: ``P_vt ≈ T·P`` for static points.

Design choices where the paper is silent:

- **Pose (Eq. 2).** The paper writes the residual as a plain norm; like DUSt3R-family solvers we minimise the
  weighted *squared* residual, which has the closed-form weighted Procrustes solution. The 3×3 rotation comes from
  ``roma.special_procrustes`` — the solver ``roma.rigid_points_registration`` calls (Horn's closed form in float64 with
  a damped backward, so collinear or peaked supports still give finite gradients) — on a weighted cross-covariance
  we build ourselves. Building it here lets us normalise the weights once with a guarded denominator (an image whose
  weights are all ~0, e.g. all pixels invalid, falls back to uniform weights over its valid pixels instead of
  dividing by zero), zero the coordinates of invalid pixels (NaN ground truth there cannot leak through a zero
  weight), clamp the Sim(3) scale's denominator, and keep everything in float64 even under autocast. Results are
  cast back to the input dtype.
- **Focal (Eq. 7).** With fx = fy = f and a known principal point c the least-squares problem is linear in f:
  f = Σ w (p̂ − c)·a / Σ w ‖a‖² with a = (X/Z, Y/Z). That is exact on clean points and the right choice for ground
  truth or well-behaved predictions. Network point maps have outliers (sky, depth discontinuities, points near
  Z = 0) that pull the squared loss; ``method="weiszfeld"`` then minimises Σ w ‖p̂ − c − f·a‖ (the un-squared
  reprojection distance, as DUSt3R's focal estimate does) by iteratively reweighted least squares. Points with
  Z ≤ ``min_depth`` never take part.
- **Projection (Eq. 8).** Points at or behind the camera have no meaningful projection; their depth is clamped to
  ``min_depth`` (keeping the result finite) and callers mask them with their own validity.
- **Scale normalisation.** ``normalise_pair_scale`` is DUSt3R's ``avg_dis`` normalisation, used by the training
  losses: both views' valid points divided by their mean distance to the origin of their cameras.
"""

from __future__ import annotations

from typing import Literal

import roma
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from fourd_ns.geometry.pinhole import project_camera_points, unpack_intrinsics, unproject_pixels

_WEIGHT_EPS = 1e-12
"""Total pose weight below which an image's weights are considered all-zero (uniform fallback)."""
_VARIANCE_EPS = 1e-12
"""Clamp of the Sim(3) scale denominator Σ w ‖x − x̄‖² (pytorch3d uses the same idea)."""
_RESIDUAL_EPS = 1e-6
"""Smallest reprojection residual (pixels) in Weiszfeld's reweighting, so exact points do not divide by zero."""


def pixel_grid(
    height: int, width: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> Float[Tensor, "H W 2"]:
    """Pixel-centre coordinates (u, v) = (column + 0.5, row + 0.5) of an H×W image."""
    v = torch.arange(height, device=device, dtype=dtype) + 0.5
    u = torch.arange(width, device=device, dtype=dtype) + 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv], dim=-1)


def image_centre(
    batch: int, height: int, width: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> Float[Tensor, "B 2"]:
    """The principal point at the image centre, (W/2, H/2), for each of B views."""
    return torch.tensor([width / 2.0, height / 2.0], device=device, dtype=dtype).expand(batch, 2)


def pinhole_intrinsics(focal: Float[Tensor, "B"], principal_point: Float[Tensor, "B 2"]) -> Float[Tensor, "B 3 3"]:
    """3×3 intrinsics with fx = fy = focal and the given principal point."""
    intrinsics = torch.zeros(focal.shape[0], 3, 3, device=focal.device, dtype=focal.dtype)
    intrinsics[:, 0, 0] = focal
    intrinsics[:, 1, 1] = focal
    intrinsics[:, :2, 2] = principal_point
    intrinsics[:, 2, 2] = 1.0
    return intrinsics


def unproject_depth(depth: Float[Tensor, "B H W"], intrinsics: Float[Tensor, "B 3 3"]) -> Float[Tensor, "B H W 3"]:
    """Camera-space points z·K⁻¹·(u, v, 1) of every pixel centre (used to build ground-truth point maps)."""
    _, height, width = depth.shape
    uv = pixel_grid(height, width, device=depth.device, dtype=depth.dtype)
    return unproject_pixels(uv, depth, *unpack_intrinsics(intrinsics, point_dims=2))


def scene_flow(points: Float[Tensor, "B H W 3"], points_other: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B H W 3"]:
    """Eq. 1: F = P_vt − P, the motion of each point to the other view's camera and time."""
    return points_other - points


def transform_points(pose: Float[Tensor, "B 4 4"], points: Float[Tensor, "B *rest 3"]) -> Float[Tensor, "B *rest 3"]:
    """T·X for each view's points (T rigid or a similarity ``[[s·R, t], [0, 1]]``)."""
    flat = points.reshape(points.shape[0], -1, 3)
    moved = flat @ pose[:, :3, :3].transpose(1, 2) + pose[:, None, :3, 3]
    return moved.reshape(points.shape)


def invert_pose(pose: Float[Tensor, "B 4 4"]) -> Float[Tensor, "B 4 4"]:
    """Inverse of a rigid or similarity transform ``[[s·R, t], [0, 1]]`` in closed form (no general matrix inverse).

    The inverse linear part is (s·R)ᵀ / s², with s² read from the squared norm of the first column.
    """
    linear = pose[:, :3, :3]
    scale_squared = linear[:, :, 0].square().sum(-1)
    linear_inv = linear.transpose(1, 2) / scale_squared[:, None, None]
    inverse = torch.zeros_like(pose)
    inverse[:, :3, :3] = linear_inv
    inverse[:, :3, 3] = -(linear_inv @ pose[:, :3, 3:4])[..., 0]
    inverse[:, 3, 3] = 1.0
    return inverse


def _normalised_pose_weights(weights: Float[Tensor, "B N"], valid: Bool[Tensor, "B N"]) -> Float[Tensor, "B N"]:
    """Weights (float64) summing to 1 over valid pixels; uniform over valid pixels (or all) where they vanish."""
    weights = torch.where(valid, weights.double().clamp_min(0.0), 0.0)
    total = weights.sum(-1, keepdim=True)
    support = torch.where(valid.any(-1, keepdim=True), valid, torch.ones_like(valid)).double()
    uniform = support / support.sum(-1, keepdim=True)
    return torch.where(total > _WEIGHT_EPS, weights / total.clamp_min(_WEIGHT_EPS), uniform)


def solve_pose(
    points: Float[Tensor, "B H W 3"],
    points_other: Float[Tensor, "B H W 3"],
    weights: Float[Tensor, "B H W"],
    valid: Bool[Tensor, "B H W"] | None = None,
    with_scale: bool = False,
) -> Float[Tensor, "B 4 4"] | tuple[Float[Tensor, "B 4 4"], Float[Tensor, "B"]]:
    """Eq. 2: the pose T with ``points_other ≈ T·points``, by weighted Procrustes.

    Minimises Σ_i w_i ‖T·P_i − P_vt,i‖² over SE(3) (or Sim(3) with ``with_scale``), w = ``weights`` restricted to
    ``valid`` pixels and normalised to sum 1. Because P_vt lives in the other view's camera, T is the pose from this
    view's camera to the other view's camera. Differentiable, with finite gradients for degenerate supports.

    Returns T [B, 4, 4] (rigid), or with ``with_scale`` the similarity ``[[s·R, t], [0, 1]]`` and s [B].
    """
    batch = points.shape[0]
    mask = torch.ones(points.shape[:-1], dtype=torch.bool, device=points.device) if valid is None else valid
    mask = mask.reshape(batch, -1)
    x = torch.where(mask[..., None], points.reshape(batch, -1, 3), 0.0)
    y = torch.where(mask[..., None], points_other.reshape(batch, -1, 3), 0.0)
    with torch.autocast(device_type=points.device.type, enabled=False):
        x, y = x.double(), y.double()
        w = _normalised_pose_weights(weights.reshape(batch, -1), mask)
        x_mean = torch.einsum("bn,bni->bi", w, x)
        y_mean = torch.einsum("bn,bni->bi", w, y)
        x_centred, y_centred = x - x_mean[:, None], y - y_mean[:, None]
        covariance = torch.einsum("bn,bni,bnj->bij", w, y_centred, x_centred)
        rotation = roma.special_procrustes(covariance)
        if with_scale:
            # Umeyama: s = tr(D S) / σ²_x = tr(Rᵀ M) / σ²_x (valid for any solver, Horn's included).
            variance = torch.einsum("bn,bni,bni->b", w, x_centred, x_centred)
            scale = (rotation * covariance).sum((-2, -1)) / variance.clamp_min(_VARIANCE_EPS)
            linear = scale[:, None, None] * rotation
        else:
            linear = rotation
        translation = y_mean - torch.einsum("bij,bj->bi", linear, x_mean)
        pose = torch.zeros(batch, 4, 4, dtype=torch.float64, device=points.device)
        pose[:, :3, :3] = linear
        pose[:, :3, 3] = translation
        pose[:, 3, 3] = 1.0
    pose = pose.to(points.dtype)
    return (pose, scale.to(points.dtype)) if with_scale else pose


def rigid_flow(pose: Float[Tensor, "B 4 4"], points: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B H W 3"]:
    """Eq. 3–4: the camera-induced part of the scene flow, F_v = T̂·P − P (P_v = T̂·P is ``transform_points``)."""
    return transform_points(pose, points) - points


def nonrigid_flow(
    pose: Float[Tensor, "B 4 4"], points: Float[Tensor, "B H W 3"], points_other: Float[Tensor, "B H W 3"]
) -> Float[Tensor, "B H W 3"]:
    """Eq. 5: the object-motion part F_t = F − F_v = P_vt − T̂·P (zero for static points)."""
    return points_other - transform_points(pose, points)


def track_points(pose: Float[Tensor, "B 4 4"], points_other: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B H W 3"]:
    """Eq. 6: P_t = T̂⁻¹·P_vt, this view's pixels at the other view's time, in this view's camera."""
    return transform_points(invert_pose(pose), points_other)


def _normalised_coordinates(
    points: Float[Tensor, "B *rest 3"], min_depth: float
) -> tuple[Float[Tensor, "B *rest 2"], Bool[Tensor, "B *rest"]]:
    """(X/Z, Y/Z) with Z clamped to ``min_depth``, and whether Z was in front of the camera."""
    rays = project_camera_points(points, 1.0, 1.0, 0.0, 0.0, min_depth=min_depth, depth_guard="clamp")
    return rays.pixels, rays.in_front


def estimate_focal(
    points: Float[Tensor, "B H W 3"],
    principal_point: Float[Tensor, "B 2"] | None = None,
    valid: Bool[Tensor, "B H W"] | None = None,
    weights: Float[Tensor, "B H W"] | None = None,
    method: Literal["least_squares", "weiszfeld"] = "least_squares",
    iterations: int = 10,
    min_depth: float = 1e-6,
) -> Float[Tensor, "B"]:
    """Eq. 7: the focal length f (fx = fy) that best reprojects each view's point map onto its pixel centres.

    ``principal_point`` defaults to the image centre (W/2, H/2). ``weights`` (e.g. confidences) scale each pixel's
    residual; ``valid`` and Z ≤ ``min_depth`` exclude pixels. ``method="least_squares"`` is the closed form of the
    squared reprojection error (exact for clean points); ``"weiszfeld"`` starts from it and runs ``iterations``
    reweighting steps that minimise the un-squared error instead — use it for network predictions with outliers.
    Views without any usable pixel get f = 0.
    """
    batch, height, width, _ = points.shape
    if principal_point is None:
        principal_point = image_centre(batch, height, width, device=points.device, dtype=points.dtype)
    offsets = pixel_grid(height, width, device=points.device, dtype=points.dtype) - principal_point[:, None, None]
    rays, usable = _normalised_coordinates(points, min_depth)
    if valid is not None:
        usable = usable & valid
    base_weight = torch.ones_like(points[..., 0]) if weights is None else weights
    base_weight = torch.where(usable, base_weight, 0.0)
    rays = torch.where(usable[..., None], rays, 0.0)
    alignment = (offsets * rays).sum(-1)
    ray_norm_sq = rays.square().sum(-1)

    def weighted_focal(pixel_weight: Tensor) -> Tensor:
        numerator = (pixel_weight * alignment).sum((1, 2))
        denominator = (pixel_weight * ray_norm_sq).sum((1, 2))
        return numerator / denominator.clamp_min(_WEIGHT_EPS)

    focal = weighted_focal(base_weight)
    if method == "weiszfeld":
        for _ in range(iterations):
            residual = (offsets - focal[:, None, None, None] * rays).norm(dim=-1)
            focal = weighted_focal(base_weight / residual.clamp_min(_RESIDUAL_EPS))
    elif method != "least_squares":
        raise ValueError(f"estimate_focal: unknown method {method!r}; use 'least_squares' or 'weiszfeld'")
    return focal


def project_points(
    points: Float[Tensor, "B *rest 3"],
    focal: Float[Tensor, "B"],
    principal_point: Float[Tensor, "B 2"],
    min_depth: float = 1e-6,
) -> Float[Tensor, "B *rest 2"]:
    """Eq. 8: pixel coordinates p = f·(X/Z, Y/Z) + c (depth clamped to ``min_depth`` to stay finite)."""
    expand = (slice(None),) + (None,) * (points.ndim - 2)
    f, cx, cy = focal[expand], principal_point[:, 0][expand], principal_point[:, 1][expand]
    return project_camera_points(points, f, f, cx, cy, min_depth=min_depth, depth_guard="clamp").pixels


def optical_flow(
    points: Float[Tensor, "B H W 3"],
    points_other: Float[Tensor, "B H W 3"],
    focal: Float[Tensor, "B"],
    principal_point: Float[Tensor, "B 2"],
    focal_other: Float[Tensor, "B"] | None = None,
    principal_other: Float[Tensor, "B 2"] | None = None,
) -> Float[Tensor, "B H W 2"]:
    """Eq. 9: f = p_vt − p, with P projected by this view's intrinsics and P_vt by the other view's.

    The other view's intrinsics default to this view's (the paper's shared-camera case).
    """
    focal_other = focal if focal_other is None else focal_other
    principal_other = principal_point if principal_other is None else principal_other
    return project_points(points_other, focal_other, principal_other) - project_points(points, focal, principal_point)


def normalise_pair_scale(
    points_a: Float[Tensor, "B H W 3"],
    points_b: Float[Tensor, "B H W 3"],
    valid_a: Bool[Tensor, "B H W"],
    valid_b: Bool[Tensor, "B H W"],
) -> tuple[Float[Tensor, "B H W 3"], Float[Tensor, "B H W 3"], Float[Tensor, "B"]]:
    """DUSt3R's ``avg_dis`` normalisation of a pair: both maps divided by their mean valid point norm.

    The factor is Σ_valid ‖x‖ / (n_a + n_b) over the valid points of both views, clamped to ≥ 1e-8. Returns the
    normalised maps and the factor [B] (to normalise other quantities of the pair consistently).
    """
    # zero invalid points before the norm: a NaN there would otherwise poison the gradient through torch.where
    norm_a = torch.where(valid_a[..., None], points_a, 0.0).norm(dim=-1).sum((1, 2))
    norm_b = torch.where(valid_b[..., None], points_b, 0.0).norm(dim=-1).sum((1, 2))
    count = (valid_a.sum((1, 2)) + valid_b.sum((1, 2))).clamp_min(1).to(points_a.dtype)
    factor = ((norm_a + norm_b) / count).clamp_min(1e-8)
    return points_a / factor[:, None, None, None], points_b / factor[:, None, None, None], factor
