"""Kernel maps of sparse 3D convolutions and the cache that shares them between the layers of one network.

A kernel map lists, for every kernel offset ``k``, the pairs (input row, output row) that the offset connects; a
convolution is then ``out[o] += in[i] @ W[k]`` over those pairs. Three kinds are built here:

- **submanifold** (odd kernel ``k``, output set = input set): output voxel ``v`` reads the input voxel at
  ``v + d_k`` where present. The map of offset ``−d`` is the map of ``d`` with its columns swapped, so only half the
  offsets are searched, and the centre offset is the identity.
- **downsampling** (kernel = stride = ``f``): output set = ``unique(coords // f)`` (floor division, so negative
  coordinates work); input voxel ``c`` feeds output ``c // f`` with offset ``c − f·(c // f)``. Each input voxel has
  exactly one pair.
- **inverse** of a downsampling: the same pairs read the other way, which maps a coarse set back onto exactly the fine
  set it came from (:meth:`KernelMap.transposed`).

Maps depend only on the voxel sets, so a network builds each one once per input and reuses it in every layer of the
same stride and kernel: :class:`KernelMapCache` holds the voxel set of every stride reached from one voxelisation and
the maps between them, and travels with the tensors (``SparseTensor.cache``). Backends keep their own derived data
(for example spconv's index pairs) in the same cache through :meth:`KernelMapCache.get_or_build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, TypeVar

import torch
from jaxtyping import Int
from torch import Tensor

from fourd_ns.networks.sparse.coords import CoordinateIndex, kernel_offsets, unique_coords

T = TypeVar("T")


@dataclass(frozen=True)
class KernelMap:
    """Per kernel offset ``k``: ``in_indices[k]`` and ``out_indices[k]`` (``[P_k]`` int64 each) connect input row
    ``in_indices[k][p]`` to output row ``out_indices[k][p]``. ``identity_offset`` names an offset whose map is the
    identity (the centre of a submanifold kernel), which a backend may apply as a plain matrix product."""

    in_indices: tuple[Tensor, ...]
    out_indices: tuple[Tensor, ...]
    num_in: int
    num_out: int
    identity_offset: int | None = None

    @property
    def kernel_volume(self) -> int:
        return len(self.in_indices)

    def transposed(self) -> KernelMap:
        """The same pairs from output to input: the map of the transposed (inverse) convolution."""
        return KernelMap(self.out_indices, self.in_indices, self.num_out, self.num_in, self.identity_offset)


def submanifold_map(coords: Int[Tensor, "V 3"], kernel_size: int) -> KernelMap:
    """Kernel map of a submanifold convolution with an odd cubic kernel on the voxel set ``coords``."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"a submanifold convolution needs an odd kernel size, got {kernel_size}")
    num = coords.shape[0]
    offsets = kernel_offsets(kernel_size, centred=True, device=coords.device)
    volume = offsets.shape[0]
    half = volume // 2  # offset K−1−k is −d_k, so offsets half+1.. follow from 0..half−1
    rows = torch.arange(num, dtype=torch.int64, device=coords.device)
    found = CoordinateIndex(coords).find(coords[None] + offsets[:half, None])  # [half, V]
    ins: list[Tensor] = [rows] * volume
    outs: list[Tensor] = [rows] * volume
    for k in range(half):
        hit = found[k] >= 0
        src, dst = found[k][hit], rows[hit]
        ins[k], outs[k] = src, dst
        ins[volume - 1 - k], outs[volume - 1 - k] = dst, src
    return KernelMap(tuple(ins), tuple(outs), num, num, identity_offset=half)


def downsample_map(coords: Int[Tensor, "V 3"], factor: int) -> tuple[Int[Tensor, "U 3"], KernelMap]:
    """Coarse voxel set ``unique(coords // factor)`` (lexicographic order) and the kernel map of a convolution with
    kernel = stride = ``factor`` onto it."""
    if factor < 2:
        raise ValueError(f"a downsampling convolution needs a stride of at least 2, got {factor}")
    parent = torch.div(coords, factor, rounding_mode="floor")
    coarse, out_rows = unique_coords(parent)
    cell = coords - parent * factor
    offset = (cell[:, 0] * factor + cell[:, 1]) * factor + cell[:, 2]
    volume = factor**3
    order = torch.argsort(offset, stable=True)
    counts = torch.bincount(offset, minlength=volume).tolist()
    ins = torch.split(order, counts)
    outs = torch.split(out_rows[order], counts)
    return coarse, KernelMap(tuple(ins), tuple(outs), coords.shape[0], coarse.shape[0])


class KernelMapCache:
    """The voxel sets of every stride reached from one voxelisation, and the kernel maps between them.

    ``num_builds`` counts the entries built (voxel sets registered from outside are not builds), so tests can check
    that a network builds each map once.
    """

    def __init__(self) -> None:
        self._coords: dict[int, Tensor] = {}
        self._entries: dict[Hashable, object] = {}
        self.num_builds = 0

    def register(self, stride: int, coords: Int[Tensor, "V 3"]) -> None:
        """Record the voxel set at ``stride``; a different set at a stride already known is an error."""
        known = self._coords.get(stride)
        if known is None:
            self._coords[stride] = coords
        elif known is not coords and not (known.shape == coords.shape and torch.equal(known, coords)):
            raise ValueError(f"this kernel-map cache already holds a different voxel set at stride {stride}; a new "
                             f"voxel set needs a new SparseTensor (and cache), not replace_features")

    def coords(self, stride: int) -> Int[Tensor, "V 3"]:
        """The voxel set at ``stride``."""
        if stride not in self._coords:
            raise KeyError(f"no voxel set at stride {stride} in this cache (known strides: {sorted(self._coords)}); an "
                           f"inverse convolution maps back only onto a set that a downsampling started from")
        return self._coords[stride]

    def get_or_build(self, key: Hashable, build: Callable[[], T]) -> T:
        """The entry under ``key``, built by ``build()`` on first use."""
        if key not in self._entries:
            self._entries[key] = build()
            self.num_builds += 1
        return self._entries[key]  # type: ignore[return-value]

    def submanifold(self, stride: int, kernel_size: int) -> KernelMap:
        """Submanifold kernel map of the voxel set at ``stride``."""
        return self.get_or_build(("torch", "submanifold", stride, kernel_size),
                                 lambda: submanifold_map(self.coords(stride), kernel_size))

    def downsample(self, stride: int, factor: int) -> KernelMap:
        """Kernel map from the set at ``stride`` to the set at ``stride * factor`` (registered here on first use)."""

        def build() -> KernelMap:
            coarse, kernel_map = downsample_map(self.coords(stride), factor)
            self.register(stride * factor, coarse)
            return kernel_map

        return self.get_or_build(("torch", "downsample", stride, factor), build)
