"""Sparse 3D convolutions in plain PyTorch: the reference implementation and the default backend (CPU and CUDA).

Each convolution applies a kernel map (``kernel_map.py``): per kernel offset ``k``, gather the input rows, multiply by
``weight[k]`` (``[C_in, C_out]``), ``index_add_`` into the output rows. The backward pass is written out
(:func:`apply_kernel_map`: the input gradient is the same loop on the transposed map, so only the input features and
the weight are kept for it); :func:`apply_kernel_map_reference` is the same loop differentiated by autograd, which
the tests compare it with.

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


def _check_map(features: Tensor, weight: Tensor, kernel_map: KernelMap) -> None:
    if weight.shape[0] != kernel_map.kernel_volume:
        raise ValueError(f"weight has {weight.shape[0]} kernel offsets, the kernel map {kernel_map.kernel_volume}")
    if features.shape[0] != kernel_map.num_in:
        raise ValueError(f"{features.shape[0]} input rows for a kernel map over {kernel_map.num_in} voxels")


def _gather_matmul_scatter(features: Float[Tensor, "Vin Cin"], weight: Float[Tensor, "K Cin Cout"],
                           kernel_map: KernelMap) -> Float[Tensor, "Vout Cout"]:
    centre = kernel_map.identity_offset
    if centre is not None:
        out = features @ weight[centre]
    else:
        out = features.new_zeros(kernel_map.num_out, weight.shape[2])
    for k, (rows_in, rows_out) in enumerate(zip(kernel_map.in_indices, kernel_map.out_indices)):
        if k == centre or rows_in.numel() == 0:
            continue
        out.index_add_(0, rows_out, features.index_select(0, rows_in) @ weight[k])
    return out


class _KernelMapConvolution(torch.autograd.Function):
    """The gather-matmul-scatter loop with a hand-written backward: the input gradient is the same loop on the
    transposed map with transposed weights, the weight gradient one ``features[in]ᵀ @ grad[out]`` per offset. Only
    the input features and the weight are saved for backward, where autograd through the loop saves every gathered
    ``[P_k, C_in]`` block and builds a full-size input gradient per offset. The backward is itself made of
    differentiable operations, so second derivatives work too."""

    @staticmethod
    def forward(ctx, features: Tensor, weight: Tensor, kernel_map: KernelMap) -> Tensor:  # type: ignore[override]
        ctx.kernel_map = kernel_map
        ctx.save_for_backward(features, weight)
        return _gather_matmul_scatter(features, weight, kernel_map)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Optional[Tensor], Optional[Tensor], None]:  # type: ignore[override]
        features, weight = ctx.saved_tensors
        kernel_map: KernelMap = ctx.kernel_map
        grad_features = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_features = _gather_matmul_scatter(grad_out, weight.transpose(1, 2), kernel_map.transposed())
        if ctx.needs_input_grad[1]:
            grad_weight = torch.stack([features.index_select(0, rows_in).t() @ grad_out.index_select(0, rows_out)
                                       for rows_in, rows_out in zip(kernel_map.in_indices, kernel_map.out_indices)])
        return grad_features, grad_weight, None


def apply_kernel_map(features: Float[Tensor, "Vin Cin"], weight: Float[Tensor, "K Cin Cout"], kernel_map: KernelMap,
                     bias: Optional[Float[Tensor, "Cout"]] = None) -> Float[Tensor, "Vout Cout"]:
    """``out[o] = bias + Σ_k Σ_{(i, o) in map k} features[i] @ weight[k]``, with the memory-lean backward of
    :class:`_KernelMapConvolution` (compared with :func:`apply_kernel_map_reference` in the tests)."""
    _check_map(features, weight, kernel_map)
    out = _KernelMapConvolution.apply(features, weight, kernel_map)
    return out if bias is None else out + bias


def apply_kernel_map_reference(features: Float[Tensor, "Vin Cin"], weight: Float[Tensor, "K Cin Cout"],
                               kernel_map: KernelMap, bias: Optional[Float[Tensor, "Cout"]] = None
                               ) -> Float[Tensor, "Vout Cout"]:
    """The same convolution differentiated by autograd through the loop: the reference for the backward pass."""
    _check_map(features, weight, kernel_map)
    out = _gather_matmul_scatter(features, weight, kernel_map)
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
