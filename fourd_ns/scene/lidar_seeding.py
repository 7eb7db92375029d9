"""Seed points of a driving scene from the LiDAR sweeps of its source frames, split into background and actors.

G3R and Flux4D both start from LiDAR: every point of the source frames' sweeps becomes a Gaussian (after thinning),
coloured from the source images, with a scale from its neighbours. G3R also splits the points by the annotated
boxes (actors are rigid sets in their box frames); Flux4D keeps everything in one set with per-point capture times
(``split_actors = False``). `SeedPoints` carries both: positions, colours, scales, capture times and a "seen" flag
per point, per part; g3r turns it into neural states (`fourd_ns.scene.neural_scene`), flux4d into Gaussians with
time and velocity.

Rules (lengths in the config are metres, converted with ``DrivingMetadata.metres_per_unit``):

- **Points**: all points of the chosen sweeps (``LidarSweeps`` already dropped the ego car and far returns) in the
  output world, with their capture times ``LidarSweeps.point_times``.
- **Colours**: from the source images of the same frame (``image_sweeps`` says which sweep each image belongs to),
  the first image that sees a point (`fourd_ns.scene.point_colours`); points no image sees are grey 0.5 and flagged
  unseen (``drop_unseen`` removes them before thinning).
- **Actors**: a point inside (within ``box_margin``) the box annotated on that sweep's frame belongs to that actor
  (the first such actor in track order when boxes overlap) and is stored in its box frame; an actor's points are
  pooled over the source frames, so a moving car accumulates its surface from several sweeps. Actors annotated in
  no source frame get no part. With ``stationary_actors_to_background`` parked actors stay in the background.
  Deformable actors (pedestrians) are treated as rigid boxes, as G3R does.
- **Thinning**: per part, one point per ``voxel_size`` voxel (the first in sweep order), then a fixed-seed random
  subset down to ``max_background_points`` / ``max_points_per_actor``
  (`fourd_ns.geometry.point_subsampling.voxel_downsample`): the same points on every run.
- **Sparse actors**: an actor with fewer than ``min_points_per_actor`` points after thinning either gets the missing
  points drawn uniformly inside its box (``few_points = "fill-box"``, neurad-studio's remedy, so that actors seen
  from afar or only by the cameras can still be reconstructed; grey, unseen, at the mean time of the source sweeps
  it is annotated in) or is left out together with its points (``"skip"``; in the background the points of a moving
  actor would be a static smear).
- **Scales**: isotropic, the distance to the ``scale_neighbours``-th nearest other point of the same part (G3R: 3rd)
  or the mean distance to that many (``scale_rule = "mean-nearest"``, Flux4D's reading), with scipy's ``cKDTree``,
  clamped to [``min_scale``, ``max_scale``]; a part with a single point gets ``max_scale``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float
from scipy.spatial import cKDTree
from torch import Tensor

from fourd_ns.geometry.point_subsampling import voxel_downsample
from fourd_ns.progress import progress_bar
from fourd_ns.scene.point_colours import UNSEEN_GREY, colour_points
from fourd_ns.sensors.actor_tracks import ActorTrack
from fourd_ns.sensors.driving_metadata import DrivingMetadata
from nerfstudio.cameras.cameras import Cameras


@dataclass
class LidarSeedingConfig:
    """How LiDAR of the source frames becomes seed points (see the module docstring)."""

    voxel_size: float = 0.1
    """Voxel side in metres for thinning each part (one point per voxel); 0 keeps every point."""
    max_background_points: int = 300_000
    """At most this many background points."""
    max_points_per_actor: int = 20_000
    """At most this many points per actor."""
    split_actors: bool = True
    """Give points inside annotated boxes to their actors (G3R); False keeps every point in the background
    (Flux4D, which uses no tracks)."""
    stationary_actors_to_background: bool = False
    """Leave actors the log marks as stationary in the background instead of giving them parts."""
    box_margin: float = 0.0
    """Grow every box by this many metres on each side when testing whether a point is inside."""
    min_points_per_actor: int = 500
    """Actors with fewer points after thinning are filled up or skipped (``few_points``)."""
    few_points: Literal["fill-box", "skip"] = "fill-box"
    """fill-box: add points drawn uniformly inside the box up to min_points_per_actor; skip: leave the actor out."""
    scale_neighbours: int = 3
    """k of the k-nearest-neighbour scale (G3R: the 3rd nearest)."""
    scale_rule: Literal["kth-nearest", "mean-nearest"] = "kth-nearest"
    """Scale = distance to the k-th nearest point (G3R) or mean distance to the k nearest (Flux4D)."""
    min_scale: float = 0.01
    """Smallest scale in metres."""
    max_scale: float = 2.0
    """Largest scale in metres (also the scale of a lone point)."""
    drop_unseen: bool = False
    """Drop points that no source image sees (their colour would be a grey guess)."""
    seed: int = 0
    """Seed of the budget subsets and of the points filled into sparse boxes."""

    def __post_init__(self) -> None:
        problems = []
        if self.voxel_size < 0:
            problems.append(f"voxel_size must be >= 0, got {self.voxel_size}")
        if self.max_background_points < 0 or self.max_points_per_actor < 1:
            problems.append("max_background_points must be >= 0 and max_points_per_actor >= 1")
        if not 0 <= self.min_points_per_actor <= self.max_points_per_actor:
            problems.append(
                f"min_points_per_actor ({self.min_points_per_actor}) must lie in [0, max_points_per_actor "
                f"({self.max_points_per_actor})]"
            )
        if self.scale_neighbours < 1:
            problems.append(f"scale_neighbours must be >= 1, got {self.scale_neighbours}")
        if not 0 < self.min_scale <= self.max_scale:
            problems.append(f"need 0 < min_scale <= max_scale; got {self.min_scale}, {self.max_scale}")
        if self.box_margin < 0:
            problems.append(f"box_margin must be >= 0, got {self.box_margin}")
        if problems:
            raise ValueError("Bad LiDAR seeding settings:\n  " + "\n  ".join(problems))


@dataclass
class SeedPart:
    """N seed points of one part of the scene."""

    positions: Float[Tensor, "N 3"]
    """World coordinates (background) or box-frame coordinates (actors), output-world units."""
    colors: Float[Tensor, "N 3"]
    """RGB in [0, 1]."""
    scales: Float[Tensor, "N 3"]
    """Isotropic scales (the three columns are equal), output-world units."""
    times: Float[Tensor, "N"]
    """Capture time of each point (normalised clip time)."""
    seen: Bool[Tensor, "N"]
    """Whether a source image gave the colour (False: grey guess, or a point filled into a sparse box)."""

    @property
    def num(self) -> int:
        return int(self.positions.shape[0])


@dataclass
class SeedPoints:
    """Seed points of a driving scene: a background part and one part per actor."""

    background: SeedPart
    actors: Dict[str, SeedPart] = field(default_factory=dict)
    """Track id -> the actor's points in its box frame, in the order of ``DrivingMetadata.actors``."""
    tracks: Dict[str, ActorTrack] = field(default_factory=dict)
    """Track id -> track, for every actor in ``actors``."""
    sensor_positions: Float[Tensor, "S 3"] = field(default_factory=lambda: torch.zeros(0, 3))
    """LiDAR sensor position of each source sweep (the ego trajectory), output-world units."""

    def centre(self) -> Float[Tensor, "3"]:
        """Mean sensor position of the source sweeps (where the far field is centred)."""
        return self.sensor_positions.mean(dim=0)

    def extent(self) -> float:
        """Length of the diagonal of the bounding box of the background points and the sensor positions."""
        points = torch.cat([self.background.positions, self.sensor_positions])
        return float((points.max(dim=0).values - points.min(dim=0).values).norm())


