"""A spinning 64-beam LiDAR (Pandar64-like) cast against a driving scene, one sweep per frame.

Sweep geometry, as measured on PandaSet log 002: sweep k covers the `period` (0.1 s) *ending* at its frame
timestamp; the head spins clockwise seen from above, starting pointing backwards, passing the left side, facing
forward at mid-sweep (when the front camera fires) and ending behind again. The sweep angle phi in [0°, 360°) is
measured clockwise from the ego's rear, so a ray at phi points at ego-frame azimuth 180° - phi (counter-clockwise
from forward), and the capture time grows with phi.

Time sampling (the approximation): the sweep is cut into `sectors` equal azimuth sectors; every ray of sector s is
cast at that sector's centre time t_s = sweep start + (s + 0.5) / sectors * period, from the LiDAR pose of the ego at
t_s, against the scene at t_s. Each point therefore lies exactly on the scene's surface at its recorded time, and
its recorded time is the continuous sweep time of its azimuth quantised to the sector centre (an error of at most
period / (2 sectors), 1.4 ms with 36 sectors); set sectors = the number of columns for a per-column time.

Returns: only rays that hit a surface other than the sky within `max_range` give a point. Intensity (0..255,
integer-valued like PandaSet's) is 255 * albedo^3 * |cos(incidence)|, albedo being the mean of the hit surface's
RGB albedo: bright paint and facing surfaces return strongly, dark asphalt at grazing angles weakly (PandaSet's
median is ~7).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fourd_ns.synthetic.driving.culling import cast_rays_culled
from fourd_ns.synthetic.driving.ego_rig import lidar_pose
from fourd_ns.synthetic.driving.street import SKY_INSTANCE, DrivingScene
from fourd_ns.synthetic.driving.surface_truth import (
    instance_ids,
    material_positions,
    material_velocities,
    surface_albedo,
)


def pandar64_elevations() -> tuple[float, ...]:
    """64 beam elevations (degrees, top to bottom) spread like the Hesai Pandar64's: +15° to -25°, 1/6° apart
    between +1.83° and -6°, sparser above and below."""
    upper = (15.0, 11.0, 8.0, 5.0, 3.0, 2.0)
    dense = tuple(float(v) for v in np.round(np.linspace(11 / 6, -6.0, 48), 4))
    lower = (-7.0, -8.0, -9.0, -10.0, -11.0, -12.0, -13.0, -14.0, -19.0, -25.0)
    return upper + dense + lower


@dataclass(frozen=True)
class SpinningLidar:
    """Scan pattern and range of the roof LiDAR."""

    elevations_deg: tuple[float, ...] = pandar64_elevations()
    azimuth_resolution_deg: float = 0.4
    """Angle between columns; 360 / this must be a whole number."""
    sectors: int = 36
    """Azimuth sectors cast at their own time (see the module docstring); must divide the column count."""
    period: float = 0.1
    """Seconds per revolution (10 Hz)."""
    max_range: float = 120.0
    """Surfaces farther than this (m) give no return."""
    sensor_id: int = 0
    """Value of PandaSet's ``d`` column (0 = the 360° Pandar64)."""

    @property
    def columns(self) -> int:
        return round(360.0 / self.azimuth_resolution_deg)

    def validate(self) -> None:
        columns = 360.0 / self.azimuth_resolution_deg
        if abs(columns - round(columns)) > 1e-6:
            raise ValueError(f"lidar azimuth resolution {self.azimuth_resolution_deg}° does not divide 360°")
        if self.sectors < 1 or self.columns % self.sectors:
            raise ValueError(f"lidar sectors ({self.sectors}) must divide the {self.columns} azimuth columns")


