"""Procedural textures evaluated at surface coordinates (u, v) [N, 2] -> albedo [N, 3] in [0, 1].

Textures are pure functions of object-local surface coordinates, so patterns stick to (and deform
with) the material. Randomness comes from small lookup tables drawn from a seeded numpy generator
at construction: evaluation itself is deterministic and vectorised.

The textured detail matters for what the dataset is used for: optical flow, photometric losses
and feature matching need texture, and the "glyph" pattern imitates printed text, a common
high-frequency content of real captures.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from torch import Tensor

Colour = tuple[float, float, float]


def _mix(a: Colour, b: Colour, w: Tensor) -> Tensor:
    """Blend colours a, b with weights w [N] in [0, 1] -> [N, 3]."""
    ca = torch.tensor(a, dtype=w.dtype)
    cb = torch.tensor(b, dtype=w.dtype)
    return ca + (cb - ca) * w[:, None]


class _LatticeHash:
    """Hash of integer lattice coordinates to [0, 256) through a seeded permutation table (Perlin style)."""

    def __init__(self, rng: np.random.Generator):
        self.perm = torch.as_tensor(rng.permutation(256), dtype=torch.int64)

    def __call__(self, ix: Tensor, iy: Tensor) -> Tensor:
        return self.perm[(self.perm[ix & 255] + iy) & 255]


class Texture(ABC):
    @abstractmethod
    def __call__(self, uv: Tensor) -> Tensor:
        """Albedo [N, 3] at surface coordinates uv [N, 2]."""


class Checker(Texture):
    """Checkerboard with squares of side `size`."""

    def __init__(self, size: float, colour_a: Colour, colour_b: Colour):
        self.size, self.colour_a, self.colour_b = size, colour_a, colour_b

    def __call__(self, uv: Tensor) -> Tensor:
        cell = torch.floor(uv / self.size).to(torch.int64)
        return _mix(self.colour_a, self.colour_b, ((cell[:, 0] + cell[:, 1]) % 2).to(uv.dtype))


class Stripes(Texture):
    """Soft-edged parallel stripes of `period` at `angle` radians; `sharpness` 1 = sine, larger = crisper."""

    def __init__(self, period: float, angle: float, colour_a: Colour, colour_b: Colour, sharpness: float = 4.0):
        self.period, self.angle, self.sharpness = period, angle, sharpness
        self.colour_a, self.colour_b = colour_a, colour_b

    def __call__(self, uv: Tensor) -> Tensor:
        x = uv[:, 0] * np.cos(self.angle) + uv[:, 1] * np.sin(self.angle)
        wave = torch.sin(2 * np.pi * x / self.period)
        return _mix(self.colour_a, self.colour_b, (0.5 + 0.5 * self.sharpness * wave).clamp(0.0, 1.0))


class ValueNoise(Texture):
    """Fractal value noise: `octaves` of smoothly interpolated lattice noise, base cell size 1 / frequency."""

    def __init__(self, frequency: float, octaves: int, colour_a: Colour, colour_b: Colour, rng: np.random.Generator):
        self.frequency, self.octaves = frequency, octaves
        self.colour_a, self.colour_b = colour_a, colour_b
        self.hash = _LatticeHash(rng)
        self.values = torch.as_tensor(rng.random(256), dtype=torch.float32)

    def _octave(self, p: Tensor) -> Tensor:
        i = torch.floor(p)
        f = p - i
        f = f * f * (3 - 2 * f)
        ix, iy = i[:, 0].to(torch.int64), i[:, 1].to(torch.int64)
        v00 = self.values[self.hash(ix, iy)]
        v10 = self.values[self.hash(ix + 1, iy)]
        v01 = self.values[self.hash(ix, iy + 1)]
        v11 = self.values[self.hash(ix + 1, iy + 1)]
        top = v00 + (v10 - v00) * f[:, 0]
        bottom = v01 + (v11 - v01) * f[:, 0]
        return top + (bottom - top) * f[:, 1]

    def __call__(self, uv: Tensor) -> Tensor:
        total = torch.zeros(uv.shape[0], dtype=uv.dtype)
        weight = 0.0
        for octave in range(self.octaves):
            amplitude = 0.5**octave
            # Offsetting each octave decorrelates the lattices (they would otherwise share corners).
            total = total + amplitude * self._octave(uv * self.frequency * 2**octave + 17.0 * octave)
            weight += amplitude
        return _mix(self.colour_a, self.colour_b, total / weight)


class Glyphs(Texture):
    """Text-like pattern: rows of random 3x5 pixel glyphs (with word gaps) in cells of `cell_size` (w, h)."""

    def __init__(self, cell_size: tuple[float, float], ink: Colour, paper: Colour, rng: np.random.Generator):
        self.cell_size, self.ink, self.paper = cell_size, ink, paper
        self.hash = _LatticeHash(rng)
        self.glyphs = torch.as_tensor(rng.integers(0, 2**15, 256), dtype=torch.int64)
        self.blank = torch.as_tensor(rng.random(256) < 0.18)

    def __call__(self, uv: Tensor) -> Tensor:
        p = uv / torch.tensor(self.cell_size, dtype=uv.dtype)
        cell = torch.floor(p)
        # Each cell is a 4 x 6 grid of glyph pixels: a 3 x 5 glyph plus one column / row of spacing.
        sub = torch.floor((p - cell) * torch.tensor([4.0, 6.0], dtype=uv.dtype)).to(torch.int64)
        h = self.hash(cell[:, 0].to(torch.int64), cell[:, 1].to(torch.int64))
        bit = sub[:, 1].clamp(max=4) * 3 + sub[:, 0].clamp(max=2)
        on = ((self.glyphs[h] >> bit) & 1).bool() & (sub[:, 0] < 3) & (sub[:, 1] < 5) & ~self.blank[h]
        return _mix(self.paper, self.ink, on.to(uv.dtype))