def neighbour_scales(points: np.ndarray, neighbours: int, rule: str = "kth-nearest") -> np.ndarray:
    """Per point of ``points`` [N, 3] the distance to its ``neighbours``-th nearest other point, or the mean
    distance to that many (``rule = "mean-nearest"``); fewer when the set is smaller; NaN for a lone point."""
    count = len(points)
    if count < 2:
        return np.full(count, np.nan)
    k = min(neighbours, count - 1)
    distances, _ = cKDTree(points).query(points, k=k + 1, workers=-1)
    others = distances[:, 1:]  # column 0 is the point itself (or an exact duplicate, also at distance 0)
    return others[:, -1] if rule == "kth-nearest" else others.mean(axis=1)


def seed_from_lidar(
    driving: DrivingMetadata,
    sweep_indices: Sequence[int],
    cameras: Optional[Cameras] = None,
    images: Optional[Sequence[Float[Tensor, "H W 3"]]] = None,
    image_sweeps: Optional[Sequence[int]] = None,
    config: Optional[LidarSeedingConfig] = None,
) -> SeedPoints:
    """Seed points from the sweeps ``sweep_indices`` (into ``driving.lidar``) of the source frames.

    Args:
        driving: the clip's LiDAR sweeps and actor tracks.
        sweep_indices: sweeps of the source frames (distinct).
        cameras, images: source cameras (flat) and their images (float RGB in [0, 1], [H, W, 3] each) for colours;
            without them every point is grey and unseen.
        image_sweeps: the sweep of each image's frame (``DataparserOutputs.metadata["lidar_sweep_index"]``); an
            image colours only points of its own frame's sweep.
        config: thinning, actor and scale rules.
    """
    config = config or LidarSeedingConfig()
    lidar = driving.lidar
    if lidar is None:
        raise ValueError(f"LiDAR seeding needs LiDAR sweeps, but {driving.source or 'the log'} has none loaded")
    sweeps = [int(s) for s in sweep_indices]
    if not sweeps or len(set(sweeps)) != len(sweeps) or not all(0 <= s < len(lidar) for s in sweeps):
        raise ValueError(f"sweep_indices must be distinct sweeps in [0, {len(lidar)}); got {sweeps}")
    if (cameras is None) != (images is None) or (images is not None and image_sweeps is None):
        raise ValueError("LiDAR seeding colours from images only with cameras, images and image_sweeps together")
    if images is not None and len(image_sweeps) != len(images):
        raise ValueError(f"image_sweeps has {len(image_sweeps)} entries for {len(images)} images")
    unit = 1.0 / driving.metres_per_unit
    margin = config.box_margin * unit

    actors: List[ActorTrack] = []
    if config.split_actors:
        actors = [a for a in driving.actors if not (a.stationary and config.stationary_actors_to_background)]
    background: Dict[str, List[np.ndarray]] = {"positions": [], "colors": [], "times": [], "seen": []}
    pooled: List[Dict[str, List[np.ndarray]]] = [{key: [] for key in background} for _ in actors]
    annotated_times: List[List[float]] = [[] for _ in actors]

    with progress_bar("Seeding from LiDAR") as progress:
        task = progress.add_task("", total=len(sweeps))
        for sweep in sweeps:
            part = lidar.sweep_slice(sweep)
            points = lidar.points[part].astype(np.float64)
            times = lidar.point_times[part]
            colours, seen = _sweep_colours(points, sweep, cameras, images, image_sweeps)
            owner = np.full(len(points), -1)
            frame = int(lidar.frame_indices[sweep])
            for index, track in enumerate(actors):
                hits = np.nonzero(track.frame_indices == frame)[0]
                if hits.size == 0:
                    continue
                annotated_times[index].append(float(lidar.sweep_times[sweep]))
                pose = track.poses[hits[0]].astype(np.float64)
                local = (points - pose[:3, 3]) @ pose[:3, :3]  # R^T (p - t), row-vector form
                half = np.array([track.size_wlh[1], track.size_wlh[0], track.size_wlh[2]]) / 2.0 + margin
                inside = (owner < 0) & np.all(np.abs(local) <= half, axis=1)
                owner[inside] = index
                for key, values in zip(pooled[index], (local, colours, times, seen)):
                    pooled[index][key].append(values[inside])
            mine = owner < 0
            for key, values in zip(background, (points, colours, times, seen)):
                background[key].append(values[mine])
            progress.advance(task)

    seeds = SeedPoints(
        background=_to_part(_thinned(_stack(background), config, config.max_background_points, unit, config.seed),
                            config, unit),
        sensor_positions=torch.from_numpy(lidar.lidar_to_worlds[sweeps][:, :, 3].astype(np.float32)),
    )  # fmt: skip
    for index, track in enumerate(actors):
        if not annotated_times[index]:
            continue
        arrays = _thinned(_stack(pooled[index]), config, config.max_points_per_actor, unit, config.seed + 1 + index)
        missing = config.min_points_per_actor - len(arrays["positions"])
        if missing > 0:
            if config.few_points == "skip":
                continue
            rng = np.random.default_rng([config.seed, index])
            size_xyz = np.array([track.size_wlh[1], track.size_wlh[0], track.size_wlh[2]], dtype=np.float64)
            filled = {
                "positions": (rng.random((missing, 3)) - 0.5) * size_xyz,
                "colors": np.full((missing, 3), UNSEEN_GREY),
                "times": np.full(missing, float(np.mean(annotated_times[index]))),
                "seen": np.zeros(missing, dtype=bool),
            }
            arrays = {key: np.concatenate([arrays[key], filled[key]]) for key in arrays}
        seeds.actors[track.track_id] = _to_part(arrays, config, unit)
        seeds.tracks[track.track_id] = track
    return seeds


