"""Poses, the shared camera and sparse points from COLMAP's incremental SfM, through pycolmap.

Nothing here re-implements SfM: pycolmap's ``extract_features`` (SIFT, one camera shared by all frames, with the
dynamic masks as COLMAP feature masks: no keypoint where the mask is 0), ``match_sequential`` (each frame against
its ``sequential_overlap`` successors, which suits a video and is linear in its length) and ``incremental_mapping``.

Everything goes into ``<output>/sfm/``: ``images/`` and ``masks/`` (exactly what COLMAP saw; COLMAP names the mask
of ``<id>.png`` ``<id>.png.png``), ``database.db`` and ``sparse/<k>/`` (every model COLMAP built, in COLMAP's binary
format, readable by COLMAP's GUI or ``pycolmap.Reconstruction``). When COLMAP splits the video into several models
the largest is used and the others are reported; frames outside it count as not registered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

import imageio.v2 as imageio
import numpy as np
from jaxtyping import UInt8

from fourd_ns.video.camera_solution import CameraSolution, SharedCamera
from fourd_ns.video.errors import VideoProcessingError

CameraModel = Literal["SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV"]


@dataclass
class ColmapOptions:
    """COLMAP settings of ``--poses colmap``."""

    camera_model: CameraModel = "SIMPLE_RADIAL"
    """Shared camera model; its distortion is written to the camera JSONs and undone by nerfies-data."""
    max_num_features: int = 8192
    """SIFT keypoints per frame at most."""
    sequential_overlap: int = 10
    """Each frame is matched against this many following frames."""
    num_threads: int = -1
    """Threads of feature extraction, matching and mapping (-1: all cores)."""
    seed: int = 0
    """Seed of COLMAP's random sampling (RANSAC, initial pair trials)."""


def _camera_from_colmap(camera) -> SharedCamera:
    """Our shared camera from a pycolmap camera of one of the supported models."""
    name = camera.model.name
    params = [float(p) for p in camera.params]
    if name == "SIMPLE_PINHOLE":
        (f, cx, cy), radial, tangential = params, (0.0, 0.0, 0.0), (0.0, 0.0)
        fx = fy = f
    elif name == "PINHOLE":
        fx, fy, cx, cy = params
        radial, tangential = (0.0, 0.0, 0.0), (0.0, 0.0)
    elif name == "SIMPLE_RADIAL":
        f, cx, cy, k = params
        fx = fy = f
        radial, tangential = (k, 0.0, 0.0), (0.0, 0.0)
    elif name == "RADIAL":
        f, cx, cy, k1, k2 = params
        fx = fy = f
        radial, tangential = (k1, k2, 0.0), (0.0, 0.0)
    elif name == "OPENCV":
        fx, fy, cx, cy, k1, k2, p1, p2 = params
        radial, tangential = (k1, k2, 0.0), (p1, p2)
    else:  # the options only offer the models above
        raise VideoProcessingError(f"COLMAP camera model {name} is not supported; use one of {CameraModel.__args__}")
    return SharedCamera(name, int(camera.width), int(camera.height), fx, fy, cx, cy, radial, tangential)


def _write_inputs(
    folder: Path, ids: Sequence[str], images: UInt8[np.ndarray, "T H W 3"], static: Optional[np.ndarray]
) -> tuple[Path, Optional[Path], list[str]]:
    image_dir = folder / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir = None
    if static is not None:
        mask_dir = folder / "masks"
        mask_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for index, frame_id in enumerate(ids):
        name = f"{frame_id}.png"
        imageio.imwrite(image_dir / name, images[index])
        if mask_dir is not None:
            imageio.imwrite(mask_dir / f"{name}.png", static[index])
        names.append(name)
    return image_dir, mask_dir, names


