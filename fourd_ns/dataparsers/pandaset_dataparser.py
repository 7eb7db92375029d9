"""Dataparser for PandaSet logs (and synthetic driving logs written in the same layout): ``pandaset-data``.

One clip (``num_frames`` log frames from ``start_frame``) of a sequence folder becomes nerfstudio cameras with times
in [0, 1], LiDAR sweeps, actor tracks and coloured LiDAR seed points, all in one output world. The file layout and
its reading live in `pandaset_format.py`; the metadata contract in `fourd_ns.sensors.driving_metadata`.

Conventions (where the log leaves a choice):

- **Time.** ``time_offset`` / ``time_span`` = min / (max - min) of the timestamps of every selected camera at every
  clip frame (training and evaluation frames alike, so both splits share one clock); normalised time =
  (Unix seconds - time_offset) / time_span. Images get exactly [0, 1]; LiDAR points (a sweep lasts 0.1 s) and
  sweeps may fall slightly outside. Cuboids are annotated on the LiDAR sweep, so actor times are the sweep times.
  A one-frame clip has ``time_span`` 0 and every time 0 (points keep their seconds in ``point_seconds``).
  ``metadata["time_axis"]`` (:class:`~fourd_ns.dataparsers.time_axis.TimeAxis`) gives the clip's frame count, one
  frame step in normalised time (the cameras' mean frame period / ``time_span``) and ``time_span`` as
  ``duration_seconds``; ``DrivingMetadata.time_span`` stays the seconds the driving models convert with.
- **World.** Origin = mean of the clip's LiDAR sensor positions (``lidar/poses.json``); rotated about z only so
  that +x is the front camera's viewing direction at the clip's first frame projected onto the ground (the first
  selected camera when the log has no front camera); z stays up. Lengths are then divided by ``metres_per_unit``:
  ``p_out = (world_from_log @ p_log) / metres_per_unit``, which is nerfstudio's ``dataparser_transform`` (3x4) with
  ``dataparser_scale = 1 / metres_per_unit``.
- **Scale.** Auto ``metres_per_unit`` = the 97th percentile of the horizontal distance of the seed points from the
  origin (at least 1 m), so the scene has radius about 1, the scale splatfacto / gsplat densification thresholds
  assume. Without seed points (``load_lidar`` False) it is :data:`FALLBACK_METRES_PER_UNIT`.
- **LiDAR.** One sweep per clip frame (training and evaluation frames: evaluation reads them for depth), keeping the
  chosen sensors' points within ``max_lidar_range`` of the sweep's sensor position and outside the ego box
  (both measured in the LiDAR sensor frame of ``lidar/poses.json``, whose +y points forward).
- **Seed points** use the training frames only: their LiDAR points, coloured from the training cameras of the same
  frame (first camera that sees a point wins), voxel-downsampled (one point per ``seed_voxel_size`` voxel, the
  first in frame order) and capped at ``max_seed_points`` with a fixed-seed random subset. Points of moving actors
  smear over time; that is fine for a seed.
- **Actors.** Rows of the clip's cuboid files with the same uuid form one track; PandaSet's heading is
  Rz(yaw) @ (0, 1, 0) with ``dimensions.y`` along it, so box -> world = Rz(yaw + pi/2) and size_wlh =
  (dimensions.x, dimensions.y, dimensions.z) (the maximum over the track).
- **Images.** ``image_filenames`` are the original full-resolution JPEGs; cameras are at ``(W // f, H // f)`` and
  ``metadata["image_downscale_factor"] = f`` tells the dataset to box-filter each image to that size on load.
  Images are ordered by frame, then by camera (in the order of ``cameras``).

Nothing is written into the log folder or anywhere else.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Literal, Optional, Sequence, Tuple, Type, TypeVar

import numpy as np
import torch

from fourd_ns.dataparsers.pandaset_format import (
    LIDAR_SENSOR_IDS,
    CameraLog,
    CuboidFrame,
    LidarFrame,
    PandaSetDataError,
    PandaSetLog,
    camera_folder_name,
    check_clip_files,
    load_downscaled_rgb,
    open_log,
    read_cuboid_frame,
    read_lidar_frame,
)
from fourd_ns.dataparsers.dataset_layouts import WrongDataparserError, is_nerfies_capture, is_pandaset_log
from fourd_ns.dataparsers.time_axis import TIME_AXIS_KEY, TimeAxis
from fourd_ns.geometry.camera_conventions import switch_c2w_camera_axes
from fourd_ns.geometry.opencv_projection import project_points_opencv
from fourd_ns.geometry.point_subsampling import voxel_downsample
from fourd_ns.progress import progress_bar
from fourd_ns.sensors.actor_tracks import DEFORMABLE_LABELS, ActorTrack
from fourd_ns.sensors.driving_metadata import METADATA_KEY, DrivingMetadata
from fourd_ns.sensors.lidar_sweeps import LidarSweeps
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.utils.rich_utils import CONSOLE

__all__ = ["PandaSetDataError", "PandaSetDataParser", "PandaSetDataParserConfig"]

FLUX4D_CLIP_FRAMES = 16
"""Flux4D clips: train on frames 0, 2, ..., 10; interpolation on 1, 3, ..., 9; future prediction on 11..15."""
FALLBACK_METRES_PER_UNIT = 60.0
"""Auto scale without seed points; about what the seed-point rule gives on PandaSet sequence 002 (56-63 m)."""
SCALE_PERCENTILE = 97.0
UNSEEN_POINT_RGB = 128
"""Grey for seed points no training camera sees (kept only when seed_points_in_view_only is False)."""
SEED_SUBSET_SEED = 0
SCENE_BOX_MARGIN = 0.1
"""Scene box padding as a fraction of its largest side (at least one metre)."""

T = TypeVar("T")


@dataclass
class PandaSetDataParserConfig(DataParserConfig):
    """PandaSet log (camera/, lidar/, annotations/cuboids/), or a synthetic driving log in the same layout."""

    _target: Type = field(default_factory=lambda: PandaSetDataParser)
    data: Path = Path()
    """Sequence folder holding camera/, lidar/ and annotations/ (e.g. .../pandaset/002)."""
    cameras: Tuple[str, ...] = ("front",)
    """Cameras to load: front, front_left, front_right, back, left, right (or their folder names, e.g.
    front_camera). The first is not special; images are ordered by frame, then in this order."""
    start_frame: int = 0
    """First log frame of the clip."""
    num_frames: Optional[int] = None
    """Clip length in frames; None runs to the end of the log (16 for the flux4d split modes)."""
    downscale_factor: int = 4
    """Cameras at (W // f, H // f) with intrinsics divided by f; the full-resolution JPEGs are box-filtered to that
    size when the dataset loads them (nothing is written to disk)."""
    lidar_sensors: Tuple[Literal["pandar64", "pandargt"], ...] = ("pandar64",)
    """LiDAR units whose points are kept: pandar64 (360° spinning), pandargt (front-facing)."""
    max_lidar_range: float = 80.0
    """Drop LiDAR points farther than this many metres from the sweep's sensor position."""
    ego_box_half_size: Tuple[float, float, float] = (1.0, 2.0, 2.0)
    """Half sides (x right, y forward, z up; metres) of a box around the LiDAR sensor whose points are the ego car
    and are dropped (neurad-studio's min_lidar_dist)."""
    load_lidar: bool = True
    """Load LiDAR sweeps (for depth and seed points). Without them there are no seed points."""
    load_cuboids: bool = True
    """Load annotated 3D boxes as actor tracks."""
    split_mode: Literal["every-other", "flux4d-interpolation", "flux4d-future", "all"] = "every-other"
    """every-other: train on even clip frames, evaluate on odd ones. flux4d-interpolation / flux4d-future: the Flux4D
    protocol on a 16-frame clip: train on clip frames 0, 2, ..., 10 and evaluate on 1, 3, ..., 9 (interpolation) or
    11..15 (future prediction). all: train and evaluate on every frame (for viewing)."""
    metres_per_unit: Optional[float] = None
    """Metres per output-world unit; None picks it so the seed points' 97th-percentile horizontal distance from
    the clip's origin is 1 unit."""
    max_seed_points: int = 300_000
    """At most this many seed points (a fixed-seed random subset after voxel downsampling)."""
    seed_voxel_size: float = 0.1
    """Voxel side in metres for downsampling the seed points (one point per voxel); 0 turns it off."""
    seed_points_in_view_only: bool = True
    """Keep only seed points that a training camera sees (others would stay grey)."""


@dataclass
class _Clip:
    """Everything derived from the clip, shared by the train and eval splits."""

    frames: np.ndarray  # [C] log frame numbers
    train: np.ndarray  # clip indices of training frames
    eval: np.ndarray  # clip indices of evaluation frames
    cameras: Cameras  # every (frame, camera) of the clip, frame-major
    image_paths: List[Path]
    image_frame: np.ndarray  # [C * K] clip index of each image
    image_camera: np.ndarray  # [C * K] camera index of each image
    world_from_log: np.ndarray
    metres_per_unit: float
    seeds: Optional[Tuple[torch.Tensor, torch.Tensor]]
    scene_box: SceneBox
    driving: DrivingMetadata
    time_axis: TimeAxis


@dataclass
class PandaSetDataParser(DataParser):
    """Reads one clip of a PandaSet log; see the module docstring for the conventions."""

    config: PandaSetDataParserConfig
    includes_time: bool = True
    _clip_cache: Optional[Tuple[PandaSetDataParserConfig, _Clip]] = field(default=None, init=False, repr=False)

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        clip = self._clip()
        clip_indices = clip.train if split == "train" else clip.eval
        if clip_indices.size == 0:
            raise PandaSetDataError(
                f"The '{split}' split is empty for split_mode '{self.config.split_mode}' on a {len(clip.frames)}-frame "
                "clip; use a longer clip (num_frames) or split_mode 'all'"
            )
        rows = np.nonzero(np.isin(clip.image_frame, clip_indices))[0]
        rows_t = torch.from_numpy(rows)
        frame_of_row = clip.image_frame[rows]
        metadata: Dict[str, object] = {
            METADATA_KEY: clip.driving,
            "camera_ids": torch.from_numpy(clip.image_camera[rows].astype(np.int64)),
            "frame_indices": torch.from_numpy(clip.frames[frame_of_row].astype(np.int64)),
            "lidar_sweep_index": torch.from_numpy(
                frame_of_row.astype(np.int64) if clip.driving.lidar is not None else np.full(len(rows), -1, np.int64)
            ),
            "time_offset": clip.driving.time_offset,
            TIME_AXIS_KEY: clip.time_axis,
            "image_downscale_factor": self.config.downscale_factor,
        }
        if clip.seeds is not None:
            metadata["points3D_xyz"], metadata["points3D_rgb"] = clip.seeds
        return DataparserOutputs(
            image_filenames=[clip.image_paths[i] for i in rows],
            cameras=clip.cameras[rows_t],
            scene_box=clip.scene_box,
            metadata=metadata,
            dataparser_transform=torch.from_numpy(clip.world_from_log[:3]).float(),
            dataparser_scale=1.0 / clip.metres_per_unit,
        )

    def _clip(self) -> _Clip:
        """The clip, loaded once per parser (nerfstudio asks for the train and the eval split separately)."""
        if self._clip_cache is None or self._clip_cache[0] != self.config:
            self._clip_cache = (dataclasses.replace(self.config), _load_clip(self.config))
        return self._clip_cache[1]


def _check_settings(config: PandaSetDataParserConfig) -> Tuple[str, ...]:
    """Setting problems in one error; returns the camera folder names."""
    problems = []
    names: List[str] = []
    for name in config.cameras:
        try:
            names.append(camera_folder_name(name))
        except PandaSetDataError as error:
            problems.append(str(error))
    if not config.cameras:
        problems.append("'cameras' is empty; name at least one camera (e.g. front)")
    if len(set(names)) != len(names):
        problems.append(f"'cameras' names a camera twice: {', '.join(config.cameras)}")
    if config.downscale_factor < 1:
        problems.append(f"'downscale_factor' must be >= 1, got {config.downscale_factor}")
    if config.start_frame < 0:
        problems.append(f"'start_frame' must be >= 0, got {config.start_frame}")
    if config.num_frames is not None and config.num_frames < 1:
        problems.append(f"'num_frames' must be >= 1 (or None for the rest of the log), got {config.num_frames}")
    if config.load_lidar:
        unknown = [s for s in config.lidar_sensors if s not in LIDAR_SENSOR_IDS]
        if unknown or not config.lidar_sensors:
            valid = ", ".join(LIDAR_SENSOR_IDS)
            problems.append(f"'lidar_sensors' must name some of {valid}, got {config.lidar_sensors}")
        if not config.max_lidar_range > 0:
            problems.append(f"'max_lidar_range' must be positive, got {config.max_lidar_range}")
    if config.metres_per_unit is not None and not config.metres_per_unit > 0:
        problems.append(f"'metres_per_unit' must be positive (or None for auto), got {config.metres_per_unit}")
    if config.max_seed_points < 1:
        problems.append(f"'max_seed_points' must be >= 1, got {config.max_seed_points}")
    if config.seed_voxel_size < 0:
        problems.append(f"'seed_voxel_size' must be >= 0, got {config.seed_voxel_size}")
    if problems:
        raise PandaSetDataError("Bad pandaset-data settings:\n  " + "\n  ".join(problems))
    return tuple(names)


def _clip_frames(config: PandaSetDataParserConfig, log: PandaSetLog) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log frame numbers of the clip, clip indices of training frames, clip indices of evaluation frames)."""
    available = log.num_frames
    flux4d = config.split_mode.startswith("flux4d")
    count = config.num_frames
    if flux4d:
        if count is not None and count != FLUX4D_CLIP_FRAMES:
            raise PandaSetDataError(
                f"split_mode '{config.split_mode}' is defined on {FLUX4D_CLIP_FRAMES}-frame clips but num_frames is "
                f"{count}; set num_frames {FLUX4D_CLIP_FRAMES} or leave it unset"
            )
        count = FLUX4D_CLIP_FRAMES
        if config.start_frame + count > available:
            raise PandaSetDataError(
                f"split_mode '{config.split_mode}' needs a {FLUX4D_CLIP_FRAMES}-frame clip but {log.root} has "
                f"{available} frames (0..{available - 1}), so start_frame {config.start_frame} leaves only "
                f"{max(available - config.start_frame, 0)}; use start_frame <= {available - FLUX4D_CLIP_FRAMES}"
            )
    if count is None:
        count = available - config.start_frame
    if config.start_frame >= available or config.start_frame + count > available:
        last = f"{config.start_frame + count - 1}" if count > 0 else ""
        requested = f"{config.start_frame}..{last}"
        raise PandaSetDataError(
            f"Frames {requested} (start_frame {config.start_frame}, num_frames {config.num_frames}) are outside "
            f"{log.root}, which has {available} frames (0..{available - 1}); change start_frame / num_frames"
        )
    frames = np.arange(config.start_frame, config.start_frame + count)
    indices = np.arange(count)
    if config.split_mode == "every-other":
        return frames, indices[0::2], indices[1::2]
    if config.split_mode == "all":
        return frames, indices, indices
    train = np.arange(0, 11, 2)
    evaluation = np.arange(1, 10, 2) if config.split_mode == "flux4d-interpolation" else np.arange(11, 16)
    return frames, train, evaluation


def _world_from_log(log: PandaSetLog, frames: np.ndarray) -> np.ndarray:
    """[4, 4] rigid log -> output world (before scaling): origin at the mean LiDAR position of the clip, +x along
    the reference camera's horizontal viewing direction at the clip's first frame, z up."""
    origin = log.lidar_poses[frames, :3, 3].mean(axis=0)
    forward = log.reference_camera.poses[frames[0], :3, 2]  # OpenCV camera z = viewing direction
    heading = math.atan2(forward[1], forward[0]) if np.hypot(forward[0], forward[1]) > 1e-9 else 0.0
    cos, sin = math.cos(-heading), math.sin(-heading)
    transform = np.eye(4)
    transform[:2, :2] = [[cos, -sin], [sin, cos]]
    transform[:3, 3] = -transform[:3, :3] @ origin
    return transform


def _read_frames(function: Callable[[int], T], frames: Sequence[int], description: str) -> List[T]:
    """``[function(frame) for frame in frames]`` with a progress bar. One frame at a time: a thread pool gave no
    speed-up (unpickling holds the GIL; 16 PandaSet sweeps take ~1 s either way) and would only hold more sweeps
    in memory at once.

    The bar is a context manager rather than rich's ``track`` generator on purpose: when ``function`` raised inside
    ``track``, the abandoned generator kept its live display and refresh thread until garbage collection closed it,
    at an arbitrary later moment, where joining that thread could deadlock against the next progress bar (seen as a
    hung test run after the bad-input tests)."""
    results: List[T] = []
    with progress_bar(description) as progress:
        task = progress.add_task("", total=len(frames))
        for frame in frames:
            results.append(function(frame))
            progress.advance(task)
    return results


def _filter_sweep(
    frame: LidarFrame, lidar_to_log: np.ndarray, config: PandaSetDataParserConfig
) -> LidarFrame:
    """Keep the chosen sensors' points within range of the sensor and outside the ego box (sensor frame)."""
    local = (frame.xyz - lidar_to_log[:3, 3]) @ lidar_to_log[:3, :3]  # R^T (p - t), row-vector form
    half = np.asarray(config.ego_box_half_size, dtype=np.float64)
    in_ego_box = np.all(np.abs(local) < half, axis=1)
    in_range = np.einsum("ij,ij->i", local, local) <= config.max_lidar_range**2
    sensor_ids = [LIDAR_SENSOR_IDS[name] for name in config.lidar_sensors]
    return frame.subset(np.isin(frame.sensor, sensor_ids) & in_range & ~in_ego_box)


