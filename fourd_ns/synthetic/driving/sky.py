"""The sky of a street scene: a huge dome around it that every otherwise unblocked ray hits, unlit by the sun.

`SkyDome` is a sphere whose intersection reports a zero normal, so `shade` gives it exactly albedo * ambient (no
Lambert term, no highlight: the sky emits rather than reflects). `SkyGradient` compensates with `exposure`
(1 / ambient), so the rendered sky shows the gradient's colours. LiDAR treats sky hits as no return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fourd_ns.synthetic.shapes import Ellipsoid
from fourd_ns.synthetic.textures import Colour, Texture, ValueNoise


@dataclass(frozen=True)
class SkyDome(Ellipsoid):
    """A sphere of `radius` about the canonical origin, seen from inside, with no shading normal."""

    def __init__(self, radius: float):
        super().__init__((radius, radius, radius))

    def intersect(self, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        t, _ = super().intersect(origins, dirs)
        return t, torch.zeros_like(origins)


class SkyGradient(Texture):
    """Vertical gradient from `horizon` to `zenith` with soft clouds, times `exposure`, for a sphere of `radius`
    whose `surface_uv` is (longitude, latitude) * radius (`Ellipsoid`, `SkyDome`)."""

    def __init__(
        self,
        radius: float,
        horizon: Colour,
        zenith: Colour,
        cloud_cover: float,
        rng: np.random.Generator,
        exposure: float = 1.0,
    ):
        self.radius, self.horizon, self.zenith = radius, horizon, zenith
        self.cloud_cover, self.exposure = cloud_cover, exposure
        self.clouds = ValueNoise(3.0, 3, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), rng)

    def __call__(self, uv: Tensor) -> Tensor:
        latitude = uv[:, 1] / self.radius
        w = (latitude / (math.pi / 2)).clamp(0.0, 1.0).sqrt()
        horizon = torch.tensor(self.horizon, dtype=uv.dtype)
        sky = horizon + (torch.tensor(self.zenith, dtype=uv.dtype) - horizon) * w[:, None]
        # Clouds live on angular coordinates, so they neither stretch with the radius nor move with the ego.
        density = self.clouds(uv / self.radius)[:, 0]
        cloud = ((density - (1 - self.cloud_cover)) / 0.25).clamp(0.0, 1.0) * (latitude > 0.02)
        return self.exposure * (sky + (torch.tensor([0.93, 0.93, 0.95], dtype=uv.dtype) - sky) * cloud[:, None])
