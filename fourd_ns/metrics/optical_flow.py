"""Optical-flow end-point error: the mean Euclidean distance between predicted and ground-truth flow vectors.

Flows are pixel displacements (u, v) in the convention of ``fourd_ns.feedforward.pair_types`` (pixel centres at
integer + 0.5; a displacement does not depend on that offset). NaN when no pixel is valid.
"""

from __future__ import annotations

from jaxtyping import Bool, Float
from torch import Tensor


def flow_epe(
    pred: Float[Tensor, "*batch 2"], gt: Float[Tensor, "*batch 2"], valid: Bool[Tensor, "*batch"] | None = None
) -> Float[Tensor, ""]:
    """Mean ‖pred − gt‖ in pixels over the valid pixels (all pixels when ``valid`` is None)."""
    if pred.shape != gt.shape or pred.shape[-1] != 2:
        raise ValueError(
            f"flow_epe needs two [..., 2] flows of equal shape, got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    error = (pred - gt).norm(dim=-1)
    return error.mean() if valid is None else error[valid].mean()
