"""`generate_driving_scene(s)`: render seeded streets with the ego rig and write them as PandaSet logs.

Frame k of a log: the LiDAR sweep covers scene time [0.1 k, 0.1 (k + 1)] s and its timestamp (``lidar/`` and
``meta/timestamps.json``) is the sweep's end; cuboids, ``meta/gps.json`` and ``lidar/poses.json`` describe that
instant; each camera fires at the sweep timestamp plus its mount's offset (about -0.05 s: mid-sweep). Unix time =
scene time + ``start_time_unix`` of ``synthetic.json``.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from fourd_ns.synthetic.camera import PinholeCamera, project
from fourd_ns.synthetic.driving import pandaset_writer as writer
from fourd_ns.synthetic.driving.actors import Actor, pandaset_yaw
from fourd_ns.synthetic.driving.camera_views import render_view, view_truth
from fourd_ns.synthetic.driving.ego_rig import LIDAR_POSITION, PANDASET_FRONT_CAMERAS, lidar_pose, mounted_camera
from fourd_ns.synthetic.driving.lidar_scan import SpinningLidar, scan_sweep
from fourd_ns.synthetic.generate import torch_threads
from fourd_ns.synthetic.driving.street import (
    BACKGROUND_INSTANCE,
    SKY_INSTANCE,
    DrivingScene,
    StreetConfig,
    build_street,
)

GENERATOR = "fourd_ns.synthetic.driving"
GENERATOR_VERSION = "1"
"""Bumped whenever the same (seed, config) would produce different files."""
FRAME_PERIOD = 0.1
"""Seconds between frames (10 Hz, one LiDAR revolution)."""
EARTH_RADIUS = 6_378_137.0


@dataclass(frozen=True)
class DrivingSceneConfig:
    """Everything but the seed that determines a synthetic driving log."""

    num_frames: int = 24
    width: int = 480
    """Image width (px); intrinsics are PandaSet's scaled by width / 1920."""
    height: int = 270
    """Image height (px); the principal point's y is scaled by height / 1080."""
    cameras: tuple[str, ...] = ("front_camera", "front_left_camera", "front_right_camera")
    """Camera folders to write, from PANDASET_FRONT_CAMERAS."""
    supersample: int = 2
    """RGB samples per pixel side (antialiasing); ground truth uses pixel centres."""
    lidar: SpinningLidar = field(default_factory=SpinningLidar)
    street: StreetConfig = field(default_factory=StreetConfig)

    def validate(self) -> None:
        unknown = [name for name in self.cameras if name not in PANDASET_FRONT_CAMERAS]
        if unknown or not self.cameras:
            raise ValueError(f"cameras {unknown or '()'} not available; choose from {sorted(PANDASET_FRONT_CAMERAS)}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be at least 1: got {self.num_frames}")
        if self.width < 1 or self.height < 1 or self.supersample < 1:
            raise ValueError(f"width, height and supersample must be positive: got {self.width}, {self.height}, "
                             f"{self.supersample}")
        self.lidar.validate()

    @property
    def duration(self) -> float:
        """Seconds of scene time the log covers."""
        return self.num_frames * FRAME_PERIOD


DRIVING_PRESETS = {
    "default": DrivingSceneConfig(),
    "small": DrivingSceneConfig(
        num_frames=4,
        width=96,
        height=54,
        lidar=SpinningLidar(azimuth_resolution_deg=2.0, sectors=12),
        street=StreetConfig(
            extent_behind=60.0,
            extent_ahead=110.0,
            building_length=(15.0, 35.0),
            lamp_spacing=(35.0, 50.0),
            parked_vehicles=(2, 4),
            moving_vehicles=(2, 4),
            pedestrians=(1, 2),
        ),
    ),
}
"""'default': 24 frames, three 480x270 cameras, 0.4° LiDAR cast in 36 sectors; 'small' (tests, a few seconds): 4
frames at 96x54, a 2° LiDAR in 12 sectors, a shorter street with fewer buildings, lamps and vehicles."""


def _prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty; choose another folder or overwrite")
        # Only remove what this generator writes, so a mistyped folder loses nothing else.
        for name in writer.OUTPUT_NAMES:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def resolve_config(config: DrivingSceneConfig | str) -> DrivingSceneConfig:
    """A config, or the preset of that name."""
    if isinstance(config, str):
        if config not in DRIVING_PRESETS:
            raise ValueError(f"unknown driving preset {config!r}; choose one of {sorted(DRIVING_PRESETS)}")
        return DRIVING_PRESETS[config]
    return config


def build_driving_scene(seed: int, config: DrivingSceneConfig | str = "default") -> DrivingScene:
    """The street a log of (seed, config) shows: for re-casting ground truth outside the generator."""
    config = resolve_config(config)
    return build_street(seed, config.street, config.duration)


