"""3D point-tracking metrics of the WorldTrack protocol (St4RTrack's evaluation): APD3D and EPE after alignment.

Definitions (methods notes §15.1):

- d = ‖pred_aligned − gt‖ per valid point; **EPE** = mean d; **APD3D** = the mean over the thresholds
  {0.1, 0.3, 0.5, 1.0} (metric units, not TAPVid-3D's depth-adaptive thresholds) of the fraction of points with
  d ≤ threshold. Values are fractions in [0, 1]; papers print them ×100. Empty selections give NaN.
- Alignments, fitted once on all valid points of all frames: ``global`` multiplies the prediction by one scale
  median‖gt‖ / median‖pred‖ (norms from the origin, i.e. the reference camera; no rotation or translation);
  ``sim3`` is the closed-form Umeyama similarity (St4RTrack's ``sim3_closed``; its RANSAC variant is not
  reproduced).
- **Dynamic subset**: tracks whose ground truth moves Σ_t ‖X_{t+1} − X_t‖ > 0.01 (metric units) over the
  consecutive frame pairs where both frames are valid. The subset is scored with the alignment fitted on all points
  (the upstream evaluator does not say it refits; refitting on moving points alone would reward a different
  alignment for them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from fourd_ns.geometry.similarity import apply_sim3, sim3_matrix, umeyama_sim3

APD_THRESHOLDS = (0.1, 0.3, 0.5, 1.0)
DYNAMIC_MOTION_THRESHOLD = 0.01


def _distances(pred: Tensor, gt: Tensor, valid: Tensor | None) -> Tensor:
    """Per-point Euclidean distances of the valid points (flattened)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in shape")
    distance = (pred - gt).norm(dim=-1)
    return distance.reshape(-1) if valid is None else distance[valid]


def end_point_error(
    pred: Float[Tensor, "*batch D"], gt: Float[Tensor, "*batch D"], valid: Bool[Tensor, "*batch"] | None = None
) -> Float[Tensor, ""]:
    """Mean Euclidean distance between predicted and ground-truth points over the valid entries."""
    return _distances(pred, gt, valid).mean()


def apd3d(
    pred: Float[Tensor, "*batch 3"],
    gt: Float[Tensor, "*batch 3"],
    valid: Bool[Tensor, "*batch"] | None = None,
    thresholds: Sequence[float] = APD_THRESHOLDS,
) -> Float[Tensor, ""]:
    """Average fraction of valid points within each distance threshold of the ground truth."""
    distance = _distances(pred, gt, valid)
    limits = torch.as_tensor(thresholds, dtype=distance.dtype, device=distance.device)
    return (distance[:, None] <= limits).to(distance.dtype).mean(0).mean()


def _median(values: Tensor) -> Tensor:
    """The median with numpy's convention (mean of the two middle values for an even count; ``torch.median``
    returns the lower one, and ``torch.quantile`` refuses inputs above 2²⁴ elements)."""
    ordered = values.reshape(-1).sort().values
    count = ordered.shape[0]
    return 0.5 * (ordered[(count - 1) // 2] + ordered[count // 2])


def align_median_scale(
    pred: Float[Tensor, "*batch 3"], gt: Float[Tensor, "*batch 3"], valid: Bool[Tensor, "*batch"] | None = None
) -> tuple[Float[Tensor, "*batch 3"], Float[Tensor, ""]]:
    """The prediction scaled by median‖gt‖ / median‖pred‖ over the valid points, and that scale."""
    if valid is not None and not bool(valid.any()):
        raise ValueError("align_median_scale: no valid point to fit the scale on")
    pred_norm, gt_norm = pred.norm(dim=-1), gt.norm(dim=-1)
    if valid is not None:
        pred_norm, gt_norm = pred_norm[valid], gt_norm[valid]
    scale = _median(gt_norm) / _median(pred_norm).clamp_min(1e-12)
    return pred * scale, scale


def align_sim3(
    pred: Float[Tensor, "*batch 3"], gt: Float[Tensor, "*batch 3"], valid: Bool[Tensor, "*batch"] | None = None
) -> tuple[Float[Tensor, "*batch 3"], Float[Tensor, "4 4"]]:
    """The prediction mapped by the Umeyama similarity fitted on the valid points, and that similarity [4, 4]."""
    source, target = pred.reshape(-1, 3), gt.reshape(-1, 3)
    if valid is not None:
        source, target = source[valid.reshape(-1)], target[valid.reshape(-1)]
    if source.shape[0] == 0:
        raise ValueError("align_sim3: no valid point to fit the similarity on")
    sim3 = sim3_matrix(*umeyama_sim3(source, target))
    return apply_sim3(sim3, pred), sim3


@dataclass(frozen=True)
class TrackMetrics:
    """Tracking scores of one sequence (fractions in [0, 1] for APD3D; EPE in ground-truth units)."""

    apd3d: float
    epe: float
    apd3d_dynamic: float
    """NaN when no track is dynamic."""
    epe_dynamic: float
    num_dynamic: int
    """Number of dynamic tracks."""


def dynamic_tracks(
    gt: Float[Tensor, "T N 3"], valid: Bool[Tensor, "T N"], threshold: float = DYNAMIC_MOTION_THRESHOLD
) -> Bool[Tensor, "N"]:
    """Tracks whose ground-truth path length over consecutive valid frame pairs exceeds ``threshold``."""
    steps = (gt[1:] - gt[:-1]).norm(dim=-1)
    both_valid = valid[1:] & valid[:-1]
    return torch.where(both_valid, steps, 0.0).sum(0) > threshold


def evaluate_tracks(
    pred: Float[Tensor, "T N 3"],
    gt: Float[Tensor, "T N 3"],
    valid: Bool[Tensor, "T N"] | None = None,
    alignment: Literal["global", "sim3"] = "global",
    thresholds: Sequence[float] = APD_THRESHOLDS,
    dynamic_threshold: float = DYNAMIC_MOTION_THRESHOLD,
) -> TrackMetrics:
    """APD3D and EPE of N tracks over T frames, for all valid points and for the dynamic tracks.

    ``pred`` and ``gt`` are in the same reference frame up to the alignment (e.g. the first camera's frame at every
    time); ``valid`` marks the ground-truth entries to score (all by default).
    """
    if pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"evaluate_tracks needs [T, N, 3] tracks, got {tuple(pred.shape)}")
    valid = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device) if valid is None else valid
    if alignment == "global":
        aligned, _ = align_median_scale(pred, gt, valid)
    elif alignment == "sim3":
        aligned, _ = align_sim3(pred, gt, valid)
    else:
        raise ValueError(f"evaluate_tracks: unknown alignment {alignment!r}; use 'global' or 'sim3'")
    dynamic = dynamic_tracks(gt, valid, dynamic_threshold)
    dynamic_valid = valid & dynamic[None]
    return TrackMetrics(
        apd3d=float(apd3d(aligned, gt, valid, thresholds)),
        epe=float(end_point_error(aligned, gt, valid)),
        apd3d_dynamic=float(apd3d(aligned, gt, dynamic_valid, thresholds)),
        epe_dynamic=float(end_point_error(aligned, gt, dynamic_valid)),
        num_dynamic=int(dynamic.sum()),
    )
