"""LiDAR points rendered into a pinhole camera as a sparse z-depth map (the ground truth of LiDAR depth metrics).

Conventions are those of nerfstudio and of our rasterizer: cameras are camera-to-world in OpenGL axes (x right,
y up, looking along -z); projection is done in OpenCV axes (x right, y down, z forward) with
``u = fx·x/z + cx``, ``v = fy·y/z + cy`` (:func:`fourd_ns.geometry.pinhole.project_camera_points`), and
pixel (column j, row i) covers ``[j, j+1) × [i, i+1)`` so its centre is at ``(j + 0.5, i + 0.5)``, where
nerfstudio's ``Cameras.generate_rays`` shoots its ray. A point therefore lands in pixel ``(floor(u), floor(v))``.
Depth is the camera-space z (distance along the optical axis, not along the ray), in the units of the points, which
is what gsplat's "ED" render mode produces.

Where several points land in one pixel the nearest one is kept. A sweep is captured from the LiDAR's position over
~0.1 s, not from the camera's centre at the camera's shutter time, so near depth edges a few returns of the
background "see through" the foreground from the camera's point of view (and returns on moving actors are shifted
by their motion). Keeping the nearest return per pixel removes most of these where the foreground is also hit;
isolated background returns at silhouettes remain and show up as a small tail of large errors in the metrics.
Lens distortion is not modelled: cameras must be pinhole with zero distortion (PandaSet images are undistorted).
"""

from __future__ import annotations

from typing import Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from nerfstudio.cameras.cameras import Cameras, CameraType

from fourd_ns.geometry.pinhole import project_camera_points

DEFAULT_NEAR = 1e-3
"""Points with camera z at or below this (scene units) are behind or too close to the camera and are ignored."""


def points_to_camera(
    points: Float[Tensor, "P 3"], camera_to_world: Float[Tensor, "3 4"]
) -> Float[Tensor, "P 3"]:
    """World points in the camera's OpenCV axes (x right, y down, z forward) from a nerfstudio (OpenGL) pose."""
    rotation = camera_to_world[:3, :3]
    opengl = (points - camera_to_world[:3, 3]) @ rotation
    return opengl * opengl.new_tensor([1.0, -1.0, -1.0])


def project_points(
    points: Float[Tensor, "P 3"],
    camera_to_world: Float[Tensor, "3 4"],
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    width: int,
    height: int,
    near: float = DEFAULT_NEAR,
) -> Tuple[Int[Tensor, "K"], Int[Tensor, "K"], Float[Tensor, "K"]]:
    """Indices into ``points`` (increasing), flat pixel ids (``row · width + column``) and camera z of the K points
    in front of the camera and inside the image: the one pinhole projection of LiDAR depth and point colouring."""
    camera = points_to_camera(points, camera_to_world)
    in_front = torch.nonzero(camera[:, 2] > near).squeeze(1)
    # Only points in front are projected, so the plain division is safe (no depth guard needed).
    projection = project_camera_points(camera[in_front], fx, fy, cx, cy, depth_guard="nonzero")
    (u, v), z = projection.pixels.unbind(-1), projection.depth
    # Compare in floating point before the integer cast so far-off points cannot overflow into the image.
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    columns = torch.floor(u[inside]).long()
    rows = torch.floor(v[inside]).long()
    return in_front[inside], rows * width + columns, z[inside]


def project_to_pixels(
    points: Float[Tensor, "P 3"],
    camera_to_world: Float[Tensor, "3 4"],
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    width: int,
    height: int,
    near: float = DEFAULT_NEAR,
) -> Tuple[Int[Tensor, "K"], Float[Tensor, "K"]]:
    """Flat pixel ids (``row · width + column``) and camera z of the K points in front of the camera and inside
    the image (:func:`project_points` without the indices); shared by :func:`lidar_depth_map` and its reference."""
    _, pixel_ids, z = project_points(points, camera_to_world, fx, fy, cx, cy, width, height, near)
    return pixel_ids, z


