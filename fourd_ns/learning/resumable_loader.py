"""A data order that a resumed run can re-enter part-way through an epoch.

Each rank draws its own shard of each epoch (a ``DistributedSampler`` whose permutation depends only on (seed,
epoch)); `ResumableDistributedSampler.skip` drops the batches a resumed run has already trained on, and the
DataLoader's workers are seeded from (seed, epoch, rank), so an epoch restarted at batch k yields exactly the
batches k, k + 1, … of the uninterrupted epoch.
"""

from __future__ import annotations

import random
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableDistributedSampler(DistributedSampler):
    """A ``DistributedSampler`` that can start an epoch part-way: `skip` drops the first indices of this rank's
    shard for the current epoch (the batches a resumed run has already trained on)."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.skipped = 0

    def skip(self, count: int) -> None:
        self.skipped = count

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.skipped :])

    def __len__(self) -> int:
        return self.num_samples - self.skipped


def seed_worker(worker_id: int) -> None:
    """Seed NumPy and Python in a DataLoader worker from the torch seed the loader gave it."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def epoch_loader(
    dataset: Dataset, sampler: ResumableDistributedSampler, batch_size: int, num_workers: int, epoch: int,
    start_batch: int, seed: int, rank: int, pin_memory: bool, collate_fn: Optional[Callable] = None,
) -> DataLoader:
    """The DataLoader of one epoch, starting at batch ``start_batch`` of this rank's shard (a dataset whose items
    depend on the epoch must be told the epoch before)."""
    sampler.set_epoch(epoch)
    sampler.skip(start_batch * batch_size)
    generator = torch.Generator()
    generator.manual_seed(int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0]))
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate_fn,
        drop_last=True, worker_init_fn=seed_worker, generator=generator, pin_memory=pin_memory,
    )
