"""Tests of the Flow4R / Flow3r training data: synthetic pairs with exact ground truth, the on-disk sequence format,
the sequence pair dataset, collation into a PairBatch, and unlabeled video pairs with flow pseudo-labels."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import fields
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from fourd_ns.feedforward.flow4r_geometry import pixel_grid
from fourd_ns.feedforward.pair_dataset import (
    CropResize,
    FramePairIndex,
    SequencePairDataset,
    SyntheticPairDataset,
    collate_pairs,
    forward_backward_consistent,
    interpolate_depth,
    project_pinhole,
)
from fourd_ns.feedforward.pair_types import PairBatch, ViewTargets
from fourd_ns.feedforward.sequence_format import (
    SequenceFormatError,
    Tracks,
    export_synthetic_sequence,
    read_sequence,
    write_sequence,
)
from fourd_ns.feedforward.synthetic_pairs import (
    SyntheticPairSetup,
    SyntheticPairSource,
    cast_pixel_centres,
    frozen_scene,
    render_pair,
    render_view_targets,
)
from fourd_ns.feedforward.video_pairs import VideoPairDataset
from fourd_ns.synthetic.camera import PinholeCamera
from fourd_ns.synthetic.motion import Placement, Static, Translate
from fourd_ns.synthetic.presets import PRESETS
from fourd_ns.synthetic.rig import stereo_rig
from fourd_ns.synthetic.scene import Scene, SceneObject
from fourd_ns.synthetic.shading import DirectionalLight, Material
from fourd_ns.synthetic.shapes import Rectangle, sphere
from fourd_ns.synthetic.textures import Checker

SIZE = (64, 64)
EXPORT = dict(preset="random", seed=3, num_frames=6, image_size=SIZE)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _transform(pose: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    return points @ pose[:3, :3].T + pose[:3, 3]


# --- synthetic pairs ----------------------------------------------------------------------------------------------


def test_static_synthetic_pair_moves_exactly_with_the_camera():
    source = SyntheticPairSource(dynamic_fraction=0.0)
    for seed in (0, 1):
        pair = source.pair(seed)
        assert not pair.dynamic
        inverse = torch.linalg.inv(pair.pose_1to2)
        for targets, pose in ((pair.targets1, pair.pose_1to2), (pair.targets2, inverse)):
            assert targets.valid.all() and targets.motion_valid.all()  # the presets' room: every ray hits
            expected = _transform(pose, targets.points)
            assert torch.allclose(targets.points_other, expected, atol=2e-5 * float(expected.norm(dim=-1).max()))


def test_synthetic_flow_target_is_the_projection_of_the_moved_point():
    source = SyntheticPairSource(dynamic_fraction=1.0)
    pair = source.pair(4)
    assert pair.dynamic
    for targets, k_other in ((pair.targets1, pair.intrinsics2), (pair.targets2, pair.intrinsics1)):
        pixels, z = project_pinhole(targets.points_other, k_other)
        seen = targets.flow_valid
        assert 0.2 < seen.float().mean() < 1.0  # some points leave the view or are hidden, most are seen
        assert (z[seen] > 0).all()
        assert torch.allclose(targets.flow_target[seen], pixels[seen], atol=1e-3)
        assert (targets.flow_target[seen] >= 0).all() and (targets.flow_target[seen] <= 64).all()
        assert (targets.flow_target[~seen] == 0).all()


def _two_object_scene() -> tuple[Scene, np.ndarray]:
    """A wall at z = 3 and a sphere (radius 0.3) translating from x = −0.3 to x = +0.3 at z = 2 over the clip."""
    material = Material(Checker(0.1, (0.2, 0.2, 0.2), (0.8, 0.8, 0.8)))
    shift = np.array([0.6, 0.0, 0.0])
    wall = SceneObject("wall", Rectangle(5.0, 5.0), material, Static(Placement(translation=np.array([0.0, 0.0, 3.0]))))
    ball = SceneObject(
        "ball", sphere(0.3), material, Translate(Placement(translation=np.array([-0.3, 0.0, 2.0])), lambda t: t * shift)
    )
    return Scene((wall, ball), (DirectionalLight(np.array([0.0, 0.0, -1.0])),)), shift


def test_scene_flow_differs_from_camera_motion_exactly_on_the_moving_object():
    scene, shift = _two_object_scene()
    camera1 = PinholeCamera(np.eye(3), np.zeros(3), 40.0, (16.0, 16.0), 32, 32)
    camera2 = PinholeCamera(np.eye(3), np.array([0.2, 0.05, 0.0]), 36.0, (16.0, 16.0), 32, 32)
    pair = render_pair(SyntheticPairSetup("test", scene, camera1, camera2, 0.0, 1.0), supersample=1)
    assert pair.dynamic
    on_ball = cast_pixel_centres(scene, camera1, 0.0).object.reshape(32, 32) == 1
    assert 50 < on_ball.sum() < 600
    # Camera 2 has the world's orientation (R = I), so the non-rigid part of P̄_vt is the object's world motion.
    difference = pair.targets1.points_other - _transform(pair.pose_1to2, pair.targets1.points)
    assert torch.allclose(
        difference[on_ball], torch.tensor(shift, dtype=torch.float32).expand(int(on_ball.sum()), 3), atol=1e-4
    )
    assert difference[~on_ball].abs().max() < 1e-4


def test_synthetic_occlusion_mask_matches_the_analytic_visibility():
    """flow_valid of view 1 = the moved point is inside image 2 and nothing (the ball at τ2) hides it from camera 2."""
    scene, _ = _two_object_scene()
    camera1 = PinholeCamera(np.eye(3), np.zeros(3), 40.0, (16.0, 16.0), 32, 32)
    camera2 = PinholeCamera(np.eye(3), np.array([0.2, 0.05, 0.0]), 36.0, (16.0, 16.0), 32, 32)
    targets = render_view_targets(scene, camera1, 0.0, camera2, 1.0)
    world = targets.points_other.double().reshape(-1, 3) + torch.tensor(camera2.position)  # R2 = I
    centre, radius, eye = torch.tensor([0.3, 0.0, 2.0], dtype=torch.float64), 0.3, torch.tensor(camera2.position)
    # Segment eye + s (X − eye), s in (0, 1): does it enter the ball before reaching X?
    d = world - eye
    oc = eye - centre
    a, b, c = (d * d).sum(1), (oc * d).sum(1), (oc * oc).sum() - radius**2
    disc = b * b - a * c
    first = (-b - disc.clamp(min=0).sqrt()) / a
    on_ball_surface = ((world - centre).norm(dim=1) - radius).abs() < 1e-4
    hidden = (disc > 0) & (first > 0) & (first < 1 - 1e-4) & ~on_ball_surface
    back_facing = on_ball_surface & (((world - centre) * (eye - world)).sum(1) <= 0)
    pixels = targets.points_other.double().reshape(-1, 3)
    u = 36.0 * pixels[:, 0] / pixels[:, 2] + 16.0
    v = 36.0 * pixels[:, 1] / pixels[:, 2] + 16.0
    inside = (u >= 0) & (u <= 32) & (v >= 0) & (v <= 32)
    expected = (inside & ~hidden & ~back_facing).reshape(32, 32)
    assert hidden.sum() > 20  # the ball hides part of the wall it uncovered in view 1
    mismatch = expected != targets.flow_valid
    # Only grazing rays (tangent to the ball within float32 precision) may disagree.
    assert mismatch.sum() <= 2


def test_synthetic_pairs_are_deterministic_in_the_seed_and_vary_the_focal():
    source = SyntheticPairSource(presets=("random", "cup"), dynamic_fraction=0.5, fov_range=(45.0, 75.0))
    first, again = source.pair(7), source.pair(7)
    for f in fields(first):
        a, b = getattr(first, f.name), getattr(again, f.name)
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), f.name
        elif f.name.startswith("targets"):
            for g in fields(a):
                assert torch.equal(getattr(a, g.name), getattr(b, g.name)), (f.name, g.name)
        else:
            assert a == b
    other = source.pair(8)
    assert not torch.equal(first.image1, other.image1)
    focals = torch.tensor([source.setup(seed).camera1.focal for seed in range(12)])
    low, high = (0.5 * 64 / math.tan(math.radians(fov) / 2) for fov in (75.0, 45.0))
    assert focals.min() >= low - 1e-6 and focals.max() <= high + 1e-6
    assert focals.std() > 2.0
    assert {source.setup(seed).dynamic for seed in range(12)} == {True, False}
    assert {source.setup(seed).preset for seed in range(12)} == {"random", "cup"}


def test_synthetic_source_rejects_bad_settings():
    with pytest.raises(ValueError, match="multiples of 16"):
        SyntheticPairSource(image_size=(60, 64))
    with pytest.raises(ValueError, match="unknown"):
        SyntheticPairSource(presets=("kitchen",))


# --- the on-disk sequence format -----------------------------------------------------------------------------------


def _random_sequence(rng: np.random.Generator, frames: int = 3, height: int = 8, width: int = 10) -> dict:
    rotations = [np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in range(frames)]
    rotations = [r * np.sign(np.linalg.det(r)) for r in rotations]
    poses = np.stack([np.block([[r, rng.normal(size=(3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]]) for r in rotations])
    k = np.array([[12.0, 0.0, 5.0], [0.0, 11.0, 4.0], [0.0, 0.0, 1.0]])
    return dict(
        images=rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
        depths=rng.uniform(0.5, 3.0, (frames, height, width)).astype(np.float32),
        intrinsics=np.stack([k] * frames).astype(np.float32),
        camera_to_world=poses.astype(np.float32),
        dynamic=True,
        times=np.array([0.0, 0.25, 1.0]),
        flows=rng.normal(size=(frames - 1, height, width, 2)).astype(np.float32),
        backward_flows=rng.normal(size=(frames - 1, height, width, 2)).astype(np.float32),
        masks=rng.random((frames, height, width)) > 0.5,
        tracks=Tracks(
            torch.as_tensor(rng.normal(size=(5, frames, 3)), dtype=torch.float32),
            torch.as_tensor(rng.random((5, frames)) > 0.3),
            torch.as_tensor(rng.uniform(0, 8, (5, frames, 2)), dtype=torch.float32),
        ),
    )


def test_sequence_format_round_trips(tmp_path: Path):
    data = _random_sequence(np.random.default_rng(0))
    write_sequence(tmp_path / "seq", **data)
    sequence = read_sequence(tmp_path / "seq")
    assert sequence.num_frames == 3 and sequence.image_size == (8, 10) and sequence.dynamic
    assert sequence.has_flow and sequence.has_backward_flow and sequence.has_masks and sequence.has_tracks
    assert torch.equal(sequence.camera_to_world, torch.as_tensor(data["camera_to_world"]))
    assert torch.equal(sequence.intrinsics, torch.as_tensor(data["intrinsics"]))
    assert torch.equal(sequence.times, torch.as_tensor(data["times"]))
    for t in range(3):
        assert torch.equal(sequence.image(t), torch.as_tensor(data["images"][t]))
        assert torch.equal(sequence.depth(t), torch.as_tensor(data["depths"][t]))
        assert torch.equal(sequence.mask(t), torch.as_tensor(data["masks"][t]))
    for t in range(2):
        assert torch.equal(sequence.flow(t), torch.as_tensor(data["flows"][t]))
        assert torch.equal(sequence.backward_flow(t + 1), torch.as_tensor(data["backward_flows"][t]))
    tracks = sequence.tracks()
    for name in ("points_world", "visible", "pixels"):
        assert torch.equal(getattr(tracks, name), getattr(data["tracks"], name))
    assert sorted(p.name for p in (tmp_path / "seq" / "flow_backward").iterdir()) == ["000001.npy", "000002.npy"]


def test_minimal_sequence_defaults_times_and_marks_invalid_depth(tmp_path: Path):
    data = _random_sequence(np.random.default_rng(1))
    depths = data["depths"].copy()
    depths[0, 0, 0], depths[0, 0, 1], depths[0, 0, 2] = 0.0, np.nan, -1.0
    write_sequence(tmp_path / "seq", data["images"], depths, data["intrinsics"], data["camera_to_world"], dynamic=False)
    sequence = read_sequence(tmp_path / "seq")
    assert not (sequence.has_flow or sequence.has_backward_flow or sequence.has_masks or sequence.has_tracks)
    assert torch.equal(sequence.times, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    assert sequence.depth(0)[0, :3].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(FileExistsError, match="overwrite"):
        write_sequence(tmp_path / "seq", data["images"], depths, data["intrinsics"], data["camera_to_world"], False)


def test_sequence_reader_names_the_file_at_fault(tmp_path: Path):
    data = _random_sequence(np.random.default_rng(2))
    folder = write_sequence(tmp_path / "seq", **data)

    (folder / "depth" / "000001.npy").unlink()
    with pytest.raises(SequenceFormatError, match=r"depth/000001\.npy is missing"):
        read_sequence(folder)
    np.save(folder / "depth" / "000001.npy", np.ones((8, 9), np.float32))
    sequence = read_sequence(folder)  # counts are fine again; the wrong shape shows when the frame is loaded
    with pytest.raises(SequenceFormatError, match=r"000001\.npy: expected an array of shape \[8, 10\]"):
        sequence.depth(1)

    imageio.imwrite(folder / "images" / "000003.png", data["images"][0])
    with pytest.raises(SequenceFormatError, match=r"images/000003\.png.*frame indices 0…2"):
        read_sequence(folder)
    (folder / "images" / "000003.png").unlink()

    cameras = json.loads((folder / "cameras.json").read_text())
    cameras["frames"][2]["camera_to_world"][0][0] = 3.0
    (folder / "cameras.json").write_text(json.dumps(cameras))
    with pytest.raises(SequenceFormatError, match=r"cameras\.json frame 2 'camera_to_world' must be a rigid"):
        read_sequence(folder)
    cameras["frames"] = cameras["frames"][:2]
    (folder / "cameras.json").write_text(json.dumps(cameras))
    with pytest.raises(SequenceFormatError, match=r"images/000002\.png.*frame indices 0…1"):
        read_sequence(folder)

    (folder / "meta.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(SequenceFormatError, match=r"meta\.json: 'dynamic' must be"):
        read_sequence(folder)


# --- exported synthetic sequences and the pair dataset -------------------------------------------------------------


def _exported_scene(num_frames: int, seed: int, dynamic: bool = True):
    """The scene and left cameras that export_synthetic_sequence renders (same construction as generate_scene)."""
    rng = np.random.default_rng(seed)
    scene, spec = PRESETS["random"](rng)
    cameras, _ = stereo_rig(spec, num_frames, SIZE[1], SIZE[0], rng)
    if not dynamic:
        scene = frozen_scene(scene, 0.0)
    return scene, cameras


def _exact_targets(scene, cameras, a: int, b: int):
    last = len(cameras) - 1
    return render_view_targets(scene, cameras[a], a / last, cameras[b], b / last)


@pytest.fixture(scope="module")
def dynamic_export(tmp_path_factory) -> Path:
    return export_synthetic_sequence(tmp_path_factory.mktemp("export") / "dynamic", **EXPORT)


def _variant(source: Path, folder: Path, drop: tuple[str, ...]) -> Path:
    """A copy of a sequence folder without some optional parts."""
    shutil.copytree(source, folder)
    for name in drop:
        path = folder / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return folder


def test_exported_sequence_holds_the_exact_geometry(dynamic_export: Path):
    sequence = read_sequence(dynamic_export)
    scene, cameras = _exported_scene(EXPORT["num_frames"], EXPORT["seed"])
    assert sequence.dynamic and sequence.num_frames == 6 and sequence.image_size == SIZE
    for t in (0, 5):
        hits = cast_pixel_centres(scene, cameras[t], t / 5)
        assert torch.allclose(sequence.depth(t), hits.depth.reshape(SIZE), rtol=1e-6)
        c2w = sequence.camera_to_world[t].double()
        assert torch.allclose(c2w[:3, :3], torch.as_tensor(cameras[t].rotation).T, atol=1e-6)
        assert torch.allclose(c2w[:3, 3], torch.as_tensor(cameras[t].position), atol=1e-6)
    tracks = sequence.tracks()
    assert tracks.points_world.shape == (16 * 16, 6, 3) and tracks.visible[:, 0].all()


def test_pair_dataset_scene_flow_from_flow_and_depth_matches_the_exact_ground_truth(dynamic_export: Path, tmp_path):
    """Adjacent frames, flow + depth only (no masks, no tracks): P̄_vt = depth_j(p + flow)·K_j⁻¹(p + flow, 1).

    Tolerance: the flow and depth files are exact, so the only error is the interpolation of depth_j at the
    sub-pixel position p + flow. Inverse-depth interpolation is exact on planes (the table, walls, box faces: ~1e-6
    here); on the curved objects the interpolated depth lies between its four neighbours, which the edge test keeps
    within depth_edge_tolerance = 5 % of each other, so no accepted pixel can be off by more than about 5 % of its
    depth. Occluded pixels would break that bound (they get the occluder's depth); the strict forward–backward
    check for ground-truth flow removes them.
    The median must stay near float precision because most moving-pixel positions fall on planar faces or smooth
    regions."""
    folder = _variant(dynamic_export, tmp_path / "flow_only", ("masks", "tracks.npz"))
    dataset = SequencePairDataset([folder], image_size=SIZE, max_gap=1, depth_edge_tolerance=0.05)
    scene, cameras = _exported_scene(EXPORT["num_frames"], EXPORT["seed"])
    errors, coverage, wrong_visible, flow_errors = [], [], 0, []
    for index in range(len(dataset)):
        _, i, j = dataset.pair_frames(index)
        pair = dataset[index]
        for targets, (a, b) in ((pair.targets1, (i, j)), (pair.targets2, (j, i))):
            exact = _exact_targets(scene, cameras, a, b)
            known = targets.motion_valid
            depth = exact.points_other[..., 2].abs()
            errors.append(((targets.points_other - exact.points_other).norm(dim=-1) / depth)[known])
            coverage.append(known.float().mean())
            both = targets.flow_valid & exact.flow_valid
            flow_errors.append((targets.flow_target - exact.flow_target).norm(dim=-1)[both])
            wrong_visible += int((targets.flow_valid & ~exact.flow_valid).sum())
    errors = torch.cat(errors)
    assert torch.stack(coverage).mean() > 0.8
    assert errors.max() <= 0.05 * 1.3  # 5 % in depth, times the ray length |K⁻¹(q, 1)| < 1.3 at a 60° field of view
    assert errors.median() < 1e-4
    assert torch.cat(flow_errors).max() < 1e-3  # p̄_vt = p + flow is exact
    # The forward–backward check removes occluded pixels: hardly any flow target points at a hidden surface.
    assert wrong_visible < 0.005 * len(dataset) * 2 * SIZE[0] * SIZE[1]


def test_pair_dataset_rigid_and_track_targets_match_the_exact_ground_truth(dynamic_export: Path, tmp_path):
    """Masks give rigid P̄_vt = T̄·P̄ on static pixels (exact); frame-0 tracks start at pixel centres, so pairs (0, j)
    get exact P̄_vt and p̄_vt on the moving pixels the tracks cross."""
    folder = _variant(dynamic_export, tmp_path / "masks_tracks", ("flow", "flow_backward"))
    dataset = SequencePairDataset([folder], image_size=SIZE, max_gap=4)
    sequence = read_sequence(folder)
    scene, cameras = _exported_scene(EXPORT["num_frames"], EXPORT["seed"])
    track_pixels_used = 0
    for index in range(len(dataset)):
        _, i, j = dataset.pair_frames(index)
        if i != 0:
            continue
        pair = dataset[index]
        exact = _exact_targets(scene, cameras, 0, j)
        targets = pair.targets1
        static = ~sequence.mask(0)
        assert torch.equal(targets.motion_valid & static, static)
        scale = float(exact.points_other[..., 2].max())
        assert torch.allclose(targets.points_other[static], exact.points_other[static], atol=2e-5 * scale)
        tracked = targets.motion_valid & ~static
        track_pixels_used += int(tracked.sum())
        assert torch.allclose(targets.points_other[tracked], exact.points_other[tracked], atol=2e-5 * scale)
        both = targets.flow_valid & exact.flow_valid
        assert torch.allclose(targets.flow_target[both], exact.flow_target[both], atol=1e-3)
        # Occlusion test by frame j's depth: at most a few contour pixels claim a hidden point is visible.
        assert (targets.flow_valid & ~exact.flow_valid).sum() <= 0.005 * SIZE[0] * SIZE[1]
        assert (exact.flow_valid & ~targets.flow_valid & static).float().sum() < 0.1 * static.sum()
    assert track_pixels_used > 10


def test_static_sequence_pairs_follow_the_camera_at_every_gap(tmp_path: Path):
    folder = export_synthetic_sequence(
        tmp_path / "static", preset="random", seed=5, num_frames=4, image_size=SIZE, dynamic=False
    )
    sequence = read_sequence(folder)
    assert not sequence.dynamic and not sequence.has_masks
    dataset = SequencePairDataset([folder], image_size=SIZE, max_gap=3, min_gap=3)
    assert len(dataset) == 1 and dataset.pair_frames(0) == (0, 0, 3)
    pair = dataset[0]
    scene, cameras = _exported_scene(4, 5, dynamic=False)
    exact = _exact_targets(scene, cameras, 3, 0)
    targets = pair.targets2
    assert not pair.dynamic and targets.motion_valid.all()
    scale = float(exact.points_other[..., 2].max())
    assert torch.allclose(targets.points, exact.points, atol=1e-5 * scale)
    assert torch.allclose(targets.points_other, exact.points_other, atol=2e-5 * scale)
    assert torch.allclose(
        _transform(torch.linalg.inv(pair.pose_1to2), targets.points), targets.points_other, atol=2e-5 * scale
    )


def test_pair_dataset_resizes_with_consistent_intrinsics(dynamic_export: Path):
    """Crop-resizing 64×64 → 48×32 keeps every pixel's back-projection on its ray: P̄ projects to its pixel centre."""
    dataset = SequencePairDataset([dynamic_export], image_size=(32, 48), max_gap=2)
    pair = dataset[3]
    assert pair.image1.shape == (3, 32, 48) and pair.targets1.points.shape == (32, 48, 3)
    pixels, _ = project_pinhole(pair.targets1.points, pair.intrinsics1)
    valid = pair.targets1.valid
    assert torch.allclose(pixels[valid], pixel_grid(32, 48)[valid], atol=1e-3)
    assert pair.intrinsics1[0, 0] == pytest.approx(0.75 * read_sequence(dynamic_export).intrinsics[0, 0, 0].item())


def test_crop_resize_matches_the_pixel_grid_it_describes():
    resize = CropResize((30, 50), (32, 48))  # scale 32/30: resized to 32 × 53, then 2 columns cropped on the left
    assert resize.resized_size == (32, 53) and resize.offset == (2, 0)
    ids = torch.arange(30 * 50).reshape(30, 50)
    sampled = resize.nearest(ids)
    sx, sy = resize.scale
    centres = pixel_grid(32, 48, dtype=torch.float64)
    source_u = (centres[..., 0] + 2) / sx  # the continuous source position under each target pixel centre
    source_v = centres[..., 1] / sy
    expected = source_v.floor().long() * 50 + source_u.floor().long()
    assert torch.equal(sampled, expected)
    k = torch.tensor([[40.0, 0.0, 25.0], [0.0, 41.0, 15.0], [0.0, 0.0, 1.0]])
    point = torch.tensor([[0.3, -0.2, 2.0], [-0.5, 0.4, 3.0]])
    projected, _ = project_pinhole(point, k)
    projected_after, _ = project_pinhole(point, resize.intrinsics(k))
    assert torch.allclose(resize.pixels(projected), projected_after, atol=1e-5)


def test_frame_pair_index_enumerates_every_pair_once():
    index = FramePairIndex([5, 1, 7], min_gap=2, max_gap=3, owner="test")
    brute = [(v, i, j) for v, n in enumerate([5, 1, 7]) for i in range(n) for j in range(n) if 2 <= j - i <= 3]
    assert [index[k] for k in range(len(index))] == brute
    with pytest.raises(IndexError):
        index[len(index)]
    with pytest.raises(ValueError, match="no frame pairs"):
        FramePairIndex([2], min_gap=2, max_gap=3, owner="test")


def test_inverse_depth_interpolation_is_exact_on_a_plane_and_refuses_edges():
    k_inverse = torch.linalg.inv(torch.tensor([[30.0, 0.0, 16.0], [0.0, 30.0, 12.0], [0.0, 0.0, 1.0]]))
    normal, offset = torch.tensor([0.2, -0.5, 1.0]), 2.0  # plane n·X = offset, z-depth = offset / (n·K⁻¹(u, v, 1))

    def rays(uv: torch.Tensor) -> torch.Tensor:
        return torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1) @ k_inverse.T

    depth = offset / (rays(pixel_grid(24, 32)) @ normal)
    query = torch.rand(200, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([31.0, 23.0]) + 0.5
    interpolated, ok = interpolate_depth(depth, query, edge_tolerance=0.5)
    assert ok.all()
    assert torch.allclose(interpolated, offset / (rays(query) @ normal), rtol=1e-5)
    stepped = depth.clone()
    stepped[:, 16:] *= 1.5
    _, ok = interpolate_depth(stepped, torch.tensor([[16.0, 10.5], [10.0, 10.5], [0.2, 3.0]]), edge_tolerance=0.05)
    assert ok.tolist() == [False, True, False]  # straddles the step; smooth; outside the pixel centres


def test_forward_backward_check_accepts_inverse_motion_only():
    forward = torch.zeros(16, 16, 2)
    forward[..., 0] = 2.0
    backward = -forward
    assert forward_backward_consistent(forward, backward).all()
    backward[:, 8:] = 0.0  # the second image's right half did not come from the first image (e.g. occlusion)
    consistent = forward_backward_consistent(forward, backward)
    # Pixel u lands on u + 2: columns 0–5 land on the left half (b = −f), columns 6+ on the right half (b = 0).
    assert consistent[:, :6].all() and not consistent[:, 6:].any()
    backward[0, 2, 0] = float("nan")  # unknown backward flow where pixel (0, 0) lands
    assert not forward_backward_consistent(forward, backward)[0, 0]
    # A 0.4 px disagreement fails the strict check for ground-truth flow and passes Sundaram's default.
    backward = -forward + torch.tensor([0.4, 0.0])
    assert forward_backward_consistent(forward, backward)[:, :13].all()
    assert not forward_backward_consistent(forward, backward, relative=0.01, absolute=0.05).any()


# --- collation ----------------------------------------------------------------------------------------------------


def test_collate_makes_a_pair_batch_from_mixed_sources(dynamic_export: Path):
    synthetic = SyntheticPairDataset(SyntheticPairSource(supersample=1), length=2, first_seed=100)
    sequences = SequencePairDataset([dynamic_export], image_size=SIZE, max_gap=2)
    items = [synthetic[0], synthetic[1], sequences[0]]
    batch = collate_pairs(items)
    assert isinstance(batch, PairBatch) and isinstance(batch.targets1, ViewTargets)
    assert batch.image1.shape == (3, 3, 64, 64) and batch.image2.shape == (3, 3, 64, 64)
    assert batch.image1.min() >= -1.0 and batch.image1.max() <= 1.0 and batch.image1.min() < -0.5
    assert torch.allclose(batch.image2[2], items[2].image2 * 2 - 1)
    assert batch.intrinsics1.shape == (3, 3, 3) and batch.pose_1to2.shape == (3, 4, 4)
    assert batch.dynamic.dtype == torch.bool and batch.dynamic[2]
    for targets in (batch.targets1, batch.targets2):
        assert targets.points.shape == (3, 64, 64, 3) and targets.flow_target.shape == (3, 64, 64, 2)
        assert targets.valid.dtype == torch.bool and targets.valid.shape == (3, 64, 64)
    assert torch.equal(batch.targets2.points[0], items[0].targets2.points)
    with pytest.raises(ValueError, match="different image sizes"):
        collate_pairs([synthetic[0], SequencePairDataset([dynamic_export], image_size=(32, 32), max_gap=1)[0]])


# --- unlabeled video pairs ----------------------------------------------------------------------------------------


def _moving_texture_frames(count: int, height: int = 64, width: int = 80, step: int = 2) -> list[np.ndarray]:
    """A smooth random texture sliding left by ``step`` pixels per frame (content flow u = −step)."""
    import cv2

    coarse = np.random.default_rng(0).random((24, 40, 3))
    texture = (np.clip(cv2.resize(coarse, (400, 240), interpolation=cv2.INTER_CUBIC), 0, 1) * 255).astype(np.uint8)
    return [texture[50 : 50 + height, 100 + step * t : 100 + step * t + width] for t in range(count)]


def test_video_pairs_from_an_mp4_get_consistent_flow_targets(tmp_path: Path):
    video = tmp_path / "clip.mp4"
    imageio.mimwrite(video, _moving_texture_frames(5), fps=10, macro_block_size=16, quality=9)
    dataset = VideoPairDataset([video], image_size=SIZE, max_gap=2)
    assert len(dataset) == 4 + 3
    for index in (0, 1):
        _, i, j = dataset.pairs[index]
        pair = dataset[index]
        shift = 2.0 * (j - i)
        for targets, sign in ((pair.targets1, -1.0), (pair.targets2, 1.0)):
            assert not targets.valid.any() and not targets.motion_valid.any()
            assert (targets.points == 0).all() and (targets.points_other == 0).all()
            flow = targets.flow_target - pixel_grid(64, 64)
            error = (flow - torch.tensor([sign * shift, 0.0])).norm(dim=-1)[targets.flow_valid]
            assert targets.flow_valid.float().mean() > 0.8
            assert error.median() < 0.1 and error.max() < 1.5
        # Content leaves the image on the left in the forward direction and enters from the right.
        assert not pair.targets1.flow_valid[:, : int(shift) - 1].any()
        assert not pair.targets2.flow_valid[:, 64 - int(shift) + 1 :].any()
    assert torch.equal(pair.pose_1to2, torch.eye(4)) and pair.dynamic


def test_video_pairs_read_frame_folders(tmp_path: Path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(_moving_texture_frames(3, height=96, width=96, step=3)):
        imageio.imwrite(folder / f"frame_{t:03d}.png", frame)
    dataset = VideoPairDataset([folder], image_size=(48, 48), max_gap=1)
    pair = dataset[1]
    assert pair.image1.shape == (3, 48, 48)
    flow = pair.targets1.flow_target - pixel_grid(48, 48)
    # 96 → 48 halves the 3-pixel motion.
    assert torch.allclose(flow[pair.targets1.flow_valid].median(dim=0).values, torch.tensor([-1.5, 0.0]), atol=0.1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VideoPairDataset([tmp_path / "nowhere.mp4"], image_size=(48, 48))
