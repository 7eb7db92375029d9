"""2D rotary position embedding (RoPE2D) as CroCo v2 / DUSt3R use it ("RoPE100"), in pure PyTorch.

Each attention head's channels are split in two halves: the first half is rotated by 1-D RoPE of the token's
row ``y``, the second half by 1-D RoPE of its column ``x``. 1-D RoPE on ``D`` channels uses ``D/2`` frequencies
``inv_freq = f0 / base^(arange(0, D, 2) / D)`` and the GPT-NeoX layout: channel ``k`` is paired with channel
``k + D/2`` (halves, not interleaved pairs), i.e. ``out = t · cos(θ) + rotate_half(t) · sin(θ)`` with
``θ = cat(freqs, freqs)``. Pretrained CroCo/DUSt3R weights only work with exactly this layout, base 100, f0 = 1.

Because a rotation by ``θ(p)`` followed by the inverse rotation of ``θ(p')`` is a rotation by ``θ(p − p')``,
``⟨rope(q, p), rope(k, p')⟩`` depends only on ``p − p'``: attention sees relative positions only.

Angles are computed in float32 whatever the token dtype (positions up to a few hundred times frequencies of order
one lose several digits in bf16), then the rotation is applied in the tokens' dtype. The cuRoPE CUDA kernel of the
upstream code computes the same thing in place; this reference is fast enough at our sizes that no kernel is kept.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

ROPE_BASE = 100.0
"""Frequency base of CroCo v2 / DUSt3R's "RoPE100"."""


def rotate_half(tokens: Float[Tensor, "*batch D"]) -> Float[Tensor, "*batch D"]:
    """``[a, b] → [−b, a]`` on the last dimension split in halves (the GPT-NeoX rotation layout)."""
    first, second = tokens.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rope1d(
    tokens: Float[Tensor, "B heads N D"],
    positions: Int[Tensor, "B N"],
    base: float = ROPE_BASE,
    f0: float = 1.0,
) -> Float[Tensor, "B heads N D"]:
    """Rotate channel pairs ``(k, k + D/2)`` of every token by ``position · f0 / base^(2k/D)``; ``D`` must be even."""
    dim = tokens.shape[-1]
    if dim % 2 != 0:
        raise ValueError(f"1-D RoPE needs an even number of channels, got {dim}")
    inv_freq = f0 / base ** (torch.arange(0, dim, 2, device=tokens.device, dtype=torch.float32) / dim)
    freqs = positions.to(torch.float32)[..., None] * inv_freq  # [B, N, D/2]
    angles = torch.cat((freqs, freqs), dim=-1)[:, None]  # [B, 1, N, D]
    cos, sin = angles.cos().to(tokens.dtype), angles.sin().to(tokens.dtype)
    return tokens * cos + rotate_half(tokens) * sin


def apply_rope2d(
    tokens: Float[Tensor, "B heads N d"],
    positions: Int[Tensor, "B N 2"],
    base: float = ROPE_BASE,
    f0: float = 1.0,
) -> Float[Tensor, "B heads N d"]:
    """RoPE2D: first half of each head's ``d`` channels rotated by the row ``y``, second half by the column ``x``.

    ``positions[..., 0]`` is y and ``positions[..., 1]`` is x (integer patch coordinates, as
    :class:`fourd_ns.feedforward.croco_blocks.PatchEmbed` returns them). ``d`` must be a multiple of 4.
    """
    dim = tokens.shape[-1]
    if dim % 4 != 0:
        raise ValueError(f"RoPE2D needs a head dimension that is a multiple of 4, got {dim}")
    along_y, along_x = tokens.chunk(2, dim=-1)
    return torch.cat(
        (apply_rope1d(along_y, positions[..., 0], base, f0), apply_rope1d(along_x, positions[..., 1], base, f0)),
        dim=-1,
    )
