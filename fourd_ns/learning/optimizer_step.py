"""An optimizer step with gradient clipping that skips non-finite gradients, and the guard that stops a run when
they persist.

Gradients are clipped to a global norm (direction preserved). A step whose gradient norm is not finite (an
overflow, a degenerate batch) changes nothing; since the gradients are the same on every rank once they are
all-reduced, every rank skips the same steps. Many consecutive skips mean training has diverged: `SkippedSteps`
stops it with an error that says what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from torch import Tensor


def clipped_step(
    optimizer: torch.optim.Optimizer, parameters: Iterable[Tensor], clip_norm: float
) -> tuple[Tensor, bool]:
    """Clip the gradients of ``parameters`` to the global norm ``clip_norm`` and step ``optimizer`` if that norm
    is finite (else clear the gradients); returns (gradient norm before clipping, whether the step was made)."""
    grad_norm = torch.nn.utils.clip_grad_norm_(list(parameters), clip_norm)
    finite = bool(torch.isfinite(grad_norm))
    if finite:
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
    return grad_norm, finite


class SkippedSteps:
    """Counts consecutive skipped steps and raises once ``limit`` are reached."""

    def __init__(self, limit: int, run_dir: Path) -> None:
        self.limit = limit
        self.run_dir = run_dir
        self.in_a_row = 0

    def update(self, skipped: bool, step: int) -> None:
        """Record whether step ``step`` (counted from 1) was skipped; a FloatingPointError after ``limit`` in a
        row."""
        self.in_a_row = self.in_a_row + 1 if skipped else 0
        if self.in_a_row >= self.limit:
            raise FloatingPointError(
                f"{self.in_a_row} consecutive steps (up to {step}) had a non-finite gradient norm; lower --lr, check "
                f"the data, or resume from the last checkpoint in {self.run_dir}")
