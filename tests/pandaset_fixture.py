"""Tiny PandaSet-layout logs for tests (no downloads, no binary files in git).

An ego car drives along a straight line at a known heading; its LiDAR and two cameras (front, front-left) move with
it. Per frame the log holds small JPEGs with a position-, frame- and camera-dependent pattern, a LiDAR sweep in the
world frame made of labelled point groups (scene points the filters keep, ego-car points, far points, PandarGT
points) and cuboids of a moving car (plus its PandarGT duplicate), a parked car and a walking pedestrian. The
fixture describes what it wrote, so tests can check the parser against it without the parser's own code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import numpy as np
import pandas as pd
from PIL import Image
from scipy.spatial.transform import Rotation

CAMERAS = ("front_camera", "front_left_camera")
WIDTH, HEIGHT = 64, 36
INTRINSICS = {
    "front_camera": {"fx": 40.0, "fy": 41.0, "cx": 31.0, "cy": 17.5},
    "front_left_camera": {"fx": 30.0, "fy": 30.5, "cx": 33.0, "cy": 18.5},
}
CAMERA_MOUNTS = {  # (forward, left, up) offset from the LiDAR in metres, yaw offset, pitch down (radians)
    "front_camera": ((1.5, 0.0, 0.3), 0.0, 0.08),
    "front_left_camera": ((1.2, 0.5, 0.25), 0.9, 0.05),
}
CAMERA_TIME_OFFSETS = {"front_camera": -0.05, "front_left_camera": -0.062}
BASE_TIME = 1_557_539_956.5
FRAME_PERIOD = 0.1
EGO_START = np.array([5.0, -3.0, 0.2])
EGO_HEADING = 0.6  # radians, direction of travel in the log world
EGO_STEP = 0.9  # metres per frame
GROUND_Z = -1.8  # relative to the LiDAR

# Points per sweep of each group (see lidar_groups).
NUM_SCENE, NUM_EGO, NUM_FAR, NUM_GT = 300, 12, 10, 25

MOVING_CAR = dict(uuid="car-moving", label="Car", yaw=2.2, start=(15.0, 4.0, -0.9), step=0.8, dims=(1.9, 4.5, 1.6))
PARKED_CAR = dict(uuid="car-parked", label="Car", yaw=-0.4, position=(12.0, 6.0, -0.95), dims=(1.8, 4.2, 1.5))
WALKER = dict(uuid="walker", label="Pedestrian", yaw=0.3, start=(9.0, 1.0, -0.9), step=0.12, dims=(0.6, 0.7, 1.7))


@dataclass
class PandaSetFixture:
    root: Path
    num_frames: int

    def camera_folder(self, camera: str) -> Path:
        return self.root / "camera" / camera


def heading_vector(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle), 0.0])


def rotation_z(angle: float) -> np.ndarray:
    return Rotation.from_euler("z", angle).as_matrix()


def lidar_pose(frame: int) -> np.ndarray:
    """[4, 4] LiDAR sensor -> world; PandaSet's LiDAR frame has x right, y forward, z up."""
    pose = np.eye(4)
    pose[:3, :3] = rotation_z(EGO_HEADING - np.pi / 2)
    pose[:3, 3] = EGO_START + frame * EGO_STEP * heading_vector(EGO_HEADING)
    return pose


def camera_pose(camera: str, frame: int) -> np.ndarray:
    """[4, 4] camera -> world with OpenCV camera axes (x right, y down, z forward)."""
    (forward, left, up), yaw, pitch = CAMERA_MOUNTS[camera]
    ego = lidar_pose(frame)
    offset = forward * heading_vector(EGO_HEADING) + left * heading_vector(EGO_HEADING + np.pi / 2) + [0, 0, up]
    view = np.cos(pitch) * heading_vector(EGO_HEADING + yaw) + np.sin(pitch) * np.array([0.0, 0.0, -1.0])
    right = np.cross(view, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(view, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, view], axis=1)
    pose[:3, 3] = ego[:3, 3] + offset
    return pose


def camera_time(camera: str, frame: int) -> float:
    return BASE_TIME + frame * FRAME_PERIOD + CAMERA_TIME_OFFSETS[camera]


def lidar_time(frame: int) -> float:
    return BASE_TIME + frame * FRAME_PERIOD


def _pose_json(pose: np.ndarray) -> dict:
    x, y, z, w = Rotation.from_matrix(pose[:3, :3]).as_quat()
    return {
        "position": dict(zip("xyz", map(float, pose[:3, 3]))),
        "heading": {"w": float(w), "x": float(x), "y": float(y), "z": float(z)},
    }


