"""The distortion-free pinhole camera: camera-frame points to pixels and back, the one formula used everywhere.

Conventions:

- Camera axes are OpenCV's: x right, y down, z forward. A nerfstudio (OpenGL) pose is turned into these axes
  before projecting (``geometry.camera_conventions``, ``sensors.lidar_projection.points_to_camera``).
- ``u = fx·x/z + cx``, ``v = fy·y/z + cy``, evaluated in that order (``(fx·x)/z``, then ``+ cx``).
- No half-pixel offset is added or removed here: (u, v) are continuous pixel coordinates in the frame of the
  intrinsics. In fourd_ns, as in nerfstudio, pixel (row i, column j) covers ``[j, j+1) × [i, i+1)``, so its centre
  is ``(j + 0.5, i + 0.5)``; the +0.5 lives with the callers' pixel grids (``synthetic.camera.pixel_centres``,
  ``feedforward.flow4r_geometry.pixel_grid``) and ``floor(u)`` is the column a point lands in.
- Skew is not modelled: nerfstudio's cameras have none, and neither does any dataset fourd_ns reads.

Near-zero and negative depth is where callers differ, so it is a choice here, not a fixed rule:

- ``depth_guard="clamp"``: divide by ``max(z, min_depth)``. Points behind the camera get finite pixels (those of a
  point at ``min_depth``), which keeps losses and gradients finite; the mask says they are not to be trusted.
- ``depth_guard="nonzero"``: divide by ``z`` unless ``|z| ≤ min_depth``, where ``min_depth`` is used instead. Points
  behind the camera keep the mirrored projection of the plain formula; with ``min_depth=0`` this *is* the plain
  formula (a point at z = 0 divides by zero), for callers that filter by depth themselves.

``in_front`` is ``z > min_depth`` in both cases.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Tuple, Union

import torch
from jaxtyping import Bool, Float
from torch import Tensor

DepthGuard = Literal["clamp", "nonzero"]

Intrinsic = Union[float, Float[Tensor, "*batch"]]
"""One of fx, fy, cx, cy: a number, or a tensor broadcasting against the points' leading dimensions."""


class PinholeProjection(NamedTuple):
    """Pixels, depths and front mask of projected points (same leading shape as the points)."""

    pixels: Float[Tensor, "*batch 2"]
    """(u, v) in pixels (module docstring for the convention)."""
    depth: Float[Tensor, "*batch"]
    """Camera z of each point (the distance along the optical axis, not along the ray)."""
    in_front: Bool[Tensor, "*batch"]
    """``depth > min_depth``: whether the pixels are a real projection."""


def project_camera_points(
    points: Float[Tensor, "*batch 3"],
    fx: Intrinsic,
    fy: Intrinsic,
    cx: Intrinsic,
    cy: Intrinsic,
    min_depth: float = 0.0,
    depth_guard: DepthGuard = "clamp",
) -> PinholeProjection:
    """Project camera-frame points (OpenCV axes) to pixels ``(fx·x/z + cx, fy·y/z + cy)`` (module docstring).

    Args:
        points: camera-frame points ``[..., 3]``.
        fx, fy, cx, cy: intrinsics in pixels; tensors broadcast against ``points[..., 0]`` (see
            :func:`unpack_intrinsics` for intrinsics matrices).
        min_depth: depths at or below it are not ``in_front``, and are guarded as ``depth_guard`` says.
        depth_guard: ``"clamp"`` or ``"nonzero"`` (module docstring).
    """
    depth = points[..., 2]
    if depth_guard == "clamp":
        divisor = depth.clamp_min(min_depth)
    elif depth_guard == "nonzero":
        divisor = torch.where(depth.abs() > min_depth, depth, torch.full_like(depth, min_depth))
    else:
        raise ValueError(f"project_camera_points: unknown depth_guard {depth_guard!r}; use 'clamp' or 'nonzero'")
    u = fx * points[..., 0] / divisor + cx
    v = fy * points[..., 1] / divisor + cy
    return PinholeProjection(torch.stack([u, v], dim=-1), depth, depth > min_depth)


def unproject_pixels(
    pixels: Float[Tensor, "*batch 2"],
    depth: Union[float, Float[Tensor, "*batch"]],
    fx: Intrinsic,
    fy: Intrinsic,
    cx: Intrinsic,
    cy: Intrinsic,
) -> Float[Tensor, "*batch 3"]:
    """Camera-frame points ``depth·((u − cx)/fx, (v − cy)/fy, 1)``: the inverse of :func:`project_camera_points` for
    points in front of the camera. ``depth`` is camera z; ``depth=1`` gives ray directions with unit z."""
    x = (pixels[..., 0] - cx) / fx
    y = (pixels[..., 1] - cy) / fy
    rays = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    if isinstance(depth, Tensor):
        return rays * depth[..., None]
    return rays * depth


def unpack_intrinsics(
    intrinsics: Float[Tensor, "*cameras 3 3"], point_dims: int = 0
) -> Tuple[Float[Tensor, "*cameras"], Float[Tensor, "*cameras"], Float[Tensor, "*cameras"], Float[Tensor, "*cameras"]]:
    """(fx, fy, cx, cy) of pinhole intrinsics matrices, each with ``point_dims`` trailing singleton dimensions so
    that they broadcast against points ``[*cameras, <point_dims dimensions>, 3]`` (e.g. ``point_dims=2`` for
    ``[B, H, W, 3]`` point maps with ``[B, 3, 3]`` intrinsics)."""
    shape = intrinsics.shape[:-2] + (1,) * point_dims
    return (
        intrinsics[..., 0, 0].reshape(shape),
        intrinsics[..., 1, 1].reshape(shape),
        intrinsics[..., 0, 2].reshape(shape),
        intrinsics[..., 1, 2].reshape(shape),
    )
