"""Ground-truth scene flow of the LiDAR points of a sweep, for scene-flow metrics (`fourd_ns.metrics.scene_flow`).

Two sources, both per point of ``DrivingMetadata.lidar`` (so rows match ``LidarSweeps.sweep(sweep)["points"]``)
and both in output-world units on the output axes:

* **cuboids** (`cuboid_scene_flow`), any log with actor tracks, as Flux4D / STORM derive flow on real logs: a point
  rides rigidly with the box that contains it in its sweep's frame, so it moves by ``T_next T_now⁻¹`` between that
  frame's box pose and the pose ``frame_step`` frames later. Points in no box are static (zero flow), and so are
  points of an actor that is not annotated in the later frame (it left the log, or the clip ends). The box test is
  that of `fourd_ns.scene.lidar_seeding` (half sizes length / 2, width / 2, height / 2 along the box x, y, z, plus
  an optional margin; the first track in ``driving.actors`` that contains a point owns it). Approximate: boxes are
  annotated at the sweep's end time while points are captured over its 0.1 s; pedestrians are not rigid.
* **synthetic** (`synthetic_scene_flow`), logs written by `fourd_ns.synthetic.driving`: the exact displacement of
  each hit surface point from its capture time to 0.1 s (one frame) later, stored in
  ``ground_truth/lidar/NN.npz`` (``scene_flow``, metres in the log world, one row per row of ``lidar/NN.pkl.gz``).
  The dataparser drops rows of the sweep files, so points are matched to rows through ``LidarSweeps.source_rows``.

`lidar_scene_flow_truth` picks the exact one when it is available.
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
from jaxtyping import Float

from fourd_ns.dataparsers.pandaset_format import frame_stem
from fourd_ns.sensors.driving_metadata import DrivingMetadata
from fourd_ns.sensors.lidar_sweeps import LidarSweeps

SYNTHETIC_SOURCE = "synthetic"
CUBOID_SOURCE = "cuboids"


def _sweep_of(driving: DrivingMetadata, sweep: int, purpose: str) -> Tuple[LidarSweeps, slice]:
    lidar = driving.lidar
    if lidar is None:
        raise ValueError(f"{purpose}: the log {driving.source or '(unnamed)'} has no LiDAR loaded (set load_lidar True)")
    if not 0 <= sweep < len(lidar):
        raise IndexError(f"{purpose}: sweep {sweep} out of range; the clip has {len(lidar)} sweeps")
    return lidar, lidar.sweep_slice(sweep)


def synthetic_flow_path(driving: DrivingMetadata, sweep: int) -> Path:
    """``<log>/ground_truth/lidar/NN.npz`` of sweep ``sweep`` (NN = its log frame, ``%02d``)."""
    lidar, _ = _sweep_of(driving, sweep, "synthetic_flow_path")
    return Path(driving.source) / "ground_truth" / "lidar" / f"{frame_stem(int(lidar.frame_indices[sweep]))}.npz"


def cuboid_scene_flow(
    driving: DrivingMetadata, sweep: int, frame_step: int = 1, margin: float = 0.0
) -> Float[np.ndarray, "P 3"]:
    """float32 [P, 3] displacement (output-world units) of each point of sweep ``sweep`` to log frame
    ``frame + frame_step``, riding with the box that contains it (see the module docstring); ``margin``
    (output-world units) enlarges every box on each side."""
    if not (isinstance(frame_step, (int, np.integer)) and frame_step >= 1):
        raise ValueError(f"cuboid_scene_flow: frame_step must be a positive integer, got {frame_step!r}")
    if not margin >= 0:
        raise ValueError(f"cuboid_scene_flow: margin must be >= 0, got {margin}")
    lidar, part = _sweep_of(driving, sweep, "cuboid_scene_flow")
    points = lidar.points[part].astype(np.float64)
    flow = np.zeros_like(points)
    owned = np.zeros(len(points), dtype=bool)
    frame = int(lidar.frame_indices[sweep])
    for track in driving.actors:
        now = np.nonzero(track.frame_indices == frame)[0]
        if now.size == 0:
            continue
        pose = track.poses[now[0]].astype(np.float64)
        local = (points - pose[:3, 3]) @ pose[:3, :3]  # R^T (p - t), row-vector form
        half = np.array([track.size_wlh[1], track.size_wlh[0], track.size_wlh[2]], dtype=np.float64) / 2.0 + margin
        inside = ~owned & np.all(np.abs(local) <= half, axis=1)
        owned |= inside
        later = np.nonzero(track.frame_indices == frame + frame_step)[0]
        if later.size == 0 or not inside.any():
            continue
        target = track.poses[later[0]].astype(np.float64)
        flow[inside] = local[inside] @ target[:3, :3].T + target[:3, 3] - points[inside]
    return flow.astype(np.float32)


def synthetic_scene_flow(driving: DrivingMetadata, sweep: int) -> Float[np.ndarray, "P 3"]:
    """float32 [P, 3] exact displacement (output-world units) of each point of sweep ``sweep`` over one frame
    (0.1 s) from a synthetic log's ``ground_truth/lidar/NN.npz``; zeros in the log's last frame."""
    if not driving.synthetic:
        raise ValueError(
            f"synthetic_scene_flow: {driving.source or 'this log'} is not a synthetic log (no synthetic.json), so it "
            "has no exact scene flow; use cuboid_scene_flow or lidar_scene_flow_truth"
        )
    lidar, part = _sweep_of(driving, sweep, "synthetic_scene_flow")
    if lidar.source_rows is None:
        raise ValueError(
            "synthetic_scene_flow: LidarSweeps.source_rows is None, so points cannot be matched to the rows of "
            "the ground-truth file; parse the log with the pandaset-data dataparser, which records them"
        )
    path = synthetic_flow_path(driving, sweep)
    if not path.is_file():
        raise FileNotFoundError(
            f"synthetic_scene_flow: missing {path}; synthetic driving logs store each sweep's exact scene flow "
            "there (regenerate the log with fourd-synth-driving)"
        )
    with np.load(path) as truth:
        if "scene_flow" not in truth:
            raise ValueError(f"synthetic_scene_flow: {path} has no 'scene_flow' array (has {', '.join(truth.files)})")
        table = truth["scene_flow"]
    rows = lidar.source_rows[part]
    if table.ndim != 2 or table.shape[1] != 3 or (rows.size and int(rows.max()) >= len(table)):
        raise ValueError(
            f"synthetic_scene_flow: {path} holds scene_flow of shape {table.shape}, which does not cover the rows "
            f"of sweep {sweep} (largest row {int(rows.max()) if rows.size else -1}); the log and its ground truth "
            "do not match"
        )
    flow_log = table[rows].astype(np.float64)
    return (flow_log @ driving.world_from_log[:3, :3].T / driving.metres_per_unit).astype(np.float32)


def lidar_scene_flow_truth(driving: DrivingMetadata, sweep: int) -> Tuple[Float[np.ndarray, "P 3"], str]:
    """(flow [P, 3] float32 in output-world units over one frame, source name): the exact synthetic flow
    (``"synthetic"``) when the log is synthetic, its points know their rows and the ground-truth file exists,
    else the cuboid flow (``"cuboids"``)."""
    lidar, _ = _sweep_of(driving, sweep, "lidar_scene_flow_truth")
    if driving.synthetic and lidar.source_rows is not None and synthetic_flow_path(driving, sweep).is_file():
        return synthetic_scene_flow(driving, sweep), SYNTHETIC_SOURCE
    return cuboid_scene_flow(driving, sweep), CUBOID_SOURCE
