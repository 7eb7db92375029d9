"""One training pair before batching: what every pair source (synthetic renders, on-disk sequences, unlabeled
videos) produces and what ``pair_dataset.collate_pairs`` stacks into a ``PairBatch``.

The fields mirror ``pair_types.PairBatch`` / ``ViewTargets`` without the batch axis, with two differences that
keep per-item code simple: images are RGB in [0, 1] (the DUSt3R [−1, 1] normalisation is applied once, in
``collate_pairs``), and ``dynamic`` is a Python bool. Targets are always present: a source without some kind of
supervision returns all-False masks for it (an unlabeled video pair has ``valid = motion_valid = False`` and only
flow pseudo-labels), so pairs from different sources can share a batch.

This module holds only the types, so that every source can produce them without importing the dataset module
(which itself imports the sources).
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Bool, Float
from torch import Tensor


@dataclass
class ViewSample:
    """Ground truth for the pixels of one view of a pair (``ViewTargets`` of a single pair)."""

    points: Float[Tensor, "H W 3"]
    """P̄: this view's surface points in this view's camera at this view's time (zeros where not ``valid``)."""
    points_other: Float[Tensor, "H W 3"]
    """P̄_vt: the same material points at the other view's time in the other view's camera (zeros where unknown)."""
    valid: Bool[Tensor, "H W"]
    """M_P: pixels with valid depth."""
    motion_valid: Bool[Tensor, "H W"]
    """M_F: pixels whose P̄_vt is known."""
    flow_target: Float[Tensor, "H W 2"]
    """p̄_vt: pixel position (u, v) of the material point in the other image (zeros where unknown)."""
    flow_valid: Bool[Tensor, "H W"]
    """M_f: pixels whose p̄_vt is known."""


@dataclass
class PairSample:
    """One ordered image pair (view 1, view 2) with ground truth for both directions."""

    image1: Float[Tensor, "3 H W"]
    """View 1, RGB in [0, 1]."""
    image2: Float[Tensor, "3 H W"]
    intrinsics1: Float[Tensor, "3 3"]
    intrinsics2: Float[Tensor, "3 3"]
    pose_1to2: Float[Tensor, "4 4"]
    """T̄ with X_cam2 = T̄ · X_cam1 for static points."""
    dynamic: bool
    """Whether the pair comes from a dynamic scene (selects w in Flow4R's Eq. 15)."""
    targets1: ViewSample
    """S̄(I1, I2): view 1's pixels, moved to view 2's time and camera."""
    targets2: ViewSample
    """S̄(I2, I1)."""
