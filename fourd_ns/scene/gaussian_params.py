"""Activated Gaussians in world space with plain RGB colours: what the driving scene hands to the rasterizer.

`GaussianParams` is the output of every part of a driving scene (decoded neural Gaussians, rigid actors moved into
the world, the far field) and of their composition at a time. It differs from
`fourd_ns.gaussians.gaussian_state.GaussianState`, the per-scene deformable models' set, in two ways: colours are
direct RGB in [0, 1] (G3R and Flux4D have no spherical harmonics) instead of SH coefficients, and quaternions are
unit length (compositions with box rotations multiply them, so they are kept normalised). The fields map one to
one onto `fourd_ns.gaussians.rasterize.rasterize` (means, quats, scales, opacities, colors).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


@dataclass
class GaussianParams:
    """N activated Gaussians; every field has N rows on one device."""

    means: Float[Tensor, "N 3"]
    """Centres in world coordinates."""
    quats: Float[Tensor, "N 4"]
    """Unit rotations, wxyz."""
    scales: Float[Tensor, "N 3"]
    """Standard deviations along the rotated axes (positive, activated)."""
    opacities: Float[Tensor, "N"]
    """Opacities in (0, 1)."""
    colors: Float[Tensor, "N 3"]
    """RGB in [0, 1]."""

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        expected = {"means": (n, 3), "quats": (n, 4), "scales": (n, 3), "opacities": (n,), "colors": (n, 3)}
        wrong = [f"{name} {tuple(getattr(self, name).shape)}" for name, shape in expected.items()
                 if tuple(getattr(self, name).shape) != shape]  # fmt: skip
        if wrong:
            raise ValueError(f"GaussianParams with {n} means has mismatched fields: {', '.join(wrong)}")

    @property
    def num(self) -> int:
        return int(self.means.shape[0])

    @staticmethod
    def empty(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> "GaussianParams":
        """A set with no Gaussians (what a scene with nothing in it composes to)."""
        return GaussianParams(
            means=torch.zeros(0, 3, device=device, dtype=dtype),
            quats=torch.zeros(0, 4, device=device, dtype=dtype),
            scales=torch.zeros(0, 3, device=device, dtype=dtype),
            opacities=torch.zeros(0, device=device, dtype=dtype),
            colors=torch.zeros(0, 3, device=device, dtype=dtype),
        )

    @staticmethod
    def cat(parts: Sequence["GaussianParams"]) -> "GaussianParams":
        """The parts' Gaussians one after the other, in the given order (differentiable)."""
        if not parts:
            raise ValueError("GaussianParams.cat needs at least one part (use GaussianParams.empty() for none)")
        return GaussianParams(
            **{f.name: torch.cat([getattr(part, f.name) for part in parts], dim=0) for f in fields(GaussianParams)}
        )

    def select(self, keep: Bool[Tensor, "N"] | Int[Tensor, "K"]) -> "GaussianParams":
        """The Gaussians picked by a boolean mask or an index tensor."""
        return GaussianParams(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})

    def to(self, *args, **kwargs) -> "GaussianParams":
        """Every field moved / cast with ``Tensor.to(*args, **kwargs)``."""
        return GaussianParams(**{f.name: getattr(self, f.name).to(*args, **kwargs) for f in fields(self)})
