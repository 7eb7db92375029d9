"""Tests of G3R's cross-scene trainer (`fourd_ns.learning.g3r_training`, ``fourd-train-g3r``) on two tiny
PandaSet-layout logs (``tests/pandaset_fixture.py``, 32 × 18 front images): a network update uses the gradient of
the step's whole loss, a few scene iterations make the network reconstruct better than the untrained one, resume
is bit-exact, two gloo processes stay identical with only rank 0 writing, and the CLI's error for missing data."""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from rich.console import Console
from safetensors.torch import load_file

import pandaset_fixture as pf
from fourd_ns.dataparsers.pandaset_dataparser import PandaSetDataParserConfig
from fourd_ns.datasets.scene_collection import SceneCollection, SceneCollectionConfig, SceneDraw
from fourd_ns.learning import checkpoint_folders, init_distributed, load_model_weights, read_model_config
from fourd_ns.learning.checkpoints import MODEL_WEIGHTS_NAME
from fourd_ns.learning.g3r_training import G3RLoss, G3RTrainConfig, train, train_on_scene, unrolled_steps
from fourd_ns.networks.g3r_net import TINY_NETWORK, G3RLearnedOptimizer, G3RNetworkConfig
from fourd_ns.networks.g3r_weights import RECONSTRUCTION_SETTINGS
from fourd_ns.reconstruction.g3r_reconstruction import G3RReconstruction, G3RStepConfig, flatness_loss
from fourd_ns.reconstruction.g3r_scene import G3RSeedingConfig, seed_g3r_scene
from fourd_ns.scene.far_field import FarFieldConfig
from fourd_ns.scene.lidar_seeding import LidarSeedingConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PARSER = PandaSetDataParserConfig(cameras=("front",), downscale_factor=2, max_seed_points=1)
SEEDING = G3RSeedingConfig(
    lidar=LidarSeedingConfig(voxel_size=0.15, max_background_points=400, max_points_per_actor=60,
                             min_points_per_actor=20),
    far=FarFieldConfig(num_latitudes=4, num_longitudes=16),
)  # fmt: skip


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    """A folder with two logs of different lengths (6 and 8 frames)."""
    folder = tmp_path_factory.mktemp("g3r_logs")
    pf.write_pandaset_log(folder / "a", num_frames=6)
    pf.write_pandaset_log(folder / "b", num_frames=8)
    return folder


def train_config(output_dir: Path, logs: Path, **options) -> G3RTrainConfig:
    """A tiny run: 2 sources + 2 targets per draw, T = 2, the tiny network, no LPIPS (no weights in tests)."""
    values = dict(
        output_dir=output_dir,
        data=SceneCollectionConfig(logs=(logs,), parser=PARSER, sources=2, targets=2),
        network=G3RNetworkConfig(**TINY_NETWORK),
        steps=G3RStepConfig(num_steps=2),
        seeding=SEEDING,
        iterations=4,
        warmup_iterations=0,
        lr=1e-2,
        min_lr=1e-3,
        lr_warmup_iterations=0,
        lpips_weight=0.0,
        save_every=1000,
        device="cpu",
        torch_threads=1,
    )
    values.update(options)
    return G3RTrainConfig(**values)


def load_network(checkpoint: Path) -> G3RLearnedOptimizer:
    network = G3RLearnedOptimizer(G3RNetworkConfig.from_dict(read_model_config(checkpoint)))
    load_model_weights(checkpoint, network)
    return network


def reconstruction_mse(network: G3RLearnedOptimizer, draw: SceneDraw, steps: G3RStepConfig) -> float:
    """Mean MSE over the draw's source and target views after a full reconstruction of the seeded scene."""
    scene = seed_g3r_scene(draw.log.driving, draw.sources, SEEDING, network.config.latent_dim,
                           torch.Generator().manual_seed(0))  # fmt: skip
    reconstruction = G3RReconstruction(network, steps, draw.log.driving.metres_per_unit)
    states, _ = reconstruction.run(scene, draw.sources)
    with torch.no_grad():
        return float(np.mean([F.mse_loss(reconstruction.render(scene, states, view).rgb, view.image).item()
                              for view in draw.sources + draw.targets]))  # fmt: skip


