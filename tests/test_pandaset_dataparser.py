"""Tests of the pandaset-data dataparser on tiny logs written by ``tests/pandaset_fixture.py`` and, when present,
on the real PandaSet clip ``../shared/data/pandaset/002`` (override with ``FOURD_PANDASET_002``)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import threading
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import pandaset_fixture as pf
from fourd_ns.dataparsers.pandaset_dataparser import (
    FALLBACK_METRES_PER_UNIT,
    PandaSetDataError,
    PandaSetDataParserConfig,
)
from fourd_ns.dataparsers.time_axis import TimeAxis, get_time_axis
from fourd_ns.sensors.driving_metadata import DrivingMetadata, get_driving_metadata

REAL_CLIP = Path(
    os.environ.get("FOURD_PANDASET_002", Path(__file__).resolve().parents[2] / "shared" / "data" / "pandaset" / "002")
)


def parse(root: Path, split: str = "train", **options):
    return PandaSetDataParserConfig(data=root, **options).setup().get_dataparser_outputs(split=split)


def both_splits(root: Path, **options):
    parser = PandaSetDataParserConfig(data=root, **options).setup()
    return parser.get_dataparser_outputs(split="train"), parser.get_dataparser_outputs(split="test")


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> pf.PandaSetFixture:
    return pf.write_pandaset_log(tmp_path_factory.mktemp("pandaset") / "001")


@pytest.fixture(scope="module")
def log16(tmp_path_factory) -> pf.PandaSetFixture:
    return pf.write_pandaset_log(tmp_path_factory.mktemp("pandaset16") / "016", num_frames=16)


TWO_CAMERAS = dict(cameras=("front", "front_left_camera"), downscale_factor=2)


@pytest.fixture(scope="module")
def outputs(log):
    """(train, eval) outputs of the whole 6-frame fixture with both cameras at downscale 2."""
    return both_splits(log.root, **TWO_CAMERAS)


def to_output(outputs, points_log: np.ndarray) -> np.ndarray:
    """Log-world points [P, 3] -> the parser's output world via dataparser_transform / dataparser_scale."""
    transform = outputs.dataparser_transform.double().numpy()
    return (points_log @ transform[:, :3].T + transform[:, 3]) * outputs.dataparser_scale


