"""``deform4d``: Deformable 3D Gaussians (Yang et al., CVPR 2024) as the fourd_ns baseline.

Reimplemented from the paper and the facts in ``shared/notes/methods.md`` §1 (no code of the non-commercial
original is used): canonical 3D Gaussians and one deformation MLP ``(γ(x), γ(t)) → (Δx, Δq, Δs)`` with 8 layers of
256 units and a skip after layer 4; static warm-up of 3000 iterations; annealed smooth-training time noise
(0.1 → 0 over 20k iterations); 0.8·L1 + 0.2·D-SSIM; densification every 100 iterations from 500 to 15k with a 2D
gradient threshold of 2e-4. Schedules and learning rates live in ``fourd_ns/method_configs/deform4d.py``.

``--pipeline.model.depth-weight w`` adds FLAG-4D's depth term (Eq. 9) on the dataset's depth maps, the same term
flag4d trains with (it lives in the shared base class, `fourd_ns.models.deformable_splatfacto`); it is off by
default, as Deformable-3DGS has none, and exists so the two methods can be compared under the same supervision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Type

from torch.nn import Parameter

from fourd_ns.deformation.mlp_field import Deformation, DeformationMLP, DeformationMLPOptions
from fourd_ns.gaussians.gaussian_state import GaussianState
from fourd_ns.models.deformable_splatfacto import (
    DeformableSplatfactoModel,
    DeformableSplatfactoModelConfig,
    time_column,
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
    method_label = "deform4d"

    def populate_deformation(self) -> None:
        self.deformation_field = DeformationMLP(**self.config.mlp_kwargs(), zero_init_heads=self.config.zero_init_heads)

    def deformation_at(self, canonical: GaussianState, time: float, time_noise: float) -> Deformation:
        return self.deformation_field(canonical.means, time_column(canonical.means, time + time_noise))

    def deformation_param_groups(self) -> Dict[str, List[Parameter]]:
        return {"deformation": list(self.deformation_field.parameters())}
