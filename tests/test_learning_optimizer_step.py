"""Clipped optimizer steps that skip non-finite gradients, and the guard against many skips in a row."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fourd_ns.learning.optimizer_step import SkippedSteps, clipped_step


def test_clipped_step_clips_and_skips_non_finite_gradients():
    parameter = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    parameter.grad = torch.tensor([3.0, 4.0])
    norm, stepped = clipped_step(optimizer, [parameter], clip_norm=1.0)
    assert stepped and float(norm) == pytest.approx(5.0)
    assert torch.allclose(parameter.detach(), torch.tensor([-0.6, -0.8]))  # direction kept, length 1

    before = parameter.detach().clone()
    parameter.grad = torch.tensor([float("nan"), 1.0])
    norm, stepped = clipped_step(optimizer, [parameter], clip_norm=1.0)
    assert not stepped and not torch.isfinite(norm)
    assert torch.equal(parameter.detach(), before) and parameter.grad is None


def test_many_skips_in_a_row_stop_training(tmp_path: Path):
    guard = SkippedSteps(limit=3, run_dir=tmp_path)
    for step, skipped in enumerate([True, True, False, True, True], start=1):
        guard.update(skipped, step)  # a good step in between resets the count
    with pytest.raises(FloatingPointError, match=r"3 consecutive steps \(up to 6\).*--lr"):
        guard.update(True, 6)
