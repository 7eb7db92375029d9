"""Projection of world points through an OpenCV-convention pinhole camera with Brown-Conrady distortion.

This is the camera model of Nerfies/HyperNeRF (x right, y down, z forward; radial k1..k3 and tangential
p1, p2 applied to normalised image coordinates; pixel centres at half-integers, as in nerfstudio), so seed
points can be coloured from the images exactly where the capture saw them.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np


def distort_normalised(
    xy: np.ndarray, radial: Tuple[float, float, float], tangential: Tuple[float, float]
) -> np.ndarray:
    """Apply OpenCV radial + tangential distortion to normalised coordinates ``xy`` [N, 2] → [N, 2]."""
    k1, k2, k3 = radial
    p1, p2 = tangential
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial_gain = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    x_d = x * radial_gain + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    y_d = y * radial_gain + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return np.stack([x_d, y_d], axis=-1)


def project_points_opencv(
    points: np.ndarray,
    orientation: np.ndarray,
    position: np.ndarray,
    focal: Tuple[float, float],
    principal_point: Tuple[float, float],
    radial: Tuple[float, float, float] = (0.0, 0.0, 0.0),
    tangential: Tuple[float, float] = (0.0, 0.0),
) -> Tuple[np.ndarray, np.ndarray]:
    """Project world points [N, 3] with a world-to-camera ``orientation`` [3, 3] and camera centre
    ``position`` [3]. Returns pixel coordinates [N, 2] (x, y) and camera-space z-depth [N] (≤ 0 means behind
    the camera, where the pixel coordinates are meaningless)."""
    camera_points = (points - position) @ orientation.T
    depth = camera_points[:, 2]
    safe_depth = np.where(np.abs(depth) > 1e-12, depth, 1e-12)
    normalised = distort_normalised(camera_points[:, :2] / safe_depth[:, None], radial, tangential)
    pixels = normalised * np.asarray(focal) + np.asarray(principal_point)
    return pixels, depth
