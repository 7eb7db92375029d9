"""Tests of the synthetic scene generator: analytic geometry, flow ground truth, writer layout, CLI."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from fourd_ns.synthetic import PRESETS, generate_scene
from fourd_ns.synthetic.camera import PinholeCamera, camera_rays, look_at, pixel_centres, project
from fourd_ns.synthetic.motion import Placement, Static
from fourd_ns.synthetic.points import sparse_points
from fourd_ns.synthetic.presets import bell, press
from fourd_ns.synthetic.render import area_downsample, ground_truth, render_rgb
from fourd_ns.synthetic.rig import stereo_rig
from fourd_ns.synthetic.scene import Scene, SceneObject, cast_rays
from fourd_ns.synthetic.shading import DirectionalLight, Material
from fourd_ns.synthetic.shapes import Box, Cylinder, Rectangle, sphere
from fourd_ns.synthetic.textures import Checker

TINY = dict(num_frames=4, width=64, height=36)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _camera(position, target, width=64, height=48, focal=50.0) -> PinholeCamera:
    position = np.asarray(position, np.float64)
    rotation = look_at(position, np.asarray(target, np.float64))
    return PinholeCamera(rotation, position, focal, (width / 2, height / 2), width, height)


def _scene(*objects: SceneObject) -> Scene:
    return Scene(objects, (DirectionalLight(np.array([0.0, 0.0, 1.0])),))


def _static(name, shape, translation=(0.0, 0.0, 0.0)) -> SceneObject:
    material = Material(Checker(0.1, (0.2, 0.2, 0.2), (0.8, 0.8, 0.8)))
    return SceneObject(name, shape, material, Static(Placement(translation=np.array(translation, np.float64))))


def _cast(scene: Scene, camera: PinholeCamera, uv: torch.Tensor):
    origins, dirs = camera_rays(camera, uv)
    return cast_rays(scene, origins, dirs, 0.0), origins.double(), dirs.double()


# --- analytic ray caster ---------------------------------------------------------------------


def test_plane_depth_matches_closed_form():
    scene = _scene(_static("floor", Rectangle(50.0, 50.0)))
    # Looking straight down from height 3: the floor is parallel to the image plane, depth = 3 everywhere.
    down = PinholeCamera(np.diag([1.0, -1.0, -1.0]), np.array([0.2, -0.1, 3.0]), 40.0, (32.0, 24.0), 64, 48)
    hits, _, _ = _cast(scene, down, pixel_centres(64, 48).reshape(-1, 2))
    assert torch.allclose(hits.depth, torch.full_like(hits.depth, 3.0), atol=1e-5)
    # Oblique view: t = -o_z / d_z, and the hit lies on the plane.
    oblique = _camera([0.5, -3.0, 2.0], [0.0, 0.0, 0.0])
    hits, origins, dirs = _cast(scene, oblique, pixel_centres(64, 48).reshape(-1, 2))
    expected = -origins[:, 2] / dirs[:, 2]
    seen = expected > 0
    assert torch.allclose(hits.depth.double()[seen], expected[seen], rtol=1e-5)
    assert hits.world[seen, 2].abs().max() < 1e-4


def test_sphere_depth_matches_closed_form():
    radius, centre = 0.7, np.array([0.3, 0.2, -0.1])
    scene = _scene(_static("ball", sphere(radius), centre))
    camera = _camera([0.0, -4.0, 0.5], centre)
    hits, origins, dirs = _cast(scene, camera, pixel_centres(64, 48).reshape(-1, 2))
    # |o + t d - c|^2 = r^2, smallest positive root, in float64.
    oc = origins - torch.as_tensor(centre)
    a, b, c = (dirs * dirs).sum(1), (oc * dirs).sum(1), (oc * oc).sum(1) - radius**2
    disc = b * b - a * c
    hit = disc > 0
    expected = (-b - disc.clamp(min=0).sqrt()) / a
    assert torch.equal(hits.object == 0, hit)
    assert hit.sum() > 100
    assert torch.allclose(hits.depth.double()[hit], expected[hit], rtol=1e-5, atol=1e-5)
    # Along the optical axis the sphere is hit at its near pole.
    camera_to_centre = np.linalg.norm(camera.position - centre)
    axis_hits, _, _ = _cast(scene, camera, torch.tensor([camera.principal_point], dtype=torch.float32))
    assert axis_hits.depth.item() == pytest.approx(camera_to_centre - radius, rel=1e-5)
    normal = axis_hits.normal[0].numpy()
    assert np.allclose(normal, -camera.rotation[2], atol=1e-4)


def test_rays_from_inside_a_box_and_cylinder_hit_their_walls():
    room = _scene(_static("room", Box((2.0, 3.0, 1.0))))
    origins = torch.zeros(3, 3)
    dirs = torch.eye(3)
    assert torch.allclose(cast_rays(room, origins, dirs, 0.0).depth, torch.tensor([2.0, 3.0, 1.0]))
    can = _scene(_static("can", Cylinder(0.5, 1.5)))
    hits = cast_rays(can, torch.tensor([[0.0, 0.0, 0.0], [0.0, -3.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]] * 2), 0.0)
    assert hits.depth[0].item() == pytest.approx(1.5)
    assert math.isinf(hits.depth[1].item())


def test_known_point_projects_where_expected():
    position = np.array([0.0, -2.0, 0.0])
    camera = PinholeCamera(look_at(position, np.zeros(3)), position, 100.0, (64.0, 48.0), 128, 96)
    # Camera looks along +y with z up: world +x is image right, world +z is image up.
    uv, z = project(camera, torch.tensor([[0.5, 0.0, 0.25]], dtype=torch.float64))
    assert z.item() == pytest.approx(2.0)
    assert uv[0].tolist() == pytest.approx([64.0 + 100.0 * 0.25, 48.0 - 100.0 * 0.125])
    # The ray through that pixel passes through the point at ray parameter = z-depth.
    origins, dirs = camera_rays(camera, uv.float())
    assert (origins + 2.0 * dirs)[0].tolist() == pytest.approx([0.5, 0.0, 0.25], abs=1e-5)


# --- flow and scene-flow ground truth --------------------------------------------------------


def _warp_back(image_next: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample image_next [H, W, C] at pixel centre + flow [H, W, 2] (bilinear)."""
    h, w, _ = image_next.shape
    target = pixel_centres(w, h) + flow
    grid = torch.stack([2 * target[..., 0] / w - 1, 2 * target[..., 1] / h - 1], dim=-1)
    sampled = torch.nn.functional.grid_sample(
        image_next.permute(2, 0, 1)[None], grid[None], align_corners=False, padding_mode="border"
    )
    return sampled[0].permute(1, 2, 0)


