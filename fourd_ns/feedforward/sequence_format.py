"""The on-disk format for users' own Flow4R / Flow3r training sequences: a writer, a lazy validating reader, and an
exporter that renders a synthetic clip into the format (a worked example, and the round-trip used by the tests).

The layout is documented for users in ``docs/sequence_format.md``; in short, one folder per sequence of T frames::

    meta.json                {"format_version": 1, "dynamic": true | false}
    cameras.json             {"frames": [{"intrinsics": 3×3, "camera_to_world": 4×4, "time": float (optional)}, …]}
    images/000000.png …      RGB (.png, .jpg or .jpeg), all H × W
    depth/000000.npy …       float32 [H, W] z-depth; 0 or non-finite = invalid
    flow/000000.npy …        optional: forward optical flow frame t → t+1, float32 [H, W, 2], t = 0 … T−2
    flow_backward/000001.npy optional: backward optical flow frame t → t−1, float32 [H, W, 2], t = 1 … T−1
    masks/000000.png …       optional: uint8 [H, W], non-zero where the pixel sees something that moves
    tracks.npz               optional: points_world [N, T, 3], visible [N, T] bool, pixels [N, T, 2] (optional)

Design choices:

- **Validation happens once, up front, for everything cheap** (JSON contents, file counts and names, camera
  matrices), so a broken folder fails when the dataset is built rather than hours into training; per-frame arrays
  are loaded lazily and their shapes are checked on load. Every error names the file at fault and says what to fix.
- **``flow_backward/``** is an addition to the minimal layout: forward flow alone supervises only the first view of
  an adjacent pair, and a backward flow lets the dataset reject occluded pixels by a forward–backward check.
- **Times** are optional (the dataset samples pairs by frame index); when absent they are ``t / (T − 1)``, the
  [0, 1] convention of nerfstudio. Frames must be in temporal order because flow refers to the next frame.
- Lengths are in any unit shared by depth, camera translations and tracks (metres for real data; the synthetic
  scenes' world units are about metres). The losses are scale-invariant, the sequence must only be consistent.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import imageio.v2 as imageio
import numpy as np
import torch
from jaxtyping import Bool, Float, UInt8
from torch import Tensor

from fourd_ns.feedforward.synthetic_pairs import (
    camera_to_world,
    cast_pixel_centres,
    frozen_scene,
    intrinsics_matrix,
    render_image,
    scene_is_dynamic,
    visible_from,
)
from fourd_ns.progress import progress_bar
from fourd_ns.synthetic.camera import pixel_centres, project
from fourd_ns.synthetic.presets import PRESETS
from fourd_ns.synthetic.rig import stereo_rig
from fourd_ns.synthetic.scene import Hits, material_points_at

FORMAT_VERSION = 1
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
FRAME_NAME = "{:06d}"
WRITTEN_DIRS = ("images", "depth", "flow", "flow_backward", "masks")
WRITTEN_FILES = ("meta.json", "cameras.json", "tracks.npz")
_ROTATION_TOLERANCE = 1e-3
"""Largest |RᵀR − I| entry accepted for a camera_to_world rotation (float32 JSON round-trips are ~1e-7)."""
_FRAME_FILE = re.compile(r"^(\d{6})(\.[A-Za-z]+)$")


class SequenceFormatError(ValueError):
    """A sequence folder does not follow docs/sequence_format.md."""


@dataclass
class Tracks:
    """Point tracks of a sequence in world coordinates."""

    points_world: Float[Tensor, "N T 3"]
    """Position of each tracked material point at each frame's time (also while it is hidden)."""
    visible: Bool[Tensor, "N T"]
    """Whether the point is seen in frame t (not occluded, inside the image)."""
    pixels: Optional[Float[Tensor, "N T 2"]] = None
    """Pixel position (u, v) in frame t (pixel centres at integer + 0.5); None = project ``points_world``."""


def _frame_name(index: int, extension: str) -> str:
    return FRAME_NAME.format(index) + extension