def _sweep_colours(
    points: np.ndarray,
    sweep: int,
    cameras: Optional[Cameras],
    images: Optional[Sequence[Tensor]],
    image_sweeps: Optional[Sequence[int]],
) -> tuple[np.ndarray, np.ndarray]:
    """(colours [P, 3], seen [P]) of one sweep's points from the images of its frame."""
    mine = [i for i, s in enumerate(image_sweeps or ()) if int(s) == sweep]
    if cameras is None or images is None or not mine:
        return np.full((len(points), 3), UNSEEN_GREY), np.zeros(len(points), dtype=bool)
    colours, seen = colour_points(
        torch.from_numpy(points).float(), cameras.flatten()[torch.tensor(mine)], [images[i] for i in mine]
    )
    return colours.double().cpu().numpy(), seen.cpu().numpy()


def _stack(arrays: Dict[str, List[np.ndarray]]) -> Dict[str, np.ndarray]:
    empty = {"positions": (0, 3), "colors": (0, 3), "times": (0,), "seen": (0,)}
    return {
        key: np.concatenate(values) if values else np.zeros(empty[key], dtype=bool if key == "seen" else np.float64)
        for key, values in arrays.items()
    }


def _thinned(
    arrays: Dict[str, np.ndarray], config: LidarSeedingConfig, budget: int, unit: float, seed: int
) -> Dict[str, np.ndarray]:
    """The points a part keeps: the seen ones only with drop_unseen, then voxel thinning to the budget."""
    candidates = np.nonzero(arrays["seen"])[0] if config.drop_unseen else np.arange(len(arrays["positions"]))
    keep = candidates[voxel_downsample(arrays["positions"][candidates], config.voxel_size * unit, budget, seed)]
    return {key: values[keep] for key, values in arrays.items()}


def _to_part(arrays: Dict[str, np.ndarray], config: LidarSeedingConfig, unit: float) -> SeedPart:
    """A `SeedPart` with neighbour scales from the part's final points."""
    scales = neighbour_scales(arrays["positions"], config.scale_neighbours, config.scale_rule)
    low, high = config.min_scale * unit, config.max_scale * unit
    scales = np.clip(np.nan_to_num(scales, nan=high), low, high)
    return SeedPart(
        positions=torch.from_numpy(arrays["positions"]).float(),
        colors=torch.from_numpy(arrays["colors"]).float(),
        scales=torch.from_numpy(np.repeat(scales[:, None], 3, axis=1)).float(),
        times=torch.from_numpy(arrays["times"].astype(np.float64)).float(),
        seen=torch.from_numpy(arrays["seen"].astype(bool)),
    )
