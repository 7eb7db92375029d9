"""Pinhole cameras in OpenCV axes (x right, y down, z forward) for the synthetic renderer.

Pixel convention (the one nerfstudio uses when it generates rays): pixel (row i, column j) covers
the square [j, j+1) x [i, i+1) and its centre is (j + 0.5, i + 0.5). With this convention an
image downscaled by an integer factor f has intrinsics (focal, principal point, size) divided by
exactly f, which is what the Nerfies format assumes for `rgb/<f>x`. Optical flow is expressed in
the same continuous pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fourd_ns.geometry.pinhole import project_camera_points, unproject_pixels


@dataclass(frozen=True, eq=False)
class PinholeCamera:
    """A distortion-free pinhole camera with square pixels."""

    rotation: np.ndarray
    """[3, 3] world-to-camera rotation (rows are the camera x, y, z axes in world coordinates)."""
    position: np.ndarray
    """[3] camera centre in world coordinates."""
    focal: float
    """Focal length in pixels (fx = fy)."""
    principal_point: tuple[float, float]
    """(cx, cy) in pixels."""
    width: int
    height: int

    def downscaled(self, factor: int) -> "PinholeCamera":
        """The same camera for an image `factor` times smaller (intrinsics and size divided by `factor`)."""
        if self.width % factor or self.height % factor:
            raise ValueError(f"image size {self.width}x{self.height} is not divisible by {factor}")
        cx, cy = self.principal_point
        return PinholeCamera(
            rotation=self.rotation,
            position=self.position,
            focal=self.focal / factor,
            principal_point=(cx / factor, cy / factor),
            width=self.width // factor,
            height=self.height // factor,
        )


def look_at(position: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """World-to-camera rotation [3, 3] of an OpenCV camera at `position` looking at `target`.

    `up` is the world up direction; the camera's y axis points away from it (image rows go down).
    """
    z = np.asarray(target, np.float64) - np.asarray(position, np.float64)
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])


def pixel_centres(width: int, height: int, samples_per_side: int = 1) -> Tensor:
    """Sample positions [height * s, width * s, 2] as (u, v) in pixels of a width x height image.

    With s > 1 each pixel gets an s x s grid of stratified sub-pixel samples (used for
    supersampling); with s = 1 these are the pixel centres.
    """
    s = samples_per_side
    u = (torch.arange(width * s, dtype=torch.float32) + 0.5) / s
    v = (torch.arange(height * s, dtype=torch.float32) + 0.5) / s
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv], dim=-1)


def camera_rays(camera: PinholeCamera, uv: Tensor) -> tuple[Tensor, Tensor]:
    """World rays through pixel positions `uv` [N, 2].

    Returns origins [N, 3] and directions [N, 3]. Directions are *not* normalised: their camera-z
    component is 1, so the ray parameter of a hit is its z-depth.
    """
    cx, cy = camera.principal_point
    d_cam = unproject_pixels(uv, 1.0, camera.focal, camera.focal, cx, cy)
    c2w = torch.as_tensor(camera.rotation.T, dtype=torch.float32)
    dirs = d_cam @ c2w.T
    origins = torch.as_tensor(camera.position, dtype=torch.float32).expand_as(dirs)
    return origins, dirs


def project(camera: PinholeCamera, points: Tensor) -> tuple[Tensor, Tensor]:
    """Project world points [N, 3] to pixel positions [N, 2] and camera z-depths [N].

    The plain formula (no depth guard): points at z = 0 get infinite pixels, points behind the camera mirrored ones;
    callers test the depth."""
    w2c = torch.as_tensor(camera.rotation, dtype=points.dtype)
    p_cam = (points - torch.as_tensor(camera.position, dtype=points.dtype)) @ w2c.T
    cx, cy = camera.principal_point
    projection = project_camera_points(p_cam, camera.focal, camera.focal, cx, cy, depth_guard="nonzero")
    return projection.pixels, projection.depth