def _photometric_errors(scene, camera, next_camera, tau, next_tau):
    """Mean |I_t - warp(I_t+1)| with GT flow and with zero flow over visible, non-occluded pixels that move."""
    rgb = area_downsample(render_rgb(scene, camera, tau, 2), 2)
    rgb_next = area_downsample(render_rgb(scene, next_camera, next_tau, 2), 2)
    gt = ground_truth(scene, camera, tau, next_camera, next_tau)
    gt_next = ground_truth(scene, next_camera, next_tau)
    h, w = gt.depth.shape
    target = pixel_centres(w, h) + gt.flow
    _, z_next = project(next_camera, (gt.world + gt.scene_flow).reshape(-1, 3))
    depth_there = _warp_back(gt_next.depth[..., None], gt.flow)[..., 0]
    inside = (target[..., 0] > 1) & (target[..., 0] < w - 1) & (target[..., 1] > 1) & (target[..., 1] < h - 1)
    visible = (z_next.reshape(h, w) - depth_there).abs() < 0.01 * depth_there
    moving = gt.flow.norm(dim=-1) > 0.5
    valid = inside & visible & moving
    assert valid.float().mean() > 0.02
    error_gt = (rgb - _warp_back(rgb_next, gt.flow)).abs().mean(-1)[valid].mean().item()
    error_zero = (rgb - rgb_next).abs().mean(-1)[valid].mean().item()
    return error_gt, error_zero


@pytest.fixture(scope="module")
def bell_setup():
    rng = np.random.default_rng(0)
    scene, spec = bell(rng)
    left, _ = stereo_rig(spec, 48, 160, 90, rng)
    return scene, left


