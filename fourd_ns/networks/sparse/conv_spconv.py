"""The three sparse convolutions of ``conv_torch.py`` (same names, same arguments, same weights) run by spconv 2.x.

spconv builds its own index pairs (``ops.get_indice_pairs``, the "native" algorithm, which its CPU and CUDA builds
both have) and runs its own gather-GEMM-scatter kernels, so it is also an independent check of the torch backend.
What this module adds is the translation between the two conventions:

- **Weights**: ours are ``[K, C_in, C_out]`` with offsets x-slowest; spconv 2.x stores ``[C_out, k, k, k, C_in]``
  with the same offset order (checked in ``tests/test_sparse_conv.py``), so the conversion is a permute + reshape
  and gradients flow back to our parameter.
- **Coordinates**: spconv wants non-negative int32 indices ``(batch, x, y, z)`` inside a ``spatial_shape``. Indices
  are our coordinates minus a shift; for a downsampling by ``f`` the shift is a multiple of ``f`` so that spconv's
  parent cell ``floor(i / f)`` is ours shifted by ``shift / f``.
- **Voxel order**: spconv orders the outputs of a downsampling its own way; they are reordered into our sorted order,
  and an inverse convolution reorders its input back into spconv's order before reusing the downsampling's pairs.

spconv's index pairs are kept in the tensor's :class:`~.kernel_map.KernelMapCache`, like the torch backend's maps.
Empty voxel sets (which spconv rejects) go to the torch backend: there is nothing to compute. Refused with a clear
error: float64 (spconv 2.3.8's CPU build returns wrong values for it, measured against its own index pairs; only
float32 and float16 are accepted) and gradients on the CPU (its CPU build has no backward pass: it asks for a CUDA
stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor

from fourd_ns.networks.sparse import conv_torch
from fourd_ns.networks.sparse.coords import bounding_box, encode
from fourd_ns.networks.sparse.kernel_map import KernelMapCache
from fourd_ns.networks.sparse.sparse_tensor import SparseTensor

_SUPPORTED_DTYPES = (torch.float32, torch.float16)


@dataclass(frozen=True)
class SpconvPairs:
    """spconv's index pairs ``[2, K, P]`` (int32) and per-offset counts ``[K]`` for one convolution."""

    pairs: Tensor
    counts: Tensor
    num_out: int


@dataclass(frozen=True)
class SpconvDownsample:
    """spconv's pairs of a downsampling, and the permutation from spconv's output order to ours:
    ``ours[r] = spconv[order[r]]`` and ``spconv[j] = ours[inverse_order[j]]``."""

    pairs: SpconvPairs
    order: Tensor
    inverse_order: Tensor


def to_spconv_weight(weight: Float[Tensor, "K Cin Cout"], kernel_size: int) -> Float[Tensor, "Cout k k k Cin"]:
    """Our per-offset weight in spconv 2.x's layout."""
    _, cin, cout = weight.shape
    return weight.permute(2, 0, 1).reshape(cout, kernel_size, kernel_size, kernel_size, cin).contiguous()


def from_spconv_weight(weight: Float[Tensor, "Cout k k k Cin"]) -> Float[Tensor, "K Cin Cout"]:
    """spconv 2.x's weight in our per-offset layout."""
    cout, cin = weight.shape[0], weight.shape[-1]
    return weight.reshape(cout, -1, cin).permute(1, 2, 0).contiguous()


def _indices(coords: Int[Tensor, "V 3"], shift: Int[Tensor, "3"]) -> Int[Tensor, "V 4"]:
    batch = torch.zeros(coords.shape[0], 1, dtype=torch.int32, device=coords.device)
    return torch.cat([batch, (coords - shift).to(torch.int32)], dim=1).contiguous()


def _get_pairs(indices: Tensor, spatial_shape: list[int], kernel_size: int, stride: int, padding: int, subm: bool
               ) -> tuple[Tensor, Tensor, Tensor]:
    from spconv.core import ConvAlgo
    from spconv.pytorch import ops

    k3, s3, p3, one3, zero3 = [kernel_size] * 3, [stride] * 3, [padding] * 3, [1] * 3, [0] * 3
    return ops.get_indice_pairs(indices, 1, spatial_shape, ConvAlgo.Native, k3, s3, p3, one3, zero3, subm, False)


