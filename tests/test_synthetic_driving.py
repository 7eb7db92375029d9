"""Tests of the synthetic driving-log generator: PandaSet layout, determinism, LiDAR / depth / cuboid ground truth, CLI.

All logs use the 'small' preset (4 frames, 96x54 cameras, 2° LiDAR); geometry is checked against independent
re-casts with the engine's plain `cast_rays` on the full scene (no culling).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fourd_ns.synthetic.camera import PinholeCamera, camera_rays, pixel_centres
from fourd_ns.synthetic.driving import build_driving_scene, generate_driving_scene
from fourd_ns.synthetic.driving.culling import cast_rays_culled
from fourd_ns.synthetic.driving.pandaset_writer import quaternion_from_matrix
from fourd_ns.synthetic.driving.slab_box import SlabBox
from fourd_ns.synthetic.driving.street import SKY_INSTANCE
from fourd_ns.synthetic.scene import cast_rays
from fourd_ns.synthetic.shapes import Box

PANDASET_002 = Path(__file__).resolve().parents[2] / "shared" / "data" / "pandaset" / "002"
SEED = 0
"""Seed of the shared log: its small street has parked cars, constant-velocity and lane-changing vehicles and a
pedestrian, all hit by the LiDAR."""
NUM_FRAMES = 4
CAMERAS = ("front_camera", "front_left_camera", "front_right_camera")
LIDAR_DTYPES = {"x": "float64", "y": "float64", "z": "float64", "i": "float64", "t": "float64", "d": "int64"}
CUBOID_DTYPES = {
    "uuid": "object", "label": "object", "yaw": "float64", "stationary": "bool", "camera_used": "int64",
    "position.x": "float64", "position.y": "float64", "position.z": "float64", "dimensions.x": "float64",
    "dimensions.y": "float64", "dimensions.z": "float64", "attributes.object_motion": "object",
    "cuboids.sibling_id": "object", "cuboids.sensor_id": "int64", "attributes.rider_status": "object",
    "attributes.pedestrian_behavior": "object", "attributes.pedestrian_age": "object",
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def log(tmp_path_factory, one_torch_thread) -> Path:
    return generate_driving_scene(tmp_path_factory.mktemp("driving") / "000", SEED, "small")


@pytest.fixture(scope="module")
def driving():
    return build_driving_scene(SEED, "small")


def _json(path: Path):
    return json.loads(path.read_text())


def _stem(frame: int) -> str:
    return f"{frame:02d}"


def _start_time(log: Path) -> float:
    return _json(log / "synthetic.json")["start_time_unix"]


def _quaternion_matrix(q: dict) -> np.ndarray:
    w, x, y, z = (q[k] for k in "wxyz")
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _camera_from_log(log: Path, name: str, frame: int) -> PinholeCamera:
    """The camera as a reader of the log sees it: poses.json (camera -> world, OpenCV) and intrinsics.json."""
    pose = _json(log / "camera" / name / "poses.json")[frame]
    intrinsics = _json(log / "camera" / name / "intrinsics.json")
    width, height = Image.open(log / "camera" / name / f"{_stem(frame)}.jpg").size
    c2w = _quaternion_matrix(pose["heading"])
    position = np.array([pose["position"][k] for k in "xyz"])
    return PinholeCamera(c2w.T, position, intrinsics["fx"], (intrinsics["cx"], intrinsics["cy"]), width, height)


# --- layout -----------------------------------------------------------------------------------------------------


def test_log_has_every_pandaset_file_and_ground_truth(log):
    for camera in CAMERAS:
        folder = log / "camera" / camera
        intrinsics = _json(folder / "intrinsics.json")
        assert set(intrinsics) == {"fx", "fy", "cx", "cy"}
        # PandaSet's front focal length scaled to 96 px: a ~52° horizontal field of view.
        if camera == "front_camera":
            assert intrinsics["fx"] == pytest.approx(1970.0131 * 96 / 1920)
        poses = _json(folder / "poses.json")
        times = _json(folder / "timestamps.json")
        assert len(poses) == len(times) == NUM_FRAMES
        assert set(poses[0]) == {"position", "heading"} and set(poses[0]["heading"]) == {"w", "x", "y", "z"}
        for frame in range(NUM_FRAMES):
            with Image.open(folder / f"{_stem(frame)}.jpg") as image:
                assert image.format == "JPEG" and image.size == (96, 54)
            truth = log / "ground_truth" / camera
            depth = np.load(truth / "depth" / f"{_stem(frame)}.npy")
            flow = np.load(truth / "scene_flow" / f"{_stem(frame)}.npy")
            instance = np.asarray(Image.open(truth / "instance" / f"{_stem(frame)}.png"))
            assert depth.dtype == np.float32 and depth.shape == (54, 96)
            assert flow.dtype == np.float32 and flow.shape == (54, 96, 3)
            assert instance.dtype == np.uint16 and instance.shape == (54, 96)
    for name in ("lidar/poses.json", "lidar/timestamps.json", "meta/timestamps.json", "meta/gps.json"):
        assert len(_json(log / name)) == NUM_FRAMES
    assert set(_json(log / "meta/gps.json")[0]) == {"lat", "long", "height", "xvel", "yvel"}
    assert _json(log / "meta/timestamps.json") == _json(log / "lidar/timestamps.json")
    instances = _json(log / "ground_truth" / "instances.json")
    assert instances["background"] == 0 and instances["sky"] == SKY_INSTANCE
    provenance = _json(log / "synthetic.json")
    assert provenance["seed"] == SEED and provenance["generator"] == "fourd_ns.synthetic.driving"
    assert {a["uuid"] for a in provenance["actors"]} == {i["uuid"] for i in instances["instances"]}
    for frame in range(NUM_FRAMES):
        lidar = pd.read_pickle(log / "lidar" / f"{_stem(frame)}.pkl.gz")
        assert list(lidar.columns) == list(LIDAR_DTYPES)
        assert {c: str(t) for c, t in lidar.dtypes.items()} == LIDAR_DTYPES
        assert lidar.index.name == "index" and (lidar["d"] == 0).all()
        assert np.all(lidar["i"].between(0, 255)) and np.all(lidar["i"] == lidar["i"].round())
        cuboids = pd.read_pickle(log / "annotations" / "cuboids" / f"{_stem(frame)}.pkl.gz")
        assert list(cuboids.columns) == list(CUBOID_DTYPES)
        assert {c: str(t) for c, t in cuboids.dtypes.items()} == CUBOID_DTYPES
        assert set(cuboids["uuid"]) == {i["uuid"] for i in instances["instances"]}
        truth = np.load(log / "ground_truth" / "lidar" / f"{_stem(frame)}.npz")
        assert truth["velocity"].shape == truth["scene_flow"].shape == (len(lidar), 3)
        assert truth["instance"].shape == (len(lidar),) and truth["instance"].dtype == np.uint16


def test_columns_and_dtypes_match_the_real_pandaset_log(log):
    if not PANDASET_002.is_dir():
        pytest.skip(f"real PandaSet log not available at {PANDASET_002} (see /work/shared/data/README.md)")
    for name in ("lidar/00.pkl.gz", "annotations/cuboids/00.pkl.gz"):
        real, ours = pd.read_pickle(PANDASET_002 / name), pd.read_pickle(log / name)
        assert list(ours.columns) == list(real.columns), name
        assert ours.dtypes.to_dict() == real.dtypes.to_dict(), name
        assert ours.index.name == real.index.name, name
    for camera in CAMERAS:
        real = _json(PANDASET_002 / "camera" / camera / "poses.json")[0]
        ours = _json(log / "camera" / camera / "poses.json")[0]
        assert {k: set(v) for k, v in ours.items()} == {k: set(v) for k, v in real.items()}
        assert set(_json(log / "camera" / camera / "intrinsics.json")) == set(
            _json(PANDASET_002 / "camera" / camera / "intrinsics.json")
        )


def test_camera_rig_matches_pandaset_front_cameras(log):
    """Relative yaw of the side cameras (~+-58°), height (~1.8 m) and time offsets follow PandaSet's rig."""
    frame = 2
    forward = {}
    for camera in CAMERAS:
        rotation = _quaternion_matrix(_json(log / "camera" / camera / "poses.json")[frame]["heading"])
        forward[camera] = rotation[:, 2]  # OpenCV z axis = viewing direction
    yaw = {c: math.degrees(math.atan2(f[1], f[0])) for c, f in forward.items()}
    relative = {c: (yaw[c] - yaw["front_camera"] + 180) % 360 - 180 for c in CAMERAS}
    assert relative["front_left_camera"] == pytest.approx(57.5, abs=0.01)
    assert relative["front_right_camera"] == pytest.approx(-58.1, abs=0.01)
    assert _json(log / "camera" / "front_camera" / "poses.json")[frame]["position"]["z"] == pytest.approx(1.8, abs=1e-9)
    lidar_times = np.array(_json(log / "lidar" / "timestamps.json"))
    assert np.allclose(np.diff(lidar_times), 0.1, atol=1e-6)
    front_times = np.array(_json(log / "camera" / "front_camera" / "timestamps.json"))
    assert np.allclose(front_times - lidar_times, -0.0499, atol=1e-6)


