"""Every method fourd_ns registers trains on CPU, reloads through eval_setup and evaluates on the test camera.

This is nerfstudio's own ``test_train.py`` harness (reduced config → ``train_loop`` → ``eval_setup`` →
``get_average_eval_image_metrics``) applied to our entry points, plus the behaviours a 4D model must have:
loss goes down, the viewer's time reaches the render, resume keeps densifying, export at a chosen time.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from conftest import reduced_config, train_steps
from method_registry import registered_methods
from nerfstudio.scripts.train import train_loop
from nerfstudio.utils.eval_utils import eval_setup

def _trains_on_nerfies_scenes(spec) -> bool:
    from fourd_ns.dataparsers.nerfies_dataparser import NerfiesDataParserConfig

    return isinstance(spec.config.pipeline.datamanager.dataparser, NerfiesDataParserConfig)


METHODS = sorted(name for name, spec in registered_methods().items() if _trains_on_nerfies_scenes(spec))
"""The monocular methods (deform4d, flag4d); the driving methods have their own harness tests (test_g3r_method)."""


def test_our_methods_are_registered() -> None:
    from nerfstudio.plugins.registry import discover_methods

    methods, descriptions = discover_methods()
    for name in ["deform4d", "flag4d"]:
        assert name in methods and descriptions[name]


@pytest.mark.parametrize("method", METHODS)
def test_train_then_eval_setup(method: str, tiny_scene: Path, tmp_path: Path) -> None:
    cfg = reduced_config(registered_methods()[method].config, tiny_scene, tmp_path / "outputs", iterations=4)
    cfg.save_config()
    train_loop(local_rank=0, world_size=1, config=cfg)

    config, pipeline, checkpoint, step = eval_setup(cfg.get_base_dir() / "config.yml", test_mode="test")
    assert step == 3 and checkpoint.exists()
    # the test split is the right camera of the rig, never a training view
    assert all("right" in str(f) for f in pipeline.datamanager.eval_dataset.image_filenames)
    metrics = pipeline.get_average_eval_image_metrics(output_path=None, get_std=False)
    assert math.isfinite(metrics["psnr"]) and 0.0 < metrics["ssim"] <= 1.0
    assert "lpips" not in metrics  # no AlexNet weights in the test environment: reported unavailable, never faked


def _fixed_view_l1(pipeline) -> float:
    model = pipeline.model
    camera = pipeline.datamanager.train_dataset.cameras[0:1].to(model.device)
    image = pipeline.datamanager.cached_train[0]["image"].float() / 255.0
    model.eval()
    with torch.no_grad():
        rgb = model.get_outputs_for_camera(camera)["rgb"]
    model.train()
    return float((rgb - image[..., :3]).abs().mean())


@pytest.fixture(scope="module")
def trained_deform4d(tiny_scene: Path, tmp_path_factory: pytest.TempPathFactory):
    """deform4d trained for 40 iterations in-process, with the L1 error of a fixed view before and after."""
    cfg = reduced_config(
        registered_methods()["deform4d"].config, tiny_scene, tmp_path_factory.mktemp("deform4d"), iterations=40
    )
    cfg.pipeline.model.static_warmup_steps = 20
    cfg.pipeline.model.refine_every = 10
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    before = _fixed_view_l1(trainer.pipeline)
    train_steps(trainer, range(40))
    after = _fixed_view_l1(trainer.pipeline)
    trainer.save_checkpoint(39)
    cfg.save_config()
    return cfg, trainer, before, after


def test_training_lowers_the_loss(trained_deform4d) -> None:
    _, trainer, before, after = trained_deform4d
    assert after < 0.8 * before, (before, after)
    assert bool(trainer.pipeline.model.deformation_enabled)


def test_viewer_render_path_changes_with_time(trained_deform4d) -> None:
    from nerfstudio.cameras.cameras import CameraType
    from nerfstudio.viewer.utils import CameraState, get_camera

    _, trainer, _, _ = trained_deform4d
    model = trainer.pipeline.model
    model.eval()
    camera = trainer.pipeline.datamanager.train_dataset.cameras[0]
    images = []
    for time in (0.0, 1.0):
        state = CameraState(
            fov=float(2 * torch.atan(camera.cy / camera.fy)),
            aspect=float(camera.width / camera.height),
            c2w=camera.camera_to_worlds,
            camera_type=CameraType.PERSPECTIVE,
            time=time,
        )
        viewer_camera = get_camera(state, int(camera.height), int(camera.width))
        images.append(model.get_outputs_for_camera(viewer_camera)["rgb"])
    model.train()
    assert images[0].shape == (int(camera.height), int(camera.width), 3)
    assert (images[0] - images[1]).abs().max() > 1e-3


def test_resume_keeps_densifying(trained_deform4d) -> None:
    cfg, _, _, _ = trained_deform4d
    resumed = reduced_config(cfg, cfg.pipeline.datamanager.data, cfg.output_dir, iterations=52)
    resumed.load_dir = cfg.get_checkpoint_dir()
    resumed.pipeline.model.refine_every = 4
    trainer = resumed.setup(local_rank=0, world_size=1)
    trainer.setup()
    assert trainer._start_step == 40
    model = trainer.pipeline.model
    count_before = model.num_points
    train_steps(trainer, range(40, 52))
    # densification ran on the resumed optimizers (it used to crash with stale optimizer state)
    assert model.num_points != count_before
    for name, param in model.gauss_params.items():
        assert trainer.optimizers.optimizers[name].param_groups[0]["params"][0] is param


def test_export_time_deforms_the_exported_gaussians(trained_deform4d, monkeypatch: pytest.MonkeyPatch) -> None:
    _, trainer, _, _ = trained_deform4d
    model = trainer.pipeline.model
    model.eval()
    canonical = model.gauss_params["means"].detach().clone()
    assert torch.equal(model.means, model.gauss_params["means"])
    monkeypatch.setenv("FOURD_EXPORT_TIME", "0.75")
    model._export_cache = None
    deformed = model.means
    assert deformed.shape == canonical.shape and not torch.allclose(deformed, canonical)
    expected = model.gaussians_at(0.75).means
    assert torch.allclose(deformed, expected)
    monkeypatch.setenv("FOURD_EXPORT_TIME", "2")
    model._export_cache = None
    with pytest.raises(ValueError, match="FOURD_EXPORT_TIME"):
        _ = model.means
    model.train()


def test_gaussians_at_composes_offsets_like_deformable_3dgs(trained_deform4d, monkeypatch: pytest.MonkeyPatch) -> None:
    """Δx is added to the means, Δq to the normalised quaternion, Δs to the activated scale; the optional opacity and
    colour offsets go to the opacity logits and the DC coefficients."""
    from fourd_ns.deformation.mlp_field import Deformation

    _, trainer, _, _ = trained_deform4d
    model = trainer.pipeline.model
    model.eval()
    n = model.num_points
    offsets = Deformation(
        d_means=torch.full((n, 3), 0.1),
        d_quats=torch.full((n, 4), 0.2),
        d_scales=torch.full((n, 3), 0.3),
        d_opacities=torch.full((n, 1), 0.4),
        d_colors=torch.full((n, 3), 0.5),
    )
    monkeypatch.setattr(model, "deformation_at", lambda canonical, time, time_noise: offsets)
    canonical = model.canonical_gaussians()
    deformed = model.gaussians_at(0.5)
    model.train()
    params = model.gauss_params
    assert torch.allclose(deformed.means, params["means"] + 0.1)
    assert torch.allclose(deformed.quats, params["quats"] / params["quats"].norm(dim=-1, keepdim=True) + 0.2)
    assert torch.allclose(deformed.scales, torch.exp(params["scales"]) + 0.3)
    assert torch.allclose(deformed.opacities, torch.sigmoid(params["opacities"] + 0.4).squeeze(-1))
    assert torch.allclose(deformed.features[:, 0], params["features_dc"] + 0.5)
    assert torch.equal(deformed.features[:, 1:], canonical.features[:, 1:])


def _train_and_load_state(method: str, data: Path, output_dir: Path, seed: int, iterations: int = 8) -> dict:
    """The pipeline's tensors after ``iterations`` CPU training steps with ``seed`` (the model's non-tensor extra
    state, such as flag4d's run folder, is left out)."""
    cfg = reduced_config(registered_methods()[method].config, data, output_dir, iterations=iterations)
    cfg.machine.seed = seed
    cfg.timestamp = f"seed{seed}"
    cfg.save_config()
    train_loop(local_rank=0, world_size=1, config=cfg)  # seeds python, numpy and torch from cfg.machine.seed
    checkpoint_path = cfg.get_checkpoint_dir() / f"step-{iterations - 1:09d}.ckpt"
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)["pipeline"]
    return {name: value for name, value in state.items() if isinstance(value, torch.Tensor)}


@pytest.mark.parametrize("method", METHODS)
def test_training_is_reproducible_for_a_seed(method: str, tiny_scene: Path, tmp_path: Path) -> None:
    """Two CPU runs with the same seed end with identical parameters (densification and deformation included), so
    a benchmark difference between two runs of one schedule comes from the seed, never from run-to-run noise."""
    first = _train_and_load_state(method, tiny_scene, tmp_path / "a", seed=42)
    again = _train_and_load_state(method, tiny_scene, tmp_path / "b", seed=42)
    other = _train_and_load_state(method, tiny_scene, tmp_path / "c", seed=7)
    assert first.keys() == again.keys()
    for name, value in first.items():
        assert torch.equal(value, again[name]), name
    assert any(not torch.equal(value, other[name]) for name, value in first.items() if value.shape == other[name].shape)
