"""``nn.Module`` layers on :class:`~.sparse_tensor.SparseTensor`: the three sparse convolutions, a per-voxel linear
layer, per-voxel normalisation, activation, and the residual block the U-Net is made of.

Parameter names do not depend on the backend (``weight`` ``[K, C_in, C_out]``, ``bias`` ``[C_out]``), so a checkpoint
trained with one backend loads into the other; the backend is picked per call from the tensor's device
(``backend.py``). Initialisation follows ``nn.Conv3d``'s default (uniform in ``±1/sqrt(C_in · K)``).

Normalisation ``"group"`` normalises over all voxels of the one scene in the tensor, the same way in training and
evaluation, which suits networks run one scene at a time (a learned optimizer); ``"batch"`` keeps running statistics
like ``BatchNorm1d`` and, on a set of fewer than two voxels in training, uses them without updating them (a batch
statistic of one voxel is undefined).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from fourd_ns.networks.sparse.backend import Backend, backend_ops
from fourd_ns.networks.sparse.sparse_tensor import SparseTensor

Norm = Literal["group", "batch", "none"]
Activation = Literal["relu", "leaky_relu", "silu"]


class _SparseConv(nn.Module):
    """Shared parameters of the sparse convolutions: ``weight [k³, C_in, C_out]``, optional ``bias [C_out]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool, backend: Backend) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"{type(self).__name__} needs positive channel counts, got {in_channels}, {out_channels}")
        self.in_channels, self.out_channels, self.kernel_size, self.backend = (in_channels, out_channels, kernel_size,
                                                                               backend)
        self.weight = nn.Parameter(torch.empty(kernel_size**3, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size**3)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"bias={self.bias is not None}, backend={self.backend!r}")

    def _ops(self, x: SparseTensor):
        return backend_ops(self.backend, x.features.device)


class SubMConv3d(_SparseConv):
    """Submanifold convolution (odd ``kernel_size``): outputs on the input voxels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True,
                 backend: Backend = "auto") -> None:
        if kernel_size % 2 == 0:
            raise ValueError(f"SubMConv3d needs an odd kernel size, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, bias, backend)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self._ops(x).submanifold_conv3d(x, self.weight, self.bias, self.kernel_size)


class SparseConv3d(_SparseConv):
    """Downsampling convolution, kernel = stride: outputs on ``unique(coords // stride)`` at ``x.stride · stride``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, stride: int = 2, bias: bool = True,
                 backend: Backend = "auto") -> None:
        if kernel_size != stride or stride < 2:
            raise ValueError(f"SparseConv3d supports kernel_size == stride >= 2, got kernel_size={kernel_size}, "
                             f"stride={stride}")
        super().__init__(in_channels, out_channels, kernel_size, bias, backend)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self._ops(x).sparse_conv3d(x, self.weight, self.bias, self.kernel_size)


class SparseInverseConv3d(_SparseConv):
    """Transposed convolution that undoes a :class:`SparseConv3d` of the same ``kernel_size``: outputs on exactly the
    finer voxel set that downsampling started from (found by stride in the tensor's cache)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, bias: bool = True,
                 backend: Backend = "auto") -> None:
        if kernel_size < 2:
            raise ValueError(f"SparseInverseConv3d needs a kernel size of at least 2, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, bias, backend)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self._ops(x).sparse_inverse_conv3d(x, self.weight, self.bias, self.kernel_size)


class VoxelLinear(nn.Module):
    """A linear layer applied to every voxel's features (a 1×1×1 convolution)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels, out_channels, bias=bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_features(self.linear(x.features))


class VoxelNorm(nn.Module):
    """Per-channel normalisation of the voxel features (``group``, ``batch`` or ``none``; see the module docstring).
    GroupNorm uses ``gcd(num_groups, channels)`` groups so that any channel count works."""

    def __init__(self, channels: int, kind: Norm = "group", num_groups: int = 8) -> None:
        super().__init__()
        self.kind = kind
        if kind == "group":
            self.norm: nn.Module = nn.GroupNorm(math.gcd(num_groups, channels), channels)
        elif kind == "batch":
            self.norm = nn.BatchNorm1d(channels)
        elif kind == "none":
            self.norm = nn.Identity()
        else:
            raise ValueError(f"unknown voxel norm {kind!r}; choose 'group', 'batch' or 'none'")

    def forward(self, x: SparseTensor) -> SparseTensor:
        features = x.features
        if self.kind == "none" or features.shape[0] == 0:
            return x
        if self.kind == "group":
            return x.replace_features(group_norm(features, self.norm))  # type: ignore[arg-type]
        bn: nn.BatchNorm1d = self.norm  # type: ignore[assignment]
        if self.training and features.shape[0] < 2:
            out = F.batch_norm(features, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
            return x.replace_features(out)
        return x.replace_features(bn(features))


def group_norm(features: Float[Tensor, "V C"], norm: nn.GroupNorm) -> Float[Tensor, "V C"]:
    """``norm`` applied to the voxels as one sample ``[1, C, V]``, written out so that it also runs on a single voxel
    with one channel per group (``F.group_norm`` refuses that; the normalised value is then 0 and the output the
    norm's bias)."""
    num, channels = features.shape
    grouped = features.reshape(num, norm.num_groups, channels // norm.num_groups)
    mean = grouped.mean(dim=(0, 2), keepdim=True)
    var = grouped.var(dim=(0, 2), unbiased=False, keepdim=True)
    normalised = ((grouped - mean) * torch.rsqrt(var + norm.eps)).reshape(num, channels)
    return normalised * norm.weight + norm.bias


class VoxelActivation(nn.Module):
    """Pointwise activation of the voxel features (``leaky_relu`` with slope 0.1)."""

    def __init__(self, kind: Activation = "relu") -> None:
        super().__init__()
        if kind == "relu":
            self.act: nn.Module = nn.ReLU()
        elif kind == "leaky_relu":
            self.act = nn.LeakyReLU(0.1)
        elif kind == "silu":
            self.act = nn.SiLU()
        else:
            raise ValueError(f"unknown activation {kind!r}; choose 'relu', 'leaky_relu' or 'silu'")

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_features(self.act(x.features))


class ConvNormAct(nn.Sequential):
    """``conv`` → norm → activation (give the convolution no bias when a norm follows: the norm's shift replaces it)."""

    def __init__(self, conv: _SparseConv, norm: Norm, activation: Activation, num_groups: int = 8) -> None:
        super().__init__()
        self.conv = conv
        self.norm = VoxelNorm(conv.out_channels, norm, num_groups)
        self.act = VoxelActivation(activation)


class ResidualBlock(nn.Module):
    """Two submanifold convolutions with norms, added to a shortcut (identity, or a per-voxel linear layer + norm
    when the width changes), then the activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, norm: Norm = "group",
                 activation: Activation = "relu", num_groups: int = 8, backend: Backend = "auto") -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = SubMConv3d(in_channels, out_channels, kernel_size, bias=bias, backend=backend)
        self.norm1 = VoxelNorm(out_channels, norm, num_groups)
        self.act = VoxelActivation(activation)
        self.conv2 = SubMConv3d(out_channels, out_channels, kernel_size, bias=bias, backend=backend)
        self.norm2 = VoxelNorm(out_channels, norm, num_groups)
        if in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(VoxelLinear(in_channels, out_channels, bias=bias),
                                          VoxelNorm(out_channels, norm, num_groups))

    def forward(self, x: SparseTensor) -> SparseTensor:
        main = self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))
        shortcut = self.shortcut(x)
        return self.act(main.replace_features(main.features + shortcut.features))

