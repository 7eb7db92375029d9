"""``SparseTensor``: features on the occupied voxels of one scene, with the kernel-map cache of its voxel hierarchy.

Units of ``coords``: integer voxel indices on the tensor's own grid. At ``stride`` s (1 for the voxelisation itself,
2, 4, … after downsampling) a voxel with coordinate ``c`` covers the stride-1 voxels ``s·c … s·c + s − 1`` on each
axis, i.e. the world box ``origin + voxel_size · s · [c, c + 1)`` of the :class:`~.voxelize.Voxelization` it came
from. One tensor holds one scene (there is no batch column): the networks that use it run one scene at a time.

Every tensor derived from one voxelisation (by a layer, or by :meth:`SparseTensor.replace_features`) shares one
:class:`~.kernel_map.KernelMapCache`, so kernel maps are built once per voxel set and reused by every layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from fourd_ns.networks.sparse.kernel_map import KernelMapCache


@dataclass
class SparseTensor:
    """Features ``[V, C]`` on voxels ``coords`` ``[V, 3]`` (int64, this tensor's grid, see the module docstring)."""

    features: Float[Tensor, "V C"]
    coords: Int[Tensor, "V 3"]
    stride: int = 1
    """Grid spacing in stride-1 voxels (a power of the downsampling factor)."""
    cache: KernelMapCache = field(default_factory=KernelMapCache)
    """Voxel sets and kernel maps shared by all tensors of this voxel hierarchy."""

    def __post_init__(self) -> None:
        if self.features.dim() != 2 or self.coords.dim() != 2 or self.coords.shape[1] != 3:
            raise ValueError(f"SparseTensor needs features [V, C] and coords [V, 3], got {tuple(self.features.shape)} "
                             f"and {tuple(self.coords.shape)}")
        if self.features.shape[0] != self.coords.shape[0]:
            raise ValueError(f"SparseTensor: {self.features.shape[0]} feature rows for {self.coords.shape[0]} voxels")
        if self.coords.dtype != torch.int64:
            raise ValueError(f"SparseTensor coords must be int64, got {self.coords.dtype}")
        if self.coords.device != self.features.device:
            raise ValueError(f"SparseTensor features on {self.features.device}, coords on {self.coords.device}")
        if self.stride < 1:
            raise ValueError(f"SparseTensor stride must be positive, got {self.stride}")
        self.cache.register(self.stride, self.coords)

    @property
    def num_voxels(self) -> int:
        return self.features.shape[0]

    @property
    def num_channels(self) -> int:
        return self.features.shape[1]

    def replace_features(self, features: Float[Tensor, "V D"]) -> SparseTensor:
        """The same voxels (and cache) with other features."""
        return SparseTensor(features, self.coords, self.stride, self.cache)
