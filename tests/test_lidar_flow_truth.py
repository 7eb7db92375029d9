"""Ground-truth LiDAR scene flow: the cuboid rule on a hand-built clip, and on a tiny synthetic log its agreement
with the generator's exact per-point flow (matched to the parsed points through ``LidarSweeps.source_rows``)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from fourd_ns.dataparsers.pandaset_dataparser import PandaSetDataParserConfig
from fourd_ns.sensors.actor_tracks import ActorTrack
from fourd_ns.sensors.driving_metadata import DrivingMetadata, get_driving_metadata
from fourd_ns.sensors.lidar_flow_truth import (
    cuboid_scene_flow,
    lidar_scene_flow_truth,
    synthetic_scene_flow,
)
from fourd_ns.sensors.lidar_sweeps import LidarSweeps

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pose(yaw: float, centre) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    matrix[:3, 3] = centre
    return matrix


def sweeps(per_sweep, frames) -> LidarSweeps:
    points = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in per_sweep]).astype(np.float32)
    count = len(points)
    return LidarSweeps(
        points=points,
        intensity=np.zeros(count, np.uint8),
        point_times=np.zeros(count, np.float32),
        point_seconds=np.zeros(count, np.float32),
        sensor=np.zeros(count, np.uint8),
        offsets=np.concatenate([[0], np.cumsum([len(p) for p in per_sweep])]).astype(np.int64),
        lidar_to_worlds=np.tile(np.eye(4)[:3], (len(frames), 1, 1)).astype(np.float32),
        sweep_times=np.linspace(0, 1, len(frames)).astype(np.float32),
        frame_indices=np.asarray(frames, dtype=np.int64),
    )


def box_track(track_id: str, frames, poses, size_wlh) -> ActorTrack:
    return ActorTrack(
        track_id=track_id,
        label="Car",
        frame_indices=np.asarray(frames, dtype=np.int64),
        times=np.linspace(0, 1, len(frames)).astype(np.float32),
        poses=np.stack(poses).astype(np.float32),
        size_wlh=np.asarray(size_wlh, dtype=np.float32),
        stationary=False,
        deformable=False,
    )


def hand_built_clip() -> DrivingMetadata:
    # Box "car": 4 long (box x), 2 wide (box y), 2 high, centre (2, 3, 0) heading +x in log frame 10; in frame 11 it
    # has moved by (1, 0, 0) and turned 90° about z. Box "leaving": annotated in frame 10 only. Box "overlap"
    # contains the first point of "car" too, but comes later in the list, so "car" owns that point.
    car = box_track("car", [10, 11], [pose(0.0, (2, 3, 0)), pose(math.pi / 2, (3, 3, 0))], (2.0, 4.0, 2.0))
    leaving = box_track("leaving", [10], [pose(0.0, (-10, 0, 0))], (2.0, 2.0, 2.0))
    overlap = box_track("overlap", [10, 11], [pose(0.0, (3, 3.5, 0)), pose(0.0, (13, 3.5, 0))], (1.0, 1.0, 1.0))
    points_10 = [
        (3.0, 3.5, 0.2),  # in "car" (local (1, 0.5, 0.2)) and in "overlap"
        (0.1, 2.1, -0.9),  # in "car" near a corner (local (-1.9, -0.9, -0.9))
        (5.0, 3.0, 0.0),  # outside every box (local x 3 > 2)
        (-10.5, 0.5, 0.5),  # in "leaving", which has no box in frame 11
    ]
    points_11 = [(3.0, 3.0, 0.0)]  # frame 11: no box in frame 12, so zero
    return DrivingMetadata(camera_names=("front_camera",), lidar=sweeps([points_10, points_11], [10, 11]),
                           actors=[car, leaving, overlap])  # fmt: skip


def test_cuboid_flow_rides_with_the_box():
    driving = hand_built_clip()
    flow = cuboid_scene_flow(driving, 0)
    assert flow.dtype == np.float32 and flow.shape == (4, 3)
    # Point 0: local (1, 0.5, 0.2) -> Rz(90°) (1, 0.5, 0.2) + (3, 3, 0) = (2.5, 4, 0.2): displacement (-0.5, 0.5, 0).
    np.testing.assert_allclose(flow[0], [-0.5, 0.5, 0.0], atol=1e-6)
    # Point 1: local (-1.9, -0.9, -0.9) -> (0.9, -1.9, -0.9) + (3, 3, 0) = (3.9, 1.1, -0.9); from (0.1, 2.1, -0.9).
    np.testing.assert_allclose(flow[1], [3.8, -1.0, 0.0], atol=1e-6)
    np.testing.assert_array_equal(flow[2:], 0.0)  # outside, and an actor that leaves
    np.testing.assert_array_equal(cuboid_scene_flow(driving, 1), 0.0)  # no annotation in frame 12
    np.testing.assert_array_equal(cuboid_scene_flow(driving, 0, frame_step=2), 0.0)
    assert lidar_scene_flow_truth(driving, 0)[1] == "cuboids"


def test_cuboid_flow_margin_and_bad_settings():
    driving = hand_built_clip()
    # Point 2 lies 1 beyond the "car" box's end (local x = 3): a margin of 1.5 takes it in (a pure translation +
    # turn of local (3, 0, 0): Rz(90°) (3, 0, 0) + (3, 3, 0) = (3, 6, 0), displacement (-2, 3, 0)).
    np.testing.assert_allclose(cuboid_scene_flow(driving, 0, margin=1.5)[2], [-2.0, 3.0, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="frame_step"):
        cuboid_scene_flow(driving, 0, frame_step=0)
    with pytest.raises(ValueError, match="margin"):
        cuboid_scene_flow(driving, 0, margin=-0.1)
    with pytest.raises(IndexError, match="sweep 2"):
        cuboid_scene_flow(driving, 2)
    with pytest.raises(ValueError, match="not a synthetic log"):
        synthetic_scene_flow(driving, 0)
    with pytest.raises(ValueError, match="no LiDAR"):
        cuboid_scene_flow(dataclasses.replace(driving, lidar=None), 0)


# --- a tiny synthetic log -----------------------------------------------------------------------------------------

SEED = 3
MAX_RANGE = 40.0  # metres: shorter than the street, so the parser drops rows and source_rows matter


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, one_torch_thread):
    from fourd_ns.synthetic.driving.generate import DRIVING_PRESETS, generate_driving_scene

    config = dataclasses.replace(DRIVING_PRESETS["small"], num_frames=2, cameras=("front_camera",))
    log = generate_driving_scene(tmp_path_factory.mktemp("flow") / "003", seed=SEED, config=config)
    parser = PandaSetDataParserConfig(
        data=log, cameras=("front",), downscale_factor=2, split_mode="all", max_lidar_range=MAX_RANGE
    )
    driving = get_driving_metadata(parser.setup().get_dataparser_outputs(split="train").metadata)
    assert driving is not None and driving.synthetic
    return log, driving


def test_source_rows_point_at_the_rows_of_the_sweep_file(synthetic):
    log, driving = synthetic
    lidar = driving.lidar
    assert lidar.source_rows is not None and lidar.source_rows.dtype == np.int64
    for sweep in range(len(lidar)):
        frame = pd.read_pickle(log / "lidar" / f"{int(lidar.frame_indices[sweep]):02d}.pkl.gz")
        rows = lidar.source_rows[lidar.sweep_slice(sweep)]
        assert 0 < len(rows) < len(frame)  # the range filter dropped some rows
        assert np.all(np.diff(rows) > 0)
        xyz_log = frame[["x", "y", "z"]].to_numpy(np.float64)[rows]
        xyz_out = (xyz_log @ driving.world_from_log[:3, :3].T + driving.world_from_log[:3, 3]) / driving.metres_per_unit
        np.testing.assert_allclose(lidar.points[lidar.sweep_slice(sweep)], xyz_out, atol=1e-5)


def test_synthetic_flow_agrees_with_cuboid_flow_on_moving_vehicles(synthetic):
    log, driving = synthetic
    lidar = driving.lidar
    exact, source = lidar_scene_flow_truth(driving, 0)
    assert source == "synthetic" and exact.dtype == np.float32 and exact.shape == (lidar.sweep_slice(0).stop, 3)
    np.testing.assert_array_equal(exact, synthetic_scene_flow(driving, 0))
    boxes = cuboid_scene_flow(driving, 0)

    with np.load(log / "ground_truth" / "lidar" / "00.npz") as truth:
        instance = truth["instance"][lidar.source_rows[lidar.sweep_slice(0)]]
    uuids = {entry["id"]: entry["uuid"] for entry in json.loads((log / "ground_truth/instances.json").read_text())[
        "instances"]}  # fmt: skip
    tracks = {track.track_id: track for track in driving.actors}
    moving_ids = [i for i, uuid in uuids.items() if not tracks[uuid].stationary and not tracks[uuid].deformable]
    # Static scenery has exactly zero flow; so do its points in the cuboid flow (they are in no box).
    static = instance == 0
    assert static.sum() > 100
    np.testing.assert_array_equal(exact[static], 0.0)
    # Points of moving vehicles inside their frame-0 box (a point captured early in the sweep may lie behind the
    # box, which is annotated at the sweep's end).
    on_vehicles = np.isin(instance, moving_ids) & np.any(boxes != 0, axis=1)
    assert on_vehicles.sum() >= 20
    metres = driving.metres_per_unit
    speed = np.linalg.norm(exact[on_vehicles], axis=1) * metres  # metres per 0.1 s
    assert np.median(speed) > 0.3
    error = np.linalg.norm(exact[on_vehicles] - boxes[on_vehicles], axis=1) * metres
    assert np.median(error) < 0.05
    # Last frame: the generator stores zero flow and no box exists one frame later.
    last, _ = lidar_scene_flow_truth(driving, 1)
    np.testing.assert_array_equal(last, 0.0)
    np.testing.assert_array_equal(cuboid_scene_flow(driving, 1), 0.0)


def test_synthetic_flow_errors_and_fallback(synthetic, tmp_path):
    _, driving = synthetic
    elsewhere = dataclasses.replace(driving, source=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="00.npz"):
        synthetic_scene_flow(elsewhere, 0)
    assert lidar_scene_flow_truth(elsewhere, 0)[1] == "cuboids"
    no_rows = dataclasses.replace(driving, lidar=dataclasses.replace(driving.lidar, source_rows=None))
    with pytest.raises(ValueError, match="source_rows"):
        synthetic_scene_flow(no_rows, 0)
    flow, source = lidar_scene_flow_truth(dataclasses.replace(driving, synthetic=False), 0)
    assert source == "cuboids"
    np.testing.assert_array_equal(flow, cuboid_scene_flow(driving, 0))
    with pytest.raises(ValueError, match="source_rows"):
        dataclasses.replace(driving.lidar, source_rows=np.zeros(3, np.int64))