def lidar_depth_map(
    points: Float[Tensor, "P 3"],
    camera_to_world: Float[Tensor, "3 4"],
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    width: int,
    height: int,
    near: float = DEFAULT_NEAR,
) -> Float[Tensor, "H W"]:
    """Camera z-depth of the nearest point in each pixel (0 where no point lands), same dtype/device as ``points``.

    Args:
        points: world points, in the frame of the camera pose (a dataparser's output world).
        camera_to_world: nerfstudio pose (OpenGL camera axes).
        fx, fy, cx, cy: pinhole intrinsics in pixels (OpenCV convention, pixel centres at +0.5).
        width, height: image size in pixels.
        near: points with camera z <= near are ignored.
    """
    pixel_ids, z = project_to_pixels(points, camera_to_world, fx, fy, cx, cy, width, height, near)
    nearest = torch.full((height * width,), torch.inf, dtype=points.dtype, device=points.device)
    nearest.scatter_reduce_(0, pixel_ids, z, reduce="amin", include_self=True)
    return torch.where(torch.isinf(nearest), torch.zeros_like(nearest), nearest).reshape(height, width)


def lidar_depth_map_reference(
    points: Float[Tensor, "P 3"],
    camera_to_world: Float[Tensor, "3 4"],
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    width: int,
    height: int,
    near: float = DEFAULT_NEAR,
) -> Float[Tensor, "H W"]:
    """Pure-torch reference of :func:`lidar_depth_map`: points sorted by depth, the first to reach a pixel wins."""
    pixel_ids, z = project_to_pixels(points, camera_to_world, fx, fy, cx, cy, width, height, near)
    depth = torch.zeros(height * width, dtype=points.dtype, device=points.device)
    taken = set()
    for k in torch.argsort(z, stable=True).tolist():
        pixel = int(pixel_ids[k])
        if pixel not in taken:
            taken.add(pixel)
            depth[pixel] = z[k]
    return depth.reshape(height, width)


def pinhole_parameters(
    camera: Cameras, purpose: str = "LiDAR depth"
) -> Tuple[Float[Tensor, "3 4"], float, float, float, float, int, int]:
    """(camera_to_world [3, 4], fx, fy, cx, cy, width, height) of one nerfstudio camera (shape ``()`` or ``(1,)``)
    after checking that it is an undistorted perspective camera; ``purpose`` names the caller in the errors."""
    if camera.shape not in ((), (1,)):
        raise ValueError(f"{purpose} takes one camera; got cameras of shape {tuple(camera.shape)}")
    camera = camera.reshape(())
    if int(camera.camera_type) != CameraType.PERSPECTIVE.value:
        raise ValueError(f"{purpose} needs a perspective camera; got {CameraType(int(camera.camera_type)).name}")
    if camera.distortion_params is not None and bool(torch.any(camera.distortion_params != 0)):
        raise ValueError(
            f"{purpose} projects through a pinhole camera but this camera has distortion parameters "
            f"{camera.distortion_params.tolist()}; undistort the images in the dataparser first."
        )
    return (
        camera.camera_to_worlds, float(camera.fx), float(camera.fy), float(camera.cx), float(camera.cy),
        int(camera.width), int(camera.height),
    )  # fmt: skip


def lidar_depth_map_for_camera(
    points: Float[Tensor, "P 3"], camera: Cameras, near: float = DEFAULT_NEAR
) -> Float[Tensor, "H W"]:
    """:func:`lidar_depth_map` into one nerfstudio camera (shape ``()`` or ``(1,)``), at its width × height."""
    camera_to_world, fx, fy, cx, cy, width, height = pinhole_parameters(camera, "lidar_depth_map_for_camera")
    return lidar_depth_map(points, camera_to_world.to(points), fx, fy, cx, cy, width, height, near)


def downscale_sparse_depth(depth: Float[Tensor, "H W"], factor: int) -> Float[Tensor, "h w"]:
    """A sparse depth map (0 = no return) at ``1/factor`` resolution: the nearest return of each factor × factor
    block, ``h = H // factor``, ``w = W // factor``.

    Because ``floor(floor(u) / f) = floor(u / f)``, this equals projecting the same points into the camera rescaled
    by ``1/factor`` (nerfstudio's ``rescale_output_resolution``), which is how splatfacto's coarse-to-fine training
    renders; averaging (as for RGB) would mix returns with empty pixels.
    """
    if factor == 1:
        return depth
    h, w = depth.shape[0] // factor, depth.shape[1] // factor
    blocks = depth[: h * factor, : w * factor].reshape(h, factor, w, factor)
    nearest = torch.where(blocks > 0, blocks, torch.full_like(blocks, torch.inf)).amin(dim=(1, 3))
    return torch.where(torch.isinf(nearest), torch.zeros_like(nearest), nearest)