def test_unrolled_steps_warm_up():
    assert [unrolled_steps(i, 24, 100) for i in (0, 1, 50, 99, 100, 500)] == [1, 1, 12, 23, 24, 24]
    assert unrolled_steps(0, 24, 0) == 24


def test_a_network_update_uses_the_gradient_of_the_whole_step_loss(logs, tmp_path):
    """train_on_scene back-propagates view by view to the state, then once through the network; the network's
    gradient must equal autograd of the step's total loss (mean view MSE + λ_reg · flatness) built directly."""
    config = train_config(tmp_path, logs, flatness_weight=0.5, flatness_epsilon_metres=0.001, clip_norm=1e9)
    draw = SceneCollection(config.data).draw(np.random.default_rng(0), index=0)
    metres = draw.log.driving.metres_per_unit
    scene = seed_g3r_scene(draw.log.driving, draw.sources, SEEDING, 8, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    network = G3RLearnedOptimizer(config.network)
    with torch.no_grad():  # a non-zero head, so that every part of the network is on the gradient's path
        for net in network.nets.values():
            net.head[-1].weight.normal_(0.0, 0.3)
    reconstruction = G3RReconstruction(network, config.steps, metres)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.0)  # keeps the weights and leaves the gradients
    report = train_on_scene(reconstruction, scene, draw.sources, draw.targets, 1, G3RLoss(config, Console()),
                            optimizer, network, config, init_distributed("cpu"), metres)  # fmt: skip
    got = {name: None if p.grad is None else p.grad.clone() for name, p in network.named_parameters()}

    network.zero_grad(set_to_none=True)
    new_states, _ = reconstruction.step(scene, scene.states, draw.sources, 0, 1)
    views = draw.sources + draw.targets
    total = sum(F.mse_loss(reconstruction.render(scene, new_states, v).rgb, v.image) for v in views) / len(views)
    epsilon = config.flatness_epsilon_metres / metres
    total = total + config.flatness_weight * sum(flatness_loss(s, epsilon) for s in new_states.values())
    total.backward()
    assert report.steps == 1 and np.isfinite(report.target_mse)
    reached = 0
    for name, parameter in network.named_parameters():
        if parameter.grad is None:
            assert got[name] is None, name
            continue
        scale = float(parameter.grad.abs().max())
        assert got[name] is not None, name
        assert torch.allclose(got[name], parameter.grad, rtol=1e-4, atol=1e-5 * scale + 1e-9), name
        reached += scale > 0
    assert reached > len(got) // 2
    assert all(got[name] is not None for name, _ in network.decoder.named_parameters(prefix="decoder"))


def test_training_lowers_the_reconstruction_loss(logs, tmp_path):
    config = train_config(tmp_path / "run", logs, iterations=10)
    checkpoint = train(config, Console(quiet=True))
    assert checkpoint == checkpoint_folders(tmp_path / "run")[-1] and checkpoint.name == "step-0000010"
    assert (checkpoint / RECONSTRUCTION_SETTINGS).is_file()
    trained = load_network(checkpoint)
    untrained = G3RLearnedOptimizer(config.network)
    collection = SceneCollection(config.data)
    for index in (0, 1):  # a fixed window of each log
        draw = collection.draw(np.random.default_rng(0), index=index)
        before = reconstruction_mse(untrained, draw, config.steps)
        after = reconstruction_mse(trained, draw, config.steps)
        assert after < 0.85 * before, (draw.log.name, before, after)  # measured: 0.55-0.7 × before


