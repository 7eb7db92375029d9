"""Writer for the Nerfies / HyperNeRF / NeRF-DS on-disk format plus our ground-truth folders.

See the package docstring (`fourd_ns/synthetic/__init__.py`) for the layout this produces.
"""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from torch import Tensor

from fourd_ns.synthetic.camera import PinholeCamera
from fourd_ns.synthetic.render import GroundTruth

SCALES = {"1x": 1, "2x": 2}
"""Folder name -> downscale factor of every per-view output."""
OUTPUT_DIRS = ("camera", "rgb", "depth", "flow", "scene_flow", "dynamic_mask")
OUTPUT_FILES = ("dataset.json", "metadata.json", "scene.json", "points.npy", "synthetic.json")
CAMERA_IDS = {"left": 0, "right": 1}
"""Rig camera name -> `camera_id` in metadata.json (Nerfies validation-rig convention)."""


def view_id(camera_name: str, time_id: int) -> str:
    return f"{camera_name}_{time_id:06d}"


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def camera_json(camera: PinholeCamera) -> dict:
    """Nerfies camera dict of a 1x camera (orientation = world-to-camera rotation, OpenCV axes)."""
    return {
        "orientation": np.asarray(camera.rotation, np.float64).tolist(),
        "position": np.asarray(camera.position, np.float64).tolist(),
        "focal_length": float(camera.focal),
        "principal_point": [float(c) for c in camera.principal_point],
        "skew": 0.0,
        "pixel_aspect_ratio": 1.0,
        "radial_distortion": [0.0, 0.0, 0.0],
        "tangential_distortion": [0.0, 0.0],
        "image_size": [camera.width, camera.height],
    }


def make_dirs(root: Path) -> None:
    (root / "camera").mkdir(parents=True, exist_ok=True)
    for name in ("rgb", "depth", "flow", "scene_flow", "dynamic_mask"):
        for scale in SCALES:
            (root / name / scale).mkdir(parents=True, exist_ok=True)


def _to_uint8(rgb: Tensor) -> np.ndarray:
    return (rgb.clamp(0.0, 1.0).numpy() * 255.0).round().astype(np.uint8)


def write_view(
    root: Path, vid: str, camera: PinholeCamera, rgb: dict[str, Tensor], truth: dict[str, GroundTruth]
) -> None:
    """Camera JSON, images and ground truth of one view; `rgb` and `truth` are keyed by scale folder ("1x", "2x")."""
    _write_json(root / "camera" / f"{vid}.json", camera_json(camera))
    for scale in SCALES:
        gt = truth[scale]
        imageio.imwrite(root / "rgb" / scale / f"{vid}.png", _to_uint8(rgb[scale]))
        np.save(root / "depth" / scale / f"{vid}.npy", gt.depth.numpy().astype(np.float32))
        np.save(root / "flow" / scale / f"{vid}.npy", gt.flow.numpy().astype(np.float32))
        np.save(root / "scene_flow" / scale / f"{vid}.npy", gt.scene_flow.numpy().astype(np.float32))
        imageio.imwrite(root / "dynamic_mask" / scale / f"{vid}.png", gt.dynamic.numpy().astype(np.uint8) * 255)


def write_index(root: Path, num_frames: int) -> None:
    """dataset.json (train = left camera, val = right camera) and metadata.json."""
    train = [view_id("left", t) for t in range(num_frames)]
    val = [view_id("right", t) for t in range(num_frames)]
    dataset = {"count": len(train) + len(val), "num_exemplars": len(train), "ids": train + val}
    _write_json(root / "dataset.json", {**dataset, "train_ids": train, "val_ids": val})
    metadata = {
        view_id(name, t): {"warp_id": t, "appearance_id": t, "camera_id": camera_id, "time_id": t}
        for name, camera_id in CAMERA_IDS.items()
        for t in range(num_frames)
    }
    _write_json(root / "metadata.json", metadata)


def write_scene(root: Path, center: np.ndarray, scale: float, near: float, far: float) -> None:
    """scene.json; `near` / `far` are in scaled coordinates, as in Nerfies."""
    _write_json(
        root / "scene.json",
        {"scale": float(scale), "center": [float(c) for c in center], "near": float(near), "far": float(far)},
    )


def write_points(root: Path, points: np.ndarray) -> None:
    np.save(root / "points.npy", points.astype(np.float32))


def write_provenance(root: Path, description: dict) -> None:
    _write_json(root / "synthetic.json", description)
