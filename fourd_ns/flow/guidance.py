"""Flow guidance for a rendered frame: which training frame's embeddings to use and where each Gaussian lands in it.

FLAG-4D's Global Motion Network reads the optical-flow embeddings of the frame being rendered. Embeddings only exist
for the *training video*: one training image per distinct time, in time order
(:func:`fourd_ns.datasets.training_video.select_training_video`). A view at time t (a training view, a test view
from another camera, or the viewer's time slider) uses the training frame at or nearest to t, and Gaussians are
projected with *that frame's* camera, because that is the image the flow was computed on — not the camera being
rendered, which for a test view looks from somewhere else.

Projections are ``(x, y)`` in [−1, 1] over the embedding grid, which covers ``ceil(H/stride)·stride`` pixels
(``grid_sample`` with ``align_corners=False``: −1 is the left/top edge of the first cell). Points behind the camera
are sent outside the grid, to the border tokens; coordinates are clamped to [−2, 2] so far-off points stay finite.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from jaxtyping import Float
from torch import Tensor

from fourd_ns.flow.embeddings import FlowEmbeddings
from fourd_ns.geometry.pinhole import project_camera_points, unpack_intrinsics

PROJECTION_LIMIT = 2.0
"""Projections are clamped to [−limit, limit]: outside [−1, 1] the GMN samples the border tokens."""


@dataclass
class FlowGuidance:
    """Flow embeddings of the training video plus the camera of each of its frames."""

    embeddings: FlowEmbeddings
    viewmats: Float[Tensor, "T 4 4"]
    """World-to-camera (OpenCV) matrix of each frame's camera."""
    intrinsics: Float[Tensor, "T 3 3"]
    """Pixel intrinsics of each frame's camera at the resolution the flow was computed at (pinhole without skew, as
    nerfstudio's cameras; projected by :func:`fourd_ns.geometry.pinhole.project_camera_points`)."""

    def __post_init__(self) -> None:
        frames = self.embeddings.num_frames
        if self.viewmats.shape != (frames, 4, 4) or self.intrinsics.shape != (frames, 3, 3):
            raise ValueError(
                f"FlowGuidance needs one camera per frame: {frames} frames, viewmats {tuple(self.viewmats.shape)}, "
                f"intrinsics {tuple(self.intrinsics.shape)}"
            )

    @property
    def num_frames(self) -> int:
        return self.embeddings.num_frames

    def frame_at(self, time: float) -> int:
        """Index of the frame at or nearest to ``time``."""
        return self.embeddings.nearest(time)

    def neighbour_of(self, frame: int) -> int:
        """The previous frame (t−1), or the next one for the first frame; the frame itself for a 1-frame video."""
        if frame > 0:
            return frame - 1
        return min(1, self.num_frames - 1)

    def to(self, device: torch.device) -> "FlowGuidance":
        """The embeddings and cameras on ``device``; full-resolution flows stay on the CPU (the model never reads
        them)."""
        e = self.embeddings
        moved = replace(e, past=e.past.to(device), future=e.future.to(device))
        return FlowGuidance(moved, self.viewmats.to(device), self.intrinsics.to(device))

    def project(self, frame: int, points: Float[Tensor, "N 3"]) -> Float[Tensor, "N 2"]:
        """``(x, y)`` of world points in frame ``frame``'s embedding grid, in [−1, 1] inside it (module docstring)."""
        viewmat = self.viewmats[frame].to(points)
        camera_points = points @ viewmat[:3, :3].T + viewmat[:3, 3]
        fx, fy, cx, cy = unpack_intrinsics(self.intrinsics[frame].to(points))
        projection = project_camera_points(camera_points, fx, fy, cx, cy, min_depth=1e-6)
        u, v = projection.pixels.unbind(-1)
        grid_h, grid_w = self.embeddings.past.shape[-2:]
        stride = self.embeddings.stride
        normalised = torch.stack([2.0 * u / (grid_w * stride) - 1.0, 2.0 * v / (grid_h * stride) - 1.0], dim=-1)
        in_front = projection.in_front[:, None]
        normalised = torch.where(in_front, normalised, torch.full_like(normalised, PROJECTION_LIMIT))
        return normalised.clamp(-PROJECTION_LIMIT, PROJECTION_LIMIT)

    def frame_embeddings(self, frame: int) -> tuple[Float[Tensor, "C h w"], Float[Tensor, "C h w"]]:
        """(past, future) embeddings of ``frame``."""
        return self.embeddings.past[frame], self.embeddings.future[frame]

