"""Two gloo processes on CPU (forked, with torchrun's environment variables): `broadcast_parameters` makes the ranks
start identical, `all_reduce_gradients` keeps them identical when one rank gives a sub-module no gradient (which
breaks DDP's reducer), `mean_over_ranks` averages metrics, and only rank 0 writes checkpoints and logs."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import nn

from fourd_ns.learning.checkpoints import TRAINER_STATE_NAME, checkpoint_folders, read_model_config, write_model_folder
from fourd_ns.learning.distributed import (
    all_reduce_gradients,
    broadcast_parameters,
    close_distributed,
    gather_to_main,
    init_distributed,
    mean_over_ranks,
)
from fourd_ns.learning.progress import TrainingLog
from fourd_ns.learning.resume import save_training_checkpoint
from fourd_ns.learning.rng import rank_seed, seed_everything
from fourd_ns.learning.schedules import warmup_cosine_schedule

STEPS = 3


class Parts(nn.Module):
    """A background part every rank trains, an actor part only rank 0's data reaches, a part nobody uses."""

    def __init__(self) -> None:
        super().__init__()
        self.background = nn.Linear(3, 4)
        self.actors = nn.Linear(4, 2)
        self.unused = nn.Linear(2, 2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _worker(rank: int, world_size: int, port: int, run_dir: str, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    context = init_distributed("cpu")
    try:
        seed_everything(100 + rank)  # different initialisations: the broadcast must make them rank 0's
        model = Parts()
        broadcast_parameters(model, context)
        initial = _snapshot(model)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        scheduler = warmup_cosine_schedule(optimizer, STEPS, 1, 1e-2, 1e-3)
        seed_everything(rank_seed(0, rank))  # each rank draws its own data
        local_gradients, losses, means = [], [], []
        with TrainingLog(Path(run_dir) / "tensorboard", context) as log:
            for step in range(1, STEPS + 1):
                optimizer.zero_grad(set_to_none=True)
                features = model.background(torch.randn(5, 3))
                loss = features.square().mean()
                if rank == 0:  # only rank 0's scene has actors
                    loss = loss + model.actors(features).square().mean()
                loss.backward()
                local_gradients.append({name: None if parameter.grad is None else parameter.grad.clone()
                                        for name, parameter in model.named_parameters()})
                all_reduce_gradients(model.parameters(), context)
                reduced = {name: None if parameter.grad is None else parameter.grad.clone()
                           for name, parameter in model.named_parameters()}
                optimizer.step()
                scheduler.step()
                losses.append(float(loss))
                means.append(mean_over_ranks(dict(loss=loss.detach()), context))
                log.scalars(means[-1], step, prefix="train/")
        folder = save_training_checkpoint(Path(run_dir), STEPS, lambda target: write_model_folder(
            target, model, dict(parts=3)), optimizer, scheduler, context, keep_last=2)
        gathered = gather_to_main(rank * 10, context)
        torch.save(dict(initial=initial, final=_snapshot(model), local=local_gradients, reduced=reduced,
                        losses=losses, means=means, folder=None if folder is None else str(folder),
                        gathered=gathered), Path(result_dir) / f"rank{rank}.pt")
    finally:
        close_distributed(context)


def test_two_gloo_processes_stay_identical_when_a_rank_lacks_gradients(tmp_path: Path):
    run, results = tmp_path / "run", tmp_path / "results"
    results.mkdir()
    # fork: the workers inherit the imported modules; each joins the process group from the environment (torchrun's)
    mp.start_processes(_worker, args=(2, _free_port(), str(run), str(results)), nprocs=2, join=True,
                       start_method="fork")
    ranks = [torch.load(results / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]

    for name, value in ranks[0]["initial"].items():
        assert torch.equal(value, ranks[1]["initial"][name]), name  # broadcast: one initialisation
    for name, value in ranks[0]["final"].items():
        assert torch.equal(value, ranks[1]["final"][name]), name  # identical after every step

    local0, local1 = ranks[0]["local"][-1], ranks[1]["local"][-1]
    assert local1["actors.weight"] is None and local0["actors.weight"] is not None
    for name in ("background.weight", "background.bias", "actors.weight", "actors.bias"):
        zeros = torch.zeros_like(local0[name])
        expected = (local0[name] + (local1[name] if local1[name] is not None else zeros)) / 2
        for rank in ranks:
            assert torch.allclose(rank["reduced"][name], expected, atol=1e-7, rtol=0), name
    assert not torch.equal(ranks[0]["final"]["actors.weight"], ranks[0]["initial"]["actors.weight"])
    for rank in ranks:  # no rank gave it a gradient: it keeps None everywhere and Adam leaves it alone
        assert rank["reduced"]["unused.weight"] is None
        assert torch.equal(rank["final"]["unused.weight"], rank["initial"]["unused.weight"])

    assert ranks[0]["losses"] != ranks[1]["losses"]  # each rank saw its own data …
    for step in range(STEPS):  # … and the logged metric is their mean, on both ranks
        mean = (ranks[0]["losses"][step] + ranks[1]["losses"][step]) / 2
        assert abs(ranks[0]["means"][step]["loss"] - mean) < 1e-6
        assert ranks[0]["means"][step] == ranks[1]["means"][step]

    assert ranks[0]["gathered"] == [0, 10] and ranks[1]["gathered"] is None
    assert ranks[0]["folder"] is not None and ranks[1]["folder"] is None  # only rank 0 writes
    assert [folder.name for folder in checkpoint_folders(run)] == [f"step-{STEPS:07d}"]
    assert sorted(path.name for path in run.iterdir()) == ["checkpoints", "tensorboard"]
    assert len(list((run / "tensorboard").glob("events.*"))) == 1
    folder = checkpoint_folders(run)[0]
    assert read_model_config(folder) == dict(parts=3)
    state = torch.load(folder / TRAINER_STATE_NAME, weights_only=True)
    assert state["step"] == STEPS and state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # each rank's own state
