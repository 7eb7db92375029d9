"""The loop that G3R's and Flux4D's cross-scene trainers share: set-up, exact resume, one scene draw per iteration,
the learning-rate schedule, logging, progress and checkpoints.

What differs between the methods is what one iteration does with its draw (G3R: seed, then unroll and update after
every step; Flux4D: lift, predict, refine, one update), so a method hands `run_cross_scene_training` its network,
its scene collection and an ``iterate(iteration, draw, rng, optimizer) -> IterationResult`` function. Order of
random draws per iteration: a numpy generator seeded from torch's RNG, the draw from it, then whatever ``iterate``
takes from it; with the RNG of every rank saved in each checkpoint, resume is exact.

Under ``torchrun`` every rank draws its own scenes; ``iterate`` must all-reduce gradients before its optimizer steps
(`fourd_ns.learning.distributed.all_reduce_gradients`). Only rank 0 writes checkpoints, TensorBoard and progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch
from rich.console import Console
from torch import nn

from fourd_ns.learning.checkpoints import find_checkpoint, load_model_weights, write_model_folder
from fourd_ns.learning.distributed import DistributedContext, broadcast_parameters, mean_over_ranks
from fourd_ns.learning.progress import Throughput, TrainingLog, TrainingProgress
from fourd_ns.learning.resume import restore_trainer_state, save_training_checkpoint
from fourd_ns.learning.rng import rank_seed, seed_everything
from fourd_ns.learning.schedules import warmup_cosine_schedule


@dataclass
class CrossSceneSchedule:
    """The run-level settings every cross-scene trainer has (fields of its config)."""

    output_dir: Path
    iterations: int
    lr: float
    min_lr: float
    lr_warmup_iterations: int
    save_every: int
    keep_last: int
    seed: int
    resume: Optional[Path]


@dataclass
class IterationResult:
    """What one iteration reports: scalars averaged over ranks and logged under ``train/``, and a function of those
    averages that gives the progress bar's text."""

    values: Dict[str, float]
    status: Callable[[Dict[str, float]], str] = field(default=lambda values: "")


Iterate = Callable[[int, object, np.random.Generator, torch.optim.Optimizer], IterationResult]


def run_cross_scene_training(
    schedule: CrossSceneSchedule,
    name: str,
    network: nn.Module,
    network_config: dict,
    make_collection: Callable[[], object],
    iterate: Iterate,
    context: DistributedContext,
    console: Console,
    extra_files: Optional[Dict[str, str]] = None,
    banner: Optional[Callable[[object], str]] = None,
) -> Path:
    """Train ``network`` (already built with the run's seed and on its device) and return the newest checkpoint.

    ``network_config`` is written as the checkpoint's ``config.json``, ``extra_files`` (file name -> text) beside it;
    ``make_collection`` is called after the RNG is set up; ``banner(collection)`` is printed on rank 0.
    """
    run_dir = Path(schedule.output_dir)
    broadcast_parameters(network, context)
    optimizer = torch.optim.Adam(network.parameters(), lr=schedule.lr)
    scheduler = warmup_cosine_schedule(optimizer, schedule.iterations, schedule.lr_warmup_iterations, schedule.lr,
                                       schedule.min_lr)  # fmt: skip
    iteration = 0
    if schedule.resume is not None:
        checkpoint = find_checkpoint(Path(schedule.resume))
        load_model_weights(checkpoint, network)
        iteration = restore_trainer_state(checkpoint, optimizer, scheduler, context, schedule.seed, console)
        if context.is_main:
            console.print(f"{name} training: resumed from {checkpoint} at iteration {iteration}")
    else:
        seed_everything(rank_seed(schedule.seed, context.rank))
    collection = make_collection()

    def write_model(folder: Path) -> None:
        write_model_folder(folder, network, network_config)
        for file_name, text in (extra_files or {}).items():
            (folder / file_name).write_text(text, encoding="utf8")

    if context.is_main and banner is not None:
        console.print(banner(collection))
    newest: Optional[Path] = None
    throughput = Throughput()
    with TrainingLog(run_dir / "tensorboard", context, iteration) as log, TrainingProgress(
        name, "scene iterations", schedule.iterations, iteration, context, console
    ) as progress:
        while iteration < schedule.iterations:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            draw = collection.draw(rng)
            result = iterate(iteration, draw, rng, optimizer)
            scheduler.step()
            iteration += 1
            throughput.step()
            values = mean_over_ranks(result.values, context)
            values["lr"] = optimizer.param_groups[0]["lr"]
            log.scalars(values, iteration, prefix="train/")
            progress.update(iteration, result.status(values))
            if iteration % schedule.save_every == 0 or iteration == schedule.iterations:
                folder = save_training_checkpoint(run_dir, iteration, write_model, optimizer, scheduler, context,
                                                  schedule.keep_last)  # fmt: skip
                newest = folder if folder is not None else newest
    return newest if newest is not None else find_checkpoint(run_dir)


def run_distributed(config, body: Callable[[object, DistributedContext, Console], Path],
                    console: Optional[Console] = None) -> Path:
    """``config.validate()``, torch threads, then ``body(config, context, console)`` inside an initialised (and
    afterwards closed) distributed context: the entry every cross-scene trainer's ``train`` shares."""
    from fourd_ns.learning.distributed import close_distributed, init_distributed

    config.validate()
    console = console or Console()
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    context = init_distributed(config.device)
    try:
        return body(config, context, console)
    finally:
        close_distributed(context)


def schedule_of(config) -> CrossSceneSchedule:
    """The `CrossSceneSchedule` of a trainer config with the same field names."""
    return CrossSceneSchedule(
        output_dir=config.output_dir, iterations=config.iterations, lr=config.lr, min_lr=config.min_lr,
        lr_warmup_iterations=config.lr_warmup_iterations, save_every=config.save_every, keep_last=config.keep_last,
        seed=config.seed, resume=config.resume,
    )  # fmt: skip
