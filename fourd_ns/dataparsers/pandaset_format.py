"""Reading and validating one PandaSet log (sequence folder) in its original on-disk layout.

Layout (frame numbers ``NN`` = ``00``, ``01``, ...; JSON lists are indexed by frame, entry ``i`` <-> file ``i``)::

    camera/<cam>_camera/NN.jpg            images (1920x1080 in PandaSet)
    camera/<cam>_camera/intrinsics.json   {"fx", "fy", "cx", "cy"} in pixels of those images
    camera/<cam>_camera/poses.json        [{"position": {x, y, z}, "heading": {w, x, y, z}}]: camera -> world,
                                          camera axes OpenCV (x right, y down, z forward)
    camera/<cam>_camera/timestamps.json   [Unix seconds]
    lidar/NN.pkl.gz                       pickled pandas DataFrame x, y, z (world), i (0..255), t (Unix s), d (sensor)
    lidar/poses.json, timestamps.json     LiDAR sensor -> world poses (same format) and sweep times
    annotations/cuboids/NN.pkl.gz         pickled pandas DataFrame of 3D boxes (uuid, label, yaw, position.*, ...)
    synthetic.json                        only in logs written by fourd_ns's synthetic driving generator

Kaggle copies of PandaSet ship uncompressed ``NN.pkl`` files; they are read as well when no ``NN.pkl.gz`` exists.

Everything here is read-only. Problems found while indexing a log are collected and raised together as one
:class:`PandaSetDataError`, so a broken download is fixed in one pass. The pickles are unpickled with pandas: only
open logs from a source you trust (a pickle can run code), as with the PandaSet devkit itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

CAMERA_NAMES = (
    "front_camera",
    "front_left_camera",
    "front_right_camera",
    "back_camera",
    "left_camera",
    "right_camera",
)
"""The six camera folders of a PandaSet log."""

LIDAR_SENSOR_IDS = {"pandar64": 0, "pandargt": 1}
"""Values of the LiDAR ``d`` column: 0 = Pandar64 (360° spinning), 1 = PandarGT (front-facing)."""

LIDAR_COLUMNS = ("x", "y", "z", "i", "t", "d")
CUBOID_COLUMNS = (
    "uuid",
    "label",
    "yaw",
    "stationary",
    "position.x",
    "position.y",
    "position.z",
    "dimensions.x",
    "dimensions.y",
    "dimensions.z",
)
"""Cuboid columns we read; ``cuboids.sensor_id`` is used too when present (see :data:`CUBOID_SENSOR_COLUMN`)."""

CUBOID_SENSOR_COLUMN = "cuboids.sensor_id"
FRONT_LIDAR_DUPLICATE_SENSOR_ID = 1
"""Cuboids annotated a second time from the PandarGT carry ``cuboids.sensor_id == 1``; they duplicate the
Pandar64 box of the same actor (neurad-studio drops them too)."""

SYNTHETIC_MARKER = "synthetic.json"
MAX_LISTED_PROBLEMS = 20


class PandaSetDataError(ValueError):
    """A PandaSet log is incomplete or inconsistent, or a setting does not fit it; the message names the files or
    settings at fault and what to do."""


def problems_error(summary: str, problems: Sequence[str]) -> PandaSetDataError:
    """One error listing every problem, one per line (the first :data:`MAX_LISTED_PROBLEMS`)."""
    listed = list(problems[:MAX_LISTED_PROBLEMS])
    if len(problems) > MAX_LISTED_PROBLEMS:
        listed.append(f"... and {len(problems) - MAX_LISTED_PROBLEMS} more")
    return PandaSetDataError(summary + ":\n  " + "\n  ".join(listed))


def read_json(path: Path) -> Any:
    """Parse a JSON file, turning a missing or malformed file into a :class:`PandaSetDataError` naming it."""
    if not path.is_file():
        raise PandaSetDataError(f"Missing file {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PandaSetDataError(f"Malformed JSON in {path}: {error}") from error


def camera_folder_name(name: str) -> str:
    """``'front'`` or ``'front_camera'`` -> ``'front_camera'``; an unknown name is an error listing the valid ones."""
    folder = name if name.endswith("_camera") else f"{name}_camera"
    if folder not in CAMERA_NAMES:
        valid = ", ".join(n[: -len("_camera")] for n in CAMERA_NAMES)
        raise PandaSetDataError(f"Unknown PandaSet camera '{name}' in setting 'cameras'; valid names: {valid}")
    return folder


def frame_stem(frame: int) -> str:
    """File stem of log frame ``frame``: ``'00'``, ``'07'``, ``'42'``."""
    return f"{frame:02d}"


def pickle_path(folder: Path, frame: int) -> Path:
    """``NN.pkl.gz`` in ``folder``, or ``NN.pkl`` when only that exists (Kaggle copies)."""
    gz = folder / f"{frame_stem(frame)}.pkl.gz"
    plain = folder / f"{frame_stem(frame)}.pkl"
    return plain if not gz.is_file() and plain.is_file() else gz


def quaternion_to_matrix(w: float, x: float, y: float, z: float) -> np.ndarray:
    """[3, 3] rotation of a (not necessarily unit) quaternion; raises ValueError for a zero quaternion."""
    norm = math.sqrt(w * w + x * x + y * y + z * z)
    if not norm > 1e-12:
        raise ValueError("quaternion has zero length")
    w, x, y, z = w / norm, x / norm, y / norm, z / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _pose_matrix(entry: Any) -> np.ndarray:
    """[4, 4] from ``{"position": {x, y, z}, "heading": {w, x, y, z}}``; raises KeyError/TypeError/ValueError."""
    position = [float(entry["position"][k]) for k in "xyz"]
    heading = [float(entry["heading"][k]) for k in "wxyz"]
    if not all(math.isfinite(v) for v in position + heading):
        raise ValueError("non-finite value")
    pose = np.eye(4)
    pose[:3, :3] = quaternion_to_matrix(*heading)
    pose[:3, 3] = position
    return pose


def read_poses(path: Path) -> np.ndarray:
    """[F, 4, 4] float64 sensor -> world poses of a ``poses.json``; every bad entry is listed in one error."""
    data = read_json(path)
    if not isinstance(data, list) or not data:
        raise PandaSetDataError(f"{path} must hold a non-empty JSON list of {{position, heading}} poses")
    poses, problems = [], []
    for index, entry in enumerate(data):
        try:
            poses.append(_pose_matrix(entry))
        except (KeyError, TypeError, ValueError) as error:
            problems.append(
                f"entry {index}: {type(error).__name__} {error} (expected "
                '{"position": {"x", "y", "z"}, "heading": {"w", "x", "y", "z"}} with finite numbers)'
            )
    if problems:
        raise problems_error(f"Bad poses in {path}", problems)
    return np.stack(poses)


def read_timestamps(path: Path) -> np.ndarray:
    """[F] float64 Unix seconds of a ``timestamps.json``."""
    data = read_json(path)
    try:
        times = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise PandaSetDataError(f"{path} must hold a JSON list of numbers (Unix seconds): {error}") from error
    if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)):
        raise PandaSetDataError(f"{path} must hold a non-empty JSON list of finite numbers (Unix seconds)")
    return times


def read_intrinsics(path: Path) -> np.ndarray:
    """[4] float64 (fx, fy, cx, cy) of an ``intrinsics.json``, in pixels of the full-resolution images."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise PandaSetDataError(f"{path} must hold a JSON object with fx, fy, cx, cy")
    missing = [key for key in ("fx", "fy", "cx", "cy") if key not in data]
    if missing:
        raise PandaSetDataError(f"{path} has no {', '.join(missing)} field (needs fx, fy, cx, cy in pixels)")
    try:
        values = np.array([float(data[key]) for key in ("fx", "fy", "cx", "cy")])
    except (TypeError, ValueError) as error:
        raise PandaSetDataError(f"{path} has a non-numeric fx, fy, cx or cy: {error}") from error
    if not np.all(np.isfinite(values)) or values[0] <= 0 or values[1] <= 0:
        raise PandaSetDataError(f"{path}: fx and fy must be positive and all values finite, got {values.tolist()}")
    return values


