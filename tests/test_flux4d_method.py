"""``ns-train flux4d`` through nerfstudio's own harness (reduced config → ``train_loop`` → ``eval_setup`` →
``get_average_eval_image_metrics``) on a tiny 16-frame PandaSet-layout log with the Flux4D interpolation split,
with tiny networks written in the test in the real checkpoint format; plus: the prediction and refinement touch no
parameter through the trainer's optimizer, fine-tuning then does, predicted velocities move the Gaussians with the
viewer's / export time (also past the last input frame), missing weights give one clear error, and
``--pipeline.initial-motion initializer`` starts the LiDAR Gaussians from a tiny Flow4R initializer's velocities."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import pandaset_fixture as pf
from conftest import reduced_config
from method_registry import registered_methods
from nerfstudio.scripts.train import train_loop
from nerfstudio.utils.eval_utils import eval_setup

from fourd_ns.feedforward.flow4r import Flow4R, Flow4RConfig
from fourd_ns.feedforward.pretrained import save_pretrained
from fourd_ns.initializers.dataset_points import DatasetPointsInitializerConfig
from fourd_ns.initializers.feedforward import Flow4RInitializerConfig
from fourd_ns.learning import write_model_folder
from fourd_ns.networks.flux4d_net import TINY_FLUX4D_NETWORK, Flux4DNetwork, Flux4DNetworkConfig
from fourd_ns.networks.flux4d_weights import RECONSTRUCTION_SETTINGS
from fourd_ns.reconstruction.flux4d_reconstruction import Flux4DRefinementConfig
from fourd_ns.reconstruction.flux4d_scene import Flux4DSeedingConfig
from fourd_ns.scene.far_field import FarFieldConfig
from fourd_ns.scene.lidar_seeding import LidarSeedingConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VELOCITY_MPS = (2.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("flux4d_method_log") / "log"
    pf.write_pandaset_log(folder, num_frames=16)
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """Tiny networks saved as fourd-train-flux4d saves a checkpoint; the predictor's head bias gives every LiDAR
    Gaussian a velocity of 2 m/s along x (so motion is visible without training)."""
    folder = tmp_path_factory.mktemp("flux4d_weights") / "checkpoints" / "step-0000001"
    config = Flux4DNetworkConfig(**TINY_FLUX4D_NETWORK)
    torch.manual_seed(0)
    network = Flux4DNetwork(config)
    with torch.no_grad():
        network.predictor.head[-1].bias[14:17] = torch.tensor(VELOCITY_MPS) / config.velocity_scale_mps
    write_model_folder(folder, network, config.to_dict())
    seeding = Flux4DSeedingConfig(
        lidar=LidarSeedingConfig(voxel_size=0.0, max_background_points=500, split_actors=False,
                                 scale_rule="mean-nearest", min_points_per_actor=0),
        far=FarFieldConfig(num_latitudes=4, num_longitudes=16, latitude_range_deg=(0.0, 90.0)),
    )  # fmt: skip
    settings = {"seeding": asdict(seeding), "refinement": asdict(Flux4DRefinementConfig(iterations=1)),
                "loss": {"frame_seconds": 0.1}}  # fmt: skip
    (folder / RECONSTRUCTION_SETTINGS).write_text(json.dumps(settings, default=list))
    return folder.parent.parent


def flux4d_config(log: Path, weights, output_dir: Path, finetune_steps: int = 0, split: str = "flux4d-interpolation"):
    cfg = reduced_config(registered_methods()["flux4d"].config, log, output_dir, iterations=2 + finetune_steps)
    cfg.pipeline.datamanager.dataparser.cameras = ("front",)
    cfg.pipeline.datamanager.dataparser.downscale_factor = 2
    cfg.pipeline.datamanager.dataparser.split_mode = split
    cfg.pipeline.model.weights = None if weights is None else str(weights)
    cfg.pipeline.model.finetune_steps = finetune_steps
    return cfg


def test_flux4d_is_registered() -> None:
    from nerfstudio.plugins.registry import discover_methods

    methods, descriptions = discover_methods()
    assert "flux4d" in methods and descriptions["flux4d"]
    assert methods["flux4d"].pipeline.datamanager.dataparser.split_mode == "flux4d-interpolation"


def test_train_eval_export(log: Path, weights: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = flux4d_config(log, weights, tmp_path / "outputs", finetune_steps=2)
    cfg.save_config()
    train_loop(local_rank=0, world_size=1, config=cfg)

    config, pipeline, checkpoint, step = eval_setup(cfg.get_base_dir() / "config.yml", test_mode="test")
    assert checkpoint.exists() and step == 3  # prediction + 1 refinement (from the weights) + 2 fine-tuning
    model = pipeline.model
    assert int(model.learned_steps_done) == 2
    assert any(offset.abs().sum() > 0 for offset in model.offsets), "fine-tuning moved nothing"
    frames = pipeline.datamanager.eval_dataset.metadata["frame_indices"].tolist()
    assert frames == [1, 3, 5, 7, 9]  # the interpolation frames, never seen by the reconstruction
    assert pipeline.datamanager.train_dataset.metadata["frame_indices"].tolist() == [0, 2, 4, 6, 8, 10]
    metrics = pipeline.get_average_eval_image_metrics(output_path=None, get_std=False)
    assert math.isfinite(metrics["psnr"]) and 0.0 < metrics["ssim"] <= 1.0
    assert math.isfinite(metrics["lidar_depth_rmse_m"])
    assert metrics["dynamic_pixels"] > 0 and math.isfinite(metrics["dynamic_psnr"])  # the fixture's moving car
    assert metrics["scene_flow_num_points"] > 0 and math.isfinite(metrics["scene_flow_epe3d"])
    assert 0.0 <= metrics["scene_flow_acc10"] <= 1.0

    # export at a time: LiDAR Gaussians move with their velocity (2 m/s along x), the sky does not
    names = model.part_names
    assert names == ["background", "far"]
    monkeypatch.setenv("FOURD_EXPORT_TIME", "0.2")
    early = model.means.clone()
    monkeypatch.setenv("FOURD_EXPORT_TIME", "1.0")  # past the last input frame (future prediction)
    late = model.means.clone()
    lidar = model.base_states[0].shape[0]
    assert torch.equal(early[lidar:], late[lidar:])
    shift_m = (late[:lidar] - early[:lidar]) * model.driving.metres_per_unit
    seconds = 0.8 * model.units.seconds_per_time
    # the prediction set v = 2 m/s; refinement and fine-tuning change it only a little
    assert float(shift_m[:, 0].median()) == pytest.approx(VELOCITY_MPS[0] * seconds, rel=0.2)
    assert float(shift_m[:, 1:].abs().median()) < 0.1 * VELOCITY_MPS[0] * seconds


def test_learned_phase_moves_no_parameter_through_the_trainer(log: Path, weights: Path, tmp_path: Path) -> None:
    from conftest import train_steps

    cfg = flux4d_config(log, weights, tmp_path / "outputs")
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    assert trainer.config.max_num_iterations == 2  # 1 + the weights' refinement iteration
    model = trainer.pipeline.model
    initial = model.base_states[0].detach().clone()
    losses = train_steps(trainer, range(2))
    assert all(offset.abs().sum() == 0 for offset in model.offsets)
    moved = model.base_states[0] - initial
    assert float(moved[:, 14:17].abs().max()) > 0  # velocities were predicted
    assert torch.equal(model.base_states[0][:, -1], initial[:, -1])  # capture times never change
    assert all(math.isfinite(float(loss["main_loss"])) for loss in losses)


def test_missing_weights_give_one_clear_error(log: Path, tmp_path: Path) -> None:
    cfg = flux4d_config(log, None, tmp_path / "outputs")
    with pytest.raises(FileNotFoundError, match="fourd-train-flux4d"):
        cfg.setup(local_rank=0, world_size=1).setup()


@pytest.fixture(scope="module")
def flow4r_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_pretrained(Flow4R(Flow4RConfig.tiny()), tmp_path_factory.mktemp("flow4r") / "flow4r")


def test_flux4d_starts_from_the_initializers_velocities(log: Path, weights: Path, flow4r_weights: Path,
                                                        tmp_path: Path) -> None:
    cfg = flux4d_config(log, weights, tmp_path / "outputs")
    cfg.pipeline.initial_motion = "initializer"
    cfg.pipeline.initial_motion_radius_metres = 100.0  # the tiny random network's points land anywhere
    cfg.pipeline.initializer = Flow4RInitializerConfig(weights=str(flow4r_weights), num_points=200, long_side=64,
                                                       batch_size=2)  # fmt: skip
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    pipeline = trainer.pipeline
    cached = list(Path(cfg.get_base_dir()).glob("initialization_flow4r_*.npz"))
    assert len(cached) == 1, "the initializer's result is cached in the run folder"
    background, far = pipeline.model.base_states
    velocities = background[:, 14:17]
    assert float(velocities.norm(dim=-1).gt(0).float().mean()) > 0.5  # most Gaussians took a velocity
    assert float(far[:, 14:-1].abs().max()) == 0.0  # the sky never moves

    # the same run with the default: every Gaussian at rest
    default = flux4d_config(log, weights, tmp_path / "default")
    still = default.setup(local_rank=0, world_size=1)
    still.setup()
    assert float(still.pipeline.model.base_states[0][:, 14:-1].abs().max()) == 0.0


def test_an_initializer_without_velocities_is_a_clear_error(log: Path, weights: Path, tmp_path: Path) -> None:
    cfg = flux4d_config(log, weights, tmp_path / "outputs")
    cfg.pipeline.initial_motion = "initializer"
    cfg.pipeline.initializer = DatasetPointsInitializerConfig()
    with pytest.raises(ValueError, match="pipeline.initializer:flow4r"):
        cfg.setup(local_rank=0, world_size=1).setup()
