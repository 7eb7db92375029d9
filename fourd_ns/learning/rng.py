"""Seeding and the saved state of every random number generator a training process draws from: Python's
``random``, NumPy's global generator, torch's CPU generator and each CUDA device's.

`rng_state` returns only types that ``torch.load(weights_only=True)`` accepts (NumPy's key array becomes a torch
tensor), so a trainer state holding it loads without unpickling arbitrary objects.
"""

from __future__ import annotations

import random

import numpy as np
import torch

RANK_SEED_STRIDE = 7919
"""Seed distance between ranks (a prime, so rank and step offsets do not collide for small step counts)."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (``torch.manual_seed`` seeds every CUDA device too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of rank ``rank``'s own random stream (data augmentation, sampling) from step ``step`` on: distinct
    per rank, so ranks do not draw the same numbers, and a pure function of its arguments."""
    return seed + RANK_SEED_STRIDE * rank + step


def rng_state() -> dict:
    """Python, NumPy, torch and CUDA RNG states, in types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return dict(
        python=random.getstate(),
        numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), position=int(position),
                   has_gauss=int(has_gauss), cached=float(cached)),
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    )


def set_rng_state(state: dict) -> None:
    """Inverse of `rng_state` (the CUDA states are restored only where CUDA is available)."""
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
