"""Tests of Flux4D's unsupervised cross-clip trainer (`fourd_ns.learning.flux4d_training`, ``fourd-train-flux4d``)
on two tiny PandaSet-layout logs: the view-by-view backward equals autograd of the whole loss, a few iterations
improve the reconstruction of a clip, resume is bit-exact, two gloo processes stay identical with only rank 0 writing, and the
CLI's error for missing data."""

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
from rich.console import Console
from safetensors.torch import load_file

import pandaset_fixture as pf
from fourd_ns.dataparsers.pandaset_dataparser import PandaSetDataParserConfig
from fourd_ns.datasets.scene_collection import SceneCollection, SceneCollectionConfig
from fourd_ns.learning import checkpoint_folders, load_model_weights, read_model_config
from fourd_ns.learning.checkpoints import MODEL_WEIGHTS_NAME
from fourd_ns.learning.flux4d_training import Flux4DTrainConfig, train, train_on_clip
from fourd_ns.networks.flux4d_net import TINY_FLUX4D_NETWORK, Flux4DNetwork, Flux4DNetworkConfig
from fourd_ns.networks.flux4d_weights import RECONSTRUCTION_SETTINGS
from fourd_ns.reconstruction.flux4d_losses import Flux4DLossConfig, velocity_prior, view_loss
from fourd_ns.reconstruction.flux4d_reconstruction import Flux4DReconstruction, Flux4DRefinementConfig, clip_units
from fourd_ns.reconstruction.flux4d_scene import Flux4DSeedingConfig, seed_flux4d_scene
from fourd_ns.scene.far_field import FarFieldConfig
from fourd_ns.scene.lidar_seeding import LidarSeedingConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PARSER = PandaSetDataParserConfig(cameras=("front",), downscale_factor=2, max_seed_points=1)
SEEDING = Flux4DSeedingConfig(
    lidar=LidarSeedingConfig(voxel_size=0.0, max_background_points=400, split_actors=False, scale_rule="mean-nearest",
                             min_points_per_actor=0),
    far=FarFieldConfig(num_latitudes=4, num_longitudes=16, latitude_range_deg=(0.0, 90.0)),
)  # fmt: skip


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("flux4d_logs")
    pf.write_pandaset_log(folder / "a", num_frames=6)
    pf.write_pandaset_log(folder / "b", num_frames=8)
    return folder


def train_config(output_dir: Path, logs: Path, **options) -> Flux4DTrainConfig:
    values = dict(
        output_dir=output_dir,
        data=SceneCollectionConfig(logs=(logs,), parser=PARSER, sources=3, targets=2),
        network=Flux4DNetworkConfig(**TINY_FLUX4D_NETWORK),
        seeding=SEEDING,
        refinement=Flux4DRefinementConfig(iterations=1),
        iterations=4,
        lr=1e-2,
        min_lr=1e-3,
        lr_warmup_iterations=0,
        save_every=1000,
        device="cpu",
        torch_threads=1,
    )
    values.update(options)
    return Flux4DTrainConfig(**values)


def clip_mse(network: Flux4DNetwork, draw, config: Flux4DTrainConfig) -> float:
    """Mean image MSE over the clip's input and in-between views after the reconstruction. (Not the training
    objective: its velocity re-weighting grows with the predicted motion, so it is not comparable across networks.)"""
    scene = seed_flux4d_scene(draw.log.driving, draw.sources, config.seeding, network.layout,
                              torch.Generator().manual_seed(0))  # fmt: skip
    units = clip_units(draw.log.driving.metres_per_unit, draw.log.driving.time_span)
    reconstruction = Flux4DReconstruction(network, config.refinement, units)
    with torch.no_grad():
        outputs, _ = reconstruction.run(scene, draw.sources)
        views = draw.sources + draw.targets
        return float(np.mean([((reconstruction.render(outputs[-1], v).rgb - v.image) ** 2).mean().item()
                              for v in views]))  # fmt: skip


