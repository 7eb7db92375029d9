"""``ns-train g3r`` through nerfstudio's own harness (reduced config → ``train_loop`` → ``eval_setup`` →
``get_average_eval_image_metrics``) on a tiny PandaSet-layout log, with a tiny learned optimizer written in the
test in the real checkpoint format; plus what a user relies on: the learned steps improve the source views and
touch no parameter through the trainer's optimizer, fine-tuning then does, actors move with the viewer's time,
``ns-export`` composes the scene at a time, and missing weights give one clear error."""

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

from fourd_ns.learning import write_model_folder
from fourd_ns.networks.g3r_net import TINY_NETWORK, G3RLearnedOptimizer, G3RNetworkConfig
from fourd_ns.networks.g3r_weights import RECONSTRUCTION_SETTINGS, locate_g3r_weights
from fourd_ns.reconstruction.g3r_reconstruction import G3RStepConfig
from fourd_ns.reconstruction.g3r_scene import G3RSeedingConfig
from fourd_ns.scene.far_field import FarFieldConfig
from fourd_ns.scene.lidar_seeding import LidarSeedingConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("g3r_method_log") / "log"
    pf.write_pandaset_log(folder, num_frames=6)
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """An untrained tiny learned optimizer saved as fourd-train-g3r saves a checkpoint (its skip path descends)."""
    folder = tmp_path_factory.mktemp("g3r_weights") / "checkpoints" / "step-0000001"
    config = G3RNetworkConfig(**TINY_NETWORK)
    torch.manual_seed(0)
    write_model_folder(folder, G3RLearnedOptimizer(config), config.to_dict())
    seeding = G3RSeedingConfig(
        lidar=LidarSeedingConfig(voxel_size=0.15, max_background_points=400, max_points_per_actor=60,
                                 min_points_per_actor=20),
        far=FarFieldConfig(num_latitudes=4, num_longitudes=16),
    )  # fmt: skip
    settings = {"steps": asdict(G3RStepConfig(num_steps=24)), "seeding": json.loads(json.dumps(asdict(seeding)))}
    (folder / RECONSTRUCTION_SETTINGS).write_text(json.dumps(settings))
    return folder.parent.parent  # the run folder: its newest checkpoint is used


def g3r_config(log: Path, weights, output_dir: Path, num_steps: int = 3, finetune_steps: int = 0):
    cfg = reduced_config(registered_methods()["g3r"].config, log, output_dir, iterations=num_steps + finetune_steps)
    cfg.pipeline.datamanager.dataparser.cameras = ("front",)
    cfg.pipeline.datamanager.dataparser.downscale_factor = 2
    cfg.pipeline.model.weights = None if weights is None else str(weights)
    cfg.pipeline.model.num_steps = num_steps
    cfg.pipeline.model.finetune_steps = finetune_steps
    return cfg


def test_g3r_and_turbo_are_registered() -> None:
    from nerfstudio.plugins.registry import discover_methods

    methods, descriptions = discover_methods()
    assert "g3r" in methods and "g3r-turbo" in methods and descriptions["g3r"]
    assert methods["g3r-turbo"].pipeline.model.num_steps == 12 and methods["g3r"].pipeline.model.num_steps == 24


def test_train_eval_export(log: Path, weights: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = g3r_config(log, weights, tmp_path / "outputs", num_steps=3, finetune_steps=2)
    cfg.save_config()
    train_loop(local_rank=0, world_size=1, config=cfg)

    config, pipeline, checkpoint, step = eval_setup(cfg.get_base_dir() / "config.yml", test_mode="test")
    assert step == 4 and checkpoint.exists()
    model = pipeline.model
    assert int(model.learned_steps_done) == 3
    assert any(offset.abs().sum() > 0 for offset in model.offsets), "fine-tuning moved nothing"
    frames = pipeline.datamanager.eval_dataset.metadata["frame_indices"].tolist()
    assert frames == [1, 3, 5]  # every-other split: odd frames evaluate, never seen by the learned steps
    metrics = pipeline.get_average_eval_image_metrics(output_path=None, get_std=False)
    assert math.isfinite(metrics["psnr"]) and 0.0 < metrics["ssim"] <= 1.0
    assert math.isfinite(metrics["lidar_depth_rmse_m"]) and "lpips" not in metrics

    # ns-export reads the scene composed at the chosen time; actors move with it, the background does not
    names = model.part_names
    assert any(name.startswith("actor/") for name in names)
    monkeypatch.setenv("FOURD_EXPORT_TIME", "0.1")
    early = model.means.clone()
    model._export_logged = False
    monkeypatch.setenv("FOURD_EXPORT_TIME", "0.9")
    late = model.means.clone()
    assert early.shape == late.shape == (model.num_points, 3)
    background = model.base_states[names.index("background")].shape[0]
    assert torch.equal(early[:background], late[:background]) and not torch.equal(early, late)
    assert model.features_dc.shape == (model.num_points, 3) and model.opacities.shape == (model.num_points, 1)


def test_learned_steps_improve_sources_without_the_trainers_optimizer(log: Path, weights: Path, tmp_path: Path) -> None:
    from conftest import train_steps

    cfg = g3r_config(log, weights, tmp_path / "outputs", num_steps=4)
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    model = trainer.pipeline.model
    sources = model.inputs.sources

    def source_mse() -> float:
        with torch.no_grad():
            renders = [model.reconstruction.render(model.scene(), model.current_states(), v).rgb for v in sources]
        return float(sum(((r - v.image) ** 2).mean() for r, v in zip(renders, sources)) / len(sources))

    before = source_mse()
    losses = train_steps(trainer, range(4))
    assert source_mse() < before
    assert all(offset.abs().sum() == 0 for offset in model.offsets)  # nothing but the learned steps moved the scene
    assert all(math.isfinite(float(loss["main_loss"])) for loss in losses)


def test_missing_weights_give_one_clear_error(log: Path, tmp_path: Path) -> None:
    cfg = g3r_config(log, None, tmp_path / "outputs")
    with pytest.raises(FileNotFoundError, match="fourd-train-g3r"):
        cfg.setup(local_rank=0, world_size=1).setup()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        locate_g3r_weights(tmp_path / "nowhere")


def test_g3r_refuses_a_dataset_without_lidar(log: Path, weights: Path, tmp_path: Path) -> None:
    cfg = g3r_config(log, weights, tmp_path / "outputs")
    cfg.pipeline.datamanager.dataparser.load_lidar = False
    with pytest.raises(ValueError, match="pandaset-data"):
        cfg.setup(local_rank=0, world_size=1).setup()