def solve_with_colmap(
    images: UInt8[np.ndarray, "T H W 3"],
    ids: Sequence[str],
    static_masks: Optional[UInt8[np.ndarray, "T H W"]],
    workspace: Path,
    options: ColmapOptions,
    log: Callable[[str], None] = lambda message: None,
) -> CameraSolution:
    """Incremental SfM of the frames (see the module docstring); ``static_masks`` are 0 where no feature may be."""
    import pycolmap  # imported here: a heavy extension module only this pose source needs

    pycolmap.set_random_seed(options.seed)
    workspace.mkdir(parents=True, exist_ok=True)
    image_dir, mask_dir, names = _write_inputs(workspace, ids, images, static_masks)
    database = workspace / "database.db"
    if database.exists():
        database.unlink()
    threads = options.num_threads if options.num_threads > 0 else (os.cpu_count() or 1)
    device = pycolmap.Device.cpu

    reader = pycolmap.ImageReaderOptions(camera_model=options.camera_model)
    if mask_dir is not None:
        reader.mask_path = str(mask_dir)
    extraction = pycolmap.FeatureExtractionOptions(num_threads=threads)
    extraction.sift.max_num_features = options.max_num_features
    log(f"COLMAP: extracting SIFT features of {len(names)} frames ({options.camera_model}, one shared camera"
        f"{', dynamic regions masked' if mask_dir is not None else ''})")
    pycolmap.extract_features(database, image_dir, image_names=names, camera_mode=pycolmap.CameraMode.SINGLE,
                              reader_options=reader, extraction_options=extraction, device=device)  # fmt: skip

    log(f"COLMAP: sequential matching (overlap {options.sequential_overlap})")
    pycolmap.match_sequential(
        database,
        matching_options=pycolmap.FeatureMatchingOptions(num_threads=threads),
        pairing_options=pycolmap.SequentialPairingOptions(overlap=options.sequential_overlap, num_threads=threads),
        device=device,
    )

    log("COLMAP: incremental mapping")
    mapping = pycolmap.IncrementalPipelineOptions(num_threads=threads, random_seed=options.seed)
    sparse = workspace / "sparse"
    sparse.mkdir(exist_ok=True)
    models = pycolmap.incremental_mapping(database, image_dir, sparse, options=mapping)
    if not models:
        return _unregistered(len(names), images.shape[2], images.shape[1], options.camera_model,
                             "COLMAP built no model: no frame pair had enough verified matches to start")  # fmt: skip
    ranked = sorted(models.items(), key=lambda item: item[1].num_reg_images(), reverse=True)
    best_key, best = ranked[0]
    notes = []
    if len(ranked) > 1:
        others = ", ".join(f"sparse/{key}: {model.num_reg_images()} frames" for key, model in ranked[1:])
        notes.append(f"COLMAP split the video into {len(ranked)} models; using sparse/{best_key} "
                     f"({best.num_reg_images()} frames), the others ({others}) are left out")  # fmt: skip
    return _solution_from_model(best, names, notes)


def _unregistered(frames: int, width: int, height: int, model: str, note: str) -> CameraSolution:
    nan = np.full((frames, 3), np.nan)
    return CameraSolution(
        source="colmap",
        camera=SharedCamera(model, width, height, np.nan, np.nan, width / 2, height / 2),
        registered=np.zeros(frames, dtype=bool),
        orientation=np.full((frames, 3, 3), np.nan),
        position=nan,
        points=np.zeros((0, 3)),
        point_colors=np.zeros((0, 3), dtype=np.uint8),
        notes=(note,),
    )


def _solution_from_model(model, names: Sequence[str], notes: list[str]) -> CameraSolution:
    frames = len(names)
    index_of = {name: i for i, name in enumerate(names)}
    registered = np.zeros(frames, dtype=bool)
    orientation = np.full((frames, 3, 3), np.nan)
    position = np.full((frames, 3), np.nan)
    camera_ids = set()
    for image in model.images.values():
        if not image.has_pose or image.name not in index_of:
            continue
        i = index_of[image.name]
        cam_from_world = image.cam_from_world()
        registered[i] = True
        orientation[i] = cam_from_world.rotation.matrix()
        position[i] = image.projection_center()
        camera_ids.add(image.camera_id)
    if len(camera_ids) != 1:  # camera_mode SINGLE makes this impossible; say so if COLMAP ever changes
        raise VideoProcessingError(f"COLMAP used {len(camera_ids)} cameras for one video; expected one shared camera")
    camera = _camera_from_colmap(model.cameras[camera_ids.pop()])
    points = np.array([p.xyz for p in model.points3D.values()], dtype=np.float64).reshape(-1, 3)
    colors = np.array([p.color for p in model.points3D.values()], dtype=np.uint8).reshape(-1, 3)
    return CameraSolution(
        source="colmap",
        camera=camera,
        registered=registered,
        orientation=orientation,
        position=position,
        points=points,
        point_colors=colors,
        mean_reprojection_error=float(model.compute_mean_reprojection_error()),
        notes=tuple(notes),
    )