def _submanifold_pairs(coords: Int[Tensor, "V 3"], kernel_size: int) -> SpconvPairs:
    lo, extent = bounding_box(coords)
    _, pairs, counts = _get_pairs(_indices(coords, lo), extent.tolist(), kernel_size, 1, kernel_size // 2, subm=True)
    return SpconvPairs(pairs, counts, coords.shape[0])


def _downsample_pairs(coords: Int[Tensor, "V 3"], factor: int) -> tuple[Int[Tensor, "U 3"], SpconvDownsample]:
    lo, extent = bounding_box(coords)
    shift = torch.div(lo, factor, rounding_mode="floor") * factor
    span = lo + extent - shift
    spatial_shape = (torch.div(span + factor - 1, factor, rounding_mode="floor") * factor).tolist()
    out_indices, pairs, counts = _get_pairs(_indices(coords, shift), spatial_shape, factor, factor, 0, subm=False)
    coarse_unsorted = out_indices[:, 1:].to(torch.int64) + torch.div(shift, factor, rounding_mode="floor")
    c_lo, c_extent = bounding_box(coarse_unsorted)
    order = torch.argsort(encode(coarse_unsorted, c_lo, c_extent))
    inverse_order = torch.argsort(order)
    downsample = SpconvDownsample(SpconvPairs(pairs, counts, out_indices.shape[0]), order, inverse_order)
    return coarse_unsorted[order], downsample


def _check_inputs(features: Tensor, weight: Tensor) -> None:
    from spconv.cppconstants import CPU_ONLY_BUILD

    if features.dtype not in _SUPPORTED_DTYPES or weight.dtype != features.dtype:
        raise TypeError(f"the spconv backend runs float32 and float16 features and weights, got {features.dtype} and "
                        f"{weight.dtype} (spconv 2.3.8's CPU kernels return wrong values for float64); use "
                        f"backend='torch' for other dtypes")
    needs_grad = torch.is_grad_enabled() and (features.requires_grad or weight.requires_grad)
    if needs_grad and (CPU_ONLY_BUILD or not features.is_cuda):
        raise RuntimeError("spconv has no backward pass on the CPU; train with backend='torch' (or 'auto') there, "
                           "or run the spconv backend under torch.no_grad()")


def _finish(features: Tensor, bias: Optional[Tensor]) -> Tensor:
    return features if bias is None else features + bias


def submanifold_conv3d(x: SparseTensor, weight: Float[Tensor, "K Cin Cout"], bias: Optional[Float[Tensor, "Cout"]],
                       kernel_size: int) -> SparseTensor:
    """spconv's ``SubMConv3d`` with our weights; output voxels = input voxels."""
    from spconv.core import ConvAlgo
    from spconv.pytorch import functional as Fsp

    _check_inputs(x.features, weight)
    if x.num_voxels == 0:  # spconv rejects empty sets; there is nothing to compute
        return conv_torch.submanifold_conv3d(x, weight, bias, kernel_size)
    data = x.cache.get_or_build(("spconv", "submanifold", x.stride, kernel_size),
                                lambda: _submanifold_pairs(x.coords, kernel_size))
    out = Fsp.indice_subm_conv(x.features.contiguous(), to_spconv_weight(weight, kernel_size), data.pairs,
                               data.counts, data.num_out, ConvAlgo.Native)
    return x.replace_features(_finish(out, bias))


def _downsample_data(cache: KernelMapCache, stride: int, factor: int) -> SpconvDownsample:
    def build() -> SpconvDownsample:
        coarse, downsample = _downsample_pairs(cache.coords(stride), factor)
        cache.register(stride * factor, coarse)
        return downsample

    return cache.get_or_build(("spconv", "downsample", stride, factor), build)


def sparse_conv3d(x: SparseTensor, weight: Float[Tensor, "K Cin Cout"], bias: Optional[Float[Tensor, "Cout"]],
                  kernel_size: int) -> SparseTensor:
    """spconv's ``SparseConv3d`` (kernel = stride = ``kernel_size``, no padding) with our weights and voxel order."""
    from spconv.core import ConvAlgo
    from spconv.pytorch import functional as Fsp

    _check_inputs(x.features, weight)
    if x.num_voxels == 0:
        return conv_torch.sparse_conv3d(x, weight, bias, kernel_size)
    stride = x.stride * kernel_size
    data = _downsample_data(x.cache, x.stride, kernel_size)
    out = Fsp.indice_conv(x.features.contiguous(), to_spconv_weight(weight, kernel_size), data.pairs.pairs,
                          data.pairs.counts, data.pairs.num_out, ConvAlgo.Native)
    return SparseTensor(_finish(out[data.order], bias), x.cache.coords(stride), stride, x.cache)


def sparse_inverse_conv3d(x: SparseTensor, weight: Float[Tensor, "K Cin Cout"],
                          bias: Optional[Float[Tensor, "Cout"]], kernel_size: int) -> SparseTensor:
    """spconv's ``SparseInverseConv3d``: back onto the finer voxel set the matching downsampling started from."""
    from spconv.core import ConvAlgo
    from spconv.pytorch import functional as Fsp

    _check_inputs(x.features, weight)
    if x.num_voxels == 0:
        return conv_torch.sparse_inverse_conv3d(x, weight, bias, kernel_size)
    stride = conv_torch.fine_stride(x, kernel_size)
    fine = x.cache.coords(stride)
    data = _downsample_data(x.cache, stride, kernel_size)
    features = x.features[data.inverse_order].contiguous()
    out = Fsp.indice_inverse_conv(features, to_spconv_weight(weight, kernel_size), data.pairs.pairs,
                                  data.pairs.counts, fine.shape[0], ConvAlgo.Native)
    return SparseTensor(_finish(out, bias), fine, stride, x.cache)
