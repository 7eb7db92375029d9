"""RNG states of `fourd_ns.learning.rng`: a saved state (weights-only loadable) restores every generator, seeding
is deterministic and rank seeds differ."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from fourd_ns.learning.rng import rank_seed, rng_state, seed_everything, set_rng_state


def draws() -> tuple:
    return random.random(), np.random.rand(3), np.random.randn(), torch.rand(4), torch.randn(2)


def assert_same(first: tuple, second: tuple) -> None:
    assert first[0] == second[0]
    assert np.array_equal(first[1], second[1]) and first[2] == second[2]
    assert torch.equal(first[3], second[3]) and torch.equal(first[4], second[4])


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path: Path):
    seed_everything(11)
    np.random.randn(3)  # an odd number of normals: NumPy holds a cached Gaussian that the state must carry
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = draws()
    draws()  # move on, then go back
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert_same(draws(), expected)


def test_seeding_is_deterministic_and_ranks_get_their_own_streams():
    seed_everything(5)
    first = draws()
    seed_everything(5)
    assert_same(draws(), first)
    seeds = {rank_seed(5, rank, step) for rank in range(4) for step in (0, 10, 100)}
    assert len(seeds) == 12
    assert rank_seed(5, 0) == 5  # rank 0 of a fresh run continues with the run's own seed
