"""LiDAR sweeps of a clip in one compact, CPU-resident structure.

All sweeps are concatenated into flat numpy arrays (float32 positions, uint8 intensity / sensor id, float32 times)
with an ``offsets`` array delimiting each sweep, so a 16-frame PandaSet clip (~2.7M points) costs ~60 MB and is
never copied to an accelerator until a model asks for one sweep (`LidarSweeps.sweep`).

Frames: ``points`` are in the dataparser's output world (nerfstudio world after the dataparser's re-centring and
scaling, the same frame as ``Cameras.camera_to_worlds``), ``lidar_to_worlds`` maps each sweep's sensor frame to
that world (rotation in the upper 3x3, scaled translation in the last column), so sensor-frame points are
``R^T (p - t)``.
Times: ``point_times`` / ``sweep_times`` are in nerfstudio's normalised clip time (0 = first camera frame of the
clip, 1 = last); ``point_seconds`` are seconds since the driving metadata's ``time_offset``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch
from torch import Tensor


@dataclass
class LidarSweeps:
    """S sweeps with M points in total."""

    points: np.ndarray
    """[M, 3] float32 positions in the dataparser's output world."""
    intensity: np.ndarray
    """[M] uint8 return intensity (PandaSet's 0..255)."""
    point_times: np.ndarray
    """[M] float32 capture time of each point in normalised clip time."""
    point_seconds: np.ndarray
    """[M] float32 capture time of each point in seconds since ``time_offset``."""
    sensor: np.ndarray
    """[M] uint8 sensor id (PandaSet: 0 = Pandar64 360° spinning unit, 1 = PandarGT front-facing unit)."""
    offsets: np.ndarray
    """[S + 1] int64: sweep s is points[offsets[s]:offsets[s + 1]]."""
    lidar_to_worlds: np.ndarray
    """[S, 3, 4] float32 pose of the sweep's reference sensor (sensor -> output world)."""
    sweep_times: np.ndarray
    """[S] float32 nominal time of each sweep (normalised clip time)."""
    frame_indices: np.ndarray
    """[S] int64 index of the sweep's frame in the log (PandaSet file number NN)."""
    metres_per_unit: float = 1.0
    """Length of one output-world unit in metres (1 / the dataparser's scale factor)."""
    source_rows: Optional[np.ndarray] = None
    """[M] int64 row of each point in its sweep's file (PandaSet ``lidar/NN.pkl.gz``), or None when unknown. The
    dataparser drops rows (sensors, range, ego box); per-row extras of a log, such as a synthetic log's exact scene
    flow in ``ground_truth/lidar/NN.npz``, are matched to the points through these."""

    def __post_init__(self) -> None:
        num_points = self.points.shape[0]
        for name in ("intensity", "point_times", "point_seconds", "sensor"):
            if getattr(self, name).shape != (num_points,):
                raise ValueError(f"LidarSweeps.{name} has shape {getattr(self, name).shape}; expected ({num_points},)")
        if self.points.shape != (num_points, 3):
            raise ValueError(f"LidarSweeps.points has shape {self.points.shape}; expected [M, 3]")
        num_sweeps = len(self)
        if self.offsets[0] != 0 or self.offsets[-1] != num_points or np.any(np.diff(self.offsets) < 0):
            raise ValueError("LidarSweeps.offsets must rise from 0 to the number of points")
        if self.lidar_to_worlds.shape != (num_sweeps, 3, 4):
            raise ValueError(f"LidarSweeps.lidar_to_worlds has shape {self.lidar_to_worlds.shape}; expected [S, 3, 4]")
        if self.sweep_times.shape != (num_sweeps,) or self.frame_indices.shape != (num_sweeps,):
            raise ValueError("LidarSweeps.sweep_times and frame_indices need one entry per sweep")
        if self.source_rows is not None:
            if self.source_rows.shape != (num_points,) or not np.issubdtype(self.source_rows.dtype, np.integer):
                raise ValueError(
                    f"LidarSweeps.source_rows has shape {self.source_rows.shape} and dtype {self.source_rows.dtype}; "
                    f"expected ({num_points},) integers"
                )
            if num_points and int(self.source_rows.min()) < 0:
                raise ValueError("LidarSweeps.source_rows must be row indices >= 0")

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    def sweep_slice(self, index: int) -> slice:
        return slice(int(self.offsets[index]), int(self.offsets[index + 1]))

    def sweep(self, index: int, device: torch.device | str = "cpu") -> Dict[str, Tensor]:
        """One sweep as tensors: points [P, 3], intensity [P] (float, 0..1), times [P], sensor [P] (int64),
        lidar_to_world [3, 4], time (scalar)."""
        part = self.sweep_slice(index)
        return {
            "points": torch.from_numpy(self.points[part]).to(device),
            "intensity": torch.from_numpy(self.intensity[part].astype(np.float32) / 255.0).to(device),
            "times": torch.from_numpy(self.point_times[part]).to(device),
            "sensor": torch.from_numpy(self.sensor[part].astype(np.int64)).to(device),
            "lidar_to_world": torch.from_numpy(self.lidar_to_worlds[index]).to(device),
            "time": torch.tensor(float(self.sweep_times[index]), device=device),
        }

    def nearest_sweep(self, time: float) -> int:
        """Index of the sweep whose nominal time is closest to ``time`` (normalised clip time)."""
        return int(np.argmin(np.abs(self.sweep_times - time)))

    def nbytes(self) -> int:
        total = sum(
            getattr(self, name).nbytes
            for name in ("points", "intensity", "point_times", "point_seconds", "sensor", "offsets", "lidar_to_worlds")
        )
        return total + (self.source_rows.nbytes if self.source_rows is not None else 0)