def lidar_timestamp(frame: int) -> float:
    """Scene time (s) of frame `frame`'s LiDAR sweep end, cuboids, GPS and LiDAR pose."""
    return (frame + 1) * FRAME_PERIOD


def _camera_used(actor: Actor, t: float, cameras: Sequence[PinholeCamera]) -> int:
    """Index of the first camera whose image contains the cuboid centre at time t, else -1."""
    centre, _ = actor.box(t)
    for index, camera in enumerate(cameras):
        uv, z = project(camera, torch.as_tensor(centre[None], dtype=torch.float64))
        u, v = uv[0].tolist()
        if z.item() > 0 and 0 <= u < camera.width and 0 <= v < camera.height:
            return index
    return -1


def cuboid_rows(driving: DrivingScene, t: float, cameras: Sequence[PinholeCamera]) -> list[dict]:
    """One PandaSet cuboid row per actor at scene time t (s)."""
    rows = []
    for actor in driving.actors:
        centre, heading = actor.box(t)
        width, length, height = actor.size_wlh
        row = {
            "uuid": actor.uuid,
            "label": actor.label,
            "yaw": pandaset_yaw(heading),
            "stationary": actor.stationary,
            "camera_used": _camera_used(actor, t, cameras),
            "position.x": float(centre[0]),
            "position.y": float(centre[1]),
            "position.z": float(centre[2]),
            "dimensions.x": width,
            "dimensions.y": length,
            "dimensions.z": height,
            "cuboids.sibling_id": "-",
            "cuboids.sensor_id": -1,
        }
        row.update({f"attributes.{key}": value for key, value in actor.attributes.items()})
        rows.append(row)
    return rows


def _gps(driving: DrivingScene, t: float, origin: dict) -> dict:
    """GPS fix of the ego at time t: world x = east, y = north, z = up about `origin` (lat, long, height)."""
    position, _ = driving.ego.pose(t)
    velocity = driving.ego.velocity(t)
    lat0 = origin["lat"]
    return {
        "lat": lat0 + math.degrees(position[1] / EARTH_RADIUS),
        "long": origin["long"] + math.degrees(position[0] / (EARTH_RADIUS * math.cos(math.radians(lat0)))),
        "height": origin["height"] + float(position[2]),
        "xvel": float(velocity[0]),
        "yvel": float(velocity[1]),
    }


def generate_driving_scene(
    out: str | Path,
    seed: int = 0,
    config: DrivingSceneConfig | str = "default",
    overwrite: bool = False,
    on_frame: Callable[[int, int], None] | None = None,
    num_threads: int | None = 1,
) -> Path:
    """Write the synthetic driving log of `seed` to `out` in PandaSet's layout, with ground truth.

    `config` is a `DrivingSceneConfig` or a preset name ('default', 'small'). The files are a deterministic
    function of (seed, config). `on_frame(done, total)` is called after each frame (progress bars); `num_threads`
    is torch's intra-op thread count while rendering (None = leave as is). Returns `out`.
    """
    config = resolve_config(config)
    config.validate()
    out = Path(out)
    _prepare_output(out, overwrite)
    with torch_threads(num_threads):
        _render_and_write(out, seed, config, on_frame)
    return out


