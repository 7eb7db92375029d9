"""The warm-up + cosine learning rate of `fourd_ns.learning.schedules`, as a function and as a scheduler."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from fourd_ns.learning.schedules import learning_rate, warmup_cosine_schedule


def test_learning_rate_values():
    total, warmup, peak, low = 21, 4, 1e-3, 1e-5
    assert [learning_rate(step, total, warmup, peak, low) for step in range(4)] == pytest.approx(
        [0.25e-3, 0.5e-3, 0.75e-3, 1e-3])
    assert learning_rate(4, total, warmup, peak, low) == pytest.approx(peak)  # the cosine starts at the peak
    assert learning_rate(12, total, warmup, peak, low) == pytest.approx((peak + low) / 2)  # halfway through 4 … 20
    assert learning_rate(20, total, warmup, peak, low) == pytest.approx(low)
    assert learning_rate(25, total, warmup, peak, low) == pytest.approx(low)  # past the end it stays at the minimum
    assert learning_rate(0, 10, 0, peak, low) == pytest.approx(peak)  # no warm-up


def test_scheduler_follows_the_function_and_keeps_group_ratios(tmp_path: Path):
    total, warmup, peak, low = 12, 3, 2e-3, 2e-5
    weights, bias = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([dict(params=[weights]), dict(params=[bias], lr=peak / 10)], lr=peak)
    scheduler = warmup_cosine_schedule(optimizer, total, warmup, peak, low)
    for step in range(total):
        expected = learning_rate(step, total, warmup, peak, low)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected)
        assert optimizer.param_groups[1]["lr"] == pytest.approx(expected / 10)
        optimizer.step()
        scheduler.step()
        if step == 5:
            torch.save(scheduler.state_dict(), tmp_path / "scheduler.pt")

    restored = warmup_cosine_schedule(torch.optim.SGD([weights], lr=peak), total, warmup, peak, low)
    restored.load_state_dict(torch.load(tmp_path / "scheduler.pt", weights_only=True))
    assert restored.last_epoch == 6
    assert restored.get_last_lr()[0] == pytest.approx(learning_rate(6, total, warmup, peak, low))
    assert math.isclose(learning_rate(total - 1, total, warmup, peak, low), low)