def test_resume_reproduces_an_uninterrupted_run_bit_exactly(logs, tmp_path):
    options = dict(iterations=4, save_every=2, keep_last=3, warmup_iterations=2, lr_warmup_iterations=1)
    whole = tmp_path / "whole"
    train(train_config(whole, logs, **options), Console(quiet=True))
    middle, last = checkpoint_folders(whole)
    assert (middle.name, last.name) == ("step-0000002", "step-0000004")

    resumed = tmp_path / "resumed"
    train(train_config(resumed, logs, resume=middle, **options), Console(quiet=True))
    assert [folder.name for folder in checkpoint_folders(resumed)] == ["step-0000004"]
    expected = load_file(last / MODEL_WEIGHTS_NAME)
    got = load_file(resumed / "checkpoints" / "step-0000004" / MODEL_WEIGHTS_NAME)
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert torch.equal(got[name], value), name
    assert (resumed / "checkpoints" / "step-0000004" / MODEL_WEIGHTS_NAME).read_bytes() == (
        last / MODEL_WEIGHTS_NAME).read_bytes()
    halfway = load_file(middle / MODEL_WEIGHTS_NAME)
    assert any(not torch.equal(halfway[name], value) for name, value in expected.items())  # it trained meanwhile


# ------------------------------------------------------------------------------------------------ two processes
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, config: G3RTrainConfig, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    import fourd_ns.learning.g3r_training as training

    networks: List[torch.nn.Module] = []
    draws: List[tuple] = []
    build = training.build_network

    def keep_network(network_config, device):
        networks.append(build(network_config, device))
        return networks[-1]

    class RecordingCollection(SceneCollection):
        def draw(self, rng, index=None):
            draw = super().draw(rng, index)
            draws.append((draw.log.name, tuple(v.frame_index for v in draw.sources)))
            return draw

    training.build_network = keep_network  # the forked process's own module: nothing leaks into the test process
    training.SceneCollection = RecordingCollection
    train(config, Console(quiet=True))
    torch.save(dict(weights={k: v.detach().clone() for k, v in networks[0].state_dict().items()}, draws=draws),
               Path(result_dir) / f"rank{rank}.pt")


def test_two_gloo_processes_keep_identical_weights_and_only_rank_0_writes(logs, tmp_path):
    run, results = tmp_path / "run", tmp_path / "results"
    results.mkdir()
    config = train_config(run, logs, iterations=2, save_every=2)
    mp.start_processes(_worker, args=(2, _free_port(), config, str(results)), nprocs=2, join=True,
                       start_method="fork")
    ranks = [torch.load(results / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert ranks[0]["draws"] != ranks[1]["draws"]  # each rank trained on its own scenes …
    for name, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][name]), name  # … and the weights stayed identical
    written = load_file(run / "checkpoints" / "step-0000002" / MODEL_WEIGHTS_NAME)
    for name, value in written.items():
        assert torch.equal(value, ranks[0]["weights"][name]), name
    heads = [value for name, value in written.items() if name.endswith("head.2.weight")]
    assert heads and all(float(head.abs().sum()) > 0 for head in heads)  # zero-initialised heads: it trained
    assert sorted(path.name for path in run.iterdir()) == ["checkpoints", "tensorboard"]  # rank 0 only
    assert [folder.name for folder in checkpoint_folders(run)] == ["step-0000002"]
    assert len(list((run / "tensorboard").glob("events.*"))) == 1
    state = torch.load(run / "checkpoints" / "step-0000002" / "trainer_state.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2


def test_cli_reports_a_missing_data_folder(tmp_path, monkeypatch, capsys):
    from fourd_ns.scripts import train_g3r

    missing = tmp_path / "no-such-logs"
    monkeypatch.setenv("COLUMNS", "400")  # one line per message
    monkeypatch.setattr(sys, "argv", ["fourd-train-g3r", "--data.logs", str(missing), "--output-dir",
                                      str(tmp_path / "run"), "--device", "cpu"])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        train_g3r.entrypoint()
    assert exit_info.value.code == 2
    message = re.sub(r"\s+", "", capsys.readouterr().err)  # whitespace-free, whatever the wrapping
    assert message.startswith("fourd-train-g3r:") and str(missing).replace(" ", "") in message
    assert "neitheradrivinglog" in message and "fourd-synth-driving" in message
    assert not (tmp_path / "run").exists()  # nothing written