def box_mean(image: np.ndarray, factor: int) -> np.ndarray:
    height, width = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[: height * factor, : width * factor].reshape(height, factor, width, factor, -1).astype(np.int64)
    return ((blocks.sum(axis=(1, 3)) + factor * factor // 2) // (factor * factor)).astype(np.uint8)


def project(outputs, index: int, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Pixels [P, 2] and depths [P] of output-world points in image ``index`` through the nerfstudio camera (OpenGL)."""
    cameras = outputs.cameras
    c2w = cameras.camera_to_worlds[index].double().numpy()
    local = (points - c2w[:, 3]) @ c2w[:, :3]
    depth = -local[:, 2]
    u = cameras.fx[index].item() * local[:, 0] / depth + cameras.cx[index].item()
    v = cameras.fy[index].item() * -local[:, 1] / depth + cameras.cy[index].item()
    return np.stack([u, v], axis=1), depth


def test_cameras_project_log_points_like_the_raw_pandaset_camera(log, outputs):
    train, _ = outputs
    assert train.cameras.width.flatten().tolist() == [pf.WIDTH // 2] * 6
    assert train.cameras.height.flatten().tolist() == [pf.HEIGHT // 2] * 6
    rng = np.random.default_rng(0)
    for index, (camera_id, frame) in enumerate(zip(train.metadata["camera_ids"], train.metadata["frame_indices"])):
        camera = pf.CAMERAS[int(camera_id)]
        assert train.image_filenames[index] == log.camera_folder(camera) / f"{int(frame):02d}.jpg"
        # Raw PandaSet camera model from the files: OpenCV pinhole, intrinsics at full resolution.
        pose = pf.camera_pose(camera, int(frame))
        intrinsics = json.loads((log.camera_folder(camera) / "intrinsics.json").read_text())
        local = np.stack([rng.uniform(-3, 3, 50), rng.uniform(-2, 2, 50), rng.uniform(2, 30, 50)], axis=1)
        points_log = local @ pose[:3, :3].T + pose[:3, 3]
        raw = np.stack(
            [
                (intrinsics["fx"] * local[:, 0] / local[:, 2] + intrinsics["cx"]) / 2,
                (intrinsics["fy"] * local[:, 1] / local[:, 2] + intrinsics["cy"]) / 2,
            ],
            axis=1,
        )
        pixels, depth = project(train, index, to_output(train, points_log))
        np.testing.assert_allclose(pixels, raw, atol=2e-3)
        np.testing.assert_allclose(depth * train.dataparser_scale**-1, local[:, 2], rtol=1e-4)
        # nerfstudio's own ray through that pixel passes through the point.
        rays = train.cameras.generate_rays(
            camera_indices=torch.full((5, 1), index), coords=torch.from_numpy(raw[:5, ::-1].copy()).float()
        )
        target = torch.from_numpy(to_output(train, points_log[:5])).float()
        offset = target - rays.origins
        along = (offset * rays.directions).sum(-1, keepdim=True)
        assert torch.allclose(rays.origins + along * rays.directions, target, atol=1e-4)


def test_times_are_normalised_over_every_selected_camera_of_the_clip(log, outputs):
    train, evaluation = outputs
    stamps = np.array([[pf.camera_time(c, f) for c in pf.CAMERAS] for f in range(log.num_frames)])
    offset, span = stamps.min(), stamps.max() - stamps.min()
    axis = get_time_axis(train.metadata)
    assert train.metadata["time_offset"] == pytest.approx(offset) and axis.duration_seconds == pytest.approx(span)
    # one frame step = one camera's frame period in normalised time (both cameras run at FRAME_PERIOD)
    assert axis.num_frames == log.num_frames and axis.frame_step == pytest.approx(pf.FRAME_PERIOD / span)
    for out in (train, evaluation):
        expected = [
            (pf.camera_time(pf.CAMERAS[int(c)], int(f)) - offset) / span
            for c, f in zip(out.metadata["camera_ids"], out.metadata["frame_indices"])
        ]
        np.testing.assert_allclose(out.cameras.times.flatten().numpy(), expected, atol=1e-6)
    every = torch.cat([train.cameras.times, evaluation.cameras.times])
    assert every.min().item() == pytest.approx(0.0) and every.max().item() == pytest.approx(1.0)
    driving = get_driving_metadata(train.metadata)
    sweep_times = [(pf.lidar_time(f) - offset) / span for f in range(6)]
    np.testing.assert_allclose(driving.lidar.sweep_times, sweep_times, atol=1e-6)
    np.testing.assert_allclose(driving.lidar.point_times, driving.lidar.point_seconds / span, atol=1e-6)
    for track in driving.actors:
        np.testing.assert_allclose(track.times, driving.lidar.sweep_times[track.frame_indices], atol=1e-6)


def test_every_other_split_and_frame_range(log, outputs):
    train, evaluation = outputs
    assert train.metadata["frame_indices"].tolist() == [0, 0, 2, 2, 4, 4]
    assert evaluation.metadata["frame_indices"].tolist() == [1, 1, 3, 3, 5, 5]
    assert train.metadata["camera_ids"].tolist() == [0, 1] * 3
    train, evaluation = both_splits(log.root, start_frame=1, num_frames=4, load_lidar=False, load_cuboids=False)
    assert train.metadata["frame_indices"].tolist() == [1, 3]
    assert evaluation.metadata["frame_indices"].tolist() == [2, 4]
    train, evaluation = both_splits(log.root, split_mode="all", load_lidar=False, load_cuboids=False)
    assert train.metadata["frame_indices"].tolist() == evaluation.metadata["frame_indices"].tolist() == list(range(6))
    single = parse(log.root, start_frame=2, num_frames=1, split_mode="all", load_lidar=False, load_cuboids=False)
    assert get_time_axis(single.metadata) == TimeAxis(num_frames=1, frame_step=1.0, duration_seconds=0.0)
    assert single.cameras.times.flatten().tolist() == [0.0]


@pytest.mark.parametrize(
    "mode, expected_eval", [("flux4d-interpolation", [1, 3, 5, 7, 9]), ("flux4d-future", [11, 12, 13, 14, 15])]
)
def test_flux4d_splits_on_a_16_frame_clip(log16, mode, expected_eval):
    train, evaluation = both_splits(log16.root, split_mode=mode, load_cuboids=False)
    assert train.metadata["frame_indices"].tolist() == [0, 2, 4, 6, 8, 10]
    assert evaluation.metadata["frame_indices"].tolist() == expected_eval
    # LiDAR covers every clip frame; each image points at its own frame's sweep.
    lidar = get_driving_metadata(train.metadata).lidar
    assert lidar.frame_indices.tolist() == list(range(16))
    for out in (train, evaluation):
        assert (lidar.frame_indices[out.metadata["lidar_sweep_index"]] == out.metadata["frame_indices"].numpy()).all()


def test_flux4d_needs_16_frames(log, log16):
    with pytest.raises(PandaSetDataError, match=r"16-frame clip.*has 6 frames") as error:
        parse(log.root, split_mode="flux4d-interpolation")
    assert str(log.root) in str(error.value)
    with pytest.raises(PandaSetDataError, match="start_frame <= 0"):
        parse(log16.root, split_mode="flux4d-future", start_frame=1)
    with pytest.raises(PandaSetDataError, match="num_frames"):
        parse(log16.root, split_mode="flux4d-future", num_frames=12)


def test_world_is_centred_on_the_clip_lidar_with_x_along_the_front_camera(log):
    for start in (0, 2):
        out = parse(log.root, start_frame=start, num_frames=3, load_cuboids=False)
        frames = range(start, start + 3)
        mean_lidar = np.mean([pf.lidar_pose(f)[:3, 3] for f in frames], axis=0)
        np.testing.assert_allclose(to_output(out, mean_lidar[None])[0], 0.0, atol=1e-6)
        rotation = out.dataparser_transform[:, :3].double().numpy()
        np.testing.assert_allclose(rotation @ [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], atol=1e-9)
        view = rotation @ pf.camera_pose("front_camera", start)[:3, 2]
        assert view[0] > 0 and abs(view[1]) < 1e-6
        # The nerfstudio camera (OpenGL: looks along -z) agrees.
        looks = -out.cameras.camera_to_worlds[0, :, 2].double().numpy()
        assert looks[0] > 0 and abs(looks[1]) < 1e-5
        driving = get_driving_metadata(out.metadata)
        np.testing.assert_allclose(driving.world_from_log[:3], out.dataparser_transform.double().numpy(), atol=1e-6)
        assert driving.metres_per_unit == pytest.approx(1.0 / out.dataparser_scale)
        assert driving.lidar.metres_per_unit == pytest.approx(driving.metres_per_unit)
        sensors = to_output(out, np.stack([pf.lidar_pose(f)[:3, 3] for f in frames]))
        np.testing.assert_allclose(driving.lidar.lidar_to_worlds[:, :, 3], sensors, atol=1e-5)


def test_front_camera_sets_the_heading_even_when_not_loaded(log):
    out = parse(log.root, cameras=("front_left",), load_lidar=False, load_cuboids=False)
    view = out.dataparser_transform[:, :3].double().numpy() @ pf.camera_pose("front_camera", 0)[:3, 2]
    assert view[0] > 0 and abs(view[1]) < 1e-6
    assert out.image_filenames[0].parent.name == "front_left_camera"


def test_uncompressed_kaggle_pickles_are_read(log, tmp_path):
    copy = pf.copy_of(log, tmp_path / "kaggle")
    for folder in (copy.root / "lidar", copy.root / "annotations" / "cuboids"):
        for path in folder.glob("*.pkl.gz"):
            pd.read_pickle(path).to_pickle(folder / path.name.replace(".pkl.gz", ".pkl"), compression=None)
            path.unlink()
    original, kaggle = parse(log.root, metres_per_unit=1.0), parse(copy.root, metres_per_unit=1.0)
    np.testing.assert_array_equal(kaggle.metadata["driving"].lidar.points, original.metadata["driving"].lidar.points)
    assert len(kaggle.metadata["driving"].actors) == 3


def test_auto_and_explicit_scale(log):
    out = parse(log.root, load_cuboids=False)
    seeds = out.metadata["points3D_xyz"].double().numpy()
    assert np.percentile(np.hypot(seeds[:, 0], seeds[:, 1]), 97) == pytest.approx(1.0, rel=1e-4)
    out = parse(log.root, load_cuboids=False, metres_per_unit=7.5)
    assert out.dataparser_scale == pytest.approx(1 / 7.5)
    assert get_driving_metadata(out.metadata).metres_per_unit == 7.5
    out = parse(log.root, load_lidar=False)
    assert out.dataparser_scale == pytest.approx(1 / FALLBACK_METRES_PER_UNIT)


def test_actors_are_grouped_by_uuid_with_pandaset_yaw(log, outputs):
    driving = get_driving_metadata(outputs[0].metadata)
    mpu = driving.metres_per_unit
    tracks = {track.track_id: track for track in driving.actors}
    assert sorted(tracks) == sorted([pf.MOVING_CAR["uuid"], pf.PARKED_CAR["uuid"], pf.WALKER["uuid"]])
    moving = tracks[pf.MOVING_CAR["uuid"]]
    assert moving.frame_indices.tolist() == list(range(6)) and moving.poses.shape == (6, 4, 4)
    # The front-LiDAR duplicate (cuboids.sensor_id 1) is dropped: centres are those of the Pandar64 boxes.
    centres = np.stack([pf.actor_position(pf.MOVING_CAR, f) for f in range(6)])
    np.testing.assert_allclose(moving.poses[:, :3, 3], to_output(outputs[0], centres), atol=1e-5)
    # The box moves along its own +x (its heading), which stays horizontal; z stays up.
    travel = np.diff(moving.poses[:, :3, 3], axis=0)
    travel /= np.linalg.norm(travel, axis=1, keepdims=True)
    np.testing.assert_allclose(travel, moving.poses[:-1, :3, 0], atol=1e-4)
    np.testing.assert_allclose(moving.poses[:, :3, 2], np.tile([0.0, 0.0, 1.0], (6, 1)), atol=1e-6)
    np.testing.assert_allclose(moving.size_wlh * mpu, pf.MOVING_CAR["dims"], rtol=1e-5)
    assert not moving.stationary and not moving.deformable and moving.label == "Car"
    assert tracks[pf.PARKED_CAR["uuid"]].stationary
    walker = tracks[pf.WALKER["uuid"]]
    assert walker.deformable and not walker.stationary
    assert driving.actors_at(3) and all(k == 3 for _, k in driving.actors_at(3))


def sweep_points(lidar, index: int) -> np.ndarray:
    return lidar.points[lidar.sweep_slice(index)].astype(np.float64)


@pytest.mark.parametrize(
    "options, groups",
    [
        ({}, ["scene"]),
        ({"lidar_sensors": ("pandar64", "pandargt")}, ["scene", "gt"]),
        ({"lidar_sensors": ("pandargt",)}, ["gt"]),
        ({"max_lidar_range": 150.0}, ["scene", "far"]),
        ({"ego_box_half_size": (0.0, 0.0, 0.0)}, ["scene", "ego"]),
    ],
)
def test_lidar_sensor_range_and_ego_filters(log, options, groups):
    out = parse(log.root, load_cuboids=False, metres_per_unit=1.0, **options)
    lidar = get_driving_metadata(out.metadata).lidar
    assert len(lidar) == log.num_frames and lidar.frame_indices.tolist() == list(range(6))
    sizes = pf.group_sizes()
    for frame in range(log.num_frames):
        raw = pf.lidar_dataframe(frame)
        starts = np.cumsum([0] + list(sizes.values()))
        keep = np.concatenate(
            [np.arange(starts[i], starts[i + 1]) for i, name in enumerate(sizes) if name in groups]
        )
        expected = to_output(out, raw[["x", "y", "z"]].to_numpy()[keep])
        np.testing.assert_allclose(sweep_points(lidar, frame), expected, atol=1e-4)
        part = lidar.sweep_slice(frame)
        np.testing.assert_array_equal(lidar.intensity[part], raw["i"].to_numpy()[keep].astype(np.uint8))
        np.testing.assert_array_equal(lidar.sensor[part], raw["d"].to_numpy()[keep])
        np.testing.assert_allclose(
            lidar.point_seconds[part], raw["t"].to_numpy()[keep] - out.metadata["time_offset"], atol=1e-5
        )


def test_default_filters_leave_no_ego_or_distant_points(log, outputs):
    lidar = get_driving_metadata(outputs[0].metadata).lidar
    mpu = lidar.metres_per_unit
    for index in range(len(lidar)):
        pose = lidar.lidar_to_worlds[index].astype(np.float64)
        local = (sweep_points(lidar, index) - pose[:, 3]) @ pose[:, :3] * mpu
        assert np.linalg.norm(local, axis=1).max() <= 80.0 + 1e-3
        assert not np.all(np.abs(local) < [1.0, 2.0, 2.0], axis=1).any()
        assert (lidar.sensor[lidar.sweep_slice(index)] == 0).all()


def downscaled_image(path: Path, factor: int) -> np.ndarray:
    return box_mean(np.asarray(Image.open(path).convert("RGB")), factor)


def test_seed_points_come_from_training_frames_and_carry_the_pixel_they_project_to(log):
    factor = 2
    train = parse(log.root, load_cuboids=False, seed_voxel_size=0.0, **{**TWO_CAMERAS, "downscale_factor": factor})
    seeds = train.metadata["points3D_xyz"].double().numpy()
    colours = train.metadata["points3D_rgb"].numpy()
    assert train.metadata["points3D_xyz"].dtype == torch.float32 and colours.dtype == np.uint8
    # Only scene points (the default filters) of training frames 0, 2, 4, and only those a training camera sees.
    candidates = {
        frame: to_output(train, pf.lidar_dataframe(frame)[["x", "y", "z"]].to_numpy()[: pf.NUM_SCENE])
        for frame in range(log.num_frames)
    }
    owner = np.full(len(seeds), -1)
    for frame, points in candidates.items():
        distance = np.linalg.norm(seeds[:, None] - points[None], axis=-1).min(axis=1)
        owner[distance < 1e-5] = frame
    assert set(owner.tolist()) == {0, 2, 4}
    images = {
        index: downscaled_image(path, factor) for index, path in enumerate(train.image_filenames)
    }
    seen_total = 0
    for frame in (0, 2, 4):
        rows = [i for i, f in enumerate(train.metadata["frame_indices"].tolist()) if f == frame]
        unseen = np.ones(pf.NUM_SCENE, dtype=bool)
        expected = np.zeros((pf.NUM_SCENE, 3), dtype=np.uint8)
        for row in rows:  # first camera that sees a point gives its colour
            pixels, depth = project(train, row, candidates[frame])
            columns, lines = np.floor(pixels[:, 0]).astype(int), np.floor(pixels[:, 1]).astype(int)
            height, width = images[row].shape[:2]
            visible = unseen & (depth > 0) & (columns >= 0) & (columns < width) & (lines >= 0) & (lines < height)
            expected[visible] = images[row][lines[visible], columns[visible]]
            unseen &= ~visible
        mine = seeds[owner == frame]
        assert len(mine) == (~unseen).sum()
        match = np.linalg.norm(mine[:, None] - candidates[frame][None], axis=-1).argmin(axis=1)
        assert not unseen[match].any()
        np.testing.assert_array_equal(colours[owner == frame], expected[match])
        seen_total += len(mine)
    assert seen_total == len(seeds) > 50


def test_seed_point_options(log):
    everything = parse(log.root, load_cuboids=False, seed_voxel_size=0.0, seed_points_in_view_only=False)
    in_view = parse(log.root, load_cuboids=False, seed_voxel_size=0.0)
    assert len(everything.metadata["points3D_xyz"]) == 3 * pf.NUM_SCENE > len(in_view.metadata["points3D_xyz"])
    grey = (everything.metadata["points3D_rgb"] == 128).all(dim=1)
    assert grey.sum() >= 3 * pf.NUM_SCENE - len(in_view.metadata["points3D_xyz"])
    coarse = parse(
        log.root, load_cuboids=False, seed_points_in_view_only=False, seed_voxel_size=5.0, metres_per_unit=1.0
    )
    voxels = np.floor(coarse.metadata["points3D_xyz"].double().numpy() / 5.0).astype(int)
    assert len(np.unique(voxels, axis=0)) == len(voxels) < 3 * pf.NUM_SCENE
    capped = [parse(log.root, load_cuboids=False, max_seed_points=40).metadata["points3D_xyz"] for _ in range(2)]
    assert len(capped[0]) == 40 and torch.equal(capped[0], capped[1])


def test_metadata_contract(log, outputs):
    train, evaluation = outputs
    for out in (train, evaluation):
        metadata = out.metadata
        driving = metadata["driving"]
        assert isinstance(driving, DrivingMetadata) and get_driving_metadata(metadata) is driving
        assert driving.camera_names == pf.CAMERAS and not driving.synthetic
        assert driving.source == str(log.root)
        count = len(out.image_filenames)
        for key in ("camera_ids", "frame_indices", "lidar_sweep_index"):
            assert metadata[key].dtype == torch.int64 and metadata[key].shape == (count,)
        assert metadata["image_downscale_factor"] == 2
        assert (driving.lidar.frame_indices[metadata["lidar_sweep_index"]] == metadata["frame_indices"].numpy()).all()
        assert driving.time_offset == metadata["time_offset"]
        assert driving.time_span == get_time_axis(metadata).duration_seconds
        assert out.cameras.camera_type.unique().tolist() == [1]  # CameraType.PERSPECTIVE
        aabb = out.scene_box.aabb
        inside = torch.cat([metadata["points3D_xyz"], out.cameras.camera_to_worlds[:, :, 3]])
        assert ((inside >= aabb[0]) & (inside <= aabb[1])).all()
    assert train.metadata["driving"] is evaluation.metadata["driving"]  # one load for both splits
    without = parse(log.root, load_lidar=False, load_cuboids=False)
    assert "points3D_xyz" not in without.metadata and without.metadata["driving"].lidar is None
    assert (without.metadata["lidar_sweep_index"] == -1).all() and without.metadata["driving"].actors == []


def test_synthetic_marker_is_reported(tmp_path):
    synthetic = pf.write_pandaset_log(tmp_path / "synthetic", num_frames=2, synthetic=True)
    assert parse(synthetic.root, load_lidar=False, load_cuboids=False).metadata["driving"].synthetic


def listing(root: Path) -> Dict[str, Tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_nothing_is_written_into_the_log(tmp_path):
    log = pf.write_pandaset_log(tmp_path / "log", num_frames=4)
    before = listing(tmp_path)
    both_splits(log.root, **TWO_CAMERAS)
    both_splits(log.root, cameras=("front",), split_mode="all", downscale_factor=4)
    assert listing(tmp_path) == before


# ---------------------------------------------------------------------------------------------------------------
# Bad inputs: each raises PandaSetDataError naming the offending path or setting.


def rewrite_json(path: Path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def drop_key(entries, index, key):
    del entries[index]["heading"][key]
    return entries


BREAKAGES = {
    "missing image": (
        lambda r: (r / "camera/front_camera/03.jpg").unlink(),
        ["missing image", "camera/front_camera/03.jpg", "5 images (NN.jpg) but 6 entries"],
    ),
    "missing lidar": (lambda r: (r / "lidar/02.pkl.gz").unlink(), ["lidar/02.pkl.gz", "load_lidar"]),
    "missing cuboids": (lambda r: (r / "annotations/cuboids/04.pkl.gz").unlink(), ["annotations/cuboids/04.pkl.gz"]),
    "count mismatch": (
        lambda r: rewrite_json(r / "camera/front_camera/timestamps.json", lambda t: t[:5]),
        ["camera/front_camera", "poses.json has 6 entries but timestamps.json has 5"],
    ),
    "lidar count mismatch": (
        lambda r: rewrite_json(r / "lidar/poses.json", lambda p: p[:5]),
        ["lidar/poses.json", "has 5"],
    ),
    "bad pose field": (
        lambda r: rewrite_json(r / "camera/front_camera/poses.json", lambda p: drop_key(p, 2, "w")),
        ["camera/front_camera/poses.json", "entry 2"],
    ),
    "bad intrinsics": (
        lambda r: rewrite_json(r / "camera/front_camera/intrinsics.json", lambda i: {"fx": i["fx"], "cx": 1, "cy": 1}),
        ["camera/front_camera/intrinsics.json", "fy"],
    ),
    "malformed json": (
        lambda r: (r / "lidar/timestamps.json").write_text("[1.0, 2.0,"),
        ["Malformed JSON", "lidar/timestamps.json"],
    ),
    "image size": (
        lambda r: Image.new("RGB", (60, 36)).save(r / "camera/front_camera/02.jpg"),
        ["camera/front_camera/02.jpg", "60x36"],
    ),
    "lidar columns": (
        lambda r: pf.lidar_dataframe(1).drop(columns=["d"]).to_pickle(r / "lidar/01.pkl.gz"),
        ["lidar/01.pkl.gz", "lacks column(s) d"],
    ),
    "cuboid not a dataframe": (
        lambda r: pd.Series([1, 2]).to_pickle(r / "annotations/cuboids/00.pkl.gz"),
        ["annotations/cuboids/00.pkl.gz", "not a pandas DataFrame"],
    ),
    "two problems at once": (
        lambda r: ((r / "camera/front_camera/01.jpg").unlink(), (r / "lidar/05.pkl.gz").unlink()),
        ["camera/front_camera/01.jpg", "lidar/05.pkl.gz"],
    ),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> pf.PandaSetFixture:
    return pf.write_pandaset_log(tmp_path_factory.mktemp("pristine") / "log")


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_broken_logs_raise_errors_naming_the_file(pristine, tmp_path, name):
    breakage, fragments = BREAKAGES[name]
    broken = pf.copy_of(pristine, tmp_path / "log")
    breakage(broken.root)
    with pytest.raises(PandaSetDataError) as error:
        parse(broken.root)
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, message


def test_an_error_while_reading_frames_leaves_no_live_progress_bar(pristine, tmp_path):
    """A bad frame must not leave a live rich display (and its refresh thread) behind: rich's ``track`` generator,
    abandoned by the exception, was closed later by the garbage collector and once deadlocked the next parse."""
    from nerfstudio.utils.rich_utils import CONSOLE
    from rich.live import _RefreshThread
    from rich.progress import _TrackThread

    broken = pf.copy_of(pristine, tmp_path / "log")
    BREAKAGES["lidar columns"][0](broken.root)

    def rich_threads() -> dict:
        return {t.ident: t for t in threading.enumerate() if isinstance(t, (_RefreshThread, _TrackThread)) and t.is_alive()}

    live_before, rich_threads_before = list(CONSOLE._live_stack), rich_threads()
    with pytest.raises(PandaSetDataError):
        parse(broken.root)
    assert CONSOLE._live_stack == live_before
    # rich's Live.stop() only signals its refresh thread, which ends at its next wake-up (1/refresh_per_second s):
    # give a stopped display's thread a few seconds; a leaked display's thread never ends.
    for ident, thread in rich_threads().items():
        if ident not in rich_threads_before:
            thread.join(timeout=5.0)
    assert rich_threads().keys() <= rich_threads_before.keys()  # other libraries' threads may start; rich's must not
    assert parse(pristine.root).cameras.shape[0] > 0  # the next parse runs (it hung before)


def test_bad_settings_raise_clear_errors(log, tmp_path):
    with pytest.raises(PandaSetDataError, match=f"{tmp_path / 'nowhere'}.*does not exist"):
        parse(tmp_path / "nowhere")
    with pytest.raises(PandaSetDataError, match="Unknown PandaSet camera 'fronte'.*front_left"):
        parse(log.root, cameras=("fronte",))
    with pytest.raises(PandaSetDataError) as error:
        parse(log.root, cameras=("front", "back"))
    assert str(log.root / "camera" / "back_camera") in str(error.value)
    assert "front_camera, front_left_camera" in str(error.value)
    with pytest.raises(PandaSetDataError, match=r"Frames 4\.\.8 .* has 6 frames") as error:
        parse(log.root, start_frame=4, num_frames=5)
    assert str(log.root) in str(error.value)
    with pytest.raises(PandaSetDataError, match="downscale_factor"):
        parse(log.root, downscale_factor=0)
    with pytest.raises(PandaSetDataError, match="downscale_factor 128 leaves no pixel"):
        parse(log.root, downscale_factor=128)
    with pytest.raises(PandaSetDataError, match="'test' split is empty"):
        parse(log.root, split="test", num_frames=1, load_lidar=False)


def test_dataparser_is_discovered_when_installed():
    names = {ep.name for ep in importlib.metadata.entry_points(group="nerfstudio.dataparser_configs")}
    if "pandaset-data" not in names:
        pytest.skip("fourd_ns is not installed (pip install -e .): no 'pandaset-data' entry point to discover")
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    dataparsers, descriptions = discover_dataparsers()
    assert isinstance(dataparsers["pandaset-data"], PandaSetDataParserConfig)
    assert "PandaSet" in descriptions["pandaset-data"]
    from nerfstudio.configs.dataparser_configs import all_dataparsers  # the union ns-train offers

    assert isinstance(all_dataparsers["pandaset-data"], PandaSetDataParserConfig)


# ---------------------------------------------------------------------------------------------------------------
# The real clip (PandaSet 002, frames 00-23), when available.

real = pytest.mark.skipif(
    not (REAL_CLIP / "camera" / "front_camera").is_dir(),
    reason=f"real PandaSet clip not found at {REAL_CLIP} (set FOURD_PANDASET_002 to a PandaSet sequence folder)",
)


@pytest.fixture(scope="module")
def real_clip():
    return both_splits(REAL_CLIP, num_frames=6, downscale_factor=8)


@real
def test_real_clip_cameras_lidar_and_seeds(real_clip):
    train, evaluation = real_clip
    assert len(train.image_filenames) == 3 and len(evaluation.image_filenames) == 3
    assert train.cameras.width.unique().tolist() == [240] and train.cameras.height.unique().tolist() == [135]
    driving = get_driving_metadata(train.metadata)
    lidar, mpu = driving.lidar, driving.metres_per_unit
    assert len(lidar) == 6 and lidar.frame_indices.tolist() == list(range(6))
    for index in range(len(lidar)):
        points = sweep_points(lidar, index) * mpu
        distance = np.linalg.norm(points - lidar.lidar_to_worlds[index, :, 3] * mpu, axis=1)
        assert len(points) > 50_000 and np.median(distance) < 40.0 and distance.max() <= 80.0 + 1e-2
    seeds = train.metadata["points3D_xyz"].numpy()
    colours = train.metadata["points3D_rgb"].numpy().astype(int)
    assert len(seeds) > 5_000 and (seeds[:, 0] > 0).mean() > 0.95  # front camera: ahead of the ego (+x)
    assert colours.std() > 15 and (np.ptp(colours, axis=1) >= 3).mean() > 0.5
    assert not np.all(colours == 128, axis=1).any()


@real
def test_real_clip_actors_fit_their_lidar_points(real_clip):
    driving = get_driving_metadata(real_clip[0].metadata)
    lidar, mpu = driving.lidar, driving.metres_per_unit
    cars = [track for track in driving.actors if track.label == "Car"]
    assert len(cars) > 20
    assert 4.0 < np.median([car.size_wlh[1] * mpu for car in cars]) < 5.0
    assert 1.6 < np.median([car.size_wlh[0] * mpu for car in cars]) < 2.2
    # Points near a moving car's box centre (above its lowest 0.3 m, within its half diagonal) fall inside the box
    # with the parser's yaw convention, and much less so with the box turned by 90 degrees.
    inside = turned = near_total = 0
    points = sweep_points(lidar, 0) * mpu
    for car in cars:
        if car.stationary or car.frame_indices[0] != 0:
            continue
        pose = car.poses[0].astype(np.float64)
        width, length, height = car.size_wlh * mpu
        local = (points - pose[:3, 3] * mpu) @ pose[:3, :3]
        near_centre = np.hypot(local[:, 0], local[:, 1]) < np.hypot(width, length) / 2 + 0.3
        near = near_centre & (local[:, 2] > -height / 2 + 0.3)
        local = local[near & (np.abs(local[:, 2]) <= height / 2)]
        inside += (np.all(np.abs(local[:, :2]) <= [length / 2, width / 2], axis=1)).sum()
        turned += (np.all(np.abs(local[:, :2]) <= [width / 2, length / 2], axis=1)).sum()
        near_total += len(local)
    assert near_total > 1000
    assert inside / near_total > 0.8 and turned / near_total < 0.6
