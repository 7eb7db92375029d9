"""A residual sparse 3D U-Net (the layout of TorchSparse's SparseResUNet42, which G3R and Flux4D use, written from
its description), and the point-cloud wrapper that voxelises points, runs it and hands features back to the points.

Layout for ``L`` encoder levels (defaults: stem 32, encoder 32/64/128/256, decoder 256/128/96/96, 2 blocks a level):

- stem: two submanifold 3×3×3 conv-norm-act layers, ``in_channels → stem_channels``;
- encoder level ``i``: a 2×2×2 stride-2 conv-norm-act (keeps the width), then ``blocks_per_level`` residual blocks to
  ``encoder_channels[i]``; after level ``i`` the stride is ``2^(i+1)``;
- bottleneck: the optional ``context`` vector (for example a timestep encoding, width ``context_channels``) is
  concatenated to every voxel's features after the last encoder level;
- decoder level ``j``: a 2×2×2 inverse conv-norm-act to ``decoder_channels[j]`` onto exactly the voxels of the encoder
  level it mirrors, concatenation with that level's features (the stem's for the last level), then
  ``blocks_per_level`` residual blocks;
- head: a per-voxel linear layer to ``out_channels``, optionally zero-initialised so that a network predicting
  residual updates starts at "no update". Bounding the output (G3R's tanh) is the caller's post-processing.

Degenerate inputs run through: a set that shrinks to one voxel at coarse levels, a single point, and an empty set
(0 voxels in, 0 rows of ``out_channels`` out).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Optional

import torch
from jaxtyping import Float
from torch import Tensor, nn

from fourd_ns.networks.sparse.backend import Backend
from fourd_ns.networks.sparse.modules import (
    Activation,
    ConvNormAct,
    Norm,
    ResidualBlock,
    SparseConv3d,
    SparseInverseConv3d,
    SubMConv3d,
    VoxelLinear,
)
from fourd_ns.networks.sparse.sparse_tensor import SparseTensor
from fourd_ns.networks.sparse.voxelize import Reduce, gather_from_voxels, scatter_to_voxels, voxelize


@dataclass
class SparseUNetConfig:
    """Sizes and options of :class:`SparseResUNet`."""

    in_channels: int
    """Width of the input voxel features."""
    out_channels: int
    """Width of the output voxel features."""
    stem_channels: int = 32
    """Width of the full-resolution stem."""
    encoder_channels: tuple[int, ...] = (32, 64, 128, 256)
    """Width after each encoder level (each halves the resolution)."""
    decoder_channels: tuple[int, ...] = (256, 128, 96, 96)
    """Width after each decoder level (each doubles it back); as many levels as the encoder."""
    blocks_per_level: int = 2
    """Residual blocks after each down- or upsampling."""
    kernel_size: int = 3
    """Kernel of the submanifold convolutions (odd)."""
    norm: Norm = "group"
    """Per-voxel normalisation: GroupNorm over the scene's voxels, BatchNorm, or none."""
    norm_groups: int = 8
    """Groups of the GroupNorm (``gcd`` with the width is used)."""
    activation: Activation = "relu"
    """Activation after each normalisation."""
    context_channels: int = 0
    """Width of the context vector concatenated at the bottleneck (0: no context)."""
    output_init: Literal["default", "zero"] = "default"
    """Initialisation of the output layer; ``zero`` makes the network output zero at the start."""
    backend: Backend = "auto"
    """Sparse-convolution backend: ``torch`` (everywhere), ``spconv`` (when installed), ``auto``."""

    def validate(self) -> None:
        """Raise a ValueError naming the first inconsistent setting."""
        widths = (self.in_channels, self.out_channels, self.stem_channels, *self.encoder_channels,
                  *self.decoder_channels)
        if min(widths) < 1:
            raise ValueError(f"SparseUNetConfig: all channel counts must be positive, got {widths}")
        if len(self.encoder_channels) < 1 or len(self.decoder_channels) != len(self.encoder_channels):
            raise ValueError(f"SparseUNetConfig: decoder_channels ({len(self.decoder_channels)} levels) must mirror "
                             f"encoder_channels ({len(self.encoder_channels)} levels, at least one)")
        if self.blocks_per_level < 1:
            raise ValueError(f"SparseUNetConfig.blocks_per_level must be at least 1, got {self.blocks_per_level}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"SparseUNetConfig.kernel_size must be odd, got {self.kernel_size}")
        if self.context_channels < 0:
            raise ValueError(f"SparseUNetConfig.context_channels must be >= 0, got {self.context_channels}")
        if self.output_init not in ("default", "zero"):
            raise ValueError(f"SparseUNetConfig.output_init must be 'default' or 'zero', got {self.output_init!r}")

    @classmethod
    def tiny(cls, in_channels: int, out_channels: int, **overrides) -> SparseUNetConfig:
        """A two-level network for CPU tests: stem 8, encoder (8, 16), decoder (16, 8), one block a level."""
        tiny = cls(in_channels, out_channels, stem_channels=8, encoder_channels=(8, 16), decoder_channels=(16, 8),
                   blocks_per_level=1)
        return replace(tiny, **overrides)


def _blocks(in_channels: int, out_channels: int, config: SparseUNetConfig) -> list[nn.Module]:
    return [ResidualBlock(in_channels if b == 0 else out_channels, out_channels, config.kernel_size, config.norm,
                          config.activation, config.norm_groups, config.backend)
            for b in range(config.blocks_per_level)]


class SparseResUNet(nn.Module):
    """Residual sparse U-Net, see the module docstring. ``forward(x, context) -> SparseTensor`` on ``x``'s voxels."""

    def __init__(self, config: SparseUNetConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        c = config
        bias = c.norm == "none"

        def subm(cin: int, cout: int) -> ConvNormAct:
            return ConvNormAct(SubMConv3d(cin, cout, c.kernel_size, bias=bias, backend=c.backend), c.norm,
                               c.activation, c.norm_groups)

        self.stem = nn.Sequential(subm(c.in_channels, c.stem_channels), subm(c.stem_channels, c.stem_channels))
        self.encoder = nn.ModuleList()
        width = c.stem_channels
        for channels in c.encoder_channels:
            down = ConvNormAct(SparseConv3d(width, width, 2, 2, bias=bias, backend=c.backend), c.norm, c.activation,
                               c.norm_groups)
            self.encoder.append(nn.Sequential(down, *_blocks(width, channels, c)))
            width = channels
        skips = [c.stem_channels, *c.encoder_channels[:-1]][::-1]
        width += c.context_channels
        self.decoder_up = nn.ModuleList()
        self.decoder_blocks = nn.ModuleList()
        for channels, skip in zip(c.decoder_channels, skips):
            self.decoder_up.append(ConvNormAct(SparseInverseConv3d(width, channels, 2, bias=bias, backend=c.backend),
                                               c.norm, c.activation, c.norm_groups))
            self.decoder_blocks.append(nn.Sequential(*_blocks(channels + skip, channels, c)))
            width = channels
        self.head = VoxelLinear(width, c.out_channels)
        if c.output_init == "zero":
            nn.init.zeros_(self.head.linear.weight)
            nn.init.zeros_(self.head.linear.bias)

    def forward(self, x: SparseTensor, context: Optional[Float[Tensor, "E"]] = None) -> SparseTensor:
        c = self.config
        if x.num_channels != c.in_channels:
            raise ValueError(f"SparseResUNet expects {c.in_channels} input channels, got {x.num_channels}")
        if (context is None) != (c.context_channels == 0):
            raise ValueError(f"SparseResUNet was built with context_channels={c.context_channels}; pass a context "
                             f"vector of that width exactly when it is positive")
        if context is not None and tuple(context.shape) != (c.context_channels,):
            raise ValueError(f"SparseResUNet context must have shape ({c.context_channels},), got "
                             f"{tuple(context.shape)}")
        skips = [self.stem(x)]
        for level in self.encoder:
            skips.append(level(skips[-1]))
        h = skips.pop()
        if context is not None:
            expanded = context.to(h.features)[None].expand(h.num_voxels, -1)
            h = h.replace_features(torch.cat([h.features, expanded], dim=1))
        for up, blocks in zip(self.decoder_up, self.decoder_blocks):
            h = up(h)
            skip = skips.pop()
            h = blocks(h.replace_features(torch.cat([h.features, skip.features], dim=1)))
        return self.head(h)


@dataclass
class PointSparseUNetConfig:
    """Sizes of :class:`PointSparseUNet`: the U-Net plus how points become voxels."""

    unet: SparseUNetConfig
    """The voxel network."""
    voxel_size: float = 0.2
    """Voxel edge, in the points' units (metres for driving scenes)."""
    reduce: Reduce = "mean"
    """How the features of the points in one voxel are pooled."""
    origin: Optional[tuple[float, float, float]] = field(default=None)
    """Corner of voxel (0, 0, 0); ``None``: the world origin."""


class PointSparseUNet(nn.Module):
    """Per-point features through the sparse U-Net: voxelise → pool → U-Net → each point reads its voxel's output."""

    def __init__(self, config: PointSparseUNetConfig) -> None:
        super().__init__()
        if config.voxel_size <= 0:
            raise ValueError(f"PointSparseUNetConfig.voxel_size must be positive, got {config.voxel_size}")
        self.config = config
        self.unet = SparseResUNet(config.unet)

    def forward(self, points: Float[Tensor, "N 3"], features: Float[Tensor, "N C"],
                context: Optional[Float[Tensor, "E"]] = None) -> Float[Tensor, "N out"]:
        if points.shape[0] != features.shape[0]:
            raise ValueError(f"PointSparseUNet: {points.shape[0]} points but {features.shape[0]} feature rows")
        origin = None if self.config.origin is None else torch.tensor(self.config.origin, dtype=points.dtype,
                                                                      device=points.device)
        voxels = voxelize(points, self.config.voxel_size, origin)
        pooled = scatter_to_voxels(features, voxels.point_to_voxel, voxels.num_voxels, self.config.reduce)
        out = self.unet(SparseTensor(pooled, voxels.coords), context)
        return gather_from_voxels(out.features, voxels.point_to_voxel)
