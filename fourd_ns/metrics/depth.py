"""Depth error metrics against a sparse reference depth (LiDAR), over the pixels where the reference has a value."""

from __future__ import annotations

from typing import Dict, Optional

from jaxtyping import Bool, Float
from torch import Tensor


def depth_errors(
    pred: Float[Tensor, "H W"], target: Float[Tensor, "H W"], valid: Optional[Bool[Tensor, "H W"]] = None
) -> Dict[str, Tensor]:
    """Errors of ``pred`` on the pixels where ``target > 0`` (and ``valid``, when given).

    Any two maps of the same shape work (``[H, W]`` or ``[H, W, 1]``). Returns 0-d tensors:

    * ``rmse``: sqrt(mean (pred − target)²), in the units of the inputs;
    * ``mae``: mean |pred − target|, in the units of the inputs;
    * ``absrel``: mean |pred − target| / target, unitless;
    * ``count``: the number of pixels averaged (int64). With no such pixel the three errors are NaN.
    """
    if pred.shape != target.shape:
        raise ValueError(f"depth_errors: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    mask = target > 0
    if valid is not None:
        mask = mask & valid.reshape(mask.shape).bool()
    error = (pred[mask] - target[mask]).abs()
    return {
        "rmse": error.square().mean().sqrt(),
        "mae": error.mean(),
        "absrel": (error / target[mask]).mean(),
        "count": mask.sum(),
    }