def test_quaternion_round_trip():
    rng = np.random.default_rng(3)
    for _ in range(20):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        w, x, y, z = quaternion_from_matrix(q)
        assert np.allclose(_quaternion_matrix({"w": w, "x": x, "y": y, "z": z}), q, atol=1e-12)


# --- determinism ----------------------------------------------------------------------------------------------


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files(log, tmp_path):
    again = generate_driving_scene(tmp_path / "000", SEED, "small")
    first, second = _files(log), _files(again)
    assert first.keys() == second.keys()
    different = [name for name in first if first[name] != second[name]]
    assert not different, f"files differ between two runs of seed {SEED}: {different[:5]}"


def test_different_seed_gives_a_different_street(log, tmp_path):
    other = generate_driving_scene(tmp_path / "001", SEED + 1, "small")
    assert _json(other / "synthetic.json")["layout"] != _json(log / "synthetic.json")["layout"]
    ours, theirs = pd.read_pickle(log / "lidar/00.pkl.gz"), pd.read_pickle(other / "lidar/00.pkl.gz")
    assert len(ours) != len(theirs) or not np.allclose(ours[["x", "y", "z"]].values, theirs[["x", "y", "z"]].values)
    assert (log / "camera/front_camera/00.jpg").read_bytes() != (other / "camera/front_camera/00.jpg").read_bytes()


