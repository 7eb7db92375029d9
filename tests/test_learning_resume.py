"""Exact resume with `fourd_ns.learning`: a small loop (dropout, a shuffled DataLoader, Adam, warm-up + cosine) that
checkpoints mid-epoch and is resumed from that checkpoint reproduces the uninterrupted run bit for bit."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import torch
from rich.console import Console
from torch import nn
from torch.utils.data import TensorDataset

from fourd_ns.learning.checkpoints import (
    checkpoint_folders,
    find_checkpoint,
    load_model_weights,
    save_checkpoint,
    write_model_folder,
)
from fourd_ns.learning.distributed import init_distributed
from fourd_ns.learning.resumable_loader import ResumableDistributedSampler, epoch_loader
from fourd_ns.learning.resume import load_trainer_state, restore_trainer_state, save_training_checkpoint
from fourd_ns.learning.rng import rank_seed, rng_state, seed_everything
from fourd_ns.learning.schedules import warmup_cosine_schedule

SEED, BATCH, EPOCHS = 3, 2, 2
DATA = TensorDataset(torch.linspace(-1, 1, 36).reshape(12, 3), torch.linspace(0, 1, 12)[:, None])
STEPS_PER_EPOCH = len(DATA) // BATCH


def build() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 1))


def run(run_dir: Path, resume: Optional[Path] = None) -> nn.Module:
    context = init_distributed("cpu")
    seed_everything(SEED)
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    total_steps = EPOCHS * STEPS_PER_EPOCH
    scheduler = warmup_cosine_schedule(optimizer, total_steps, 2, 1e-2, 1e-4)
    step = 0
    if resume is not None:
        checkpoint = find_checkpoint(resume)
        load_model_weights(checkpoint, model)
        step = restore_trainer_state(checkpoint, optimizer, scheduler, context, SEED)
    else:
        seed_everything(rank_seed(SEED, context.rank))
    sampler = ResumableDistributedSampler(DATA, context.world_size, context.rank, SEED)
    while step < total_steps:
        epoch, start_batch = divmod(step, STEPS_PER_EPOCH)
        for inputs, targets in epoch_loader(DATA, sampler, BATCH, 0, epoch, start_batch, SEED, context.rank,
                                            pin_memory=False):
            optimizer.zero_grad(set_to_none=True)
            noise = 0.01 * torch.randn_like(targets)  # draws from the global generator, as augmentation would
            nn.functional.mse_loss(model(inputs), targets + noise).backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step % 3 == 0:  # 3, 9: inside an epoch of 6 steps
                save_training_checkpoint(run_dir, step, lambda folder: write_model_folder(folder, model, {}),
                                         optimizer, scheduler, context, keep_last=5)
    return model


def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path: Path):
    reference = run(tmp_path / "a")
    assert [folder.name for folder in checkpoint_folders(tmp_path / "a")] == [
        "step-0000003", "step-0000006", "step-0000009", "step-0000012"]
    for checkpoint in ("step-0000003", "step-0000009"):  # mid-epoch in epochs 0 and 1
        resumed = run(tmp_path / checkpoint, resume=tmp_path / "a" / "checkpoints" / checkpoint)
        for name, value in reference.state_dict().items():
            assert torch.equal(value, resumed.state_dict()[name]), (checkpoint, name)
    state = load_trainer_state(tmp_path / "a" / "checkpoints" / "step-0000009")
    assert state["step"] == 9 and state["world_size"] == 1 and state["scheduler"]["last_epoch"] == 9


def test_another_number_of_processes_reseeds_and_says_so(tmp_path: Path):
    context = init_distributed("cpu")
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = warmup_cosine_schedule(optimizer, 10, 2, 1e-2, 1e-4)
    state = dict(step=4, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                 rng=[rng_state(), rng_state()], world_size=2)
    folder = save_checkpoint(tmp_path, 4, lambda target: None, state, keep_last=1)
    output = io.StringIO()
    step = restore_trainer_state(folder, optimizer, scheduler, context, seed=SEED,
                                 console=Console(file=output, width=200))
    assert step == 4
    assert "written by 2 processes, this run has 1" in output.getvalue()
    continued = torch.rand(3)  # the stream re-seeded from (seed, rank, step)
    seed_everything(rank_seed(SEED, 0, 4))
    assert torch.equal(continued, torch.rand(3))
