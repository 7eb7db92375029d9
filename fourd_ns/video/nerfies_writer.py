"""Writes the registered frames of a processed video as a Nerfies-format dataset that nerfies-data reads.

Layout (ids ``frame_<source frame index, 6 digits>``; T registered frames, in time order)::

    camera/<id>.json          orientation (world-to-camera, OpenCV axes), position, focal_length (= fx),
                              pixel_aspect_ratio (= fy / fx), principal_point, skew 0, radial_distortion [k1, k2, k3],
                              tangential_distortion [p1, p2], image_size [W, H]; all at 1x
    rgb/1x/<id>.png, rgb/2x/<id>.png
    resized_mask/1x/<id>.png.png, resized_mask/2x/<id>.png.png
                              dynamic masks in the NeRF-DS convention read by nerfies-data: 0 on moving things,
                              255 elsewhere (a 2x pixel is 0 when any of its four 1x pixels is)
    dataset.json              {count, num_exemplars, ids, train_ids, val_ids} (``frame_split``)
    metadata.json             {id: {time_id, warp_id, appearance_id, camera_id: 0}}; time_id is the frame's position
                              in the *selected* sequence, so frames SfM dropped leave gaps and times stay
                              proportional to video time (nerfies-data divides by the largest time id)
    scene.json, points.npy    ``scene_bounds`` and the sparse points in the solution's (unscaled) world frame

``scene.json`` and ``points.npy`` go through the synthetic generator's writer (the same format).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import cv2
import imageio.v2 as imageio
import numpy as np
from jaxtyping import UInt8

from fourd_ns.synthetic import writer as synthetic_writer
from fourd_ns.video.camera_solution import CameraSolution, SharedCamera
from fourd_ns.video.scene_bounds import SceneNormalisation

SCALES = {"1x": 1, "2x": 2}
DATASET_DIRS = ("camera", "rgb", "resized_mask")
DATASET_FILES = ("dataset.json", "metadata.json", "scene.json", "points.npy")


def frame_id(source_index: int) -> str:
    return f"frame_{source_index:06d}"


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def camera_json(orientation: np.ndarray, position: np.ndarray, camera: SharedCamera) -> dict:
    """One Nerfies camera dict (1x intrinsics)."""
    return {
        "orientation": np.asarray(orientation, np.float64).tolist(),
        "position": np.asarray(position, np.float64).tolist(),
        "focal_length": float(camera.fx),
        "principal_point": [float(camera.cx), float(camera.cy)],
        "skew": 0.0,
        "pixel_aspect_ratio": float(camera.fy / camera.fx),
        "radial_distortion": [float(k) for k in camera.radial],
        "tangential_distortion": [float(p) for p in camera.tangential],
        "image_size": [int(camera.width), int(camera.height)],
    }


def half_size_image(image: UInt8[np.ndarray, "H W 3"]) -> UInt8[np.ndarray, "h w 3"]:
    """Area-averaged half-size image (sides are even, so this is an exact 2x2 average)."""
    return cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)


def half_size_mask(static: UInt8[np.ndarray, "H W"]) -> UInt8[np.ndarray, "h w"]:
    """Half-size static mask: min over each 2x2 block, so anything moving stays masked."""
    height, width = static.shape
    return static[: height // 2 * 2, : width // 2 * 2].reshape(height // 2, 2, width // 2, 2).min(axis=(1, 3))


def write_dataset(
    root: Path,
    images: UInt8[np.ndarray, "T H W 3"],
    static_masks: Optional[UInt8[np.ndarray, "T H W"]],
    ids: Sequence[str],
    solution: CameraSolution,
    normalisation: SceneNormalisation,
    train_ids: Sequence[str],
    val_ids: Sequence[str],
) -> list[str]:
    """Write the registered frames (``solution.registered``) under ``root``; returns their ids in time order.

    ``images``, ``static_masks`` and ``ids`` cover every selected frame; the time id of a frame is its index there.
    """
    (root / "camera").mkdir(parents=True, exist_ok=True)
    for scale in SCALES:
        (root / "rgb" / scale).mkdir(parents=True, exist_ok=True)
        if static_masks is not None:
            (root / "resized_mask" / scale).mkdir(parents=True, exist_ok=True)
    written = []
    metadata = {}
    for index in np.flatnonzero(solution.registered):
        vid = ids[index]
        _write_json(root / "camera" / f"{vid}.json",
                    camera_json(solution.orientation[index], solution.position[index], solution.camera))  # fmt: skip
        imageio.imwrite(root / "rgb" / "1x" / f"{vid}.png", images[index])
        imageio.imwrite(root / "rgb" / "2x" / f"{vid}.png", half_size_image(images[index]))
        if static_masks is not None:
            imageio.imwrite(root / "resized_mask" / "1x" / f"{vid}.png.png", static_masks[index])
            imageio.imwrite(root / "resized_mask" / "2x" / f"{vid}.png.png", half_size_mask(static_masks[index]))
        metadata[vid] = {"time_id": int(index), "warp_id": int(index), "appearance_id": int(index), "camera_id": 0}
        written.append(vid)
    _write_json(root / "dataset.json", {
        "count": len(written), "num_exemplars": len(written), "ids": written,
        "train_ids": list(train_ids), "val_ids": list(val_ids),
    })  # fmt: skip
    _write_json(root / "metadata.json", metadata)
    synthetic_writer.write_scene(root, normalisation.center, normalisation.scale, normalisation.near, normalisation.far)
    synthetic_writer.write_points(root, solution.points)
    return written