@dataclass
class LidarSweep:
    """The P returns of one sweep, in scan order (increasing sweep angle, then beam)."""

    points: np.ndarray
    """[P, 3] float64 world positions."""
    intensity: np.ndarray
    """[P] float64, integers 0..255."""
    times: np.ndarray
    """[P] float64 capture times (s since the scene start)."""
    origins: np.ndarray
    """[P, 3] float64 LiDAR centre (world) the ray left from."""
    beam: np.ndarray
    """[P] int16 beam index into SpinningLidar.elevations_deg."""
    sweep_angle: np.ndarray
    """[P] float32 phi (degrees clockwise from the ego's rear) of the ray."""
    instance: np.ndarray
    """[P] uint16 instance id of the hit surface."""
    velocity: np.ndarray
    """[P, 3] float64 world velocity (m/s) of the hit material point at its capture time."""
    scene_flow: np.ndarray
    """[P, 3] float64 displacement of the hit material point from its capture time to one period later (zeros when
    no next sweep was asked for)."""


def _sector_directions(lidar: SpinningLidar, sector: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ego-frame unit directions [C * B, 3], beam indices [C * B] and sweep angles [C * B] of a sector's rays."""
    per_sector = lidar.columns // lidar.sectors
    columns = np.arange(sector * per_sector, (sector + 1) * per_sector)
    phi = (columns + 0.5) * lidar.azimuth_resolution_deg
    azimuth = np.radians(180.0 - phi)[:, None]
    elevation = np.radians(np.asarray(lidar.elevations_deg))[None, :]
    x, y = np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth)
    dirs = np.stack(np.broadcast_arrays(x, y, np.sin(elevation)), axis=-1).reshape(-1, 3)
    beams = np.broadcast_to(np.arange(len(lidar.elevations_deg)), (len(columns), len(lidar.elevations_deg)))
    angles = np.broadcast_to(phi[:, None], beams.shape)
    return dirs, beams.reshape(-1).astype(np.int16), angles.reshape(-1).astype(np.float32)


def scan_sweep(driving: DrivingScene, lidar: SpinningLidar, sweep_end: float, with_flow: bool) -> LidarSweep:
    """Cast the sweep that ends at `sweep_end` (s since the scene start) from the ego car's roof.

    `with_flow` computes scene flow to one period later (False for the last sweep of a log: zeros).
    """
    lidar.validate()
    scene = driving.scene
    parts = []
    for sector in range(lidar.sectors):
        t = sweep_end - lidar.period + (sector + 0.5) / lidar.sectors * lidar.period
        dirs_ego, beams, angles = _sector_directions(lidar, sector)
        ego_rotation, _ = driving.ego.frame(t)
        _, position = lidar_pose(driving.ego, t)
        dirs = torch.as_tensor(dirs_ego @ ego_rotation.T, dtype=torch.float32)
        origins = torch.as_tensor(position, dtype=torch.float32).expand_as(dirs)
        hits = cast_rays_culled(scene, origins, dirs, t, driving.bounds.at(t), lidar.max_range)
        keep = (hits.object >= 0) & (hits.object != driving.sky_object) & (hits.depth <= lidar.max_range)
        index = keep.nonzero()[:, 0]
        hits.depth, hits.object, hits.canonical = hits.depth[index], hits.object[index], hits.canonical[index]
        hits.world, hits.normal = hits.world[index], hits.normal[index]
        kept_dirs = dirs[index]
        albedo = surface_albedo(scene, hits).mean(dim=1)
        incidence = (hits.normal * kept_dirs).sum(dim=1).abs()
        intensity = torch.round((255.0 * albedo**3 * incidence).clamp(0.0, 255.0))
        idx = index.numpy()
        now = material_positions(scene, hits, t)
        flow = material_positions(scene, hits, t + lidar.period) - now if with_flow else np.zeros_like(now)
        parts.append(
            LidarSweep(
                points=hits.world.double().numpy(),
                intensity=intensity.double().numpy(),
                times=np.full(len(idx), t),
                origins=np.broadcast_to(np.asarray(origins[0].double()), (len(idx), 3)).copy(),
                beam=beams[idx],
                sweep_angle=angles[idx],
                instance=instance_ids(hits, driving.object_instance, SKY_INSTANCE),
                velocity=material_velocities(scene, hits, t),
                scene_flow=flow,
            )
        )
    return LidarSweep(
        **{name: np.concatenate([getattr(p, name) for p in parts]) for name in LidarSweep.__dataclass_fields__}
    )
