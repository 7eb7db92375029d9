"""Points to voxels and back: voxelisation, pooling of point features into voxels, gathering voxel features back.

The voxel grid is anchored at ``origin`` (the world origin by default), so the same point always lands in the same
voxel whatever other points are present; voxels come in lexicographic order of their integer coordinates, so the
result is deterministic. Pooling uses torch's ``index_add_`` / ``scatter_reduce`` (differentiable, CPU and CUDA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor

from fourd_ns.networks.sparse.coords import unique_coords

Reduce = Literal["mean", "max", "sum"]


@dataclass
class Voxelization:
    """Which voxel each point falls in. Voxel ``v`` is the world box ``origin + voxel_size · [coords[v], coords[v]+1)``."""

    coords: Int[Tensor, "V 3"]
    """Integer voxel coordinates, lexicographically sorted, one row per occupied voxel."""
    point_to_voxel: Int[Tensor, "N"]
    """Row of ``coords`` that holds each point."""
    voxel_size: float
    """Edge length of a voxel, in the points' units (metres for driving scenes)."""
    origin: Float[Tensor, "3"]
    """World position of the corner of voxel (0, 0, 0)."""

    @property
    def num_voxels(self) -> int:
        return self.coords.shape[0]

    def voxel_centers(self) -> Float[Tensor, "V 3"]:
        """World positions of the voxel centres."""
        return self.origin + (self.coords.to(self.origin.dtype) + 0.5) * self.voxel_size


def voxelize(points: Float[Tensor, "N 3"], voxel_size: float, origin: Optional[Float[Tensor, "3"]] = None
             ) -> Voxelization:
    """Assign points to cubic voxels of edge ``voxel_size``, the grid's corner at ``origin`` (default: zero)."""
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"voxelize needs points [N, 3], got {tuple(points.shape)}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError("voxelize: points contain NaN or infinite values")
    origin = torch.zeros(3, dtype=points.dtype, device=points.device) if origin is None else origin.to(points)
    cells = torch.floor((points.detach() - origin) / voxel_size).to(torch.int64)
    coords, point_to_voxel = unique_coords(cells)
    return Voxelization(coords, point_to_voxel, float(voxel_size), origin)


def scatter_to_voxels(features: Float[Tensor, "N C"], point_to_voxel: Int[Tensor, "N"], num_voxels: int,
                      reduce: Reduce = "mean") -> Float[Tensor, "V C"]:
    """Pool point features into their voxels (``mean``, ``max`` or ``sum``); voxels without points get zeros."""
    if features.shape[0] != point_to_voxel.shape[0]:
        raise ValueError(f"scatter_to_voxels: {features.shape[0]} feature rows for {point_to_voxel.shape[0]} points")
    out = features.new_zeros(num_voxels, features.shape[1])
    if reduce == "sum":
        return out.index_add_(0, point_to_voxel, features)
    if reduce == "mean":
        counts = torch.bincount(point_to_voxel, minlength=num_voxels).clamp_(min=1).to(features.dtype)
        return out.index_add_(0, point_to_voxel, features) / counts[:, None]
    if reduce == "max":
        index = point_to_voxel[:, None].expand_as(features)
        return out.scatter_reduce(0, index, features, reduce="amax", include_self=False)
    raise ValueError(f"scatter_to_voxels: reduce must be 'mean', 'max' or 'sum', got {reduce!r}")


def gather_from_voxels(voxel_features: Float[Tensor, "V C"], point_to_voxel: Int[Tensor, "N"]) -> Float[Tensor, "N C"]:
    """Each point gets the features of its voxel."""
    return voxel_features.index_select(0, point_to_voxel)
