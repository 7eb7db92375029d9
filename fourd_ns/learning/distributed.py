"""One training process's place in a ``torchrun`` run, and the collectives a cross-scene trainer needs.

One code path serves a single process and ``torchrun``: `init_distributed` reads ``WORLD_SIZE`` / ``RANK`` /
``LOCAL_RANK`` (and ``MASTER_ADDR`` / ``MASTER_PORT``) from the environment and, with more than one process, joins
a process group (``nccl`` on CUDA, ``gloo`` on CPU); alone, every collective below is a no-op.

Two ways to keep the ranks' models identical:

- `data_parallel` wraps a model in ``DistributedDataParallel``, for models whose every trainable parameter receives
  a gradient in every step (Flow4R).
- `broadcast_parameters` once after building the model, then `all_reduce_gradients` after each backward pass, for
  models where a step may leave parts without a gradient (G3R: a scene without actors gives the actor network no
  gradient). DDP's reducer waits for those gradients and fails; `all_reduce_gradients` counts a missing gradient as
  zeros instead, so every rank ends with the same averaged gradient, and a parameter that no rank gave a gradient
  keeps ``grad = None`` everywhere (the optimizer skips it on every rank, as it would in a single process).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable, Literal, Mapping, Optional, Union

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

BUCKET_BYTES = 1 << 26
"""Gradients are all-reduced in flat buckets of about this many bytes (64 MiB): few collectives, bounded memory."""


@dataclass
class DistributedContext:
    """This process's place in the (possibly single-process) run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool
    """Whether `init_distributed` created the process group (and `close_distributed` must destroy it)."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, logs and progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def init_distributed(device: Literal["auto", "cuda", "cpu"] = "auto") -> DistributedContext:
    """Join the ``torchrun`` process group described by the environment (or run alone without one).

    ``auto`` picks CUDA when available; each process then uses GPU ``LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but torch sees no CUDA device; use --device cpu")
    torch_device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(torch_device)
    owns_group = False
    if world_size > 1 and not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
            raise ValueError("WORLD_SIZE > 1 but MASTER_ADDR / MASTER_PORT are not set: launch with torchrun")
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://", rank=rank,
                                world_size=world_size, timeout=timedelta(minutes=30))
        owns_group = True
    return DistributedContext(rank, world_size, local_rank, torch_device, owns_group)


def close_distributed(context: DistributedContext) -> None:
    """Leave the process group if `init_distributed` created it."""
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def data_parallel(model: nn.Module, context: DistributedContext) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` when there are several processes, else ``model`` itself.
    The model must already be on ``context.device``."""
    if not context.distributed:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


@torch.no_grad()
def broadcast_parameters(module: nn.Module, context: DistributedContext) -> None:
    """Overwrite every parameter and buffer of ``module`` with rank 0's, so that all ranks start identical."""
    if not context.distributed:
        return
    for tensor in (*module.parameters(), *module.buffers()):
        dist.broadcast(tensor.data, src=0)


def _buckets(parameters: list[nn.Parameter]) -> list[list[int]]:
    """Indices of ``parameters`` grouped into runs of one device and dtype of at most ~`BUCKET_BYTES` each."""
    buckets: list[list[int]] = []
    key, size = None, 0
    for index, parameter in enumerate(parameters):
        bytes_ = parameter.numel() * parameter.element_size()
        this_key = (parameter.device, parameter.dtype)
        if not buckets or this_key != key or size + bytes_ > BUCKET_BYTES:
            buckets.append([])
            key, size = this_key, 0
        buckets[-1].append(index)
        size += bytes_
    return buckets


@torch.no_grad()
def all_reduce_gradients(parameters: Iterable[nn.Parameter], context: DistributedContext) -> None:
    """Replace each gradient by its mean over the ranks, a missing gradient counting as zeros.

    Call it on every rank after ``backward()`` and before clipping / ``optimizer.step()``, with the parameters in
    the same order on every rank (``model.parameters()`` of the same architecture). Parameters with
    ``requires_grad = False`` are left alone. A parameter that received a gradient on at least one rank ends with
    the averaged gradient on all ranks; one that received none anywhere keeps ``grad = None`` on all ranks.
    """
    if not context.distributed:
        return
    trainable = [parameter for parameter in parameters if parameter.requires_grad]
    if not trainable:
        return
    has_gradient = torch.tensor([parameter.grad is not None for parameter in trainable], dtype=torch.float32,
                                device=context.device)
    dist.all_reduce(has_gradient)
    received = has_gradient.cpu() > 0
    for bucket in _buckets(trainable):
        bucket = [index for index in bucket if received[index]]
        if not bucket:
            continue
        flat = torch.cat([
            (trainable[index].grad if trainable[index].grad is not None else torch.zeros_like(trainable[index]))
            .reshape(-1)
            for index in bucket
        ])
        dist.all_reduce(flat)
        flat /= context.world_size
        offset = 0
        for index in bucket:
            parameter = trainable[index]
            mean = flat[offset : offset + parameter.numel()].view_as(parameter)
            offset += parameter.numel()
            if parameter.grad is None:
                parameter.grad = mean.clone()
            else:
                parameter.grad.copy_(mean)


def mean_over_ranks(values: Mapping[str, Union[Tensor, float]], context: DistributedContext) -> dict[str, float]:
    """The mean of each scalar over the ranks (one collective for all of them), as Python floats on every rank."""
    stacked = torch.stack([torch.as_tensor(values[name]).float().to(context.device) for name in values])
    if context.distributed:
        dist.all_reduce(stacked)
        stacked /= context.world_size
    return dict(zip(values, stacked.tolist()))


def gather_to_main(value: Any, context: DistributedContext) -> Optional[list[Any]]:
    """Every rank's picklable ``value``, in rank order, on rank 0 (None on the other ranks)."""
    if not context.distributed:
        return [value]
    gathered = [None] * context.world_size if context.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered
