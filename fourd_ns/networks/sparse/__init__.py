"""Sparse 3D convolution on voxelised point sets, shared by the g3r and flux4d networks.

- ``voxelize.py``: points → voxels (``voxelize``), pooling point features into voxels and gathering them back.
- ``sparse_tensor.py``: ``SparseTensor`` (features on the occupied voxels of one scene + the kernel-map cache).
- ``coords.py``, ``kernel_map.py``: integer coordinate keys and the kernel maps of submanifold, downsampling and
  inverse convolutions, built once per voxel set.
- ``conv_torch.py`` (pure PyTorch, the reference and default backend) and ``conv_spconv.py`` (spconv, optional):
  the same three functions with the same weights; ``backend.py`` picks one per device.
- ``modules.py``: layers (``SubMConv3d``, ``SparseConv3d``, ``SparseInverseConv3d``, norms, residual block).
- ``unet.py``: ``SparseResUNet`` and ``PointSparseUNet`` (points in, per-point features out).
"""

from fourd_ns.networks.sparse.backend import Backend, resolve_backend, spconv_has_cuda, spconv_installed
from fourd_ns.networks.sparse.kernel_map import KernelMap, KernelMapCache
from fourd_ns.networks.sparse.modules import (
    ResidualBlock,
    SparseConv3d,
    SparseInverseConv3d,
    SubMConv3d,
    VoxelActivation,
    VoxelLinear,
    VoxelNorm,
)
from fourd_ns.networks.sparse.sparse_tensor import SparseTensor
from fourd_ns.networks.sparse.unet import PointSparseUNet, PointSparseUNetConfig, SparseResUNet, SparseUNetConfig
from fourd_ns.networks.sparse.voxelize import Voxelization, gather_from_voxels, scatter_to_voxels, voxelize

__all__ = [
    "Backend",
    "KernelMap",
    "KernelMapCache",
    "PointSparseUNet",
    "PointSparseUNetConfig",
    "ResidualBlock",
    "SparseConv3d",
    "SparseInverseConv3d",
    "SparseResUNet",
    "SparseTensor",
    "SparseUNetConfig",
    "SubMConv3d",
    "VoxelActivation",
    "VoxelLinear",
    "VoxelNorm",
    "Voxelization",
    "gather_from_voxels",
    "resolve_backend",
    "scatter_to_voxels",
    "spconv_has_cuda",
    "spconv_installed",
    "voxelize",
]
