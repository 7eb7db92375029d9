"""Deterministic voxel downsampling of point clouds to a point budget.

Shared by the dataparsers' seed points and the driving scene's LiDAR seeding so both thin LiDAR the same way: one
point per occupied voxel (the first in input order, so the result does not depend on hashing or sorting order),
then, if that is still over budget, a random subset drawn with a fixed seed (the same points on every run).
"""

from __future__ import annotations

import numpy as np


def voxel_subset(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """Indices (increasing) of the first point of ``points`` [N, 3] in each occupied voxel of side ``voxel_size``
    (every index when ``voxel_size`` is 0)."""
    if voxel_size <= 0 or len(points) == 0:
        return np.arange(len(points))
    keys = np.floor(points / voxel_size).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    return np.sort(first)


def voxel_downsample(points: np.ndarray, voxel_size: float, max_points: int, seed: int = 0) -> np.ndarray:
    """Indices (increasing) of at most ``max_points`` points of ``points`` [N, 3]: :func:`voxel_subset`, then a
    uniformly random subset drawn with ``numpy.random.default_rng(seed)`` when more than ``max_points`` remain."""
    keep = voxel_subset(points, voxel_size)
    if len(keep) > max_points:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(keep, size=max_points, replace=False))
    return keep