def _render_and_write(
    out: Path, seed: int, config: DrivingSceneConfig, on_frame: Callable[[int, int], None] | None
) -> None:
    driving = build_driving_scene(seed, config)
    log_rng = np.random.default_rng([seed, 1])
    start_time = float(np.round(1_557_540_000.0 + log_rng.uniform(0.0, 3.0e7), 6))
    gps_origin = {
        "lat": float(37.77 + log_rng.uniform(-0.02, 0.02)),
        "long": float(-122.42 + log_rng.uniform(-0.02, 0.02)),
        "height": float(log_rng.uniform(2.0, 40.0)),
    }
    mounts = [PANDASET_FRONT_CAMERAS[name] for name in config.cameras]
    poses: dict[str, list[dict]] = {m.name: [] for m in mounts}
    times: dict[str, list[float]] = {m.name: [] for m in mounts}
    lidar_poses, lidar_times, gps = [], [], []
    for frame in range(config.num_frames):
        sweep_end = lidar_timestamp(frame)
        has_next = frame + 1 < config.num_frames
        cameras = []
        for mount in mounts:
            t = sweep_end + mount.time_offset
            camera = mounted_camera(mount, driving.ego, t, config.width, config.height)
            cameras.append(camera)
            writer.write_image(out, mount.name, frame, render_view(driving, camera, t, config.supersample))
            truth = view_truth(driving, camera, t, t + FRAME_PERIOD if has_next else None)
            writer.write_view_truth(out, mount.name, frame, truth)
            poses[mount.name].append(writer.pose_json(camera.rotation.T, camera.position))
            times[mount.name].append(start_time + t)
        sweep = scan_sweep(driving, config.lidar, sweep_end, with_flow=has_next)
        stem = writer.frame_stem(frame)
        writer.write_pickle(writer.lidar_dataframe(sweep, start_time, config.lidar.sensor_id),
                            out / "lidar" / f"{stem}.pkl.gz")
        writer.write_lidar_truth(out, frame, sweep)
        writer.write_pickle(writer.cuboid_dataframe(cuboid_rows(driving, sweep_end, cameras)),
                            out / "annotations" / "cuboids" / f"{stem}.pkl.gz")
        lidar_poses.append(writer.pose_json(*lidar_pose(driving.ego, sweep_end)))
        lidar_times.append(start_time + sweep_end)
        gps.append(_gps(driving, sweep_end, gps_origin))
        if on_frame is not None:
            on_frame(frame + 1, config.num_frames)

    for mount in mounts:
        scale_x, scale_y = config.width / 1920, config.height / 1080
        focal = mount.fx * scale_x
        intrinsics = {"fx": focal, "fy": focal, "cx": mount.cx * scale_x, "cy": mount.cy * scale_y}
        writer.write_camera_meta(out, mount.name, intrinsics, poses[mount.name], times[mount.name])
    writer.write_json(out / "lidar" / "poses.json", lidar_poses)
    writer.write_json(out / "lidar" / "timestamps.json", lidar_times)
    writer.write_json(out / "meta" / "timestamps.json", lidar_times)
    writer.write_json(out / "meta" / "gps.json", gps)
    writer.write_json(out / "ground_truth" / "instances.json", _instances(driving))
    writer.write_json(out / "synthetic.json", _provenance(seed, config, driving, start_time, gps_origin))


def _instances(driving: DrivingScene) -> dict:
    return {
        "background": BACKGROUND_INSTANCE,
        "sky": SKY_INSTANCE,
        "instances": [
            {"id": a.instance_id, "uuid": a.uuid, "label": a.label, "stationary": a.stationary}
            for a in driving.actors
        ],
    }


def _provenance(seed: int, config: DrivingSceneConfig, driving: DrivingScene, start_time: float, gps: dict) -> dict:
    return {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "config": asdict(config),
        "start_time_unix": start_time,
        "frame_period": FRAME_PERIOD,
        "time": "scene time (s) = Unix time - start_time_unix; frame k's LiDAR sweep spans [0.1 k, 0.1 (k + 1)]",
        "world": "z up, metres; street heading and ego start in 'layout'; GPS: x = east, y = north about gps_origin",
        "gps_origin": gps,
        "cameras": {name: asdict(PANDASET_FRONT_CAMERAS[name]) for name in config.cameras},
        "camera_used": "index into 'cameras' (in this order) of the first camera seeing the cuboid centre, else -1",
        "lidar_position_in_ego": list(LIDAR_POSITION),
        "last_frame_flow": "zeros (no next frame)",
        "layout": driving.layout,
        "actors": [
            {"uuid": a.uuid, "label": a.label, "instance_id": a.instance_id, "size_wlh": list(a.size_wlh),
             "stationary": a.stationary, **a.description}
            for a in driving.actors
        ],
    }


def generate_driving_scenes(
    out_root: str | Path,
    num_scenes: int,
    first_seed: int = 0,
    config: DrivingSceneConfig | str = "default",
    overwrite: bool = False,
    num_threads: int | None = 1,
    show_progress: bool = True,
) -> list[Path]:
    """Write logs for seeds first_seed .. first_seed + num_scenes - 1 to ``out_root/<seed:03d>`` (PandaSet-style
    sequence folders), with a progress bar over all frames and each scene's time in the log. Returns the folders."""
    from nerfstudio.utils.rich_utils import CONSOLE  # nerfstudio is heavy; only the batch front end needs it

    from fourd_ns.progress import progress_bar

    config = resolve_config(config)
    config.validate()
    out_root = Path(out_root)
    folders = []
    with progress_bar("Synthetic driving logs", disable=not show_progress) as progress:
        task = progress.add_task("frames", total=num_scenes * config.num_frames)
        for index in range(num_scenes):
            seed = first_seed + index
            folder = out_root / f"{seed:03d}"
            start = time.perf_counter()
            done_before = index * config.num_frames
            generate_driving_scene(
                folder, seed, config, overwrite=overwrite, num_threads=num_threads,
                on_frame=lambda done, total, base=done_before: progress.update(task, completed=base + done),
            )
            CONSOLE.log(
                f"Synthetic driving log {folder} (seed {seed}): {config.num_frames} frames, "
                f"{len(config.cameras)} cameras at {config.width}x{config.height}, LiDAR "
                f"{config.lidar.azimuth_resolution_deg}°, in {time.perf_counter() - start:.1f} s"
            )
            folders.append(folder)
    return folders
