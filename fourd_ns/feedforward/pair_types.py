"""The data that crosses module boundaries in the feed-forward package: image pairs with ground truth, Flow4R's
per-view property set, and an anchored-sequence reconstruction.

One pair and a batch of pairs are the same classes: every pair source (synthetic renders, on-disk sequences,
unlabeled videos) yields one ``PairSample`` (a ``PairBatch`` without the leading batch axis ``*B``, images in
[0, 1]), and ``pair_dataset.collate_pairs`` stacks a list of them into a ``PairBatch`` with images in [−1, 1].

Axes everywhere are OpenCV camera axes (x right, y down, z forward). Pixel coordinates are (u, v) with pixel
centres at integer + 0.5 (as `fourd_ns.synthetic.camera.pixel_centres` and nerfstudio). A "pose from view a to
view b" is the 4×4 rigid transform T with X_b = T · X_a for camera-space points.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional

from jaxtyping import Bool, Float
from torch import Tensor


def _to(obj, device):
    """A copy of dataclass `obj` with every tensor field moved to `device` (nested dataclasses too)."""
    changes = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Tensor):
            changes[f.name] = value.to(device)
        elif hasattr(value, "__dataclass_fields__"):
            changes[f.name] = _to(value, device)
    return replace(obj, **changes)


@dataclass
class ViewTargets:
    """Ground truth for the pixels of one view of a pair; missing supervision is an all-False mask (an unlabeled
    video pair has ``valid = motion_valid = False`` and only flow pseudo-labels), so pairs from different sources can
    share a batch. Pair sources write zeros where a mask is False."""

    points: Float[Tensor, "*B H W 3"]
    """P̄: this view's surface points in this view's camera at this view's time."""
    points_other: Float[Tensor, "*B H W 3"]
    """P̄_vt: the same material points at the other view's time, in the other view's camera."""
    valid: Bool[Tensor, "*B H W"]
    """M_P: pixels with valid depth."""
    motion_valid: Bool[Tensor, "*B H W"]
    """M_F: pixels whose P̄_vt is known (scene flow / 3D tracks)."""
    flow_target: Float[Tensor, "*B H W 2"]
    """p̄_vt: pixel position (u, v) of the material point in the other image (2D motion target)."""
    flow_valid: Bool[Tensor, "*B H W"]
    """M_f: pixels whose p̄_vt is known (optical flow / 2D tracks)."""


@dataclass
class PairBatch:
    """B ordered image pairs (view 1, view 2) with ground truth for both directions; without the batch axis, one
    pair (``PairSample``)."""

    image1: Float[Tensor, "*B 3 H W"]
    """View 1: RGB in [0, 1] in a ``PairSample``; in [-1, 1] (DUSt3R normalisation) once ``collate_pairs`` has
    batched it."""
    image2: Float[Tensor, "*B 3 H W"]
    intrinsics1: Float[Tensor, "*B 3 3"]
    intrinsics2: Float[Tensor, "*B 3 3"]
    pose_1to2: Float[Tensor, "*B 4 4"]
    """T̄ with X_cam2 = T̄ · X_cam1 for static points (camera 1 → camera 2)."""
    dynamic: Bool[Tensor, "*B"]
    """Whether the pair comes from a dynamic scene (selects w in Eq. 15)."""
    targets1: Optional[ViewTargets] = None
    """S̄(I1, I2): view 1's pixels, moved to view 2's time and camera. Every pair source sets both targets; None
    means a batch of frames without ground truth (which the Flow4R loss rejects)."""
    targets2: Optional[ViewTargets] = None
    """S̄(I2, I1)."""

    def to(self, device) -> "PairBatch":
        return _to(self, device)


PairSample = PairBatch
"""One pair as a pair source yields it: a ``PairBatch`` without the batch axis, images in [0, 1]."""


@dataclass
class ViewPrediction:
    """Flow4R's property set S(I, I') for the pixels of one view."""

    points: Float[Tensor, "B H W 3"]
    """P: this view's points in its own camera at its own time."""
    points_other: Float[Tensor, "B H W 3"]
    """P_vt: the same points in the other view's camera at the other view's time (F = P_vt − P)."""
    pose_weight: Float[Tensor, "B H W"]
    """W: softmax over the pixels of the view (sums to 1 per image)."""
    confidence: Float[Tensor, "B H W"]
    """C in (1, ∞)."""


@dataclass
class PairPrediction:
    """Network output for a batch of pairs: S(I1, I2), S(I2, I1) and, with a Flow3r head, factored flow."""

    view1: ViewPrediction
    view2: ViewPrediction
    correspondence1: Optional[Float[Tensor, "B H W 2"]] = None
    """Flow3r head: pixel position in view 2 of each view-1 pixel (same convention as `ViewTargets.flow_target`)."""
    correspondence2: Optional[Float[Tensor, "B H W 2"]] = None


@dataclass
class SequenceReconstruction:
    """Anchored-pair inference over T frames (frame `anchor` paired with every frame), all in the anchor camera."""

    anchor: int
    camera_to_anchor: Float[Tensor, "T 4 4"]
    """Pose of frame t's camera in the anchor camera's frame (OpenCV axes); identity for the anchor."""
    intrinsics: Float[Tensor, "T 3 3"]
    """Pinhole intrinsics per frame at the network's input resolution (focal from Eq. 7, centre of the image)."""
    points: Float[Tensor, "T H W 3"]
    """Frame t's points at time t, expressed in the anchor camera (P_v of the pair, scale-aligned)."""
    confidence: Float[Tensor, "T H W"]
    tracks: Float[Tensor, "T H W 3"]
    """The anchor's pixels at time t in the anchor camera (3D tracking, Eq. 6 applied to the anchor view)."""
    colors: Float[Tensor, "T H W 3"]
    """RGB in [0, 1] of each frame at the network's resolution (for seeding coloured points)."""
    image_size: tuple[int, int]
    """(H, W) of the network input; map to the dataset's resolution with the intrinsics."""

    def to(self, device) -> "SequenceReconstruction":
        return _to(self, device)
