"""Tiny, geometrically consistent Nerfies-format captures for tests (no downloads, no binary files in git).

A two-camera rig (left = ``camera_id`` 0 = train, right = ``camera_id`` 1 = val) orbits a cloud of coloured
points; every image is rendered by projecting those points (one pixel each, nearest wins) through the same
OpenCV camera model the camera JSON describes, so colours, depths and poses agree with each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
from PIL import Image

from fourd_ns.geometry.opencv_projection import project_points_opencv

SCENE_CENTER = np.array([0.4, -0.3, 1.2])
SCENE_SCALE = 0.5
BACKGROUND_RGB = (20, 20, 20)
ORBIT_RADIUS = 4.0
RIG_BASELINE = 0.3
DOWNSCALES = (1, 2)


def frame_ids(num_frames: int) -> Tuple[list, list]:
    """(left ids, right ids); index t of each list is time step t."""
    return [f"left_{t:05d}" for t in range(num_frames)], [f"right_{t:05d}" for t in range(num_frames)]


def look_at_orientation(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-to-camera rotation [3, 3] (rows = camera x right, y down, z forward) with world +z up."""
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


def write_nerfies_scene(
    root: Path,
    num_frames: int = 6,
    width: int = 32,
    height: int = 24,
    *,
    num_points: int = 40,
    include_time_id: bool = True,
    tangential_key: str = "tangential_distortion",
    radial_distortion: Sequence[float] = (0.0, 0.0, 0.0),
    tangential_distortion: Sequence[float] = (0.0, 0.0),
    skew: float = 0.0,
    pixel_aspect_ratio: float = 1.05,
    with_depth: bool = False,
    with_masks: bool = False,
    with_flow: bool = False,
    seed: int = 0,
) -> Path:
    """Write a capture to ``root`` and return it.

    Layout: dataset.json (ids interleaved left/right per time step, train_ids = left, val_ids = right),
    metadata.json (warp_id, appearance_id, camera_id and, unless ``include_time_id`` is False, time_id),
    scene.json, camera/<id>.json with every field (tangential distortion under ``tangential_key``),
    rgb/1x and rgb/2x PNGs, points.npy (world units). Optional: depth/<N>x/*.npy (z-depth in world units),
    dynamic_mask/<N>x/*.png (255 = the first quarter of the points), resized_mask/1x/<id>.png.png for the
    train views only (NeRF-DS, moving = 0), flow/<N>x and scene_flow/<N>x zero-motion .npy files.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    points = SCENE_CENTER + rng.uniform(-1.0, 1.0, size=(num_points, 3))
    colors = rng.integers(60, 256, size=(num_points, 3), dtype=np.uint8)
    is_dynamic = np.arange(num_points) < num_points // 4
    np.save(root / "points.npy", points)

    left_ids, right_ids = frame_ids(num_frames)
    ids = [i for pair in zip(left_ids, right_ids) for i in pair]
    _write_json(
        root / "dataset.json",
        {
            "count": len(ids),
            "num_exemplars": len(left_ids),
            "ids": ids,
            "train_ids": left_ids,
            "val_ids": right_ids,
        },
    )
    metadata = {}
    for camera_id, rig_ids in enumerate((left_ids, right_ids)):
        for t, frame_id in enumerate(rig_ids):
            metadata[frame_id] = {"warp_id": t, "appearance_id": t, "camera_id": camera_id}
            if include_time_id:
                metadata[frame_id]["time_id"] = t
    _write_json(root / "metadata.json", metadata)
    _write_json(
        root / "scene.json",
        {
            "center": SCENE_CENTER.tolist(),
            "scale": SCENE_SCALE,
            "near": 0.5,
            "far": 4.0,
        },
    )

    focal = 1.1 * width
    principal_point = (width / 2 + 1.3, height / 2 - 0.7)
    for t in range(num_frames):
        angle = 0.15 * t
        left = SCENE_CENTER + ORBIT_RADIUS * np.array([np.cos(angle), np.sin(angle), 0.3])
        orientation = look_at_orientation(left, SCENE_CENTER)
        # The right camera sits RIG_BASELINE along the left camera's x axis, with the same orientation.
        for frame_id, position in ((left_ids[t], left), (right_ids[t], left + RIG_BASELINE * orientation[0])):
            _write_json(
                root / "camera" / f"{frame_id}.json",
                {
                    "orientation": orientation.tolist(),
                    "position": position.tolist(),
                    "focal_length": focal,
                    "principal_point": list(principal_point),
                    "skew": skew,
                    "pixel_aspect_ratio": pixel_aspect_ratio,
                    "radial_distortion": list(radial_distortion),
                    tangential_key: list(tangential_distortion),
                    "image_size": [width, height],
                },
            )
            for downscale in DOWNSCALES:
                size = (round(width / downscale), round(height / downscale))
                rgb, depth, dynamic = _render(
                    points,
                    colors,
                    is_dynamic,
                    orientation,
                    position,
                    size,
                    focal=(focal / downscale, focal * pixel_aspect_ratio / downscale),
                    principal_point=(principal_point[0] / downscale, principal_point[1] / downscale),
                    radial=tuple(radial_distortion),
                    tangential=tuple(tangential_distortion),
                )
                scale_dir = f"{downscale}x"
                _save_png(root / "rgb" / scale_dir / f"{frame_id}.png", rgb)
                if with_depth:
                    _save_npy(root / "depth" / scale_dir / f"{frame_id}.npy", depth)
                if with_masks:
                    _save_png(root / "dynamic_mask" / scale_dir / f"{frame_id}.png", dynamic)
                    if downscale == 1 and frame_id in left_ids:
                        _save_png(root / "resized_mask" / "1x" / f"{frame_id}.png.png", 255 - dynamic)
                if with_flow:
                    _save_npy(root / "flow" / scale_dir / f"{frame_id}.npy", np.zeros((*depth.shape, 2), np.float32))
                    _save_npy(
                        root / "scene_flow" / scale_dir / f"{frame_id}.npy", np.zeros((*depth.shape, 3), np.float32)
                    )
    return root


def _render(
    points: np.ndarray,
    colors: np.ndarray,
    is_dynamic: np.ndarray,
    orientation: np.ndarray,
    position: np.ndarray,
    size: Tuple[int, int],
    focal: Tuple[float, float],
    principal_point: Tuple[float, float],
    radial: Tuple[float, float, float],
    tangential: Tuple[float, float],
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point splats one pixel wide with a z-buffer: rgb uint8 [H, W, 3], z-depth float32 [H, W] (far
    background = 100 world units), dynamic mask uint8 [H, W] (255 = dynamic point)."""
    width, height = size
    rgb = np.tile(np.array(BACKGROUND_RGB, np.uint8), (height, width, 1))
    depth = np.full((height, width), 100.0, np.float32)
    dynamic = np.zeros((height, width), np.uint8)
    pixels, z = project_points_opencv(points, orientation, position, focal, principal_point, radial, tangential)
    for index in np.argsort(-z):  # far to near, so the nearest point is painted last
        column, row = int(np.floor(pixels[index, 0])), int(np.floor(pixels[index, 1]))
        if z[index] > 0 and 0 <= column < width and 0 <= row < height:
            rgb[row, column] = colors[index]
            depth[row, column] = z[index]
            dynamic[row, column] = 255 if is_dynamic[index] else 0
    return rgb, depth, dynamic


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
