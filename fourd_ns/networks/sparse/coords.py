"""Integer voxel coordinates: int64 keys, sorted unique sets, lookups of query coordinates, kernel offsets.

A voxel set is an ``[V, 3]`` int64 tensor of integer coordinates ``(x, y, z)`` (negative values allowed). Sorting and
searching go through one int64 key per voxel, its row-major index inside the set's bounding box, so key order is the
lexicographic order of ``(x, y, z)``. Lookups use ``torch.searchsorted`` on the sorted keys: the same code runs on CPU
and CUDA, needs no hash table, and gives a deterministic voxel order.
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

_MAX_KEYS = 2**62  # keys are int64; keep a margin so encode never overflows


def bounding_box(coords: Int[Tensor, "V 3"]) -> tuple[Int[Tensor, "3"], Int[Tensor, "3"]]:
    """Per-axis minimum and extent (max − min + 1) of a voxel set; ``(0, 1)`` for an empty set."""
    if coords.shape[0] == 0:
        zeros = torch.zeros(3, dtype=torch.int64, device=coords.device)
        return zeros, zeros + 1
    lo = coords.min(dim=0).values
    extent = coords.max(dim=0).values - lo + 1
    if float(extent.double().prod()) >= _MAX_KEYS:
        raise ValueError(f"voxel coordinates span {extent.tolist()} voxels, too many for int64 keys; use a larger "
                         f"voxel size or crop the points")
    return lo, extent


def encode(coords: Int[Tensor, "*batch 3"], lo: Int[Tensor, "3"], extent: Int[Tensor, "3"]) -> Int[Tensor, "*batch"]:
    """Row-major key of each coordinate inside the box ``[lo, lo + extent)`` (coordinates must lie inside it)."""
    rel = coords - lo
    return (rel[..., 0] * extent[1] + rel[..., 1]) * extent[2] + rel[..., 2]


def decode(keys: Int[Tensor, "*batch"], lo: Int[Tensor, "3"], extent: Int[Tensor, "3"]) -> Int[Tensor, "*batch 3"]:
    """Inverse of :func:`encode`."""
    z = keys % extent[2]
    xy = keys // extent[2]
    return torch.stack([xy // extent[1], xy % extent[1], z], dim=-1) + lo


def unique_coords(coords: Int[Tensor, "N 3"]) -> tuple[Int[Tensor, "V 3"], Int[Tensor, "N"]]:
    """Distinct coordinates in lexicographic order and, for each input row, the index of its coordinate."""
    lo, extent = bounding_box(coords)
    keys, inverse = torch.unique(encode(coords, lo, extent), sorted=True, return_inverse=True)
    return decode(keys, lo, extent), inverse


def kernel_offsets(kernel_size: int, centred: bool, device: torch.device | str = "cpu") -> Int[Tensor, "K 3"]:
    """The ``K = kernel_size³`` offsets of a cubic kernel, x slowest and z fastest (index ``(a·k + b)·k + c``), the
    order of a dense ``conv3d`` weight ``[.., k, k, k]`` flattened. ``centred``: offsets ``−(k//2) … k//2`` (odd
    kernels of submanifold convolutions); otherwise ``0 … k−1`` (strided kernels, offsets within the parent cell)."""
    r = torch.arange(kernel_size, dtype=torch.int64, device=device) - (kernel_size // 2 if centred else 0)
    return torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)


class CoordinateIndex:
    """Sorted keys of one voxel set, answering "which row holds coordinate q?" for any batch of queries."""

    def __init__(self, coords: Int[Tensor, "V 3"]) -> None:
        self.num_voxels = coords.shape[0]
        self.lo, self.extent = bounding_box(coords)
        self.hi = self.lo + self.extent - 1
        self.sorted_keys, self.order = torch.sort(encode(coords, self.lo, self.extent))
        if self.num_voxels > 1 and bool((self.sorted_keys[1:] == self.sorted_keys[:-1]).any()):
            raise ValueError("the voxel coordinates contain duplicates; a sparse tensor needs one row per voxel "
                             "(voxelize points with fourd_ns.networks.sparse.voxelize)")

    def find(self, queries: Int[Tensor, "*batch 3"]) -> Int[Tensor, "*batch"]:
        """Row of each query coordinate in the voxel set, −1 where the set has no such voxel."""
        if self.num_voxels == 0:
            return torch.full(queries.shape[:-1], -1, dtype=torch.int64, device=queries.device)
        inside = ((queries >= self.lo) & (queries <= self.hi)).all(dim=-1)
        keys = encode(torch.minimum(torch.maximum(queries, self.lo), self.hi), self.lo, self.extent)
        pos = torch.searchsorted(self.sorted_keys, keys).clamp_(max=self.num_voxels - 1)
        found = inside & (self.sorted_keys[pos] == keys)
        return torch.where(found, self.order[pos], torch.full_like(pos, -1))