def _colour_points(
    points: np.ndarray, cameras: Sequence[CameraLog], frame: int, sizes: Dict[str, Tuple[int, int]], factor: int
) -> Tuple[np.ndarray, np.ndarray]:
    """(uint8 [P, 3] colours, bool [P] seen) of log-world points from the images of ``frame``; the first camera
    that sees a point (in front of it, inside the downscaled image) gives its colour. No occlusion test."""
    colours = np.full((len(points), 3), UNSEEN_POINT_RGB, dtype=np.uint8)
    unseen = np.ones(len(points), dtype=bool)
    for camera in cameras:
        width, height = sizes[camera.name][0] // factor, sizes[camera.name][1] // factor
        pose = camera.poses[frame]
        fx, fy, cx, cy = camera.intrinsics / factor
        pixels, depth = project_points_opencv(
            points, pose[:3, :3].T, pose[:3, 3], focal=(fx, fy), principal_point=(cx, cy)
        )
        # Pixel (row i, column j) covers [j, j + 1) x [i, i + 1) (centres at half-integers, as in nerfstudio).
        columns = np.floor(pixels[:, 0]).astype(np.int64)
        rows = np.floor(pixels[:, 1]).astype(np.int64)
        visible = unseen & (depth > 0) & (columns >= 0) & (columns < width) & (rows >= 0) & (rows < height)
        if not visible.any():
            continue
        image = load_downscaled_rgb(camera.image_path(frame), factor)
        colours[visible] = image[rows[visible], columns[visible]]
        unseen &= ~visible
    return colours, ~unseen