@dataclass(frozen=True)
class CameraLog:
    """The JSON files of one ``camera/<name>`` folder."""

    name: str
    """Folder name, e.g. ``'front_camera'``."""
    folder: Path
    intrinsics: np.ndarray
    """[4] (fx, fy, cx, cy) in pixels of the full-resolution images."""
    poses: np.ndarray
    """[F, 4, 4] float64 camera -> log world, OpenCV camera axes."""
    timestamps: np.ndarray
    """[F] float64 Unix seconds."""

    def image_path(self, frame: int) -> Path:
        return self.folder / f"{frame_stem(frame)}.jpg"

    def image_count(self) -> int:
        return sum(1 for p in self.folder.glob("*.jpg") if p.stem.isdigit())


@dataclass(frozen=True)
class PandaSetLog:
    """JSON-level index of a log: the selected cameras, the LiDAR poses and times, and the frame count."""

    root: Path
    cameras: Dict[str, CameraLog]
    """Selected cameras by folder name, in the order requested."""
    reference_camera: CameraLog
    """The camera whose viewing direction defines the output +x (front_camera when present)."""
    lidar_poses: np.ndarray
    """[F, 4, 4] float64 LiDAR sensor -> log world."""
    lidar_timestamps: np.ndarray
    """[F] float64 Unix seconds of each sweep."""
    synthetic: bool
    """True when the folder holds ``synthetic.json`` (a log written by fourd_ns's synthetic driving generator)."""

    @property
    def num_frames(self) -> int:
        return int(self.lidar_poses.shape[0])

    @property
    def lidar_folder(self) -> Path:
        return self.root / "lidar"

    @property
    def cuboid_folder(self) -> Path:
        return self.root / "annotations" / "cuboids"

    def lidar_path(self, frame: int) -> Path:
        return pickle_path(self.lidar_folder, frame)

    def cuboid_path(self, frame: int) -> Path:
        return pickle_path(self.cuboid_folder, frame)


