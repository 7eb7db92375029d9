"""A noisy sparse point cloud standing in for the SfM points of a real capture (`points.npy`).

Real Nerfies / NeRF-DS captures ship COLMAP points: a few thousand points on visible surfaces,
with small localisation noise and some outliers. Methods seeded from `points.npy` should be
tested against that kind of input, not against perfect geometry.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def sparse_points(
    surface_points: Tensor,
    rng: np.random.Generator,
    num_points: int = 4000,
    noise_std: float = 0.0,
    outlier_fraction: float = 0.0,
) -> np.ndarray:
    """Sample float32 [num_points, 3] from surface_points [M, 3] (world), with noise and outliers.

    Inliers are random surface points plus isotropic Gaussian noise of `noise_std` (world units);
    outliers are uniform in the bounding box of the surface points.
    """
    candidates = surface_points.reshape(-1, 3).to(torch.float64).numpy()
    num_points = min(num_points, len(candidates))
    num_outliers = int(round(outlier_fraction * num_points))
    chosen = candidates[rng.choice(len(candidates), num_points - num_outliers, replace=False)]
    inliers = chosen + rng.normal(0.0, noise_std, chosen.shape)
    low, high = candidates.min(axis=0), candidates.max(axis=0)
    outliers = rng.uniform(low, high, (num_outliers, 3))
    points = np.concatenate([inliers, outliers])
    return points[rng.permutation(len(points))].astype(np.float32)
