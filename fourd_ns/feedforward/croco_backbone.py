"""The CroCo v2-compatible siamese encoder and the symmetric (shared) cross-attention decoder of Flow4R.

Data flow for a pair of images of the same size ``H × W`` (multiples of the patch size):

1. Both images are patch-embedded and encoded **in one batch** by the same ViT encoder (``enc_blocks``,
   ``enc_norm``).
2. ``decoder_embed`` maps both token sets to the decoder width.
3. Decoder layer ``l`` updates each stream from the **other stream's previous-layer** output:
   ``f1_l = dec_blocks[l](f1_{l−1}, f2_{l−1})`` and ``f2_l = dec_blocks[l](f2_{l−1}, f1_{l−1})``. Unlike DUSt3R
   (``dec_blocks`` for view 1, ``dec_blocks2`` for view 2), Flow4R's decoder is **shared** (paper §3.2), so both
   streams run as one batch of ``2B`` with the memory halves swapped; swapping the inputs swaps the outputs.
4. The per-view token lists ``[encoder output, dec_1, …, dec_L]`` are returned with ``dec_norm`` applied to the
   last entry (the DUSt3R convention a DPT head hooks into; the encoder entry is the ``enc_norm`` output, before
   ``decoder_embed``).

Parameter names (``patch_embed``, ``mask_token``, ``enc_blocks``, ``enc_norm``, ``decoder_embed``, ``dec_blocks``,
``dec_norm``) are CroCo's, so CroCo and DUSt3R state dicts load without renaming. ``mask_token`` is CroCo's
masked-image-modelling token: unused here, kept only so that those checkpoints load completely.

Initialisation follows the usual ViT/MAE recipe (Xavier-uniform linear and patch-projection weights, zero biases,
unit LayerNorms, ``mask_token ~ N(0, 0.02²)``); it only matters when training from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from fourd_ns.feedforward.croco_blocks import LAYER_NORM_EPS, Block, DecoderBlock, PatchEmbed
from fourd_ns.feedforward.rope2d import ROPE_BASE


@dataclass
class CroCoBackboneConfig:
    """Sizes of the CroCo-style encoder/decoder. Head dimensions (width / heads) must be multiples of 4 (RoPE2D)."""

    enc_embed_dim: int = 1024
    """Encoder token width."""
    enc_depth: int = 24
    """Number of encoder blocks."""
    enc_num_heads: int = 16
    """Encoder attention heads."""
    dec_embed_dim: int = 768
    """Decoder token width."""
    dec_depth: int = 12
    """Number of (shared) decoder blocks."""
    dec_num_heads: int = 12
    """Decoder attention heads."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of the token width."""
    patch_size: int = 16
    """Side of the square image patches; input sizes must be multiples of it."""
    rope_base: float = ROPE_BASE
    """Frequency base of RoPE2D (CroCo v2 / DUSt3R: 100)."""

    def validate(self) -> None:
        """Raise a ValueError naming the first inconsistent setting."""
        for name in ("enc_embed_dim", "enc_depth", "enc_num_heads", "dec_embed_dim", "dec_depth", "dec_num_heads",
                     "patch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"CroCoBackboneConfig.{name} must be positive, got {getattr(self, name)}")
        for part in ("enc", "dec"):
            dim, heads = getattr(self, f"{part}_embed_dim"), getattr(self, f"{part}_num_heads")
            if dim % heads:
                raise ValueError(f"CroCoBackboneConfig.{part}_embed_dim={dim} is not divisible by "
                                 f"{part}_num_heads={heads}")
            if (dim // heads) % 4:
                raise ValueError(f"CroCoBackboneConfig: {part} head dimension {part}_embed_dim / {part}_num_heads = "
                                 f"{dim // heads} must be a multiple of 4 for RoPE2D; change the width or head count")
        if self.mlp_ratio <= 0 or self.rope_base <= 0:
            raise ValueError("CroCoBackboneConfig.mlp_ratio and rope_base must be positive")


BACKBONE_PRESETS: dict[str, CroCoBackboneConfig] = {
    "tiny": CroCoBackboneConfig(32, 2, 2, 32, 4, 2),
    "mini": CroCoBackboneConfig(192, 6, 3, 128, 4, 2),
    "small": CroCoBackboneConfig(384, 12, 6, 256, 8, 8),
    "croco-vitb-smalldec": CroCoBackboneConfig(768, 12, 12, 512, 8, 16),
    "croco-vitb-basedec": CroCoBackboneConfig(768, 12, 12, 768, 12, 12),
    "croco-vitl-basedec": CroCoBackboneConfig(1024, 24, 16, 768, 12, 12),
}
"""Named sizes. ``tiny``: tests and smoke runs. ``mini``: CPU training runs (a few million parameters). ``small``: ViT-S encoder for training from scratch on modest
hardware. ``croco-vit{b,l}-{small,base}dec``: the released CroCo v2 checkpoints (``CroCo_V2_ViTBase_SmallDecoder``,
``…ViTBase_BaseDecoder``, ``…ViTLarge_BaseDecoder``); ``croco-vitl-basedec`` is also the DUSt3R/MonST3R backbone
and Flow4R's."""


def backbone_preset(name: str) -> CroCoBackboneConfig:
    """A copy of the named preset (see :data:`BACKBONE_PRESETS`)."""
    if name not in BACKBONE_PRESETS:
        raise ValueError(f"unknown backbone preset {name!r}; choose one of {sorted(BACKBONE_PRESETS)}")
    preset = BACKBONE_PRESETS[name]
    return CroCoBackboneConfig(**preset.__dict__)


class PairTokens(NamedTuple):
    """Per-layer tokens of both views: ``[encoder output, dec_1, …, dec_L]`` (``dec_norm`` on the last)."""

    tokens1: list[Float[Tensor, "B N D"]]
    tokens2: list[Float[Tensor, "B N D"]]
    positions: Int[Tensor, "B N 2"]
    """Integer ``(y, x)`` patch coordinates, the same for both views."""
    grid_size: tuple[int, int]
    """``(h, w)`` = ``(H, W) / patch_size``."""


class CroCoBackbone(nn.Module):
    """Siamese ViT encoder + one cross-attention decoder shared by both views."""

    def __init__(self, config: CroCoBackboneConfig) -> None:
        super().__init__()
        config.validate()
        self.backbone_config = config
        self.patch_embed = PatchEmbed(config.enc_embed_dim, config.patch_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.dec_embed_dim))
        self.enc_blocks = nn.ModuleList(
            Block(config.enc_embed_dim, config.enc_num_heads, config.mlp_ratio, config.rope_base)
            for _ in range(config.enc_depth)
        )
        self.enc_norm = nn.LayerNorm(config.enc_embed_dim, eps=LAYER_NORM_EPS)
        self.decoder_embed = nn.Linear(config.enc_embed_dim, config.dec_embed_dim)
        self.dec_blocks = nn.ModuleList(
            DecoderBlock(config.dec_embed_dim, config.dec_num_heads, config.mlp_ratio, config.rope_base)
            for _ in range(config.dec_depth)
        )
        self.dec_norm = nn.LayerNorm(config.dec_embed_dim, eps=LAYER_NORM_EPS)
        self._init_backbone_weights()

    def _init_backbone_weights(self) -> None:
        for module in [self.patch_embed, self.enc_blocks, self.enc_norm, self.decoder_embed, self.dec_blocks,
                       self.dec_norm]:
            for submodule in module.modules():
                if isinstance(submodule, nn.Linear):
                    nn.init.xavier_uniform_(submodule.weight)
                    nn.init.zeros_(submodule.bias)
                elif isinstance(submodule, nn.LayerNorm):
                    nn.init.ones_(submodule.weight)
                    nn.init.zeros_(submodule.bias)
        # The patch projection is a linear map of the flattened patch: initialise it as one.
        weight = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.normal_(self.mask_token, std=0.02)

    def encode(self, images: Float[Tensor, "B 3 H W"]) -> tuple[Float[Tensor, "B N De"], Int[Tensor, "B N 2"]]:
        """Encoder tokens (after ``enc_norm``) and their patch positions."""
        tokens, positions = self.patch_embed(images)
        for block in self.enc_blocks:
            tokens = block(tokens, positions)
        return self.enc_norm(tokens), positions

    def pair_tokens(self, image1: Float[Tensor, "B 3 H W"], image2: Float[Tensor, "B 3 H W"]) -> PairTokens:
        """Encode both views in one batch and decode them symmetrically with the shared decoder."""
        if image1.shape != image2.shape:
            raise ValueError(
                f"both views of a pair must have the same shape, got {tuple(image1.shape)} and {tuple(image2.shape)}; "
                "resize/crop them to one size before calling the network"
            )
        batch = image1.shape[0]
        patch = self.backbone_config.patch_size
        grid_size = (image1.shape[-2] // patch, image1.shape[-1] // patch)
        encoded, positions = self.encode(torch.cat((image1, image2)))
        layers = [encoded]
        tokens = self.decoder_embed(encoded)
        for block in self.dec_blocks:
            other = torch.cat((tokens[batch:], tokens[:batch]))  # each view attends to the other view
            tokens = block(tokens, other, positions, positions)
            layers.append(tokens)
        layers[-1] = self.dec_norm(layers[-1])
        return PairTokens(
            tokens1=[layer[:batch] for layer in layers],
            tokens2=[layer[batch:] for layer in layers],
            positions=positions[:batch],
            grid_size=grid_size,
        )

    def forward(self, image1: Float[Tensor, "B 3 H W"], image2: Float[Tensor, "B 3 H W"]) -> PairTokens:
        return self.pair_tokens(image1, image2)