def _read_camera(folder: Path, problems: List[str]) -> Optional[CameraLog]:
    """A camera's JSON files, or None with the reasons appended to ``problems``."""
    values = {}
    for key, reader, file in (
        ("intrinsics", read_intrinsics, "intrinsics.json"),
        ("poses", read_poses, "poses.json"),
        ("timestamps", read_timestamps, "timestamps.json"),
    ):
        try:
            values[key] = reader(folder / file)
        except PandaSetDataError as error:
            problems.append(str(error))
    if len(values) < 3:
        return None
    camera = CameraLog(name=folder.name, folder=folder, **values)
    if len(camera.poses) != len(camera.timestamps):
        problems.append(
            f"{folder}: poses.json has {len(camera.poses)} entries but timestamps.json has {len(camera.timestamps)}; "
            "both need one entry per frame"
        )
    return camera


def open_log(root: Path, camera_names: Sequence[str]) -> PandaSetLog:
    """Index a log from its JSON files (no image, LiDAR or cuboid is read yet).

    ``camera_names`` are folder names (see :func:`camera_folder_name`). Every camera and the LiDAR must list the
    same number of frames; all problems are raised together.
    """
    if not root.is_dir():
        raise PandaSetDataError(
            f"PandaSet log folder {root} does not exist; set 'data' to a sequence folder such as .../pandaset/002"
        )
    camera_root = root / "camera"
    available = sorted(p.name for p in camera_root.iterdir() if p.is_dir()) if camera_root.is_dir() else []
    missing = [name for name in camera_names if not (camera_root / name).is_dir()]
    if missing:
        raise PandaSetDataError(
            f"Camera folder(s) {', '.join(str(camera_root / m) for m in missing)} missing; available in "
            f"{camera_root}: {', '.join(available) or 'none'} (set 'cameras' to some of these)"
        )

    problems: List[str] = []
    cameras = {name: _read_camera(camera_root / name, problems) for name in camera_names}
    reference_name = "front_camera" if "front_camera" in available else camera_names[0]
    if reference_name in cameras:
        reference = cameras[reference_name]
    else:
        # Only the poses of an unselected front camera are needed (for the output heading).
        try:
            poses = read_poses(camera_root / reference_name / "poses.json")
            folder = camera_root / reference_name
            reference = CameraLog(reference_name, folder, np.zeros(4), poses, np.zeros(len(poses)))
        except PandaSetDataError as error:
            problems.append(f"{error} (front_camera's poses define the output heading)")
            reference = None

    lidar_poses = lidar_times = None
    try:
        lidar_poses = read_poses(root / "lidar" / "poses.json")
    except PandaSetDataError as error:
        problems.append(str(error))
    try:
        lidar_times = read_timestamps(root / "lidar" / "timestamps.json")
    except PandaSetDataError as error:
        problems.append(str(error))
    if lidar_poses is not None and lidar_times is not None and len(lidar_poses) != len(lidar_times):
        problems.append(
            f"{root / 'lidar'}: poses.json has {len(lidar_poses)} entries but timestamps.json has {len(lidar_times)}"
        )
    if lidar_poses is not None:
        for camera in list(cameras.values()) + [reference]:
            if camera is not None and len(camera.poses) != len(lidar_poses):
                problems.append(
                    f"{camera.folder / 'poses.json'} has {len(camera.poses)} entries but "
                    f"{root / 'lidar' / 'poses.json'} has {len(lidar_poses)}; every sensor needs one entry per frame"
                )
    if problems:
        raise problems_error(f"Cannot index the PandaSet log {root}", list(dict.fromkeys(problems)))
    return PandaSetLog(
        root=root,
        cameras=cameras,
        reference_camera=reference,
        lidar_poses=lidar_poses,
        lidar_timestamps=lidar_times,
        synthetic=(root / SYNTHETIC_MARKER).is_file(),
    )


