"""3D scene-flow metrics of predicted per-point displacements against the true ones (STORM / Flux4D definitions).

Both flows are ``[N, 3]`` displacement vectors of the same N points over the same time step, in one length unit
(metres in the papers' tables: convert output-world units with ``DrivingMetadata.metres_per_unit`` first, since
the 5 cm / 10 cm thresholds of ``acc5`` / ``acc10`` are absolute). With ``e = |pred - truth|`` per point:

* ``epe3d``: mean ``e`` (end-point error);
* ``acc5`` / ``acc10``: fraction of points with ``e < 0.05`` or ``e / |truth| < 0.05`` (``0.1`` / 10 % for
  ``acc10``); a point whose true flow is zero passes only the absolute test (its relative error is never small);
* ``angle_error_deg``: mean angle between the predicted and the true vector over the moving points
  (``|truth| > moving_threshold``); a zero prediction of a moving point counts as 90°;
* ``epe3d_moving`` / ``epe3d_static``: mean ``e`` over points with ``|truth| > moving_threshold`` /
  ``<= moving_threshold``;
* ``num_points``: N.

An average over an empty set of points is NaN. Everything is computed in float64 whatever the input dtype, so
`SceneFlowAccumulator`, which keeps the per-point errors of several sweeps, returns exactly what one call on the
concatenated points would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

ACC5_THRESHOLD = 0.05
"""Absolute (length units) and relative threshold of ``acc5``."""
ACC10_THRESHOLD = 0.1
"""Absolute (length units) and relative threshold of ``acc10``."""


def _check_flows(predicted: Tensor, truth: Tensor, moving_threshold: float) -> None:
    if predicted.shape != truth.shape or predicted.ndim != 2 or predicted.shape[-1] != 3:
        raise ValueError(
            f"scene_flow_metrics: predicted flow {tuple(predicted.shape)} and true flow {tuple(truth.shape)} must "
            "both be [N, 3] for the same N points"
        )
    if not moving_threshold >= 0:
        raise ValueError(f"scene_flow_metrics: moving_threshold must be >= 0, got {moving_threshold}")


def _per_point(
    predicted: Float[Tensor, "N 3"], truth: Float[Tensor, "N 3"]
) -> Tuple[Float[Tensor, "N"], Float[Tensor, "N"], Float[Tensor, "N"]]:
    """(end-point error, true flow norm, angle in degrees between the two vectors) of each point, float64, CPU.
    The angle is 90° where exactly one vector is zero and 0° where both are."""
    predicted = predicted.detach().to("cpu", torch.float64)
    truth = truth.detach().to("cpu", torch.float64)
    error = torch.linalg.vector_norm(predicted - truth, dim=1)
    truth_norm = torch.linalg.vector_norm(truth, dim=1)
    predicted_norm = torch.linalg.vector_norm(predicted, dim=1)
    norms = predicted_norm * truth_norm
    cosine = torch.where(norms > 0, (predicted * truth).sum(dim=1) / norms.clamp_min(1e-300), 0.0)
    angle = torch.rad2deg(torch.acos(cosine.clamp(-1.0, 1.0)))
    angle = torch.where((predicted_norm == 0) & (truth_norm == 0), torch.zeros_like(angle), angle)
    return error, truth_norm, angle


def _mean(values: Tensor) -> float:
    return float(values.mean()) if values.numel() else math.nan


def _accuracy(error: Tensor, truth_norm: Tensor, threshold: float) -> float:
    relative_ok = (truth_norm > 0) & (error < threshold * truth_norm)
    return float(((error < threshold) | relative_ok).double().mean())


def _summarise(error: Tensor, truth_norm: Tensor, angle: Tensor, moving_threshold: float) -> Dict[str, float]:
    if error.numel() == 0:
        raise ValueError("scene_flow_metrics: no points (the predicted and true flows are empty)")
    moving = truth_norm > moving_threshold
    return {
        "epe3d": _mean(error),
        "acc5": _accuracy(error, truth_norm, ACC5_THRESHOLD),
        "acc10": _accuracy(error, truth_norm, ACC10_THRESHOLD),
        "angle_error_deg": _mean(angle[moving]),
        "epe3d_moving": _mean(error[moving]),
        "epe3d_static": _mean(error[~moving]),
        "num_points": int(error.numel()),
    }


def scene_flow_metrics(
    predicted: Float[Tensor, "N 3"], truth: Float[Tensor, "N 3"], moving_threshold: float = 0.1
) -> Dict[str, float]:
    """The metrics of the module docstring (Python floats; ``num_points`` an int) for one set of points.

    ``moving_threshold`` is in the units of the flows (0.1 m: the points that move more than 10 cm in the step).
    Raises ValueError for empty or mismatched inputs and a negative threshold.
    """
    _check_flows(predicted, truth, moving_threshold)
    return _summarise(*_per_point(predicted, truth), moving_threshold)


@dataclass
class SceneFlowAccumulator:
    """Scene-flow metrics over several sweeps: `add` each sweep's flows, then `metrics` equals
    :func:`scene_flow_metrics` on all added points concatenated (points, not sweeps, are weighted equally).
    Keeps three float64 numbers per point on the CPU."""

    moving_threshold: float = 0.1
    """Length (units of the flows) above which a point's true flow counts as moving."""
    _parts: List[Tuple[Tensor, Tensor, Tensor]] = field(default_factory=list, init=False, repr=False)

    def add(self, predicted: Float[Tensor, "N 3"], truth: Float[Tensor, "N 3"]) -> None:
        """Add one sweep's (or batch's) predicted and true flows; an empty batch is allowed and adds nothing."""
        _check_flows(predicted, truth, self.moving_threshold)
        self._parts.append(_per_point(predicted, truth))

    @property
    def num_points(self) -> int:
        return sum(int(part[0].numel()) for part in self._parts)

    def metrics(self) -> Dict[str, float]:
        """:func:`scene_flow_metrics` of everything added; ValueError when no point was added."""
        if not self._parts:
            raise ValueError("SceneFlowAccumulator.metrics: no points were added")
        error, truth_norm, angle = (torch.cat(values) for values in zip(*self._parts))
        return _summarise(error, truth_norm, angle, self.moving_threshold)
