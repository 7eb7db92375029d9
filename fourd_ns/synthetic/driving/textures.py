"""Procedural textures of a street: asphalt with lane markings and building facades with window grids.

Like `fourd_ns.synthetic.textures`, each maps surface coordinates uv [N, 2] (canonical metres, see the shapes'
`surface_uv`) to albedo [N, 3] in [0, 1], deterministically from seeded lookup tables. Lane markings and windows
give the strong, regular edges that real street imagery has; noise keeps plain surfaces matchable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fourd_ns.synthetic.textures import Colour, Texture, ValueNoise, _LatticeHash


@dataclass(frozen=True)
class LaneLine:
    """A painted line along the road (canonical x) at lateral position `y` (canonical metres)."""

    y: float
    colour: Colour = (0.92, 0.92, 0.9)
    width: float = 0.15
    dash: float | None = None
    """Painted length of a dash (m); None = solid."""
    gap: float = 9.0
    """Unpainted length between dashes (m)."""


class RoadSurface(Texture):
    """Asphalt (fractal noise) with painted lane lines; u runs along the road, v across it."""

    def __init__(self, lines: tuple[LaneLine, ...], rng: np.random.Generator):
        self.lines = lines
        self.asphalt = ValueNoise(1.5, 4, (0.17, 0.17, 0.18), (0.36, 0.36, 0.35), rng)
        self.wear = ValueNoise(0.4, 2, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), rng)

    def __call__(self, uv: Tensor) -> Tensor:
        albedo = self.asphalt(uv)
        # Worn paint: coverage varies slowly along the road so markings are not perfectly uniform.
        coverage = 0.7 + 0.3 * self.wear(uv)[:, 0]
        for line in self.lines:
            painted = (uv[:, 1] - line.y).abs() <= line.width / 2
            if line.dash is not None:
                painted &= torch.remainder(uv[:, 0], line.dash + line.gap) < line.dash
            paint = torch.tensor(line.colour, dtype=uv.dtype) * coverage[:, None]
            albedo = torch.where(painted[:, None], paint, albedo)
        return albedo


class WindowGrid(Texture):
    """A facade: plastered wall (noise) with a grid of framed windows per floor and a darker shop-front band on the
    ground floor. u is horizontal, v vertical with the ground at v = `ground_v`; a random share of windows is lit."""

    def __init__(
        self,
        wall: tuple[Colour, Colour],
        ground_v: float,
        rng: np.random.Generator,
        floor_height: float = 3.2,
        window_spacing: float = 2.6,
        window_size: tuple[float, float] = (1.3, 1.6),
    ):
        self.wall = ValueNoise(0.8, 3, wall[0], wall[1], rng)
        self.ground_v, self.floor_height, self.window_spacing = ground_v, floor_height, window_spacing
        self.window_size = window_size
        self.hash = _LatticeHash(rng)
        self.lit = torch.as_tensor(rng.random(256) < 0.2)
        self.tint = torch.as_tensor(rng.uniform(0.0, 1.0, 256), dtype=torch.float32)

    def __call__(self, uv: Tensor) -> Tensor:
        albedo = self.wall(uv)
        height = uv[:, 1] - self.ground_v
        column = torch.floor(uv[:, 0] / self.window_spacing)
        floor = torch.floor(height / self.floor_height)
        du = uv[:, 0] - (column + 0.5) * self.window_spacing
        dv = height - (floor + 0.55) * self.floor_height
        half_w, half_h = self.window_size[0] / 2, self.window_size[1] / 2
        frame = (du.abs() <= half_w + 0.12) & (dv.abs() <= half_h + 0.12) & (floor >= 1)
        glass = (du.abs() <= half_w) & (dv.abs() <= half_h) & (floor >= 1)
        cell = self.hash(column.to(torch.int64), floor.to(torch.int64))
        tint = self.tint[cell][:, None]
        dark_glass = torch.tensor([0.10, 0.13, 0.18]) + tint * torch.tensor([0.06, 0.08, 0.12])
        lit_glass = torch.tensor([0.85, 0.78, 0.55]) + tint * torch.tensor([0.1, 0.1, 0.1])
        glass_colour = torch.where(self.lit[cell][:, None], lit_glass, dark_glass)
        albedo = torch.where(frame[:, None], torch.tensor([0.82, 0.8, 0.76]), albedo)
        albedo = torch.where(glass[:, None], glass_colour, albedo)
        # Ground floor: a shop window band with mullions every 1.5 m.
        shop = (height > 0.5) & (height < 2.8) & (torch.remainder(uv[:, 0], 1.5) > 0.12)
        return torch.where(shop[:, None], torch.tensor([0.16, 0.2, 0.24]) + 0.1 * tint, albedo)
