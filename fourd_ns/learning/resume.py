"""Exact resume: the trainer state a checkpoint holds beside the model, and its restoration.

``trainer_state.pt`` holds the optimizer, the scheduler, the step, the number of processes and every rank's
Python / NumPy / torch (and CUDA) RNG states, gathered to rank 0. Restoring all of it on every rank, with a data
order that is a pure function of (seed, epoch, step) (`fourd_ns.learning.resumable_loader`), makes a resumed run
on CPU with the same number of processes reproduce an uninterrupted one bit for bit; on GPU, non-deterministic
kernels make it equal in distribution. A run resumed with another number of processes re-seeds each rank from
(seed, rank, step) instead and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from rich.console import Console

from fourd_ns.learning.checkpoints import TRAINER_STATE_NAME, ModelWriter, save_checkpoint
from fourd_ns.learning.distributed import DistributedContext, gather_to_main
from fourd_ns.learning.rng import rank_seed, rng_state, seed_everything, set_rng_state


def trainer_state(
    step: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    context: DistributedContext,
) -> Optional[dict]:
    """The state to resume from after ``step`` steps, on rank 0 (None elsewhere). A collective: call it on every
    rank, since it gathers each rank's RNG states."""
    states = gather_to_main(rng_state(), context)
    if not context.is_main:
        return None
    return dict(step=step, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), rng=states,
                world_size=context.world_size)


def save_training_checkpoint(
    run_dir: Path,
    step: int,
    write_model: ModelWriter,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    context: DistributedContext,
    keep_last: int,
) -> Optional[Path]:
    """Checkpoint the run on every rank's behalf: gather the `trainer_state`, let rank 0 write
    ``checkpoints/step-NNNNNNN`` (`fourd_ns.learning.checkpoints.save_checkpoint`), and wait until it has.
    A collective; returns the folder on rank 0, None elsewhere."""
    state = trainer_state(step, optimizer, scheduler, context)
    folder = save_checkpoint(run_dir, step, write_model, state, keep_last) if context.is_main else None
    context.barrier()
    return folder


def load_trainer_state(checkpoint: Path) -> dict:
    """The ``trainer_state.pt`` of a checkpoint folder, on the CPU (loaded with ``weights_only=True``)."""
    return torch.load(Path(checkpoint) / TRAINER_STATE_NAME, map_location="cpu", weights_only=True)


def restore_trainer_state(
    checkpoint: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    context: DistributedContext,
    seed: int,
    console: Optional[Console] = None,
) -> int:
    """Restore the optimizer, the scheduler and this rank's RNG states from ``checkpoint``; returns the step to
    continue from. Load the model's weights first (they are the trainer's format), and build the optimizer over
    the same parameters in the same order as the run that wrote the checkpoint.

    With another number of processes than the writing run, each rank is re-seeded from ``rank_seed(seed, rank,
    step)`` and rank 0 says that the continuation is not bit-identical.
    """
    state = load_trainer_state(checkpoint)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    step = int(state["step"])
    if len(state["rng"]) == context.world_size:
        set_rng_state(state["rng"][context.rank])
    else:
        seed_everything(rank_seed(seed, context.rank, step))
        if context.is_main:
            (console or Console()).print(
                f"[yellow]{checkpoint} was written by {len(state['rng'])} processes, this run has "
                f"{context.world_size}: training continues, but not bit-identically.[/yellow]")
    return step