# --- LiDAR ----------------------------------------------------------------------------------------------------


def _sweep(log: Path, frame: int) -> tuple[pd.DataFrame, dict]:
    lidar = pd.read_pickle(log / "lidar" / f"{_stem(frame)}.pkl.gz")
    truth = dict(np.load(log / "ground_truth" / "lidar" / f"{_stem(frame)}.npz"))
    return lidar, truth


def test_lidar_points_lie_on_the_scene_at_their_capture_time(log, driving):
    """Re-cast every point's ray (from the recorded LiDAR origin, at the point's time) with the full scene: the first
    surface is the point itself, never the sky, within the 120 m range."""
    start = _start_time(log)
    for frame in (0, NUM_FRAMES - 1):
        lidar, truth = _sweep(log, frame)
        points = lidar[["x", "y", "z"]].to_numpy()
        offset = points - truth["origin"]
        ranges = np.linalg.norm(offset, axis=1)
        assert ranges.max() <= 120.0 and ranges.min() > 1.0
        assert not np.any(truth["instance"] == SKY_INSTANCE)
        for time in np.unique(lidar["t"].to_numpy()):
            rows = np.nonzero(lidar["t"].to_numpy() == time)[0]
            origins = torch.as_tensor(truth["origin"][rows], dtype=torch.float32)
            dirs = torch.as_tensor(offset[rows] / ranges[rows, None], dtype=torch.float32)
            hits = cast_rays(driving.scene, origins, dirs, time - start)
            # A ray re-built from a float point may graze past an edge the original ray hit: allow a few.
            on_surface = np.abs(hits.depth.double().numpy() - ranges[rows]) < 2e-3
            assert np.mean(on_surface) > 0.998, (frame, time)
            instance = driving.object_instance[hits.object.numpy()]
            assert np.mean(instance == truth["instance"][rows]) > 0.998


