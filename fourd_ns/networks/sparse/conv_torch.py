"""Sparse 3D convolutions in plain PyTorch: the reference implementation and the default backend (CPU and CUDA).

Each convolution applies a kernel map (``kernel_map.py``): per kernel offset ``k``, gather the input rows, multiply by
``weight[k]`` (``[C_in, C_out]``), ``index_add_`` into the output rows. Autograd differentiates it (gather, matmul
and ``index_add_`` all have exact backward passes), so features and weights get gradients on every device.

Weights are ``[K, C_in, C_out]`` with ``K = k³`` offsets in the order of ``coords.kernel_offsets`` (x slowest), the
layout the spconv backend (``conv_spconv.py``) converts from, so one set of weights serves both.

Output coordinates:

- :func:`submanifold_conv3d`: the input's (odd kernel; the voxel set never dilates).
- :func:`sparse_conv3d`: ``unique(coords // k)`` at stride ``stride · k`` (kernel = stride = ``k``).
- :func:`sparse_inverse_conv3d`: exactly the finer set at stride ``stride / k`` that the matching downsampling came
  from (kept in the tensor's cache), so a U-Net's decoder lands on its encoder's voxels.
"""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor

from fourd_ns.networks.sparse.kernel_map import KernelMap
from fourd_ns.networks.sparse.sparse_tensor import SparseTensor


def apply_kernel_map(features: Float[Tensor, "Vin Cin"], weight: Float[Tensor, "K Cin Cout"], kernel_map: KernelMap,
                     bias: Optional[Float[Tensor, "Cout"]] = None) -> Float[Tensor, "Vout Cout"]:
    """``out[o] = bias + Σ_k Σ_{(i, o) in map k} features[i] @ weight[k]``."""
    if weight.shape[0] != kernel_map.kernel_volume:
        raise ValueError(f"weight has {weight.shape[0]} kernel offsets, the kernel map {kernel_map.kernel_volume}")
    if features.shape[0] != kernel_map.num_in:
        raise ValueError(f"{features.shape[0]} input rows for a kernel map over {kernel_map.num_in} voxels")
    centre = kernel_map.identity_offset
    if centre is not None:
        out = features @ weight[centre]
    else:
        out = features.new_zeros(kernel_map.num_out, weight.shape[2])
    for k, (rows_in, rows_out) in enumerate(zip(kernel_map.in_indices, kernel_map.out_indices)):
        if k == centre or rows_in.numel() == 0:
            continue
        out.index_add_(0, rows_out, features.index_select(0, rows_in) @ weight[k])
    return out if bias is None else out + bias


def _check_weight(x: SparseTensor, weight: Tensor, kernel_size: int) -> None:
    if weight.dim() != 3 or weight.shape[0] != kernel_size**3 or weight.shape[1] != x.num_channels:
        raise ValueError(f"weight {tuple(weight.shape)} does not fit kernel size {kernel_size} and {x.num_channels} "
                         f"input channels (expected [{kernel_size**3}, {x.num_channels}, C_out])")


def submanifold_conv3d(x: SparseTensor, weight: Float[Tensor, "K Cin Cout"], bias: Optional[Float[Tensor, "Cout"]],
                       kernel_size: int) -> SparseTensor:
    """Submanifold convolution: outputs on the input voxels, each reading its ``kernel_size³`` neighbourhood."""
    _check_weight(x, weight, kernel_size)
    kernel_map = x.cache.submanifold(x.stride, kernel_size)
    return x.replace_features(apply_kernel_map(x.features, weight, kernel_map, bias))


def sparse_conv3d(x: SparseTensor, weight: Float[Tensor, "K Cin Cout"], bias: Optional[Float[Tensor, "Cout"]],
                  kernel_size: int) -> SparseTensor:
    """Downsampling convolution with kernel = stride = ``kernel_size``: one output per occupied coarse cell."""
    _check_weight(x, weight, kernel_size)
    kernel_map = x.cache.downsample(x.stride, kernel_size)
    stride = x.stride * kernel_size
    features = apply_kernel_map(x.features, weight, kernel_map, bias)
    return SparseTensor(features, x.cache.coords(stride), stride, x.cache)


def sparse_inverse_conv3d(x: SparseTensor, weight: Float[Tensor, "K Cin Cout"],
                          bias: Optional[Float[Tensor, "Cout"]], kernel_size: int) -> SparseTensor:
    """Transposed convolution back onto the finer voxel set that :func:`sparse_conv3d` with the same
    ``kernel_size`` downsampled into ``x``'s voxels."""
    _check_weight(x, weight, kernel_size)
    stride = fine_stride(x, kernel_size)
    kernel_map = x.cache.downsample(stride, kernel_size).transposed()
    features = apply_kernel_map(x.features, weight, kernel_map, bias)
    return SparseTensor(features, x.cache.coords(stride), stride, x.cache)


def fine_stride(x: SparseTensor, kernel_size: int) -> int:
    """The stride an inverse convolution of ``kernel_size`` maps ``x`` back to."""
    if x.stride % kernel_size:
        raise ValueError(f"an inverse convolution with kernel {kernel_size} cannot undo stride {x.stride}")
    return x.stride // kernel_size
