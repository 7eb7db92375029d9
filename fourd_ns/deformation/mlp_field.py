"""The Deformable-3DGS deformation MLP (Yang et al., CVPR 2024), reimplemented from its description.

Architecture (see ``shared/notes/methods.md`` §1.1): an 8-layer, 256-wide ReLU MLP on ``[γ(x), γ(t)]`` with the
encoded input concatenated again after layer 4, and three linear heads giving a position offset (3), a rotation
offset (4, *added* to the normalised quaternion) and a scale offset (3, *added* to the activated scale). For
synthetic (blender) scenes the time encoding first goes through a small ``timenet`` (Linear → ReLU → Linear to 30
channels), which is the ``time_net`` option here.

The canonical positions are fed *detached*: the deformation network does not push gradients into the canonical
means through its input, exactly like the original.

:class:`DeformationMLPOptions` is the user-facing option set of this MLP (a config mixin): deform4d's field and
FLAG-4D's IDN core are both built from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

from fourd_ns.deformation.encodings import FrequencyEncoding


@dataclass
class Deformation:
    """Per-Gaussian offsets at one time. Optional fields are ``None`` when the field does not predict them."""

    d_means: Float[Tensor, "N 3"]
    d_quats: Float[Tensor, "N 4"]
    d_scales: Float[Tensor, "N 3"]
    d_opacities: Optional[Float[Tensor, "N 1"]] = None
    d_colors: Optional[Float[Tensor, "N 3"]] = None


@dataclass
class DeformationMLPOptions:
    """Options of a Deformable-3DGS deformation MLP (deform4d's field, FLAG-4D's IDN core)."""

    mlp_depth: int = 8
    """Number of hidden layers of the deformation MLP (Deformable-3DGS: 8)."""
    mlp_width: int = 256
    """Width of the deformation MLP (Deformable-3DGS: 256)."""
    mlp_skips: Tuple[int, ...] = (4,)
    """Layers after which the encoded input is concatenated again."""
    position_frequencies: int = 10
    """Frequencies of the positional encoding of the canonical position (63 channels for 10)."""
    time_frequencies: int = 10
    """Frequencies of the time encoding (10 for real scenes; Deformable-3DGS uses 6 with a time net for D-NeRF)."""
    time_net_width: Optional[int] = None
    """If set, the encoded time goes through Linear(width) → ReLU → Linear(30) first (the D-NeRF variant)."""

    def mlp_kwargs(self) -> dict:
        """Keyword arguments of ``DeformationMLP`` for these options."""
        return dict(
            depth=self.mlp_depth,
            width=self.mlp_width,
            skips=self.mlp_skips,
            position_frequencies=self.position_frequencies,
            time_frequencies=self.time_frequencies,
            time_net_width=self.time_net_width,
        )


class DeformationHeads(nn.Module):
    """Base of deformation networks: the three linear heads of Deformable-3DGS on a ``width``-channel feature,
    Δx (3), Δq (4), Δs (3). Attribute names ``head_means/head_quats/head_scales`` are part of saved checkpoints."""

    def build_heads(self, width: int, zero_init: bool) -> None:
        """Create the heads; ``zero_init`` zeroes their weights and biases so the field starts at the identity."""
        self.head_means = nn.Linear(width, 3)
        self.head_quats = nn.Linear(width, 4)
        self.head_scales = nn.Linear(width, 3)
        if zero_init:
            for head in (self.head_means, self.head_quats, self.head_scales):
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    def heads(self, features: Float[Tensor, "N W"]) -> Deformation:
        return Deformation(
            d_means=self.head_means(features), d_quats=self.head_quats(features), d_scales=self.head_scales(features)
        )


class DeformationMLP(DeformationHeads):
    """MLP deformation field ``(x, t) → (Δx, Δq, Δs)``.

    ``zero_init_heads`` starts the field at zero offsets (Deformable-3DGS keeps PyTorch's default initialisation,
    which is what deform4d uses; FLAG-4D's IDN uses zero heads, see ``fourd_ns/models/flag4d.py``).
    """

    def __init__(
        self,
        depth: int = 8,
        width: int = 256,
        skips: Tuple[int, ...] = (4,),
        position_frequencies: int = 10,
        time_frequencies: int = 10,
        time_net_width: Optional[int] = None,
        time_net_out: int = 30,
        zero_init_heads: bool = False,
    ) -> None:
        super().__init__()
        self.skips = tuple(skips)
        self.position_encoding = FrequencyEncoding(3, position_frequencies)
        self.time_encoding = FrequencyEncoding(1, time_frequencies)
        time_dim = self.time_encoding.out_dim
        self.time_net: Optional[nn.Module] = None
        if time_net_width is not None:
            self.time_net = nn.Sequential(
                nn.Linear(time_dim, time_net_width), nn.ReLU(inplace=True), nn.Linear(time_net_width, time_net_out)
            )
            time_dim = time_net_out
        in_dim = self.position_encoding.out_dim + time_dim
        layers = [nn.Linear(in_dim, width)]
        for i in range(depth - 1):
            layers.append(nn.Linear(width + in_dim if i in self.skips else width, width))
        self.layers = nn.ModuleList(layers)
        self.build_heads(width, zero_init_heads)

    def encode(self, means: Float[Tensor, "N 3"], times: Float[Tensor, "N 1"]) -> Float[Tensor, "N C"]:
        t = self.time_encoding(times)
        if self.time_net is not None:
            t = self.time_net(t)
        return torch.cat([self.position_encoding(means), t], dim=-1)

    def features(self, encoded: Float[Tensor, "N C"]) -> Float[Tensor, "N W"]:
        h = encoded
        for i, layer in enumerate(self.layers):
            h = torch.relu(layer(h))
            if i in self.skips:
                h = torch.cat([encoded, h], dim=-1)
        return h

    def forward(self, means: Float[Tensor, "N 3"], times: Float[Tensor, "N 1"]) -> Deformation:
        return self.heads(self.features(self.encode(means.detach(), times)))