def test_flow_warps_next_frame_onto_current_static_camera(bell_setup):
    scene, left = bell_setup
    error_gt, error_zero = _photometric_errors(scene, left[5], left[5], 5 / 47, 6 / 47)
    # Not zero: bilinear resampling of the ~3 px stripes of the bell, and Lambert shading of a rotating surface.
    assert error_gt < 0.04
    assert error_gt < 0.4 * error_zero


def test_flow_warps_next_frame_onto_current_moving_camera(bell_setup):
    scene, left = bell_setup
    error_gt, error_zero = _photometric_errors(scene, left[20], left[22], 20 / 47, 22 / 47)
    assert error_gt < 0.03
    assert error_gt < 0.4 * error_zero


def test_nonrigid_flow_warps_next_frame_onto_current():
    rng = np.random.default_rng(0)
    scene, spec = press(rng)
    left, _ = stereo_rig(spec, 48, 160, 90, rng)
    # Between tau = 0.13 and 0.25 the descending plate squashes the soft ellipsoid.
    error_gt, error_zero = _photometric_errors(scene, left[7], left[8], 7 / 47, 8 / 47)
    assert error_gt < 0.03
    assert error_gt < 0.5 * error_zero


@pytest.mark.parametrize("builder,t", [(bell, 20), (press, 7), (PRESETS["cup"], 3)])
def test_flow_lands_on_the_same_material_point(builder, t):
    """Exact check, independent of texture: the ray through pixel + flow at t+1 hits the same canonical point."""
    rng = np.random.default_rng(0)
    scene, spec = builder(rng)
    left, _ = stereo_rig(spec, 48, 96, 54, rng)
    gt = ground_truth(scene, left[t], t / 47, left[t + 1], (t + 1) / 47)
    uv = pixel_centres(96, 54).reshape(-1, 2)
    origins, dirs = camera_rays(left[t], uv)
    now = cast_rays(scene, origins, dirs, t / 47)
    origins, dirs = camera_rays(left[t + 1], uv + gt.flow.reshape(-1, 2))
    later = cast_rays(scene, origins, dirs, (t + 1) / 47)
    _, z_next = project(left[t + 1], (gt.world + gt.scene_flow).reshape(-1, 3))
    visible = (later.object == now.object) & ((later.depth - z_next).abs() < 1e-3 * z_next)
    assert visible.float().mean() > 0.9
    moving = gt.dynamic.reshape(-1) & visible
    assert moving.sum() > 20
    assert torch.allclose(later.canonical[visible], now.canonical[visible], atol=2e-4)


# --- written scenes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bell(tmp_path_factory) -> Path:
    return generate_scene("bell", tmp_path_factory.mktemp("bell") / "scene", seed=3, **TINY)


def _read_camera(root: Path, vid: str, factor: int = 1) -> PinholeCamera:
    data = json.loads((root / "camera" / f"{vid}.json").read_text())
    w, h = data["image_size"]
    cx, cy = data["principal_point"]
    camera = PinholeCamera(
        np.array(data["orientation"]), np.array(data["position"]), data["focal_length"], (cx, cy), w, h
    )
    return camera.downscaled(factor)