def image_pattern(camera_index: int, frame: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """[H, W, 3] uint8 with smooth position-dependent colours, different per frame and camera."""
    rows, columns = np.mgrid[0:height, 0:width]
    red = (columns * 4 + 60 * camera_index) % 256
    green = (rows * 7 + 25 * frame) % 256
    blue = 40 + ((rows // 3 + columns // 3) % 5) * 40
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def lidar_groups(frame: int, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """World-frame points [P, 3] per group; every frame gets fresh points, so each point belongs to one frame.

    scene: 3..60 m from the sensor, half of them ahead where the cameras look (kept by default filters);
    ego: inside the (1, 2, 2) m ego box; far: 90..120 m away; gt: ahead, meant for the PandarGT (sensor 1).
    """
    pose = lidar_pose(frame)

    def ahead(count: int, near: float, far: float, spread: float) -> np.ndarray:
        distance = rng.uniform(near, far, count)
        angle = rng.uniform(-spread, spread, count)  # around the sensor's +y (forward)
        height = rng.uniform(GROUND_Z, 2.0, count)
        return np.stack([-distance * np.sin(angle), distance * np.cos(angle), height], axis=1)

    half = NUM_SCENE // 2
    all_round = ahead(NUM_SCENE - half, 3.0, 60.0, np.pi)
    all_round[:, 2] = GROUND_Z
    local = {
        "scene": np.concatenate([ahead(half, 4.0, 30.0, 0.5), all_round]),
        "ego": rng.uniform([-0.9, -1.9, -0.5], [0.9, 1.9, 0.5], (NUM_EGO, 3)),
        "far": ahead(NUM_FAR, 90.0, 120.0, np.pi),
        "gt": ahead(NUM_GT, 5.0, 30.0, 0.4),
    }
    return {name: points @ pose[:3, :3].T + pose[:3, 3] for name, points in local.items()}


def lidar_dataframe(frame: int) -> pd.DataFrame:
    """The sweep of ``frame`` exactly as written (groups in the order scene, ego, far, gt)."""
    rng = np.random.default_rng(1000 + frame)
    groups = lidar_groups(frame, rng)
    xyz = np.concatenate(list(groups.values()))
    sensor = np.concatenate([np.full(len(p), 1 if name == "gt" else 0, dtype=np.int64) for name, p in groups.items()])
    return pd.DataFrame(
        {
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "i": rng.integers(0, 256, len(xyz)).astype(np.float64),
            "t": lidar_time(frame) - rng.uniform(0.0, FRAME_PERIOD, len(xyz)),
            "d": sensor,
        }
    )


def group_sizes() -> Dict[str, int]:
    return {"scene": NUM_SCENE, "ego": NUM_EGO, "far": NUM_FAR, "gt": NUM_GT}


def actor_position(actor: dict, frame: int) -> np.ndarray:
    """Centre of a cuboid at ``frame``; moving actors advance along their heading Rz(yaw) @ (0, 1, 0)."""
    if "position" in actor:
        return np.array(actor["position"])
    return np.array(actor["start"]) + frame * actor["step"] * heading_vector(actor["yaw"] + np.pi / 2)


def cuboid_dataframe(frame: int) -> pd.DataFrame:
    # First the PandarGT's duplicate of the moving car: same uuid, shifted, cuboids.sensor_id 1 (must be dropped).
    rows = [(MOVING_CAR, actor_position(MOVING_CAR, frame) + [0.3, -0.2, 0.0], False, 1)]
    for actor, stationary, sensor_id in ((MOVING_CAR, False, 0), (PARKED_CAR, True, -1), (WALKER, False, -1)):
        rows.append((actor, actor_position(actor, frame), stationary, sensor_id))
    return pd.DataFrame(
        [
            {
                "uuid": actor["uuid"],
                "label": actor["label"],
                "yaw": actor["yaw"],
                "stationary": stationary,
                "camera_used": 0,
                "position.x": position[0],
                "position.y": position[1],
                "position.z": position[2],
                "dimensions.x": actor["dims"][0],
                "dimensions.y": actor["dims"][1],
                "dimensions.z": actor["dims"][2],
                "attributes.object_motion": "Parked" if stationary else "Moving",
                "cuboids.sibling_id": "-",
                "cuboids.sensor_id": sensor_id,
                "attributes.rider_status": np.nan,
                "attributes.pedestrian_behavior": "Walking" if actor is WALKER else np.nan,
                "attributes.pedestrian_age": "Adult" if actor is WALKER else np.nan,
            }
            for actor, position, stationary, sensor_id in rows
        ]
    )


def write_pandaset_log(root: Path, num_frames: int = 6, *, synthetic: bool = False) -> PandaSetFixture:
    """Write a log with ``num_frames`` frames to ``root`` (created) and describe it."""
    root.mkdir(parents=True, exist_ok=True)
    frames = range(num_frames)
    for camera_index, camera in enumerate(CAMERAS):
        folder = root / "camera" / camera
        folder.mkdir(parents=True)
        (folder / "intrinsics.json").write_text(json.dumps(INTRINSICS[camera]))
        (folder / "poses.json").write_text(json.dumps([_pose_json(camera_pose(camera, f)) for f in frames]))
        (folder / "timestamps.json").write_text(json.dumps([camera_time(camera, f) for f in frames]))
        for frame in frames:
            Image.fromarray(image_pattern(camera_index, frame)).save(folder / f"{frame:02d}.jpg", quality=95)
    lidar = root / "lidar"
    lidar.mkdir()
    (lidar / "poses.json").write_text(json.dumps([_pose_json(lidar_pose(f)) for f in frames]))
    (lidar / "timestamps.json").write_text(json.dumps([lidar_time(f) for f in frames]))
    cuboids = root / "annotations" / "cuboids"
    cuboids.mkdir(parents=True)
    for frame in frames:
        lidar_dataframe(frame).to_pickle(lidar / f"{frame:02d}.pkl.gz")
        cuboid_dataframe(frame).to_pickle(cuboids / f"{frame:02d}.pkl.gz")
    meta = root / "meta"
    meta.mkdir()
    (meta / "timestamps.json").write_text(json.dumps([lidar_time(f) for f in frames]))
    gps = {"lat": 37.7, "long": -122.4, "height": 3.0, "xvel": 0.0, "yvel": 9.0}
    (meta / "gps.json").write_text(json.dumps([gps] * num_frames))
    if synthetic:
        (root / "synthetic.json").write_text(json.dumps({"generator": "test fixture"}))
    return PandaSetFixture(root=root, num_frames=num_frames)


def copy_of(fixture: PandaSetFixture, destination: Path) -> PandaSetFixture:
    """A writable copy (for tests that break files)."""
    import shutil

    shutil.copytree(fixture.root, destination)
    return PandaSetFixture(root=destination, num_frames=fixture.num_frames)