def _seed_points(
    config: PandaSetDataParserConfig,
    cameras: Sequence[CameraLog],
    sweeps: Sequence[LidarFrame],
    frames: np.ndarray,
    train: np.ndarray,
    sizes: Dict[str, Tuple[int, int]],
    world_from_log: np.ndarray,
) -> Tuple[np.ndarray, np.ndarray]:
    """Seed points of the training frames (clip indices ``train``): float64 [N, 3] in metres on the output axes
    (not yet scaled) and uint8 [N, 3] colours; see the module docstring."""
    coloured = [_colour_points(sweeps[k].xyz, cameras, int(frames[k]), sizes, config.downscale_factor) for k in train]
    xyz = np.concatenate([_apply(world_from_log, sweeps[k].xyz) for k in train])
    rgb = np.concatenate([colours for colours, _ in coloured])
    if config.seed_points_in_view_only:
        seen = np.concatenate([seen for _, seen in coloured])
        xyz, rgb = xyz[seen], rgb[seen]
    keep = voxel_downsample(xyz, config.seed_voxel_size, config.max_seed_points, SEED_SUBSET_SEED)
    return xyz[keep], rgb[keep]


def _build_cameras(
    cameras: Sequence[CameraLog],
    frames: np.ndarray,
    sizes: Dict[str, Tuple[int, int]],
    factor: int,
    world_from_log: np.ndarray,
    scale: float,
    times: np.ndarray,
) -> Tuple[Cameras, np.ndarray, np.ndarray, np.ndarray]:
    """nerfstudio cameras of every (frame, camera) of the clip, frame-major, with ``times`` [frames * cameras];
    also their output-world camera-to-world [I, 3, 4] (OpenGL), clip frame index [I] and camera index [I]."""
    c2w = world_from_log @ np.stack([camera.poses[frames] for camera in cameras], axis=1).reshape(-1, 4, 4)
    c2w[:, :3, 3] *= scale
    c2w_opengl = switch_c2w_camera_axes(torch.from_numpy(c2w[:, :3, :]))
    intrinsics = torch.from_numpy(np.tile(np.stack([c.intrinsics for c in cameras]), (len(frames), 1)) / factor)
    size = torch.from_numpy(np.tile(np.array([sizes[c.name] for c in cameras]), (len(frames), 1)) // factor)
    nerf_cameras = Cameras(
        camera_to_worlds=c2w_opengl.float(),
        fx=intrinsics[:, 0:1].float(),
        fy=intrinsics[:, 1:2].float(),
        cx=intrinsics[:, 2:3].float(),
        cy=intrinsics[:, 3:4].float(),
        width=size[:, 0:1].long(),
        height=size[:, 1:2].long(),
        camera_type=CameraType.PERSPECTIVE,
        times=torch.from_numpy(times[:, None]).float(),
    )
    image_frame = np.repeat(np.arange(len(frames)), len(cameras))
    image_camera = np.tile(np.arange(len(cameras)), len(frames))
    return nerf_cameras, c2w_opengl.numpy(), image_frame, image_camera


def _apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ transform[:3, :3].T + transform[:3, 3]


def _load_clip(config: PandaSetDataParserConfig) -> _Clip:
    camera_names = _check_settings(config)
    root = Path(config.data)
    if is_nerfies_capture(root) and not is_pandaset_log(root):
        raise WrongDataparserError(root, "Nerfies-format capture", "nerfies-data", refused_by="pandaset-data")
    log = open_log(root, camera_names)
    frames, train, evaluation = _clip_frames(config, log)
    sizes = check_clip_files(log, frames.tolist(), need_lidar=config.load_lidar, need_cuboids=config.load_cuboids)
    factor = config.downscale_factor
    too_small = [f"{name}: {w}x{h}" for name, (w, h) in sizes.items() if w // factor < 1 or h // factor < 1]
    if too_small:
        raise PandaSetDataError(f"downscale_factor {factor} leaves no pixel of the images ({', '.join(too_small)})")
    cameras = [log.cameras[name] for name in camera_names]

    camera_times = np.stack([camera.timestamps[frames] for camera in cameras])  # [cameras, frames]
    time_offset = float(camera_times.min())
    time_span = float(camera_times.max() - time_offset)
    if time_span <= 0:
        CONSOLE.log(f"[yellow]The clip of {root} spans no time (one frame?): every normalised time is 0.")

    def normalised(seconds: np.ndarray) -> np.ndarray:
        return (seconds - time_offset) / time_span if time_span > 0 else np.zeros(np.shape(seconds))

    world_from_log = _world_from_log(log, frames)

    sweeps: List[LidarFrame] = []
    if config.load_lidar:

        def read_sweep(index: int) -> LidarFrame:
            frame = int(frames[index])
            return _filter_sweep(read_lidar_frame(log.lidar_path(frame)), log.lidar_poses[frame], config)

        sweeps = _read_frames(read_sweep, range(len(frames)), "Reading PandaSet LiDAR")

    seed_xyz = seed_rgb = None
    if sweeps:
        seed_xyz, seed_rgb = _seed_points(config, cameras, sweeps, frames, train, sizes, world_from_log)
        if len(seed_xyz) == 0:
            CONSOLE.log(f"[yellow]No training camera of {root} sees a LiDAR point of its frame: no seed points.")
            seed_xyz = seed_rgb = None

    metres_per_unit = config.metres_per_unit
    if metres_per_unit is None:
        if seed_xyz is None:
            metres_per_unit = FALLBACK_METRES_PER_UNIT
        else:
            radius = float(np.percentile(np.hypot(seed_xyz[:, 0], seed_xyz[:, 1]), SCALE_PERCENTILE))
            metres_per_unit = max(radius, 1.0)
    scale = 1.0 / metres_per_unit

    nerf_cameras, c2w, image_frame, image_camera = _build_cameras(
        cameras, frames, sizes, factor, world_from_log, scale, normalised(camera_times.T.reshape(-1))
    )
    image_paths = [cameras[c].image_path(int(frames[k])) for k, c in zip(image_frame, image_camera)]

    lidar = None
    if config.load_lidar:
        lidar = _pack_sweeps(sweeps, log, frames, world_from_log, metres_per_unit, time_offset, normalised)
    actors = _load_actors(log, frames, world_from_log, metres_per_unit, normalised) if config.load_cuboids else []

    seeds = None
    if seed_xyz is not None:
        seeds = (torch.from_numpy(seed_xyz * scale).float(), torch.from_numpy(seed_rgb))
    box_points = [c2w[:, :, 3]] + ([seed_xyz * scale] if seed_xyz is not None else [])
    driving = DrivingMetadata(
        camera_names=camera_names,
        lidar=lidar,
        actors=actors,
        time_offset=time_offset,
        time_span=time_span,
        metres_per_unit=metres_per_unit,
        world_from_log=world_from_log,
        source=str(root),
        synthetic=log.synthetic,
    )
    return _Clip(
        frames=frames,
        train=train,
        eval=evaluation,
        cameras=nerf_cameras,
        image_paths=image_paths,
        image_frame=image_frame,
        image_camera=image_camera,
        world_from_log=world_from_log,
        metres_per_unit=metres_per_unit,
        seeds=seeds,
        scene_box=_scene_box(np.concatenate(box_points), scale),
        driving=driving,
        time_axis=_time_axis(camera_times, time_span, cameras),
    )


def _time_axis(camera_times: np.ndarray, time_span: float, cameras: Sequence[CameraLog]) -> TimeAxis:
    """The clip's `TimeAxis` from the selected cameras' timestamps [cameras, frames] (Unix seconds): one frame step
    is the cameras' mean frame period in normalised time (1 / (frames - 1) for evenly spaced frames)."""
    num_frames = camera_times.shape[1]
    if num_frames < 2 or time_span <= 0:
        return TimeAxis(num_frames=num_frames, frame_step=1.0, duration_seconds=max(time_span, 0.0))
    periods = (camera_times[:, -1] - camera_times[:, 0]) / (num_frames - 1)
    stalled = [str(camera.folder / "timestamps.json") for camera, period in zip(cameras, periods) if not period > 0]
    if stalled:
        raise PandaSetDataError(
            f"The clip's last frame is not later than its first in {', '.join(stalled)}: the frames have no time order"
        )
    return TimeAxis(num_frames=num_frames, frame_step=float(periods.mean()) / time_span, duration_seconds=time_span)


def _pack_sweeps(
    sweeps: Sequence[LidarFrame],
    log: PandaSetLog,
    frames: np.ndarray,
    world_from_log: np.ndarray,
    metres_per_unit: float,
    time_offset: float,
    normalised: Callable[[np.ndarray], np.ndarray],
) -> LidarSweeps:
    """The filtered sweeps in the output world, concatenated."""
    scale = 1.0 / metres_per_unit
    lidar_to_worlds = world_from_log @ log.lidar_poses[frames]
    lidar_to_worlds[:, :3, 3] *= scale
    times = np.concatenate([s.times for s in sweeps])
    return LidarSweeps(
        points=np.concatenate([_apply(world_from_log, s.xyz) * scale for s in sweeps]).astype(np.float32),
        intensity=np.clip(np.rint(np.concatenate([s.intensity for s in sweeps])), 0, 255).astype(np.uint8),
        point_times=normalised(times).astype(np.float32),
        point_seconds=(times - time_offset).astype(np.float32),
        sensor=np.concatenate([s.sensor for s in sweeps]).astype(np.uint8),
        offsets=np.concatenate([[0], np.cumsum([len(s.xyz) for s in sweeps])]).astype(np.int64),
        lidar_to_worlds=lidar_to_worlds[:, :3, :].astype(np.float32),
        sweep_times=normalised(log.lidar_timestamps[frames]).astype(np.float32),
        frame_indices=frames.astype(np.int64),
        metres_per_unit=metres_per_unit,
        source_rows=np.concatenate([s.rows for s in sweeps]).astype(np.int64),
    )


def _load_actors(
    log: PandaSetLog,
    frames: np.ndarray,
    world_from_log: np.ndarray,
    metres_per_unit: float,
    normalised: Callable[[np.ndarray], np.ndarray],
) -> List[ActorTrack]:
    """One track per cuboid uuid over the clip's frames (annotation time = the frame's LiDAR sweep time)."""
    boxes: List[CuboidFrame] = _read_frames(
        lambda frame: read_cuboid_frame(log.cuboid_path(frame)), frames.tolist(), "Reading PandaSet cuboids"
    )
    by_uuid: Dict[str, List[Tuple[int, CuboidFrame, int]]] = {}
    for frame, cuboids in zip(frames.tolist(), boxes):
        for row, uuid in enumerate(cuboids.uuid):
            by_uuid.setdefault(uuid, []).append((frame, cuboids, row))
    scale = 1.0 / metres_per_unit
    tracks = []
    for uuid, entries in by_uuid.items():
        # A uuid annotated twice in one frame keeps its first box.
        _, first = np.unique([frame for frame, _, _ in entries], return_index=True)
        entries = [entries[i] for i in first]
        track_frames = np.array([frame for frame, _, _ in entries], dtype=np.int64)
        heading = np.array([c.yaw[r] for _, c, r in entries]) + np.pi / 2  # PandaSet heading = Rz(yaw) @ (0, 1, 0)
        box_to_log = np.tile(np.eye(4), (len(entries), 1, 1))
        box_to_log[:, 0, 0], box_to_log[:, 0, 1] = np.cos(heading), -np.sin(heading)
        box_to_log[:, 1, 0], box_to_log[:, 1, 1] = np.sin(heading), np.cos(heading)
        box_to_log[:, :3, 3] = [c.position[r] for _, c, r in entries]
        poses = world_from_log @ box_to_log
        poses[:, :3, 3] *= scale
        _, first_boxes, first_row = entries[0]
        label = first_boxes.label[first_row]
        tracks.append(
            ActorTrack(
                track_id=uuid,
                label=label,
                frame_indices=track_frames,
                times=normalised(log.lidar_timestamps[track_frames]).astype(np.float32),
                poses=poses.astype(np.float32),
                size_wlh=(np.max([c.dimensions[r] for _, c, r in entries], axis=0) * scale).astype(np.float32),
                stationary=bool(all(c.stationary[r] for _, c, r in entries)),
                deformable=label in DEFORMABLE_LABELS,
            )
        )
    return tracks


def _scene_box(points: np.ndarray, scale: float) -> SceneBox:
    """Axis-aligned box around camera centres and seed points, padded by SCENE_BOX_MARGIN of its largest side
    (at least one metre)."""
    low, high = points.min(axis=0), points.max(axis=0)
    pad = max(SCENE_BOX_MARGIN * float((high - low).max()), scale)
    return SceneBox(aabb=torch.tensor(np.stack([low - pad, high + pad]), dtype=torch.float32))