def test_writer_layout_and_shapes(tiny_bell):
    root, t_count, w, h = tiny_bell, TINY["num_frames"], TINY["width"], TINY["height"]
    dataset = json.loads((root / "dataset.json").read_text())
    left = [f"left_{t:06d}" for t in range(t_count)]
    right = [f"right_{t:06d}" for t in range(t_count)]
    assert dataset == {
        "count": 2 * t_count, "num_exemplars": t_count, "ids": left + right, "train_ids": left, "val_ids": right
    }
    metadata = json.loads((root / "metadata.json").read_text())
    assert metadata["right_000002"] == {"warp_id": 2, "appearance_id": 2, "camera_id": 1, "time_id": 2}
    assert metadata["left_000001"]["camera_id"] == 0
    scene = json.loads((root / "scene.json").read_text())
    assert set(scene) == {"scale", "center", "near", "far"} and 0 < scene["near"] < scene["far"]
    assert json.loads((root / "synthetic.json").read_text())["preset"] == "bell"
    points = np.load(root / "points.npy")
    assert points.dtype == np.float32 and points.ndim == 2 and points.shape[1] == 3 and len(points) > 1000
    for vid in left + right:
        cam = json.loads((root / "camera" / f"{vid}.json").read_text())
        assert cam["image_size"] == [w, h] and cam["skew"] == 0 and cam["pixel_aspect_ratio"] == 1
        assert cam["radial_distortion"] == [0, 0, 0] and cam["tangential_distortion"] == [0, 0]
        rotation = np.array(cam["orientation"])
        assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-9) and np.linalg.det(rotation) > 0
        for scale, factor in (("1x", 1), ("2x", 2)):
            hs, ws = h // factor, w // factor
            assert imageio.imread(root / "rgb" / scale / f"{vid}.png").shape == (hs, ws, 3)
            depth = np.load(root / "depth" / scale / f"{vid}.npy")
            assert depth.shape == (hs, ws) and depth.dtype == np.float32
            assert np.isfinite(depth).all() and depth.min() > 0
            assert np.load(root / "flow" / scale / f"{vid}.npy").shape == (hs, ws, 2)
            assert np.load(root / "scene_flow" / scale / f"{vid}.npy").shape == (hs, ws, 3)
            mask = imageio.imread(root / "dynamic_mask" / scale / f"{vid}.png")
            assert mask.shape == (hs, ws) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    last = np.load(root / "flow" / "1x" / f"left_{t_count - 1:06d}.npy")
    assert not last.any() and not np.load(root / "scene_flow" / "2x" / f"right_{t_count - 1:06d}.npy").any()
    assert (imageio.imread(root / "dynamic_mask" / "1x" / "left_000000.png") == 255).any()


def test_right_camera_is_rigidly_attached_at_a_horizontal_baseline(tiny_bell):
    offsets = []
    for t in range(TINY["num_frames"]):
        left, right = _read_camera(tiny_bell, f"left_{t:06d}"), _read_camera(tiny_bell, f"right_{t:06d}")
        assert np.allclose(left.rotation, right.rotation)
        offsets.append(left.rotation @ (right.position - left.position))
    assert np.allclose(offsets, offsets[0]) and offsets[0][0] > 0 and np.allclose(offsets[0][1:], 0, atol=1e-9)


def _unproject(camera: PinholeCamera, depth: np.ndarray) -> torch.Tensor:
    uv = pixel_centres(camera.width, camera.height).reshape(-1, 2).double()
    cx, cy = camera.principal_point
    d_cam = torch.stack([(uv[:, 0] - cx) / camera.focal, (uv[:, 1] - cy) / camera.focal, torch.ones_like(uv[:, 0])], 1)
    p_cam = d_cam * torch.as_tensor(depth.reshape(-1, 1), dtype=torch.float64)
    return p_cam @ torch.as_tensor(camera.rotation) + torch.as_tensor(camera.position)


@pytest.mark.parametrize("scale,factor", [("1x", 1), ("2x", 2)])
@pytest.mark.parametrize("name", ["left", "right"])
def test_world_point_plus_scene_flow_projects_to_pixel_plus_flow(tiny_bell, name, scale, factor):
    for t in range(TINY["num_frames"] - 1):
        vid, next_vid = f"{name}_{t:06d}", f"{name}_{t + 1:06d}"
        camera, next_camera = _read_camera(tiny_bell, vid, factor), _read_camera(tiny_bell, next_vid, factor)
        depth = np.load(tiny_bell / "depth" / scale / f"{vid}.npy")
        flow = np.load(tiny_bell / "flow" / scale / f"{vid}.npy").reshape(-1, 2)
        scene_flow = np.load(tiny_bell / "scene_flow" / scale / f"{vid}.npy").reshape(-1, 3)
        moved = _unproject(camera, depth) + torch.as_tensor(scene_flow, dtype=torch.float64)
        uv_next, _ = project(next_camera, moved)
        centres = pixel_centres(camera.width, camera.height).reshape(-1, 2).double()
        expected = centres + torch.as_tensor(flow, dtype=torch.float64)
        assert torch.allclose(uv_next, expected, atol=2e-2)
        dynamic = imageio.imread(tiny_bell / "dynamic_mask" / scale / f"{vid}.png").reshape(-1) == 255
        assert not scene_flow[~dynamic].any()
        assert np.abs(scene_flow[dynamic]).max() > 0


