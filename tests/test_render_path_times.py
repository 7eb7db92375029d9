"""``ns-render`` paths sweep time from 0 to 1 (:mod:`fourd_ns.render_path_compat`).

Unit tests of the path times and of nerfstudio's wrapped path builders; the import order of the real ``ns-render``
(its module binds the builders before it imports our package); and nerfstudio's own ``interpolate``,
``camera-path`` and ``spiral`` commands on deform4d trained through the harness on the tiny synthetic bell: every
written frame is the model's render of its path camera at its path time (frame k of K at k / (K - 1)).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import reduced_config
from method_registry import registered_methods
from nerfstudio.cameras import camera_paths
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.scripts.train import train_loop

from fourd_ns.render_path_compat import path_times

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_path_times_go_from_0_to_1_evenly() -> None:
    times = path_times(5)
    assert times.shape == (5, 1)
    assert times.flatten().tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert bool((times[1:] > times[:-1]).all())
    assert path_times(1).flatten().tolist() == [0.0]
    with pytest.raises(ValueError, match="at least one camera"):
        path_times(0)


def _cameras(num: int, times: bool) -> Cameras:
    c2w = torch.eye(4)[:3].repeat(num, 1, 1)
    c2w[:, 0, 3] = torch.arange(num, dtype=torch.float32)  # a row of cameras along x
    return Cameras(
        camera_to_worlds=c2w,
        fx=30.0,
        fy=30.0,
        cx=10.0,  # off centre, as PandaSet's principal points
        cy=6.0,
        width=32,
        height=18,
        times=torch.linspace(0.2, 0.6, num)[:, None] if times else None,
    )


def test_interpolated_path_of_timed_cameras_sweeps_time() -> None:
    path = camera_paths.get_interpolated_camera_path(_cameras(4, times=True), steps=5, order_poses=False)
    assert len(path) == 3 * 5  # nerfstudio: steps per transition between consecutive cameras
    assert torch.equal(path.times, path_times(15))
    assert path.width.flatten().tolist() == [32] * 15 and path.height.flatten().tolist() == [18] * 15  # not 2 cx x 2 cy
    # a dataset without times (a static scene) keeps a path without times
    static = camera_paths.get_interpolated_camera_path(_cameras(4, times=False), steps=5, order_poses=False)
    assert static.times is None


def _json_path(num: int, render_times=None) -> dict:
    entries = []
    for i in range(num):
        entry = {"camera_to_world": torch.eye(4).flatten().tolist(), "fov": 50.0, "aspect": 16 / 9}
        if render_times is not None and render_times[i] is not None:
            entry["render_time"] = render_times[i]
        entries.append(entry)
    return {"render_height": 18, "render_width": 32, "seconds": 1.0, "camera_path": entries}


def test_json_path_keeps_its_times_or_sweeps_without() -> None:
    kept = camera_paths.get_path_from_json(_json_path(3, [0.5, 0.5, 0.7]))
    assert kept.times.flatten().tolist() == pytest.approx([0.5, 0.5, 0.7])
    swept = camera_paths.get_path_from_json(_json_path(4))
    assert torch.equal(swept.times, path_times(4))
    with pytest.raises(ValueError, match="'render_time' for 2 of its 3 cameras"):
        camera_paths.get_path_from_json(_json_path(3, [0.1, None, 0.3]))


def test_ns_render_binds_the_wrapped_builders() -> None:
    """``ns-render`` imports ``nerfstudio.scripts.render`` first; it binds the builders before our package loads."""
    code = (
        "import nerfstudio.scripts.render as r\n"
        "print(getattr(r.get_interpolated_camera_path, '_fourd_sweeps_time', False),"
        " getattr(r.get_path_from_json, '_fourd_sweeps_time', False))"
    )
    env = dict(os.environ, TORCHDYNAMO_DISABLE="1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.split()[-2:] == ["True", "True"]


# ---------------------------------------------------------------- nerfstudio's render commands on a trained model

TRAIN_ITERATIONS = 300
STATIC_WARMUP = 60


@pytest.fixture(scope="module")
def trained_bell(tiny_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deform4d trained through nerfstudio's harness, its deformation (zero-initialised heads, so static parts stay
    where the warm-up put them) on after the static warm-up; no densification (the reduced config's refine-every-2
    schedule prunes a tiny scene down to a few Gaussians)."""
    cfg = reduced_config(
        registered_methods()["deform4d"].config, tiny_scene, tmp_path_factory.mktemp("deform4d"), TRAIN_ITERATIONS
    )
    cfg.pipeline.model.static_warmup_steps = STATIC_WARMUP
    cfg.pipeline.model.zero_init_heads = True
    cfg.pipeline.model.refine_every = 10**6
    cfg.save_config()
    train_loop(local_rank=0, world_size=1, config=cfg)
    return cfg.get_base_dir() / "config.yml"


@pytest.fixture(scope="module")
def pipeline(trained_bell: Path):
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(trained_bell, test_mode="test")
    return pipeline


def _frames(folder: Path) -> np.ndarray:
    files = sorted(folder.glob("*.png"))
    return np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0 for f in files])


def _render(pipeline, camera: Cameras, time: float) -> np.ndarray:
    camera = camera.to(pipeline.device)
    camera.times = torch.full((1, 1), float(time), device=pipeline.device)
    with torch.no_grad():
        return pipeline.model.get_outputs_for_camera(camera)["rgb"].clamp(0, 1).cpu().numpy()


