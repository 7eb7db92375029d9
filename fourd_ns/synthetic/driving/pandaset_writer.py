"""Writing a driving log in PandaSet's on-disk layout, plus the synthetic ground-truth extras.

Everything matches the real log's files (column names and dtypes included, see the package docstring), so the
`pandaset-data` dataparser reads synthetic and real logs alike. Files are byte-for-byte reproducible: gzip headers
carry no modification time, ``.npz`` members the zip format's fixed epoch, and JSON is written from Python floats.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from fourd_ns.synthetic.driving.camera_views import ViewTruth
from fourd_ns.synthetic.driving.lidar_scan import LidarSweep

JPEG_QUALITY = 95
LIDAR_COLUMNS = ("x", "y", "z", "i", "t", "d")
CUBOID_COLUMNS = (
    "uuid", "label", "yaw", "stationary", "camera_used", "position.x", "position.y", "position.z",
    "dimensions.x", "dimensions.y", "dimensions.z", "attributes.object_motion", "cuboids.sibling_id",
    "cuboids.sensor_id", "attributes.rider_status", "attributes.pedestrian_behavior", "attributes.pedestrian_age",
)
"""Columns of ``annotations/cuboids/NN.pkl.gz`` in PandaSet's order."""
_CUBOID_DTYPES = {
    "yaw": np.float64, "stationary": bool, "camera_used": np.int64, "position.x": np.float64,
    "position.y": np.float64, "position.z": np.float64, "dimensions.x": np.float64, "dimensions.y": np.float64,
    "dimensions.z": np.float64, "cuboids.sensor_id": np.int64,
}
"""Non-object cuboid columns; all others hold Python strings (or NaN) with dtype object, as in PandaSet."""
OUTPUT_NAMES = ("camera", "lidar", "annotations", "meta", "ground_truth", "synthetic.json")
"""Top-level entries the generator writes (and replaces on overwrite)."""
_GZIP = {"method": "gzip", "mtime": 0, "compresslevel": 6}


def frame_stem(frame: int) -> str:
    return f"{frame:02d}"


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) + "\n")


def quaternion_from_matrix(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """Unit quaternion (w, x, y, z), w >= 0, of a rotation matrix [3, 3] (Shepperd's method)."""
    r = np.asarray(rotation, np.float64)
    trace = np.trace(r)
    if trace > 0:
        s = 2.0 * math.sqrt(1.0 + trace)
        q = (0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s)
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        q = [0.0] * 4
        q[0] = (r[k, j] - r[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (r[j, i] + r[i, j]) / s
        q[1 + k] = (r[k, i] + r[i, k]) / s
    q = np.asarray(q) / np.linalg.norm(q)
    q = -q if q[0] < 0 else q
    return tuple(float(v) for v in q)


def pose_json(rotation: np.ndarray, position: np.ndarray) -> dict:
    """PandaSet pose dict of a sensor -> world transform."""
    w, x, y, z = quaternion_from_matrix(rotation)
    px, py, pz = (float(v) for v in position)
    return {"position": {"x": px, "y": py, "z": pz}, "heading": {"w": w, "x": x, "y": y, "z": z}}


def write_camera_meta(root: Path, camera: str, intrinsics: dict, poses: Sequence[dict], times: Sequence[float]) -> None:
    """``camera/<camera>/intrinsics.json``, ``poses.json`` and ``timestamps.json``."""
    folder = root / "camera" / camera
    write_json(folder / "intrinsics.json", {k: float(intrinsics[k]) for k in ("fx", "fy", "cx", "cy")})
    write_json(folder / "poses.json", list(poses))
    write_json(folder / "timestamps.json", [float(t) for t in times])


def write_image(root: Path, camera: str, frame: int, rgb: np.ndarray) -> None:
    """``camera/<camera>/NN.jpg`` from uint8 [H, W, 3]."""
    path = root / "camera" / camera / f"{frame_stem(frame)}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=JPEG_QUALITY)


def lidar_dataframe(sweep: LidarSweep, start_time: float, sensor_id: int) -> pd.DataFrame:
    """PandaSet's LiDAR DataFrame: x, y, z (world, float64), i, t (Unix s, float64), d (int64); index 'index'."""
    frame = pd.DataFrame(
        {
            "x": sweep.points[:, 0].astype(np.float64),
            "y": sweep.points[:, 1].astype(np.float64),
            "z": sweep.points[:, 2].astype(np.float64),
            "i": sweep.intensity.astype(np.float64),
            "t": start_time + sweep.times.astype(np.float64),
            "d": np.full(len(sweep.times), sensor_id, np.int64),
        }
    )
    frame.index.name = "index"
    return frame


def cuboid_dataframe(rows: Sequence[dict]) -> pd.DataFrame:
    """PandaSet's cuboid DataFrame from rows keyed by CUBOID_COLUMNS (None / NaN for attributes that do not apply)."""
    columns = {}
    for name in CUBOID_COLUMNS:
        values = [row[name] for row in rows]
        if name in _CUBOID_DTYPES:
            columns[name] = pd.Series(values, dtype=_CUBOID_DTYPES[name])
        else:
            columns[name] = pd.Series([np.nan if v is None else v for v in values], dtype=object)
    return pd.DataFrame(columns)


def write_pickle(frame: pd.DataFrame, path: Path) -> None:
    """Gzipped pickle as PandaSet stores it (``DataFrame.to_pickle``), without a timestamp in the gzip header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_pickle(path, compression=_GZIP)


def write_view_truth(root: Path, camera: str, frame: int, truth: ViewTruth) -> None:
    """``ground_truth/<camera>/{depth,instance,scene_flow}/NN.*``."""
    folder = root / "ground_truth" / camera
    for name in ("depth", "instance", "scene_flow"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    stem = frame_stem(frame)
    np.save(folder / "depth" / f"{stem}.npy", truth.depth.astype(np.float32))
    Image.fromarray(truth.instance.astype(np.uint16)).save(folder / "instance" / f"{stem}.png")
    np.save(folder / "scene_flow" / f"{stem}.npy", truth.scene_flow.astype(np.float32))


def write_lidar_truth(root: Path, frame: int, sweep: LidarSweep) -> None:
    """``ground_truth/lidar/NN.npz``, rows in the order of ``lidar/NN.pkl.gz``."""
    folder = root / "ground_truth" / "lidar"
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        folder / f"{frame_stem(frame)}.npz",
        velocity=sweep.velocity.astype(np.float32),
        instance=sweep.instance.astype(np.uint16),
        scene_flow=sweep.scene_flow.astype(np.float32),
        origin=sweep.origins.astype(np.float64),
        beam=sweep.beam.astype(np.int16),
        sweep_angle=sweep.sweep_angle.astype(np.float32),
    )