def test_lidar_times_follow_the_sweep(log):
    """Times lie inside the 0.1 s sweep ending at the frame timestamp and grow with the sweep angle; the sweep faces
    forward (sweep angle 180°) around mid-sweep, when the front camera fires."""
    lidar_times = _json(log / "lidar" / "timestamps.json")
    front_times = _json(log / "camera" / "front_camera" / "timestamps.json")
    sectors = _json(log / "synthetic.json")["config"]["lidar"]["sectors"]
    for frame in range(NUM_FRAMES):
        lidar, truth = _sweep(log, frame)
        t = lidar["t"].to_numpy()
        assert t.min() >= lidar_times[frame] - 0.1 - 1e-6 and t.max() <= lidar_times[frame] + 1e-6
        angle = truth["sweep_angle"]
        assert np.all(np.diff(angle) >= 0) and np.all(np.diff(t) >= 0)
        # Strictly later across sectors: one capture time per sector, increasing.
        assert len(np.unique(t)) == sectors and np.all(np.diff(np.unique(t)) > 0.1 / sectors * 0.99)
        forward = np.abs(angle - 180.0) < 2.0
        assert np.all(np.abs(t[forward] - front_times[frame]) <= 0.1 / sectors)


def test_lidar_velocity_and_flow_of_static_and_moving_surfaces(log, driving):
    _, truth = _sweep(log, 1)
    static = truth["instance"] == 0
    assert np.all(truth["velocity"][static] == 0) and np.all(truth["scene_flow"][static] == 0)
    checked = 0
    for actor in driving.actors:
        rows = truth["instance"] == actor.instance_id
        if not rows.any():
            continue
        if actor.stationary:
            assert np.all(truth["velocity"][rows] == 0) and np.all(truth["scene_flow"][rows] == 0)
        if actor.description["kind"] == "constant_velocity":
            _, heading = actor.trajectory.pose(0.0)
            expected = actor.description["speed"] * np.array([math.cos(heading), math.sin(heading), 0.0])
            assert np.allclose(truth["velocity"][rows], expected, atol=1e-3)
            assert np.allclose(truth["scene_flow"][rows], 0.1 * expected, atol=1e-4)
            checked += 1
    assert checked > 0
    last = _sweep(log, NUM_FRAMES - 1)[1]
    assert np.all(last["scene_flow"] == 0)


# --- cameras --------------------------------------------------------------------------------------------------


def test_depth_and_instance_maps_match_a_recast_of_the_logged_camera(log, driving):
    start = _start_time(log)
    for camera_name in ("front_camera", "front_left_camera"):
        frame = 1
        camera = _camera_from_log(log, camera_name, frame)
        t = _json(log / "camera" / camera_name / "timestamps.json")[frame] - start
        origins, dirs = camera_rays(camera, pixel_centres(camera.width, camera.height).reshape(-1, 2))
        hits = cast_rays(driving.scene, origins, dirs, t)
        truth = log / "ground_truth" / camera_name
        depth = np.load(truth / "depth" / f"{_stem(frame)}.npy").reshape(-1)
        instance = np.asarray(Image.open(truth / "instance" / f"{_stem(frame)}.png")).reshape(-1)
        expected_instance = driving.object_instance[hits.object.numpy()]
        assert np.array_equal(np.isinf(depth), instance == SKY_INSTANCE)
        # Tiles rebuild the rays from a shifted principal point: a ray on an object's edge may fall either side.
        assert np.mean(instance == expected_instance) > 0.995
        surface = (expected_instance != SKY_INSTANCE) & np.isfinite(depth)
        close = np.isclose(depth[surface], hits.depth.numpy()[surface], rtol=1e-4, atol=1e-3)
        assert np.mean(close) > 0.995