def _assert_frames_render_the_path_at(pipeline, frames: np.ndarray, path: Cameras, times) -> None:
    """Each written frame is the model's render of its path camera at its time (up to 8-bit rounding), and the
    last one is not what the same camera shows at time 0 (every frame's time before the fix)."""
    assert len(frames) == len(path) == len(times)
    for k, time in enumerate(times):
        assert np.abs(frames[k] - _render(pipeline, path[k : k + 1], time)).max() <= 1.5 / 255, f"frame {k}"
    if times[-1] != 0.0:
        assert np.abs(frames[-1] - _render(pipeline, path[-1:], 0.0)).max() > 5 / 255


def test_ns_render_interpolate_sweeps_time(pipeline, trained_bell: Path, tmp_path: Path) -> None:
    from nerfstudio.scripts.render import RenderInterpolated

    steps = 2
    RenderInterpolated(
        load_config=trained_bell, output_path=tmp_path / "frames", output_format="images", image_format="png",
        interpolation_steps=steps, pose_source="eval",
    ).main()  # fmt: skip
    eval_cameras = pipeline.datamanager.eval_dataset.cameras
    path = camera_paths.get_interpolated_camera_path(eval_cameras, steps=steps, order_poses=False)
    count = (len(eval_cameras) - 1) * steps
    _assert_frames_render_the_path_at(pipeline, _frames(tmp_path / "frames"), path, np.linspace(0.0, 1.0, count))


def _camera_path_json(pipeline, folder: Path, num: int, render_time=None) -> Path:
    """A viewer-style camera path holding the first test camera's view ``num`` times."""
    camera = pipeline.datamanager.eval_dataset.cameras[0]
    c2w = torch.cat([camera.camera_to_worlds, torch.tensor([[0.0, 0.0, 0.0, 1.0]])]).flatten().tolist()
    height = int(camera.height)
    fov = float(np.degrees(2 * np.arctan(height / (2 * float(camera.fy)))))
    entry = {"camera_to_world": c2w, "fov": fov, "aspect": float(camera.width) / height}
    if render_time is not None:
        entry["render_time"] = render_time
    path = {"render_height": height, "render_width": int(camera.width), "seconds": 1.0, "camera_path": [entry] * num}
    file = folder / "camera_path.json"
    file.write_text(json.dumps(path))
    return file


@pytest.mark.parametrize("render_time", [None, 0.5])
def test_ns_render_camera_path_sweeps_time_or_keeps_its_own(
    pipeline, trained_bell: Path, tmp_path: Path, render_time
) -> None:
    from nerfstudio.scripts.render import RenderCameraPath

    file = _camera_path_json(pipeline, tmp_path, num=4, render_time=render_time)
    RenderCameraPath(
        load_config=trained_bell, camera_path_filename=file, output_path=tmp_path / "frames", output_format="images",
        image_format="png",
    ).main()  # fmt: skip
    path = camera_paths.get_path_from_json(json.loads(file.read_text()))
    times = np.linspace(0.0, 1.0, 4) if render_time is None else [render_time] * 4
    _assert_frames_render_the_path_at(pipeline, _frames(tmp_path / "frames"), path, times)


def test_ns_render_spiral_refuses_full_image_methods(trained_bell: Path, tmp_path: Path) -> None:
    """nerfstudio's spiral asserts a ray-based datamanager (so it refuses splatfacto too): documented, not patched."""
    from nerfstudio.scripts.render import SpiralRender

    with pytest.raises(AssertionError):
        SpiralRender(load_config=trained_bell, output_path=tmp_path / "spiral.mp4").main()


def test_ns_render_sweep_moves_the_moving_object_only(pipeline, trained_bell: Path, tmp_path: Path) -> None:
    """A fixed view rendered along a path without times: first and last frames (t = 0 and t = 1) differ where the
    bell swings and agree on the static set (outside every test view's dynamic mask, dilated by 2 pixels), up to what
    a tiny model trained for a few hundred iterations leaves moving there."""
    from nerfstudio.scripts.render import RenderCameraPath

    file = _camera_path_json(pipeline, tmp_path, num=3)
    RenderCameraPath(
        load_config=trained_bell, camera_path_filename=file, output_path=tmp_path / "frames", output_format="images",
        image_format="png",
    ).main()  # fmt: skip
    frames = _frames(tmp_path / "frames")
    masks = pipeline.datamanager.eval_dataset.metadata["dynamic_mask_filenames"]
    moving = np.stack([np.asarray(Image.open(name)) > 0 for name in masks])  # [views, H, W] at the render size
    assert moving.shape[1:] == frames.shape[1:3]
    dilated = torch.nn.functional.max_pool2d(torch.from_numpy(moving.any(0)).float()[None, None], 5, 1, 2)[0, 0]
    static, swings = ~dilated.bool().numpy(), moving[0] | moving[-1]  # where the bell is at t = 0 and at t = 1
    change = np.abs(frames[-1] - frames[0]).mean(-1)
    # measured: 0.0166 where the bell swings, 0.0075 on the static set (300 iterations of a 64x36 scene)
    assert change[swings].mean() > 1.5 * change[static].mean()
    assert change[static].mean() < 3 / 255