def _list_frames(folder: Path, extensions: tuple[str, ...]) -> dict[int, Path]:
    """Frame index → file for the files named ``NNNNNN.<ext>`` in ``folder``; anything else there is an error."""
    frames: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        match = _FRAME_FILE.match(path.name)
        if match is None or match.group(2).lower() not in extensions:
            raise SequenceFormatError(
                f"{path}: unexpected file; {folder.name}/ holds only frames named like "
                f"{_frame_name(0, extensions[0])} (6-digit frame index, extension {' or '.join(extensions)})"
            )
        index = int(match.group(1))
        if index in frames:
            raise SequenceFormatError(f"{path}: frame {index} appears twice in {folder} (also {frames[index].name})")
        frames[index] = path
    return frames


def _expect_frames(folder: Path, expected: range, extensions: tuple[str, ...], what: str) -> dict[int, Path]:
    frames = _list_frames(folder, extensions)
    missing = [i for i in expected if i not in frames]
    extra = sorted(set(frames) - set(expected))
    if missing:
        example = folder / _frame_name(missing[0], extensions[0])
        raise SequenceFormatError(
            f"{example} is missing: {what} needs one file per frame index {expected.start}…{expected.stop - 1} "
            f"({len(missing)} missing in {folder})"
        )
    if extra:
        raise SequenceFormatError(
            f"{frames[extra[0]]}: {what} expects frame indices {expected.start}…{expected.stop - 1} only (one per "
            f"frame in cameras.json), but {folder} also has {extra}; remove those files or add their cameras"
        )
    return frames


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise SequenceFormatError(f"{path} is missing; see docs/sequence_format.md for its contents")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SequenceFormatError(f"{path} is not valid JSON: {error}") from error


def _matrix(value, shape: tuple[int, int], where: str) -> np.ndarray:
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise SequenceFormatError(f"{where} must be a {shape[0]}×{shape[1]} list of numbers") from error
    if matrix.shape != shape or not np.isfinite(matrix).all():
        raise SequenceFormatError(f"{where} must be a finite {shape[0]}×{shape[1]} matrix, got shape {matrix.shape}")
    return matrix


def _check_intrinsics(k: np.ndarray, where: str) -> None:
    if k[0, 0] <= 0 or k[1, 1] <= 0 or k[0, 1] != 0 or k[1, 0] != 0 or not np.array_equal(k[2], [0.0, 0.0, 1.0]):
        raise SequenceFormatError(
            f"{where} must be a pinhole matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, got {k.tolist()}"
        )


def _check_camera_to_world(pose: np.ndarray, where: str) -> None:
    rotation = pose[:3, :3]
    orthonormal = np.abs(rotation.T @ rotation - np.eye(3)).max() <= _ROTATION_TOLERANCE
    if not np.array_equal(pose[3], [0.0, 0.0, 0.0, 1.0]) or not orthonormal or np.linalg.det(rotation) <= 0:
        raise SequenceFormatError(
            f"{where} must be a rigid 4×4 camera-to-world matrix (rotation with det +1, last row [0, 0, 0, 1]; "
            f"OpenCV axes: x right, y down, z forward)"
        )


