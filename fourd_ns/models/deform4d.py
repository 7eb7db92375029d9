"""``deform4d``: Deformable 3D Gaussians (Yang et al., CVPR 2024) as the fourd_ns baseline.

Reimplemented from the paper and the facts in ``shared/notes/methods.md`` §1 (no code of the non-commercial
original is used): canonical 3D Gaussians and one deformation MLP ``(γ(x), γ(t)) → (Δx, Δq, Δs)`` with 8 layers of
256 units and a skip after layer 4; static warm-up of 3000 iterations; annealed smooth-training time noise
(0.1 → 0 over 20k iterations); 0.8·L1 + 0.2·D-SSIM; densification every 100 iterations from 500 to 15k with a 2D
gradient threshold of 2e-4. Schedules and learning rates live in ``fourd_ns/method_configs/deform4d.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Type

from torch.nn import Parameter

from fourd_ns.deformation.mlp_field import Deformation, DeformationMLP
from fourd_ns.gaussians.gaussian_state import GaussianState
from fourd_ns.models.deformable_splatfacto import (
    DeformableSplatfactoModel,
    DeformableSplatfactoModelConfig,
    time_column,
)


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


@dataclass
class Deform4DModelConfig(DeformationMLPOptions, DeformableSplatfactoModelConfig):
    """Deformable-3DGS: canonical Gaussians + a deformation MLP on positional encodings of position and time."""

    _target: Type = field(default_factory=lambda: Deform4DModel)
    zero_init_heads: bool = False
    """Start the MLP's output heads at zero (Deformable-3DGS: False, PyTorch's default initialisation). A control
    for flag4d, whose networks start at zero."""


class Deform4DModel(DeformableSplatfactoModel):
    config: Deform4DModelConfig

    def populate_deformation(self) -> None:
        self.deformation_field = DeformationMLP(**self.config.mlp_kwargs(), zero_init_heads=self.config.zero_init_heads)

    def deformation_at(self, canonical: GaussianState, time: float, time_noise: float) -> Deformation:
        return self.deformation_field(canonical.means, time_column(canonical.means, time + time_noise))

    def deformation_param_groups(self) -> Dict[str, List[Parameter]]:
        return {"deformation": list(self.deformation_field.parameters())}
