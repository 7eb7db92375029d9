"""The transformer building blocks of a CroCo v2 / DUSt3R-compatible two-view network.

Re-implemented from the architecture description (CroCo v2 paper; ``docs`` notes §11.1) — no upstream code. Module
and parameter names (``proj``, ``qkv``, ``projq``/``projk``/``projv``, ``norm1``…``norm_y``, ``fc1``/``fc2``) are
the checkpoints' public format and must not change, or CroCo/DUSt3R weights stop loading.

- Pre-norm blocks, LayerNorm with eps 1e-6, GELU MLPs with biases everywhere (as the checkpoints hold them).
- RoPE2D (:mod:`fourd_ns.feedforward.rope2d`) on queries and keys only, never on values; in cross-attention the
  queries get their own tokens' positions and the keys the memory tokens' positions.
- Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` (fused/flash kernels where
  available); :func:`attention_reference` is the explicit ``softmax(QKᵀ/√d)V`` it is tested against.
- No dropout or stochastic depth: the released models were trained without them and Flow4R's recipe does not
  mention any.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from fourd_ns.feedforward.rope2d import ROPE_BASE, apply_rope2d

LAYER_NORM_EPS = 1e-6


def attention_reference(
    q: Float[Tensor, "B heads Nq d"], k: Float[Tensor, "B heads Nk d"], v: Float[Tensor, "B heads Nk dv"]
) -> Float[Tensor, "B heads Nq dv"]:
    """``softmax(q kᵀ / √d) v`` written out: the pure-torch reference of the fused attention kernel."""
    logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return logits.softmax(dim=-1) @ v


def grid_positions(height: int, width: int, batch: int, device: torch.device) -> Int[Tensor, "B N 2"]:
    """Integer ``(y, x)`` of every cell of an ``height × width`` grid in row-major order, repeated over the batch."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
    )
    return torch.stack((ys.reshape(-1), xs.reshape(-1)), dim=-1).expand(batch, -1, -1)


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` patches → tokens, plus each token's integer ``(y, x)`` patch coordinate."""

    def __init__(self, embed_dim: int, patch_size: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Float[Tensor, "B C H W"]) -> tuple[Float[Tensor, "B N D"], Int[Tensor, "B N 2"]]:
        height, width = images.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image size {height}×{width} (H×W) is not a multiple of the patch size {self.patch_size}; "
                f"resize or crop the inputs to multiples of {self.patch_size} (e.g. "
                f"{height // self.patch_size * self.patch_size}×{width // self.patch_size * self.patch_size})"
            )
        features = self.proj(images)  # [B, D, h, w]
        batch, _, h, w = features.shape
        return features.flatten(2).transpose(1, 2), grid_positions(h, w, batch, images.device)


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Float[Tensor, "*batch D"]) -> Float[Tensor, "*batch D"]:
        return self.fc2(self.act(self.fc1(x)))


def _split_heads(x: Float[Tensor, "B N D"], num_heads: int) -> Float[Tensor, "B heads N d"]:
    batch, tokens, dim = x.shape
    return x.reshape(batch, tokens, num_heads, dim // num_heads).transpose(1, 2)


def _merge_heads(x: Float[Tensor, "B heads N d"]) -> Float[Tensor, "B N D"]:
    batch, heads, tokens, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, tokens, heads * head_dim)


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection and RoPE2D on q and k.

    The ``qkv`` output is laid out as ``(3, heads, head_dim)`` along the channels — q, k, v blocks, each split into
    heads — which is the layout the pretrained weights assume.
    """

    def __init__(self, dim: int, num_heads: int, rope_base: float = ROPE_BASE) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.rope_base = rope_base
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Float[Tensor, "B N D"], positions: Int[Tensor, "B N 2"]) -> Float[Tensor, "B N D"]:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q = apply_rope2d(q, positions, self.rope_base)
        k = apply_rope2d(k, positions, self.rope_base)
        return self.proj(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class CrossAttention(nn.Module):
    """Multi-head attention from ``query`` tokens to ``key``/``value`` tokens, RoPE2D on q and k."""

    def __init__(self, dim: int, num_heads: int, rope_base: float = ROPE_BASE) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.rope_base = rope_base
        self.projq = nn.Linear(dim, dim)
        self.projk = nn.Linear(dim, dim)
        self.projv = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        query: Float[Tensor, "B Nq D"],
        key: Float[Tensor, "B Nk D"],
        value: Float[Tensor, "B Nk D"],
        query_positions: Int[Tensor, "B Nq 2"],
        key_positions: Int[Tensor, "B Nk 2"],
    ) -> Float[Tensor, "B Nq D"]:
        q = apply_rope2d(_split_heads(self.projq(query), self.num_heads), query_positions, self.rope_base)
        k = apply_rope2d(_split_heads(self.projk(key), self.num_heads), key_positions, self.rope_base)
        v = _split_heads(self.projv(value), self.num_heads)
        return self.proj(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class Block(nn.Module):
    """Encoder block: ``x += attn(norm1(x)); x += mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, rope_base: float = ROPE_BASE) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, rope_base)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Float[Tensor, "B N D"], positions: Int[Tensor, "B N 2"]) -> Float[Tensor, "B N D"]:
        x = x + self.attn(self.norm1(x), positions)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Decoder block: self-attention, cross-attention to the other view's tokens ``y`` (normalised by ``norm_y``),
    MLP — each pre-normed and residual."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, rope_base: float = ROPE_BASE) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, rope_base)
        self.cross_attn = CrossAttention(dim, num_heads, rope_base)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.norm3 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(
        self,
        x: Float[Tensor, "B N D"],
        y: Float[Tensor, "B M D"],
        x_positions: Int[Tensor, "B N 2"],
        y_positions: Int[Tensor, "B M 2"],
    ) -> Float[Tensor, "B N D"]:
        x = x + self.attn(self.norm1(x), x_positions)
        memory = self.norm_y(y)
        x = x + self.cross_attn(self.norm2(x), memory, memory, x_positions, y_positions)
        return x + self.mlp(self.norm3(x))
