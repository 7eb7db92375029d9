"""Rank 0's progress bar and TensorBoard log; both are silent no-ops on the other ranks."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from rich.console import Console

from fourd_ns.learning.distributed import DistributedContext
from fourd_ns.learning.progress import Throughput, TrainingLog, TrainingProgress


def context(rank: int) -> DistributedContext:
    return DistributedContext(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"), owns_group=False)


def test_only_rank_0_logs_and_shows_progress(tmp_path: Path):
    for rank in (0, 1):
        output = io.StringIO()
        console = Console(file=output, force_terminal=False, width=120)
        with TrainingLog(tmp_path / f"rank{rank}", context(rank)) as log, \
                TrainingProgress("Tiny", "stage", 3, 0, context(rank), console) as progress:
            for step in (1, 2, 3):
                log.scalars(dict(loss=1.0 / step), step, prefix="train/")
                progress.update(step, status=f"loss {1.0 / step:.2f}")
        if rank == 0:
            assert len(list((tmp_path / "rank0").glob("events.*"))) == 1
            assert "Tiny" in output.getvalue() and "3/3" in output.getvalue()
        else:
            assert not (tmp_path / "rank1").exists() and output.getvalue() == ""


def test_throughput_counts_items_per_second():
    meter = Throughput()
    for _ in range(4):
        meter.step()
    assert meter.per_second(items_per_step=8) > 0
    assert meter.steps == 0  # a new interval starts