def test_view_by_view_backward_equals_autograd_of_the_whole_loss(logs, tmp_path) -> None:
    config = train_config(tmp_path, logs, loss=Flux4DLossConfig(velocity_weight=0.5))
    draw = SceneCollection(config.data).draw(np.random.default_rng(0), index=1)
    torch.manual_seed(0)
    network = Flux4DNetwork(config.network)
    with torch.no_grad():
        network.predictor.head[-1].weight.normal_(0.0, 0.05)
        network.refiner.head[-1].weight.normal_(0.0, 0.05)
    scene = seed_flux4d_scene(draw.log.driving, draw.sources, SEEDING, network.layout, torch.Generator().manual_seed(0))
    units = clip_units(draw.log.driving.metres_per_unit, draw.log.driving.time_span)
    reconstruction = Flux4DReconstruction(network, config.refinement, units)
    report = train_on_clip(reconstruction, scene, draw.sources, draw.targets, config)
    got = {name: None if p.grad is None else p.grad.clone() for name, p in network.named_parameters()}

    network.zero_grad(set_to_none=True)
    outputs, _ = reconstruction.run(scene, draw.sources)
    views = draw.sources + draw.targets
    total = 0.0
    for states in outputs:  # supervise_every_iteration: the mean over the prediction and the refined state
        per_view = sum(view_loss(reconstruction.render(states, v, with_flow=True), v, config.loss,
                                 units.metres_per_unit)[0] for v in views) / len(views)  # fmt: skip
        prior = velocity_prior(states["background"], network.layout, units.metres_per_unit, units.seconds_per_time)
        total = total + (per_view + config.loss.velocity_weight * prior) / len(outputs)
    total.backward()
    assert report.loss == pytest.approx(float(total), rel=1e-5)
    assert np.isfinite(report.between_mse) and report.speed_mps > 0
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


def test_training_improves_the_reconstruction_of_a_clip(logs, tmp_path) -> None:
    config = train_config(tmp_path / "run", logs, iterations=8)
    checkpoint = train(config, Console(quiet=True))
    assert checkpoint == checkpoint_folders(tmp_path / "run")[-1] and checkpoint.name == "step-0000008"
    assert (checkpoint / RECONSTRUCTION_SETTINGS).is_file()
    trained = Flux4DNetwork(Flux4DNetworkConfig.from_dict(read_model_config(checkpoint)))
    load_model_weights(checkpoint, trained)
    torch.manual_seed(0)
    untrained = Flux4DNetwork(config.network)
    collection = SceneCollection(config.data)
    for index in (0, 1):
        draw = collection.draw(np.random.default_rng(0), index=index)
        before, after = clip_mse(untrained, draw, config), clip_mse(trained, draw, config)
        assert after < 0.9 * before, (draw.log.name, before, after)


def test_resume_reproduces_an_uninterrupted_run_bit_exactly(logs, tmp_path) -> None:
    options = dict(iterations=4, save_every=2, keep_last=3, lr_warmup_iterations=1)
    whole = tmp_path / "whole"
    train(train_config(whole, logs, **options), Console(quiet=True))
    middle, last = checkpoint_folders(whole)
    resumed = tmp_path / "resumed"
    train(train_config(resumed, logs, resume=middle, **options), Console(quiet=True))
    assert [folder.name for folder in checkpoint_folders(resumed)] == ["step-0000004"]
    assert (resumed / "checkpoints" / "step-0000004" / MODEL_WEIGHTS_NAME).read_bytes() == (
        last / MODEL_WEIGHTS_NAME).read_bytes()
    halfway, final = load_file(middle / MODEL_WEIGHTS_NAME), load_file(last / MODEL_WEIGHTS_NAME)
    assert any(not torch.equal(halfway[name], value) for name, value in final.items())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, config: Flux4DTrainConfig, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    import fourd_ns.learning.flux4d_training as training

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


def test_two_gloo_processes_keep_identical_weights_and_only_rank_0_writes(logs, tmp_path) -> None:
    run, results = tmp_path / "run", tmp_path / "results"
    results.mkdir()
    config = train_config(run, logs, iterations=2, save_every=2)
    mp.start_processes(_worker, args=(2, _free_port(), config, str(results)), nprocs=2, join=True,
                       start_method="fork")
    ranks = [torch.load(results / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert ranks[0]["draws"] != ranks[1]["draws"]
    for name, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][name]), name
    written = load_file(run / "checkpoints" / "step-0000002" / MODEL_WEIGHTS_NAME)
    for name, value in written.items():
        assert torch.equal(value, ranks[0]["weights"][name]), name
    assert float(written["predictor.head.2.weight"].abs().sum()) > 0  # zero-initialised head: it trained
    assert sorted(path.name for path in run.iterdir()) == ["checkpoints", "tensorboard"]


def test_cli_reports_a_missing_data_folder(tmp_path, monkeypatch, capsys) -> None:
    from fourd_ns.scripts import train_flux4d

    missing = tmp_path / "no-such-logs"
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setattr(sys, "argv", ["fourd-train-flux4d", "--data.logs", str(missing), "--output-dir",
                                      str(tmp_path / "run"), "--device", "cpu"])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        train_flux4d.entrypoint()
    assert exit_info.value.code == 2
    message = re.sub(r"\s+", "", capsys.readouterr().err)
    assert message.startswith("fourd-train-flux4d:") and "fourd-synth-driving" in message
    assert not (tmp_path / "run").exists()
