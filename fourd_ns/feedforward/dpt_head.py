"""A DPT dense-prediction head (Ranftl et al., "Vision Transformers for Dense Prediction", ICCV 2021) over the
per-layer tokens of the CroCo-style backbone, with DUSt3R's parameter names so its ``downstream_head1.dpt.*``
weights load.

Written from the DPT paper's description, not from any repository:

1. **Reassemble** (``dpt.act_postprocess.{0..3}``): four hooked token maps (default layers ``[0, L/2, 3L/4, L]`` of
   ``[encoder output, dec_1, …, dec_L]``) are reshaped to ``[B, D_i, h, w]``, projected by a 1×1 conv to
   ``layer_dims[i]`` and resampled to 4×, 2×, 1× and ½× the token grid (transposed convs with kernel = stride = 4
   and 2; identity; a 3×3 stride-2 conv). CroCo has no class token, so DPT's readout handling does not apply.
2. **Project to the fusion width** (``dpt.scratch.layer{1..4}_rn``): bias-free 3×3 convs to ``feature_dim``. The
   same four convs are also registered as ``dpt.scratch.layer_rn.{0..3}``, because DUSt3R's checkpoints contain both
   names for the same tensors; ``state_dict()`` therefore lists both, ``parameters()`` each tensor once.
3. **Fuse** (``dpt.scratch.refinenet{4..1}``), coarsest first: ``x = x + RCU₁(skip)`` (no skip for the coarsest
   level), ``x = RCU₂(x)``, bilinear ×2 upsampling (``align_corners=True``), 1×1 ``out_conv``. A residual conv unit
   is ``x + conv₂(ReLU(conv₁(ReLU(x))))``. ``refinenet4.resConfUnit1`` exists (and is in the checkpoints) but is
   never used, because the coarsest level has no skip input.
4. **Output** (``dpt.head``): 3×3 conv to ``feature_dim/2``, bilinear ×2, 3×3 conv to ``last_dim``, ReLU, 1×1 conv
   to ``out_channels`` (indices 1 and 3 hold no parameters, as in the checkpoints). No output activation: the
   caller's post-processing (e.g. depth mode, confidence) interprets the raw channels.

The output is at 16× the token grid, so the head needs a patch size of 16. When a token-grid side is odd, the
½× level has ``ceil(h/2)`` rows and its ×2 upsampling one row too many; the extra bottom row / right column is
cropped so that it can be added to the next level (a no-op for even grids).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

DPT_UPSAMPLING = 16
"""Output pixels per token along each axis (4× reassembly × 2× fusion × 2× output head)."""


def default_dpt_hooks(dec_depth: int) -> list[int]:
    """``[0, L/2, 3L/4, L]``: the encoder output and three decoder layers of ``[enc, dec_1, …, dec_L]``."""
    return [0, dec_depth * 2 // 4, dec_depth * 3 // 4, dec_depth]


class ResidualConvUnit(nn.Module):
    """``x + conv2(ReLU(conv1(ReLU(x))))`` with 3×3 convolutions at constant width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Float[Tensor, "B C h w"]) -> Float[Tensor, "B C h w"]:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """One DPT fusion level: add the refined skip, refine, upsample ×2, project (``out_conv``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(channels, channels, 1)
        self.resConfUnit1 = ResidualConvUnit(channels)
        self.resConfUnit2 = ResidualConvUnit(channels)

    def forward(
        self,
        x: Float[Tensor, "B C h w"],
        skip: Optional[Float[Tensor, "B C h w"]] = None,
        output_size: Optional[tuple[int, int]] = None,
    ) -> Float[Tensor, "B C H W"]:
        """``output_size`` crops the ×2-upsampled map (bottom/right) to the next level's size."""
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        if output_size is not None:
            x = x[..., : output_size[0], : output_size[1]]
        return self.out_conv(x)


class DPTScratch(nn.Module):
    """DPT's fusion part: width projections ``layer{1..4}_rn`` (aliased as ``layer_rn``), ``refinenet{1..4}``."""

    def __init__(self, layer_dims: Sequence[int], feature_dim: int) -> None:
        super().__init__()
        self.layer1_rn = nn.Conv2d(layer_dims[0], feature_dim, 3, padding=1, bias=False)
        self.layer2_rn = nn.Conv2d(layer_dims[1], feature_dim, 3, padding=1, bias=False)
        self.layer3_rn = nn.Conv2d(layer_dims[2], feature_dim, 3, padding=1, bias=False)
        self.layer4_rn = nn.Conv2d(layer_dims[3], feature_dim, 3, padding=1, bias=False)
        self.layer_rn = nn.ModuleList([self.layer1_rn, self.layer2_rn, self.layer3_rn, self.layer4_rn])
        self.refinenet1 = FeatureFusionBlock(feature_dim)
        self.refinenet2 = FeatureFusionBlock(feature_dim)
        self.refinenet3 = FeatureFusionBlock(feature_dim)
        self.refinenet4 = FeatureFusionBlock(feature_dim)


