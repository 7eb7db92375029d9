"""What a training run shows and logs: a rich progress bar, TensorBoard scalars and a throughput meter.

Only rank 0 shows and writes anything: on the other ranks `TrainingProgress` is a disabled bar and `TrainingLog`
opens no writer, so a trainer calls both unconditionally on every rank.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import Mapping, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fourd_ns.learning.distributed import DistributedContext


class TrainingProgress:
    """A persistent progress bar over the run's steps, ``<title> <description>``, steps done / total, a status text
    (loss, learning rate, throughput), elapsed and remaining time. Use it as a context manager."""

    def __init__(self, title: str, description: str, total_steps: int, start_step: int, context: DistributedContext,
                 console: Optional[Console] = None) -> None:
        columns = (TextColumn(f"[bold]{title}[/bold] {{task.description}}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn())
        self.progress = Progress(*columns, console=console or Console(), disable=not context.is_main,
                                 transient=False)
        self.task = self.progress.add_task(description, total=total_steps, completed=start_step, status="")

    def __enter__(self) -> "TrainingProgress":
        self.progress.start()
        return self

    def __exit__(self, kind: Optional[type], error: Optional[BaseException], trace: Optional[TracebackType]) -> None:
        self.progress.stop()

    def update(self, step: int, status: Optional[str] = None) -> None:
        """Show ``step`` steps done (and a new status text, if given)."""
        if status is None:
            self.progress.update(self.task, completed=step)
        else:
            self.progress.update(self.task, completed=step, status=status)


class TrainingLog:
    """Rank 0's TensorBoard writer in ``log_dir``; a no-op on the other ranks. ``purge_step`` (the step a resumed
    run continues from) drops events a previous run logged after it, so curves do not fold back."""

    def __init__(self, log_dir: Path, context: DistributedContext, purge_step: int = 0) -> None:
        self.writer = None
        if context.is_main:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only where it is used

            self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        """Log each value as ``<prefix><name>`` at ``step``."""
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}{name}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> "TrainingLog":
        return self

    def __exit__(self, kind: Optional[type], error: Optional[BaseException], trace: Optional[TracebackType]) -> None:
        self.close()


class Throughput:
    """Steps per second since the last reading (wall clock)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.steps = 0

    def step(self) -> None:
        self.steps += 1

    def per_second(self, items_per_step: float = 1.0) -> float:
        """Items (``items_per_step`` per step) per second since the last call, and start a new interval."""
        elapsed = time.perf_counter() - self.start
        rate = self.steps * items_per_step / max(elapsed, 1e-9)
        self.start, self.steps = time.perf_counter(), 0
        return rate