class Sequence:
    """A validated sequence folder; per-frame arrays are read on demand (see ``read_sequence``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        meta = _read_json(folder / "meta.json")
        version = meta.get("format_version")
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise SequenceFormatError(
                f"{folder / 'meta.json'}: format_version {version!r} is not supported (this fourd_ns reads "
                f"version {FORMAT_VERSION}); write the folder with fourd_ns.feedforward.sequence_format.write_sequence"
            )
        if not isinstance(meta.get("dynamic"), bool):
            raise SequenceFormatError(
                f"{folder / 'meta.json'}: 'dynamic' must be true (objects move) or false (static scene)"
            )
        self.dynamic: bool = meta["dynamic"]
        """Whether anything in the scene moves (static sequences get rigid-motion ground truth everywhere)."""

        cameras_path = folder / "cameras.json"
        frames = _read_json(cameras_path).get("frames")
        if not isinstance(frames, list) or not frames:
            raise SequenceFormatError(f'{cameras_path}: expected {{"frames": [ … one entry per frame … ]}}')
        self.num_frames = len(frames)
        intrinsics, poses, times = [], [], []
        for t, frame in enumerate(frames):
            where = f"{cameras_path} frame {t}"
            if not isinstance(frame, dict):
                raise SequenceFormatError(f"{where}: expected an object with intrinsics and camera_to_world")
            k = _matrix(frame.get("intrinsics"), (3, 3), f"{where} 'intrinsics'")
            _check_intrinsics(k, f"{where} 'intrinsics'")
            pose = _matrix(frame.get("camera_to_world"), (4, 4), f"{where} 'camera_to_world'")
            _check_camera_to_world(pose, f"{where} 'camera_to_world'")
            intrinsics.append(k)
            poses.append(pose)
            times.append(frame.get("time"))
        if all(time is None for time in times):
            times = [t / max(self.num_frames - 1, 1) for t in range(self.num_frames)]
        elif any(not isinstance(time, (int, float)) or not np.isfinite(time) for time in times):
            raise SequenceFormatError(f"{cameras_path}: give a finite 'time' for every frame or for none")
        elif any(b <= a for a, b in zip(times[:-1], times[1:])):
            raise SequenceFormatError(f"{cameras_path}: frame times must increase; order the frames by time")
        self.intrinsics: Float[Tensor, "T 3 3"] = torch.as_tensor(np.stack(intrinsics), dtype=torch.float32)
        self.camera_to_world: Float[Tensor, "T 4 4"] = torch.as_tensor(np.stack(poses), dtype=torch.float32)
        self.times: Float[Tensor, "T"] = torch.as_tensor(times, dtype=torch.float64)

        all_frames = range(self.num_frames)
        self._images = _expect_frames(self._required_dir("images"), all_frames, IMAGE_EXTENSIONS, "images")
        self._depths = _expect_frames(self._required_dir("depth"), all_frames, (".npy",), "depth")
        self._flows = self._optional_frames("flow", range(self.num_frames - 1), (".npy",), "forward flow")
        self._backward_flows = self._optional_frames(
            "flow_backward", range(1, self.num_frames), (".npy",), "backward flow"
        )
        self._masks = self._optional_frames("masks", all_frames, (".png",), "masks")
        self._tracks_path = folder / "tracks.npz"
        self._tracks: Optional[Tracks] = None
        first = imageio.imread(self._images[0])
        self.image_size: tuple[int, int] = (int(first.shape[0]), int(first.shape[1]))
        """(H, W) of every frame."""

    def _required_dir(self, name: str) -> Path:
        path = self.folder / name
        if not path.is_dir():
            raise SequenceFormatError(f"{path} is missing; every sequence needs {name}/ (see docs/sequence_format.md)")
        return path

    def _optional_frames(self, name: str, expected: range, extensions: tuple[str, ...], what: str) -> dict[int, Path]:
        path = self.folder / name
        return _expect_frames(path, expected, extensions, what) if path.is_dir() else {}

    @property
    def has_flow(self) -> bool:
        return bool(self._flows)

    @property
    def has_backward_flow(self) -> bool:
        return bool(self._backward_flows)

    @property
    def has_masks(self) -> bool:
        return bool(self._masks)

    @property
    def has_tracks(self) -> bool:
        return self._tracks_path.is_file()

    def _check_shape(self, array: np.ndarray, shape: tuple[int, ...], path: Path) -> None:
        if array.shape != shape:
            raise SequenceFormatError(f"{path}: expected an array of shape {list(shape)}, got {list(array.shape)}")

    def image(self, t: int) -> UInt8[Tensor, "H W 3"]:
        """Frame t as uint8 RGB (grey images are repeated to 3 channels, an alpha channel is dropped)."""
        path = self._images[t]
        image = np.asarray(imageio.imread(path))
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[..., :3]
        if image.dtype != np.uint8:
            raise SequenceFormatError(f"{path}: images must be 8-bit, got {image.dtype}")
        self._check_shape(image, (*self.image_size, 3), path)
        return torch.from_numpy(np.ascontiguousarray(image))

    def depth(self, t: int) -> Float[Tensor, "H W"]:
        """Frame t's z-depth; invalid pixels (0, negative or non-finite in the file) are 0."""
        path = self._depths[t]
        depth = np.load(path).astype(np.float32)
        self._check_shape(depth, self.image_size, path)
        return torch.from_numpy(np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32))

    def _flow(self, files: dict[int, Path], t: int, name: str) -> Float[Tensor, "H W 2"]:
        if t not in files:
            raise SequenceFormatError(f"{self.folder / name / _frame_name(t, '.npy')} does not exist")
        flow = np.load(files[t]).astype(np.float32)
        self._check_shape(flow, (*self.image_size, 2), files[t])
        return torch.from_numpy(flow)

    def flow(self, t: int) -> Float[Tensor, "H W 2"]:
        """Optical flow (pixels) from frame t to frame t+1; non-finite entries mean unknown."""
        return self._flow(self._flows, t, "flow")

    def backward_flow(self, t: int) -> Float[Tensor, "H W 2"]:
        """Optical flow (pixels) from frame t to frame t−1; non-finite entries mean unknown."""
        return self._flow(self._backward_flows, t, "flow_backward")

    def mask(self, t: int) -> Bool[Tensor, "H W"]:
        """Frame t's dynamic mask (True where the pixel sees something that moves)."""
        path = self._masks[t]
        mask = np.asarray(imageio.imread(path))
        self._check_shape(mask, self.image_size, path)
        return torch.from_numpy(mask != 0)

    def tracks(self) -> Tracks:
        """The point tracks (loaded and validated on first use)."""
        if self._tracks is None:
            self._tracks = self._load_tracks()
        return self._tracks

    def _load_tracks(self) -> Tracks:
        path = self._tracks_path
        if not path.is_file():
            raise SequenceFormatError(f"{path} does not exist")
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
        for name in ("points_world", "visible"):
            if name not in arrays:
                raise SequenceFormatError(f"{path}: missing array '{name}' (has {sorted(arrays)})")
        points = arrays["points_world"]
        count = points.shape[0] if points.ndim == 3 else -1
        self._check_shape(points, (count, self.num_frames, 3), path)
        self._check_shape(arrays["visible"], (count, self.num_frames), path)
        pixels = arrays.get("pixels")
        if pixels is not None:
            self._check_shape(pixels, (count, self.num_frames, 2), path)
        return Tracks(
            points_world=torch.as_tensor(points, dtype=torch.float32),
            visible=torch.as_tensor(arrays["visible"].astype(bool)),
            pixels=None if pixels is None else torch.as_tensor(pixels, dtype=torch.float32),
        )


