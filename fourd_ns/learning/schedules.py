"""Learning-rate schedules: a linear warm-up followed by a cosine decay.

The warm-up reaches the peak at its last step, and step 0 already trains (at peak / warm-up steps): a schedule that
started at 0 would waste the first step. The cosine ends at ``minimum`` exactly at the last step.
"""

from __future__ import annotations

import math

import torch


def learning_rate(step: int, total_steps: int, warmup_steps: int, peak: float, minimum: float) -> float:
    """Linear warm-up to ``peak`` over ``warmup_steps`` (reached at step warmup_steps − 1), then a cosine from
    ``peak`` to ``minimum`` reached at the last step (total_steps − 1)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    decay_steps = max(total_steps - 1 - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return minimum + (peak - minimum) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, peak: float, minimum: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler that sets the learning rate of step s to `learning_rate` (s, …); call ``scheduler.step()`` once
    after each optimizer step.

    The optimizer must be created with ``lr = peak``: the scheduler scales each parameter group's initial rate by
    ``learning_rate / peak``, so a group created with another rate keeps its ratio to the peak. Its state dict
    holds no callable (the factor is a plain function), so it loads with ``torch.load(weights_only=True)``.
    """

    def factor(step: int) -> float:
        return learning_rate(step, total_steps, warmup_steps, peak, minimum) / peak

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