class DPTNetwork(nn.Module):
    """Reassemble + fuse + output head on exactly four token maps; output at 16× the token grid."""

    def __init__(
        self,
        dim_tokens: Sequence[int],
        out_channels: int,
        layer_dims: Sequence[int] = (96, 192, 384, 768),
        feature_dim: int = 256,
        last_dim: int = 128,
    ) -> None:
        super().__init__()
        if len(dim_tokens) != 4 or len(layer_dims) != 4:
            raise ValueError(f"DPT needs four token widths and four layer_dims, got {list(dim_tokens)} and "
                             f"{list(layer_dims)}")
        if feature_dim % 2:
            raise ValueError(f"DPT feature_dim must be even (the output head halves it), got {feature_dim}")
        self.scratch = DPTScratch(layer_dims, feature_dim)
        self.head = nn.Sequential(
            nn.Conv2d(feature_dim, feature_dim // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(feature_dim // 2, last_dim, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(last_dim, out_channels, 1),
        )
        self.act_postprocess = nn.ModuleList([
            nn.Sequential(nn.Conv2d(dim_tokens[0], layer_dims[0], 1),
                          nn.ConvTranspose2d(layer_dims[0], layer_dims[0], kernel_size=4, stride=4)),
            nn.Sequential(nn.Conv2d(dim_tokens[1], layer_dims[1], 1),
                          nn.ConvTranspose2d(layer_dims[1], layer_dims[1], kernel_size=2, stride=2)),
            nn.Sequential(nn.Conv2d(dim_tokens[2], layer_dims[2], 1)),
            nn.Sequential(nn.Conv2d(dim_tokens[3], layer_dims[3], 1),
                          nn.Conv2d(layer_dims[3], layer_dims[3], 3, stride=2, padding=1)),
        ])

    def forward(
        self, tokens: Sequence[Float[Tensor, "B N Di"]], grid_size: tuple[int, int]
    ) -> Float[Tensor, "B C H W"]:
        """``tokens``: the four hooked maps, ``N = h·w`` row-major; output ``[B, out_channels, 16h, 16w]``."""
        height, width = grid_size
        levels = []
        for level, (layer_tokens, reassemble, project) in enumerate(
            zip(tokens, self.act_postprocess, self.scratch.layer_rn)
        ):
            batch, count, dim = layer_tokens.shape
            if count != height * width:
                raise ValueError(f"DPT input {level} has {count} tokens, expected {height}×{width}")
            grid = layer_tokens.transpose(1, 2).reshape(batch, dim, height, width)
            levels.append(project(reassemble(grid)))
        scratch = self.scratch
        path = scratch.refinenet4(levels[3], output_size=levels[2].shape[-2:])
        path = scratch.refinenet3(path, levels[2], output_size=levels[1].shape[-2:])
        path = scratch.refinenet2(path, levels[1], output_size=levels[0].shape[-2:])
        path = scratch.refinenet1(path, levels[0])
        return self.head(path)


class DPTHead(nn.Module):
    """DPT on the layers ``hooks`` of the backbone's token list (parameters under ``dpt.*``, as DUSt3R's heads)."""

    def __init__(self, dim_tokens: Sequence[int], hooks: Sequence[int], out_channels: int, **sizes: Any) -> None:
        """``sizes``: ``layer_dims``, ``feature_dim``, ``last_dim`` of :class:`DPTNetwork` (its defaults otherwise)."""
        super().__init__()
        if len(hooks) != 4:
            raise ValueError(f"DPT needs four hooked layers, got hooks={list(hooks)}")
        self.hooks = list(hooks)
        self.dpt = DPTNetwork(dim_tokens, out_channels, **sizes)

    def forward(self, tokens: list[Float[Tensor, "B N D"]], grid_size: tuple[int, int]) -> Float[Tensor, "B C H W"]:
        """Dense output at ``(16h, 16w)`` from ``tokens[hooks]``."""
        return self.dpt([tokens[index] for index in self.hooks], grid_size)