def test_camera_scene_flow_moves_vehicles_by_speed_times_frame_period(log, driving):
    frame = 0
    flow = np.load(log / "ground_truth" / "front_camera" / "scene_flow" / f"{_stem(frame)}.npy")
    instance = np.asarray(Image.open(log / "ground_truth" / "front_camera" / "instance" / f"{_stem(frame)}.png"))
    assert np.all(flow[(instance == 0) | (instance == SKY_INSTANCE)] == 0)
    seen = 0
    for actor in driving.actors:
        pixels = instance == actor.instance_id
        if actor.description["kind"] != "constant_velocity" or not pixels.any():
            continue
        _, heading = actor.trajectory.pose(0.0)
        expected = 0.1 * actor.description["speed"] * np.array([math.cos(heading), math.sin(heading), 0.0])
        assert np.allclose(flow[pixels], expected, atol=1e-4)
        seen += 1
    assert seen > 0


def test_culled_cast_equals_full_cast(log, driving):
    camera = _camera_from_log(log, "front_camera", 0)
    origins, dirs = camera_rays(camera, pixel_centres(camera.width, camera.height).reshape(-1, 2))
    full = cast_rays(driving.scene, origins, dirs, 0.05)
    culled = cast_rays_culled(driving.scene, origins, dirs, 0.05, driving.bounds.at(0.05))
    assert torch.equal(full.object, culled.object)
    assert torch.allclose(full.depth, culled.depth)


def test_slab_box_matches_the_engine_box():
    generator = torch.Generator().manual_seed(0)
    origins = torch.randn(4000, 3, generator=generator) * 3.0
    dirs = torch.randn(4000, 3, generator=generator)
    origins[:500] *= 0.1  # rays starting inside the box hit its inside
    reference_t, reference_n = Box((1.0, 2.0, 0.5)).intersect(origins, dirs)
    t, normal = SlabBox((1.0, 2.0, 0.5)).intersect(origins, dirs)
    assert torch.equal(torch.isfinite(t), torch.isfinite(reference_t))
    hit = torch.isfinite(t)
    assert torch.allclose(t[hit], reference_t[hit], atol=1e-5)
    assert torch.equal(normal[hit], reference_n[hit])


# --- cuboids --------------------------------------------------------------------------------------------------


def test_cuboids_contain_their_actors_lidar_points(log, driving):
    """Every LiDAR point of an actor lies in that actor's box at the point's capture time; for constant-velocity and
    parked vehicles, the point moved to the frame time with its ground-truth velocity lies in the logged cuboid."""
    start = _start_time(log)
    by_id = {a.instance_id: a for a in driving.actors}
    lidar_times = _json(log / "lidar" / "timestamps.json")
    checked = set()
    for frame in range(NUM_FRAMES):
        lidar, truth = _sweep(log, frame)
        cuboids = pd.read_pickle(log / "annotations" / "cuboids" / f"{_stem(frame)}.pkl.gz").set_index("uuid")
        points, times = lidar[["x", "y", "z"]].to_numpy(), lidar["t"].to_numpy()
        for instance_id in np.unique(truth["instance"]):
            if instance_id == 0:
                continue
            actor = by_id[int(instance_id)]
            rows = truth["instance"] == instance_id
            width, length, height = actor.size_wlh
            half = np.array([length, width, height]) / 2
            for t in np.unique(times[rows]):
                at_t = rows & (times == t)
                local = actor.world_to_box(t - start, points[at_t])
                assert np.all(np.abs(local) <= half + 2e-3), (actor.label, frame)
            if actor.description["kind"] in ("constant_velocity", "parked"):
                box = cuboids.loc[actor.uuid]
                moved = points[rows] + truth["velocity"][rows] * (lidar_times[frame] - times[rows])[:, None]
                heading = box["yaw"] + math.pi / 2  # PandaSet: heading = Rz(yaw) (0, 1, 0)
                offset = moved - box[["position.x", "position.y", "position.z"]].to_numpy(np.float64)
                along = offset[:, 0] * math.cos(heading) + offset[:, 1] * math.sin(heading)
                across = -offset[:, 0] * math.sin(heading) + offset[:, 1] * math.cos(heading)
                assert np.all(np.abs(along) <= box["dimensions.y"] / 2 + 2e-3)
                assert np.all(np.abs(across) <= box["dimensions.x"] / 2 + 2e-3)
                assert np.all(np.abs(offset[:, 2]) <= box["dimensions.z"] / 2 + 2e-3)
            checked.add(actor.description["kind"])
    assert {"parked", "constant_velocity", "lane_change", "walker"} <= checked


