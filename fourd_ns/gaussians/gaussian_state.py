"""An activated set of Gaussians at one time, as the rasterizer consumes them."""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Bool, Float
from torch import Tensor


@dataclass
class GaussianState:
    """Activated Gaussian attributes: quats need not be unit length (the rasterizer normalises)."""

    means: Float[Tensor, "N 3"]
    quats: Float[Tensor, "N 4"]
    scales: Float[Tensor, "N 3"]
    opacities: Float[Tensor, "N"]
    features: Float[Tensor, "N K 3"]
    """SH coefficients (K = (degree+1)^2), or K = 1 colour logits when the model has no SH."""

    def select(self, keep: Bool[Tensor, "N"]) -> "GaussianState":
        return GaussianState(
            means=self.means[keep],
            quats=self.quats[keep],
            scales=self.scales[keep],
            opacities=self.opacities[keep],
            features=self.features[keep],
        )