def check_clip_files(
    log: PandaSetLog, frames: Sequence[int], need_lidar: bool, need_cuboids: bool
) -> Dict[str, Tuple[int, int]]:
    """Check that every file of the clip exists, that each camera has one image per frame of the log and that its
    images share one size; returns each camera's full-resolution image size (W, H). Only JPEG headers are read."""
    problems: List[str] = []
    sizes: Dict[str, Tuple[int, int]] = {}
    for camera in log.cameras.values():
        num_images = camera.image_count()
        if num_images != len(camera.poses):
            problems.append(
                f"{camera.folder} has {num_images} images (NN.jpg) but {len(camera.poses)} entries in poses.json and "
                "timestamps.json; one image per frame is expected"
            )
        for frame in frames:
            path = camera.image_path(frame)
            if not path.is_file():
                problems.append(f"missing image {path}")
                continue
            try:
                with Image.open(path) as image:
                    size = image.size
            except Exception as error:  # Pillow raises many unrelated types for corrupt files
                problems.append(f"{path}: unreadable image ({type(error).__name__}: {error})")
                continue
            expected = sizes.setdefault(camera.name, size)
            if size != expected:
                problems.append(
                    f"{path} is {size[0]}x{size[1]} but {camera.image_path(frames[0]).name} of the same camera is "
                    f"{expected[0]}x{expected[1]}; all images of a camera must have one size"
                )
        if camera.name in sizes:
            width, height = sizes[camera.name]
            cx, cy = camera.intrinsics[2:]
            if not (0 <= cx <= width and 0 <= cy <= height):
                problems.append(
                    f"{camera.folder / 'intrinsics.json'}: principal point ({cx:g}, {cy:g}) lies outside the "
                    f"{width}x{height} images; the intrinsics must be in pixels of these images"
                )
    for needed, folder, what, setting in (
        (need_lidar, log.lidar_folder, "LiDAR sweep", "load_lidar"),
        (need_cuboids, log.cuboid_folder, "cuboid file", "load_cuboids"),
    ):
        if not needed:
            continue
        if not folder.is_dir():
            problems.append(f"missing folder {folder} (set {setting} False to go without it)")
            continue
        for frame in frames:
            path = pickle_path(folder, frame)
            if not path.is_file():
                problems.append(f"missing {what} {path} (set {setting} False to go without it)")
    if problems:
        first, last = frames[0], frames[-1]
        raise problems_error(f"Files missing or inconsistent for frames {first}..{last} of {log.root}", problems)
    return sizes


def _read_dataframe(path: Path, columns: Sequence[str], what: str):
    import pandas as pd  # imported here: pandas is heavy and nerfstudio imports this module at start-up

    try:
        frame = pd.read_pickle(path)
    except Exception as error:  # gzip, pickle and pandas raise many unrelated types for a bad file
        raise PandaSetDataError(
            f"Unreadable {what.lower()} {path} ({type(error).__name__}: {error}); expected a gzipped pickled pandas "
            "DataFrame"
        ) from error
    if not isinstance(frame, pd.DataFrame):
        raise PandaSetDataError(f"{what} {path} holds a {type(frame).__name__}, not a pandas DataFrame")
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise PandaSetDataError(
            f"{what} {path} lacks column(s) {', '.join(missing)} (has {', '.join(map(str, frame.columns))})"
        )
    return frame