def read_sequence(folder: str | Path) -> Sequence:
    """Open and validate a sequence folder (layout in docs/sequence_format.md); frames are loaded lazily."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SequenceFormatError(f"{folder} is not a folder; pass the folder that holds meta.json and cameras.json")
    return Sequence(folder)


def _as_numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)


def _prepare_folder(folder: Path, overwrite: bool) -> None:
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{folder} exists and is not empty; choose another folder or pass overwrite=True")
        # Only what this writer writes is removed, so a mistyped folder loses nothing else.
        for name in WRITTEN_DIRS:
            shutil.rmtree(folder / name, ignore_errors=True)
        for name in WRITTEN_FILES:
            (folder / name).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)


def write_sequence(
    folder: str | Path,
    images: UInt8[Tensor, "T H W 3"],
    depths: Float[Tensor, "T H W"],
    intrinsics: Float[Tensor, "T 3 3"],
    camera_to_world: Float[Tensor, "T 4 4"],
    dynamic: bool,
    times: Optional[Float[Tensor, "T"]] = None,
    flows: Optional[Float[Tensor, "T-1 H W 2"]] = None,
    backward_flows: Optional[Float[Tensor, "T-1 H W 2"]] = None,
    masks: Optional[Bool[Tensor, "T H W"]] = None,
    tracks: Optional[Tracks] = None,
    overwrite: bool = False,
) -> Path:
    """Write a sequence folder (tensors or numpy arrays). ``flows[t]`` is frame t → t+1 and ``backward_flows[t]``
    is frame t+1 → t (stored as ``flow_backward/<t+1>.npy``). Returns the folder."""
    folder = Path(folder)
    images = _as_numpy(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"write_sequence: images must be uint8 [T, H, W, 3], got {images.dtype} {list(images.shape)}")
    num_frames, height, width = images.shape[:3]
    arrays = {
        "depths": (_as_numpy(depths), (num_frames, height, width)),
        "intrinsics": (_as_numpy(intrinsics), (num_frames, 3, 3)),
        "camera_to_world": (_as_numpy(camera_to_world), (num_frames, 4, 4)),
        "times": (None if times is None else _as_numpy(times), (num_frames,)),
        "flows": (None if flows is None else _as_numpy(flows), (num_frames - 1, height, width, 2)),
        "backward_flows": (
            None if backward_flows is None else _as_numpy(backward_flows),
            (num_frames - 1, height, width, 2),
        ),
        "masks": (None if masks is None else _as_numpy(masks), (num_frames, height, width)),
    }
    for name, (array, shape) in arrays.items():
        if array is not None and array.shape != shape:
            raise ValueError(f"write_sequence: {name} must have shape {list(shape)}, got {list(array.shape)}")

    _prepare_folder(folder, overwrite)
    (folder / "meta.json").write_text(
        json.dumps({"format_version": FORMAT_VERSION, "dynamic": bool(dynamic)}, indent=2)
    )
    frames = []
    for t in range(num_frames):
        frame = {
            "intrinsics": arrays["intrinsics"][0][t].astype(np.float64).tolist(),
            "camera_to_world": arrays["camera_to_world"][0][t].astype(np.float64).tolist(),
        }
        if times is not None:
            frame["time"] = float(arrays["times"][0][t])
        frames.append(frame)
    (folder / "cameras.json").write_text(json.dumps({"frames": frames}, indent=1))

    for name in ("images", "depth"):
        (folder / name).mkdir()
    for t in range(num_frames):
        imageio.imwrite(folder / "images" / _frame_name(t, ".png"), images[t])
        np.save(folder / "depth" / _frame_name(t, ".npy"), arrays["depths"][0][t].astype(np.float32))
    optional = (("flows", "flow", 0), ("backward_flows", "flow_backward", 1))
    for key, name, first in optional:
        array = arrays[key][0]
        if array is not None:
            (folder / name).mkdir()
            for t in range(num_frames - 1):
                np.save(folder / name / _frame_name(t + first, ".npy"), array[t].astype(np.float32))
    if masks is not None:
        (folder / "masks").mkdir()
        for t in range(num_frames):
            imageio.imwrite(folder / "masks" / _frame_name(t, ".png"), arrays["masks"][0][t].astype(np.uint8) * 255)
    if tracks is not None:
        track_arrays = {
            "points_world": _as_numpy(tracks.points_world).astype(np.float32),
            "visible": _as_numpy(tracks.visible).astype(bool),
        }
        if tracks.pixels is not None:
            track_arrays["pixels"] = _as_numpy(tracks.pixels).astype(np.float32)
        np.savez(folder / "tracks.npz", **track_arrays)
    return folder


def _subset(hits: Hits, index: Tensor) -> Hits:
    return Hits(hits.depth[index], hits.object[index], hits.canonical[index], hits.world[index], hits.normal[index])


def export_synthetic_sequence(
    folder: str | Path,
    preset: str = "random",
    seed: int = 0,
    num_frames: int = 24,
    image_size: tuple[int, int] = (64, 64),
    supersample: int = 2,
    dynamic: bool = True,
    track_stride: int = 4,
    overwrite: bool = False,
) -> Path:
    """Render ``preset`` (scene and handheld left camera of ``generate_scene`` with the same seed and size) into
    the sequence format, with every optional file: exact depth, forward and backward flow, dynamic masks and tracks.

    ``dynamic=False`` freezes every object at the first frame (a static sequence; no masks are written). Tracks
    start from a grid of frame-0 pixel centres every ``track_stride`` pixels, like TAP-Vid's first-frame queries;
    ``visible`` uses the exact occlusion test of ``synthetic_pairs.visible_from``. Flow follows the material point
    even where it is hidden in the next frame (the convention of ``fourd_ns.synthetic``).
    """
    if preset not in PRESETS:
        raise ValueError(f"export_synthetic_sequence: unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    if num_frames < 2:
        raise ValueError(f"export_synthetic_sequence: num_frames must be at least 2, got {num_frames}")
    height, width = image_size
    rng = np.random.default_rng(seed)
    scene, spec = PRESETS[preset](rng)
    cameras, _ = stereo_rig(spec, num_frames, width, height, rng)
    if not dynamic:
        scene = frozen_scene(scene, 0.0)
    taus = [t / (num_frames - 1) for t in range(num_frames)]
    dynamic_objects = torch.tensor([i for i, obj in enumerate(scene.objects) if obj.motion.dynamic], dtype=torch.long)
    uv = pixel_centres(width, height).reshape(-1, 2)

    images, depths, masks, flows, backward_flows = [], [], [], [], []
    track_points, track_visible, track_pixels = [], [], []
    with progress_bar(f"Rendering {preset} (seed {seed})") as progress:
        task = progress.add_task("frames", total=num_frames)
        for t, (camera, tau) in enumerate(zip(cameras, taus)):
            rgb = render_image(scene, camera, tau, supersample)
            images.append((rgb.permute(1, 2, 0) * 255.0).round().to(torch.uint8))
            hits = cast_pixel_centres(scene, camera, tau)
            depths.append(torch.nan_to_num(hits.depth, posinf=0.0).reshape(height, width))
            masks.append(torch.isin(hits.object, dynamic_objects).reshape(height, width))
            if t + 1 < num_frames:
                target, _ = project(cameras[t + 1], material_points_at(scene, hits, taus[t + 1]))
                flows.append((target - uv).reshape(height, width, 2))
            if t > 0:
                target, _ = project(cameras[t - 1], material_points_at(scene, hits, taus[t - 1]))
                backward_flows.append((target - uv).reshape(height, width, 2))
            if t == 0:
                rows = torch.arange(track_stride // 2, height, track_stride)
                cols = torch.arange(track_stride // 2, width, track_stride)
                queries = _subset(hits, (rows[:, None] * width + cols[None, :]).reshape(-1))
            world = material_points_at(scene, queries, tau)
            pixels, visible = visible_from(scene, camera, tau, world)
            track_points.append(world)
            track_visible.append(visible)
            track_pixels.append(pixels)
            progress.advance(task)

    return write_sequence(
        folder,
        images=torch.stack(images),
        depths=torch.stack(depths),
        intrinsics=torch.stack([intrinsics_matrix(c) for c in cameras]),
        camera_to_world=torch.stack([camera_to_world(c) for c in cameras]),
        dynamic=scene_is_dynamic(scene),
        times=torch.tensor(taus, dtype=torch.float64),
        flows=torch.stack(flows),
        backward_flows=torch.stack(backward_flows),
        masks=torch.stack(masks) if scene_is_dynamic(scene) else None,
        tracks=Tracks(torch.stack(track_points, 1), torch.stack(track_visible, 1), torch.stack(track_pixels, 1)),
        overwrite=overwrite,
    )