def test_two_x_intrinsics_are_half_and_points_land_on_matching_depth(tiny_bell):
    full = json.loads((tiny_bell / "camera" / "left_000000.json").read_text())
    camera1, camera2 = _read_camera(tiny_bell, "left_000000"), _read_camera(tiny_bell, "left_000000", 2)
    assert camera2.focal == full["focal_length"] / 2
    assert camera2.principal_point == (full["principal_point"][0] / 2, full["principal_point"][1] / 2)
    # Noise-free surface points from the renderer, projected with the JSON cameras at both scales.
    rng = np.random.default_rng(0)
    scene, spec = bell(np.random.default_rng(3))
    for camera, scale in ((camera1, "1x"), (camera2, "2x")):
        surface = ground_truth(scene, camera, 0.0).world
        points = torch.as_tensor(sparse_points(surface, rng, num_points=300), dtype=torch.float64)
        uv, z = project(camera, points)
        cols, rows = uv[:, 0].floor().long(), uv[:, 1].floor().long()
        depth = torch.as_tensor(np.load(tiny_bell / "depth" / scale / "left_000000.npy"), dtype=torch.float64)
        assert torch.allclose(depth[rows, cols], z, rtol=1e-4)
    # The noisy SfM-like cloud agrees with the depth maps for most points seen by the first camera.
    uv, z = project(camera1, torch.as_tensor(np.load(tiny_bell / "points.npy"), dtype=torch.float64))
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < camera1.width) & (uv[:, 1] >= 0) & (uv[:, 1] < camera1.height)
    depth = torch.as_tensor(np.load(tiny_bell / "depth" / "1x" / "left_000000.npy"), dtype=torch.float64)
    relative = (depth[uv[inside, 1].long(), uv[inside, 0].long()] - z[inside]).abs() / z[inside]
    assert relative.median() < 0.02


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_files_different_seed_different_scene(tmp_path):
    small = dict(num_frames=3, width=32, height=18)
    a = _tree(generate_scene("random", tmp_path / "a", seed=7, **small))
    b = _tree(generate_scene("random", tmp_path / "b", seed=7, **small))
    c = _tree(generate_scene("random", tmp_path / "c", seed=8, **small))
    assert a == b
    assert a.keys() == c.keys()
    assert a["rgb/1x/left_000000.png"] != c["rgb/1x/left_000000.png"]
    assert a["synthetic.json"] != c["synthetic.json"]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_has_dynamic_and_static_pixels(preset):
    rng = np.random.default_rng(1)
    scene, spec = PRESETS[preset](rng)
    left, _ = stereo_rig(spec, 4, 64, 36, rng)
    gt = ground_truth(scene, left[0], 0.0, left[1], 1 / 3)
    assert 0 < gt.dynamic.float().mean() < 0.8
    assert torch.isfinite(gt.depth).all()


def test_refuses_to_overwrite_a_non_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate_scene("cup", tmp_path, num_frames=2, width=16, height=10)
    generate_scene("cup", tmp_path, num_frames=2, width=16, height=10, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert (tmp_path / "dataset.json").exists()


def test_cli_entrypoint(tmp_path, monkeypatch, capsys):
    from fourd_ns.scripts import synth

    out = tmp_path / "press"
    argv = ["fourd-synth", "--scene", "press", "--out", str(out), "--num-frames", "2"]
    argv += ["--width", "32", "--height", "18"]
    monkeypatch.setattr(sys, "argv", argv)
    synth.entrypoint()
    assert json.loads((out / "dataset.json").read_text())["count"] == 4
    assert json.loads((out / "synthetic.json").read_text())["preset"] == "press"
    assert "Wrote press" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        synth.entrypoint()
    assert exit_info.value.code == 2
    monkeypatch.setattr(sys, "argv", argv + ["--overwrite", "True"])
    synth.entrypoint()
