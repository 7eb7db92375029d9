"""flag4d inside nerfstudio: flow guidance from the training video, cached in the run folder and found again by
ns-eval; every loss term in training; test views read the nearest training frame's embeddings; Eq. 8 after each
densification; the ablation switches; the depth term only when the dataset has depth maps."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import reduced_config, train_steps
from method_registry import registered_methods
from nerfstudio.utils.eval_utils import eval_setup

from fourd_ns.datasets.training_video import select_training_video
from fourd_ns.flow.embeddings import FlowEmbeddings
from fourd_ns.flow.guidance import FlowGuidance

ITERATIONS = 12


def flag4d_config(scene: Path, output_dir: Path, iterations: int = ITERATIONS, **model_overrides):
    cfg = reduced_config(registered_methods()["flag4d"].config, scene, output_dir, iterations=iterations)
    cfg.pipeline.model.static_warmup_steps = 2
    cfg.pipeline.model.warmup_length = 2
    cfg.pipeline.model.refine_every = 4
    cfg.pipeline.flow.backend = "dis"
    for name, value in model_overrides.items():
        setattr(cfg.pipeline.model, name, value)
    return cfg


@pytest.fixture(scope="module")
def trained_flag4d(tiny_scene: Path, tmp_path_factory: pytest.TempPathFactory):
    cfg = flag4d_config(tiny_scene, tmp_path_factory.mktemp("flag4d"))
    cfg.save_config()
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    losses = train_steps(trainer, range(ITERATIONS))
    trainer.save_checkpoint(ITERATIONS - 1)
    return cfg, trainer, losses


def test_flow_embeddings_are_cached_in_the_run_folder_only(trained_flag4d, tiny_scene: Path) -> None:
    cfg, trainer, _ = trained_flag4d
    model = trainer.pipeline.model
    cached = list(cfg.get_base_dir().glob("flow_embeddings_dis_*.pt"))
    assert len(cached) == 1
    assert model.flow_cache_dir == str(cfg.get_base_dir())
    assert not list(tiny_scene.rglob("flow_embeddings*"))
    guidance = model.flow_guidance()
    # the left camera of the rig: one training frame per time step, in time order
    assert guidance.num_frames == 8
    assert bool((guidance.embeddings.times[1:] > guidance.embeddings.times[:-1]).all())
    assert guidance.embeddings.past.shape[1] == cfg.pipeline.flow.embedding_channels == model.config.flow_channels


def test_every_flag4d_loss_is_trained(trained_flag4d) -> None:
    _, _, losses = trained_flag4d
    deformed = losses[-1]
    for name in ("main_loss", "mutual_loss", "depth_loss", "rigidity_loss"):
        assert name in deformed and math.isfinite(deformed[name]) and deformed[name] >= 0.0, (name, deformed)
    assert deformed["mutual_loss"] > 0.0 and deformed["rigidity_loss"] > 0.0
    # before the static warm-up ends there is no deformation, hence no deformation loss
    assert "mutual_loss" not in losses[0] and "rigidity_loss" not in losses[0]


def test_eval_setup_finds_the_cached_embeddings(trained_flag4d, monkeypatch: pytest.MonkeyPatch) -> None:
    import fourd_ns.flow.cache as cache_module
    import fourd_ns.pipelines.flow_guided_pipeline as pipeline_module

    cfg, trainer, _ = trained_flag4d

    def no_recompute(*args, **kwargs):
        raise AssertionError("the embeddings should come from the run folder's cache")

    monkeypatch.setattr(cache_module, "compute_flow_embeddings", no_recompute)
    monkeypatch.setattr(pipeline_module, "compute_flow_embeddings", no_recompute)
    _, pipeline, _, _ = eval_setup(cfg.get_base_dir() / "config.yml", test_mode="test")
    assert pipeline.model.flow_cache_dir == str(cfg.get_base_dir())
    loaded = pipeline.model.flow_guidance().embeddings
    trained = trainer.pipeline.model.flow_guidance().embeddings
    assert torch.equal(loaded.past, trained.past) and torch.equal(loaded.future, trained.future)
    metrics = pipeline.get_average_eval_image_metrics(output_path=None, get_std=False)
    assert math.isfinite(metrics["psnr"])


def test_a_moved_run_recomputes_the_embeddings_in_memory(trained_flag4d, tmp_path: Path) -> None:
    cfg, trainer, _ = trained_flag4d
    _, pipeline, _, _ = eval_setup(cfg.get_base_dir() / "config.yml", test_mode="test")
    model = pipeline.model
    model.flow_cache_dir = str(tmp_path / "moved-away")
    model.set_flow_guidance(pipeline.load_flow_guidance(Path(model.flow_cache_dir)))
    recomputed = model.flow_guidance().embeddings
    assert not (tmp_path / "moved-away").exists()
    trained = trainer.pipeline.model.flow_guidance().embeddings
    assert torch.allclose(recomputed.past, trained.past, atol=1e-2)  # the cache stores fp16


def test_test_views_read_the_nearest_training_frame(trained_flag4d, monkeypatch: pytest.MonkeyPatch) -> None:
    _, trainer, _ = trained_flag4d
    model = trainer.pipeline.model
    guidance = model.flow_guidance()
    frames_read = []
    original = guidance.frame_embeddings
    monkeypatch.setattr(guidance, "frame_embeddings", lambda frame: frames_read.append(frame) or original(frame))
    eval_cameras = trainer.pipeline.datamanager.eval_dataset.cameras
    model.eval()
    with torch.no_grad():
        for index in (0, 3, 7):
            camera = eval_cameras[index : index + 1].to(model.device)
            model.get_outputs_for_camera(camera)
            time = float(camera.times.reshape(-1)[0])
            expected = int(torch.argmin((guidance.embeddings.times - time).abs()))
            assert frames_read[-1] == expected
        # between two training frames: the nearer one
        camera = eval_cameras[0:1].to(model.device)
        times = guidance.embeddings.times
        camera.times = torch.full_like(camera.times, float(times[2] * 0.7 + times[3] * 0.3))
        model.get_outputs_for_camera(camera)
        assert frames_read[-1] == 2
    model.train()


def test_viewer_time_slider_changes_the_flag4d_render(trained_flag4d) -> None:
    _, trainer, _ = trained_flag4d
    model = trainer.pipeline.model
    camera = trainer.pipeline.datamanager.train_dataset.cameras[0:1].to(model.device)
    model.eval()
    renders = []
    with torch.no_grad():
        for time in (0.0, 1.0):
            camera.times = torch.full_like(camera.times, time)
            renders.append(model.get_outputs_for_camera(camera)["rgb"])
    model.train()
    assert (renders[0] - renders[1]).abs().max() > 1e-4


def test_deforming_a_subset_equals_selecting_from_the_whole_set(trained_flag4d) -> None:
    _, trainer, _ = trained_flag4d
    model = trainer.pipeline.model
    model.eval()
    rows = torch.tensor([5, 0, model.num_points - 1])
    with torch.no_grad():
        whole = model.gaussians_at(0.4)
        subset = model.gaussians_at(0.4, rows=rows)
    model.train()
    assert torch.allclose(subset.means, whole.means[rows], atol=1e-5)
    assert torch.allclose(subset.quats, whole.quats[rows], atol=1e-5)


def test_mutual_loss_on_a_random_subset(trained_flag4d) -> None:
    _, trainer, _ = trained_flag4d
    model = trainer.pipeline.model
    model.config.mutual_max_gaussians = 7
    try:
        losses = train_steps(trainer, range(ITERATIONS, ITERATIONS + 1))
        record = model._last_record
        assert record["mutual_rows"].shape == (7,) and record["gmn"].shape == (7, 10)
        assert math.isfinite(losses[-1]["mutual_loss"])
    finally:
        model.config.mutual_max_gaussians = 4096


def test_smooth_opacity_runs_right_after_densification_only(trained_flag4d, monkeypatch) -> None:
    from fourd_ns.deformation.flag4d_losses import smooth_opacity_update

    _, trainer, _ = trained_flag4d
    model = trainer.pipeline.model
    monkeypatch.setattr(model.strategy, "step_post_backward", lambda **kwargs: None)  # isolate Eq. 8
    strategy = model.strategy
    refine_step = strategy.pause_refine_after_reset + strategy.refine_every * 3
    refine_step -= refine_step % strategy.refine_every
    if refine_step % strategy.reset_every < strategy.pause_refine_after_reset or refine_step >= strategy.refine_stop_iter:
        pytest.skip("schedule has no densification step to test")
    assert model.densified_at(refine_step) and not model.densified_at(refine_step + 1)
    opacities = model.gauss_params["opacities"]
    before = opacities.detach().clone()
    model.step = refine_step + 1
    model.step_post_backward(refine_step + 1)
    assert torch.equal(opacities.detach(), before)
    model.step = refine_step
    model.step_post_backward(refine_step)
    expected = smooth_opacity_update(
        before, model.config.opacity_decay, model.config.opacity_min, model.config.opacity_max
    )
    assert torch.allclose(opacities.detach(), expected)
    opacities.data.copy_(before)


@pytest.mark.parametrize(
    "switch, networks",
    [("use_idn", {"gmn"}), ("use_gmn", {"idn"}), ("mutual_learning", {"idn", "gmn"})],
)
def test_ablation_switches_train_reload_and_evaluate(
    switch: str, networks: set, tiny_scene: Path, tmp_path: Path
) -> None:
    cfg = flag4d_config(tiny_scene, tmp_path / "outputs", iterations=6, **{switch: False})
    cfg.save_config()
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    model = trainer.pipeline.model
    assert set(model.deformation_param_groups()) == networks
    losses = train_steps(trainer, range(6))
    assert "mutual_loss" not in losses[-1] and "rigidity_loss" in losses[-1]
    # without the GMN nothing needs optical flow
    assert bool(list(cfg.get_base_dir().glob("flow_embeddings_*.pt"))) == ("gmn" in networks)
    trainer.save_checkpoint(5)
    _, pipeline, _, step = eval_setup(cfg.get_base_dir() / "config.yml", test_mode="test")
    assert step == 5 and getattr(pipeline.model.config, switch) is False
    metrics = pipeline.get_average_eval_image_metrics(output_path=None, get_std=False)
    assert math.isfinite(metrics["psnr"]) and 0.0 < metrics["ssim"] <= 1.0


def test_both_networks_off_is_refused(tiny_scene: Path, tmp_path: Path) -> None:
    cfg = flag4d_config(tiny_scene, tmp_path / "outputs", use_idn=False, use_gmn=False)
    with pytest.raises(ValueError, match="use_idn and use_gmn"):
        cfg.pipeline.setup(device="cpu", test_mode="val")


def test_depth_term_is_off_without_depth_maps(tiny_scene: Path, tmp_path: Path) -> None:
    scene = tmp_path / "no_depth"
    shutil.copytree(tiny_scene, scene, ignore=shutil.ignore_patterns("depth"))
    cfg = flag4d_config(scene, tmp_path / "outputs", iterations=4)
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    assert not trainer.pipeline.model.uses_depth_prior
    losses = train_steps(trainer, range(4))
    assert "depth_loss" not in losses[-1] and "mutual_loss" in losses[-1]


# ---------------------------------------------------------------- flow guidance pieces


def _embeddings(times) -> FlowEmbeddings:
    count = len(times)
    return FlowEmbeddings(
        past=torch.zeros(count, 4, 3, 5),
        future=torch.zeros(count, 4, 3, 5),
        flow_backward=torch.zeros(count, 2, 24, 40),
        flow_forward=torch.zeros(count, 2, 24, 40),
        times=torch.tensor(times, dtype=torch.float32),
        stride=8,
    )


def test_projection_puts_a_point_on_its_pixel_in_grid_coordinates() -> None:
    K = torch.tensor([[30.0, 0.0, 20.0], [0.0, 30.0, 12.0], [0.0, 0.0, 1.0]])
    guidance = FlowGuidance(_embeddings([0.0, 1.0]), torch.eye(4).repeat(2, 1, 1), K.repeat(2, 1, 1))
    # camera looks down +z (OpenCV): a point at x=1, y=-0.5, z=3 lands on pixel (30, 7)
    points = torch.tensor([[1.0, -0.5, 3.0], [0.0, 0.0, -1.0]])
    projected = guidance.project(0, points)
    assert torch.allclose(projected[0], torch.tensor([2 * 30 / 40 - 1, 2 * 7 / 24 - 1]))
    assert torch.equal(projected[1], torch.tensor([2.0, 2.0]))  # behind the camera: outside the grid, border tokens
    assert guidance.neighbour_of(0) == 1 and guidance.neighbour_of(1) == 0


def test_training_video_has_one_camera_and_one_frame_per_time() -> None:
    times = [0.5, 0.0, 0.5, 1.0, 0.0, 0.25]
    cameras = [1, 1, 0, 1, 0, 0]
    video = select_training_video(times, cameras)
    # camera 1 covers 3 times, camera 0 covers 3 as well: tie → lowest id (0), which lacks t=1.0 → camera 1 there
    assert video.camera_id == 0
    assert video.times.tolist() == [0.0, 0.25, 0.5, 1.0]
    assert video.dataset_indices == [4, 5, 2, 3]
    single = select_training_video([0.2, 0.1])
    assert single.dataset_indices == [1, 0] and single.camera_id is None
    with pytest.raises(ValueError, match="no images"):
        select_training_video([])


def test_depth_prior_dataset_reads_resizes_and_masks(tmp_path: Path) -> None:
    from PIL import Image

    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
    from nerfstudio.data.scene_box import SceneBox

    from fourd_ns.datasets.depth_prior_dataset import DepthPriorDataset, read_depth_file

    Image.fromarray(np.zeros((4, 6, 3), dtype=np.uint8)).save(tmp_path / "image.png")
    depth = np.array([[1.0, np.inf, 2.0], [-2.0, 3.0, np.nan]], dtype=np.float32)  # half the image's resolution
    np.save(tmp_path / "depth.npy", depth)
    cameras = Cameras(camera_to_worlds=torch.eye(4)[None, :3], fx=5.0, fy=5.0, cx=3.0, cy=2.0, width=6, height=4)
    outputs = DataparserOutputs(
        image_filenames=[tmp_path / "image.png"],
        cameras=cameras,
        scene_box=SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])),
        metadata={"depth_filenames": [tmp_path / "depth.npy"], "depth_unit_scale_factor": 1.0},
    )
    data = DepthPriorDataset(outputs)[0]
    prior = data["depth_image"]
    assert prior.shape == (4, 6, 1)
    expected = np.repeat(np.repeat(np.nan_to_num(depth, nan=0, posinf=0).clip(min=0), 2, axis=0), 2, axis=1)
    assert np.array_equal(prior[..., 0].numpy(), expected)  # nearest upsampling; unknown depth → 0

    without = DataparserOutputs(image_filenames=[tmp_path / "image.png"], cameras=cameras)
    assert "depth_image" not in DepthPriorDataset(without)[0]

    np.save(tmp_path / "bad.npy", np.zeros((2, 2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="bad.npy"):
        read_depth_file(tmp_path / "bad.npy")


def test_depth_files_load_correctly_from_many_threads(tmp_path):
    """nerfstudio's image cache calls the dataset from a thread pool; every depth map must still load intact."""
    from concurrent.futures import ThreadPoolExecutor

    from fourd_ns.datasets.depth_prior_dataset import read_depth_file

    paths = []
    for i in range(16):
        paths.append(tmp_path / f"{i}.npy")
        np.save(paths[-1], np.full((4, 5), float(i), np.float32))
    with ThreadPoolExecutor(max_workers=8) as pool:
        loaded = list(pool.map(read_depth_file, paths * 20))
    assert all(depth.shape == (4, 5) and depth[0, 0] == float(i % 16) for i, depth in enumerate(loaded))

