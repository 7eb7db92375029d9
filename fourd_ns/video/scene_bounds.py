"""``scene.json`` of a processed video: centre, scale, near and far from the sparse points.

- **Centre**: the middle of the points' robust bounding box (per axis, the ``trim`` and 1 − ``trim`` quantiles),
  so a few stray SfM points do not move it.
- **Scale**: the inverse of that box's half diagonal, so the bulk of the scene lies in the unit sphere after
  ``(p − center) · scale`` (the Nerfies normalisation the dataparser applies).
- **Near / far** (in scaled units, as Nerfies stores them): over every registered camera, the z-depths of the points
  in front of it that project into its image; near is 0.8 × their ``trim`` quantile and far 1.2 × their
  1 − ``trim`` quantile, a margin for surfaces between the sparse points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

from fourd_ns.video.camera_solution import CameraSolution
from fourd_ns.video.errors import VideoProcessingError

NEAR_MARGIN = 0.8
FAR_MARGIN = 1.2


@dataclass(frozen=True)
class SceneNormalisation:
    center: Float[np.ndarray, "3"]
    scale: float
    near: float
    """Nearest ray distance to render, in scaled units."""
    far: float


def robust_box(points: Float[np.ndarray, "N 3"], trim: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis (low, high) quantiles of the points."""
    return np.quantile(points, trim, axis=0), np.quantile(points, 1.0 - trim, axis=0)


def visible_depths(solution: CameraSolution) -> Float[np.ndarray, "M"]:
    """z-depths of all (camera, point) pairs with the point in front of the camera and inside its image."""
    camera = solution.camera
    depths = []
    for i in np.flatnonzero(solution.registered):
        local = (solution.points - solution.position[i]) @ solution.orientation[i].T
        z = local[:, 2]
        front = z > 0
        u = camera.fx * local[front, 0] / z[front] + camera.cx
        v = camera.fy * local[front, 1] / z[front] + camera.cy
        inside = (u >= 0) & (u <= camera.width) & (v >= 0) & (v <= camera.height)
        depths.append(z[front][inside])
    return np.concatenate(depths) if depths else np.zeros(0)


def scene_normalisation(solution: CameraSolution, trim: float = 0.01) -> SceneNormalisation:
    """The module docstring's rules; needs points that registered cameras see."""
    points = solution.points
    if len(points) == 0:
        raise VideoProcessingError("The pose source produced no 3D points, so scene.json cannot be derived")
    low, high = robust_box(points, trim)
    half_diagonal = 0.5 * float(np.linalg.norm(high - low))
    if not np.isfinite(half_diagonal) or half_diagonal <= 0:
        raise VideoProcessingError(f"The {len(points)} sparse points have no spatial extent; scene.json needs a scale")
    scale = 1.0 / half_diagonal
    depths = visible_depths(solution)
    if len(depths) == 0:
        raise VideoProcessingError("No sparse point lies in front of a registered camera; the poses are inconsistent")
    near = NEAR_MARGIN * float(np.quantile(depths, trim)) * scale
    far = FAR_MARGIN * float(np.quantile(depths, 1.0 - trim)) * scale
    return SceneNormalisation(center=0.5 * (low + high), scale=scale, near=near, far=far)