def test_moving_vehicle_cuboids_advance_by_speed_along_their_heading(log, driving):
    first = pd.read_pickle(log / "annotations/cuboids/00.pkl.gz").set_index("uuid")
    last = pd.read_pickle(log / f"annotations/cuboids/{_stem(NUM_FRAMES - 1)}.pkl.gz").set_index("uuid")
    times = _json(log / "lidar" / "timestamps.json")
    dt = times[-1] - times[0]
    columns = ["position.x", "position.y", "position.z"]
    moving = 0
    for actor in _json(log / "synthetic.json")["actors"]:
        a, b = first.loc[actor["uuid"]], last.loc[actor["uuid"]]
        displacement = b[columns].to_numpy(np.float64) - a[columns].to_numpy(np.float64)
        if actor["kind"] == "parked":
            assert a["stationary"] and a["attributes.object_motion"] == "Parked"
            assert np.all(displacement == 0)
        elif actor["kind"] == "constant_velocity":
            assert not a["stationary"] and a["attributes.object_motion"] == "Moving"
            heading = np.array([-math.sin(a["yaw"]), math.cos(a["yaw"]), 0.0])  # Rz(yaw) (0, 1, 0)
            assert np.allclose(displacement, actor["speed"] * dt * heading, atol=1e-5)
            assert b["yaw"] == pytest.approx(a["yaw"])
            # The box's length axis is the vehicle's: dimensions.y (length) > dimensions.x (width).
            assert a["dimensions.y"] > a["dimensions.x"]
            moving += 1
        elif actor["kind"] == "walker":
            assert a["label"] == "Pedestrian" and a["attributes.pedestrian_behavior"] == "Walking"
            assert np.isnan(a["attributes.object_motion"])
    assert moving > 0


# --- CLI ------------------------------------------------------------------------------------------------------


def test_cli_writes_logs_for_consecutive_seeds(tmp_path, monkeypatch, capsys):
    from fourd_ns.scripts import synth_driving

    argv = ["fourd-synth-driving", "--out", str(tmp_path), "--num-scenes", "2", "--first-seed", "5"]
    argv += ["--preset", "small", "--num-frames", "2", "--cameras", "front_camera"]
    monkeypatch.setattr(sys, "argv", argv)
    synth_driving.entrypoint()
    for seed in (5, 6):
        folder = tmp_path / f"{seed:03d}"
        provenance = _json(folder / "synthetic.json")
        assert provenance["seed"] == seed and provenance["config"]["num_frames"] == 2
        assert sorted(p.name for p in (folder / "camera").iterdir()) == ["front_camera"]
        assert (folder / "lidar" / "01.pkl.gz").is_file() and (folder / "annotations/cuboids/01.pkl.gz").is_file()
    assert "Wrote 2 synthetic driving log(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        synth_driving.entrypoint()
    assert exit_info.value.code == 2