@dataclass
class LidarFrame:
    """The points of one ``lidar/NN.pkl.gz``, in the log world."""

    xyz: np.ndarray
    """[P, 3] float64 log-world positions."""
    intensity: np.ndarray
    """[P] float64, 0..255."""
    times: np.ndarray
    """[P] float64 Unix seconds."""
    sensor: np.ndarray
    """[P] int64 (see :data:`LIDAR_SENSOR_IDS`)."""
    rows: Optional[np.ndarray] = None
    """[P] int64 row of each point in its ``NN.pkl.gz`` (None = ``arange(P)``, a frame as read): filters drop
    rows, and per-row extras of the file (a synthetic log's ``ground_truth/lidar/NN.npz``) are found through this."""

    def __post_init__(self) -> None:
        if self.rows is None:
            self.rows = np.arange(len(self.xyz), dtype=np.int64)
        elif self.rows.shape != (len(self.xyz),):
            raise ValueError(f"LidarFrame.rows has shape {self.rows.shape}; expected ({len(self.xyz)},)")

    def subset(self, keep: np.ndarray) -> "LidarFrame":
        return LidarFrame(
            self.xyz[keep], self.intensity[keep], self.times[keep], self.sensor[keep], rows=self.rows[keep]
        )


def read_lidar_frame(path: Path) -> LidarFrame:
    """One sweep file; non-finite positions or times are an error naming the file."""
    frame = _read_dataframe(path, LIDAR_COLUMNS, "LiDAR sweep")
    xyz = frame[["x", "y", "z"]].to_numpy(dtype=np.float64)
    times = frame["t"].to_numpy(dtype=np.float64)
    if not (np.all(np.isfinite(xyz)) and np.all(np.isfinite(times))):
        raise PandaSetDataError(f"LiDAR sweep {path} has non-finite x, y, z or t values")
    return LidarFrame(
        xyz=xyz,
        intensity=frame["i"].to_numpy(dtype=np.float64),
        times=times,
        sensor=frame["d"].to_numpy(dtype=np.int64),
        rows=np.arange(len(xyz), dtype=np.int64),
    )


@dataclass
class CuboidFrame:
    """The boxes of one ``annotations/cuboids/NN.pkl.gz`` (front-LiDAR duplicates removed), in the log world."""

    uuid: List[str]
    label: List[str]
    yaw: np.ndarray
    """[B] float64 radians; the box heading (direction of travel) is Rz(yaw) @ (0, 1, 0)."""
    stationary: np.ndarray
    """[B] bool, the log's flag."""
    position: np.ndarray
    """[B, 3] float64 box centre."""
    dimensions: np.ndarray
    """[B, 3] float64 (dimensions.x = width, dimensions.y = length along the heading, dimensions.z = height)."""


def read_cuboid_frame(path: Path) -> CuboidFrame:
    """One cuboid file without its ``cuboids.sensor_id == 1`` duplicates."""
    frame = _read_dataframe(path, CUBOID_COLUMNS, "Cuboid file")
    if CUBOID_SENSOR_COLUMN in frame.columns:
        frame = frame[frame[CUBOID_SENSOR_COLUMN].to_numpy() != FRONT_LIDAR_DUPLICATE_SENSOR_ID]
    position = frame[["position.x", "position.y", "position.z"]].to_numpy(dtype=np.float64)
    dimensions = frame[["dimensions.x", "dimensions.y", "dimensions.z"]].to_numpy(dtype=np.float64)
    yaw = frame["yaw"].to_numpy(dtype=np.float64)
    if not (np.all(np.isfinite(position)) and np.all(np.isfinite(dimensions)) and np.all(np.isfinite(yaw))):
        raise PandaSetDataError(f"Cuboid file {path} has non-finite position, dimensions or yaw values")
    return CuboidFrame(
        uuid=[str(u) for u in frame["uuid"]],
        label=[str(label) for label in frame["label"]],
        yaw=yaw,
        stationary=frame["stationary"].to_numpy(dtype=bool),
        position=position,
        dimensions=dimensions,
    )


def load_downscaled_rgb(path: Path, factor: int) -> np.ndarray:
    """[H // f, W // f, 3] uint8: the image cropped to whole f x f blocks, each block averaged (PIL's box
    ``reduce``), the same pixels the training dataset resizes the full-resolution file to."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if factor > 1:
            width, height = image.size
            image = image.crop((0, 0, width // factor * factor, height // factor * factor)).reduce(factor)
        return np.asarray(image)
