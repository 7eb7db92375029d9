"""What a pose source (COLMAP or Flow4R) hands to the dataset writer: one shared camera, per-frame poses, points.

Poses follow the Nerfies camera convention directly: ``orientation`` is the world-to-camera rotation with OpenCV
camera axes (x right, y down, z forward) and ``position`` the camera centre; COLMAP's ``cam_from_world`` is
exactly (orientation, −orientation·position). Pixel coordinates put the centre of the top-left pixel at
(0.5, 0.5), as COLMAP, nerfstudio and our synthetic renderer do, so principal points carry over unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
from jaxtyping import Bool, Float, UInt8


@dataclass(frozen=True)
class SharedCamera:
    """Intrinsics of the one camera of the video, in pixels at the dataset's 1x resolution."""

    model: str
    """Where the numbers come from: a COLMAP camera model name, or 'PINHOLE' for Flow4R."""
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    radial: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """OpenCV radial coefficients (k1, k2, k3)."""
    tangential: tuple[float, float] = (0.0, 0.0)
    """OpenCV tangential coefficients (p1, p2)."""

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "width": self.width,
            "height": self.height,
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "radial_distortion": list(self.radial),
            "tangential_distortion": list(self.tangential),
        }


@dataclass(frozen=True)
class CameraSolution:
    """Cameras and sparse points of the selected frames; unregistered frames have NaN poses."""

    source: Literal["colmap", "flow4r"]
    camera: SharedCamera
    registered: Bool[np.ndarray, "T"]
    """Whether each selected frame got a pose."""
    orientation: Float[np.ndarray, "T 3 3"]
    """World-to-camera rotations (OpenCV camera axes)."""
    position: Float[np.ndarray, "T 3"]
    """Camera centres in the solution's world frame."""
    points: Float[np.ndarray, "N 3"]
    """Sparse static points in the same world frame."""
    point_colors: UInt8[np.ndarray, "N 3"]
    mean_reprojection_error: Optional[float] = None
    """COLMAP's mean reprojection error in pixels; None where the source has none (Flow4R)."""
    notes: tuple[str, ...] = ()
    """Things the user should know about this solution (other partial models, fallbacks)."""

    @property
    def num_registered(self) -> int:
        return int(self.registered.sum())

    def camera_to_world(self) -> Float[np.ndarray, "T 4 4"]:
        """OpenCV camera-to-world matrices (NaN rows for unregistered frames)."""
        c2w = np.tile(np.eye(4), (len(self.registered), 1, 1))
        c2w[:, :3, :3] = np.transpose(self.orientation, (0, 2, 1))
        c2w[:, :3, 3] = self.position
        return c2w
