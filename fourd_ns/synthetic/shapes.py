"""Analytic ray-shape intersection in a shape's canonical (object-local) frame.

An object's motion maps canonical to world coordinates with an affine map x = A p + b. A world
ray o + t d is then the canonical ray A^-1 (o - b) + t A^-1 d with the *same* parameter t, so
shapes intersect unnormalised canonical rays and return that shared t. This keeps non-rigid
(anisotropically scaled) shapes exact and lets the caller read z-depth straight off t.

Every shape is closed (or a finite rectangle) and returns the first hit in front of the origin,
entering or leaving: a ray starting inside a box hits its inside, which is how the room around a
scene guarantees that every pixel hits something.

Surface coordinates (u, v) are functions of the canonical point, so textures move and deform with
the object.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

EPS = 1e-4
"""Smallest accepted ray parameter; avoids self-hits for rays that start on a surface."""


def _nearest_candidate(t: Tensor) -> tuple[Tensor, Tensor]:
    """Smallest candidate parameter > EPS per ray. t: [N, K] (nan/inf = no hit) -> t [N], index [N]."""
    t = torch.where(t > EPS, t, torch.full_like(t, math.inf))
    return t.min(dim=1)


class Shape(ABC):
    """A surface in canonical coordinates."""

    @abstractmethod
    def intersect(self, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        """First hit of canonical rays origins [N, 3] + t dirs [N, 3].

        Returns t [N] (inf where missed) and the canonical outward normal [N, 3] (not normalised).
        """

    @abstractmethod
    def surface_uv(self, points: Tensor) -> Tensor:
        """Texture coordinates [N, 2] (canonical length units) of canonical surface points [N, 3]."""


@dataclass(frozen=True)
class Rectangle(Shape):
    """The rectangle |x| <= half_x, |y| <= half_y in the plane z = 0 (normal +z, seen from both sides)."""

    half_x: float
    half_y: float

    def intersect(self, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        t = -origins[:, 2] / dirs[:, 2]
        p = origins + t[:, None] * dirs
        inside = (p[:, 0].abs() <= self.half_x) & (p[:, 1].abs() <= self.half_y)
        t, _ = _nearest_candidate(torch.where(inside, t, torch.full_like(t, math.inf))[:, None])
        normal = torch.zeros_like(origins)
        normal[:, 2] = 1.0
        return t, normal

    def surface_uv(self, points: Tensor) -> Tensor:
        return points[:, :2]


@dataclass(frozen=True)
class Box(Shape):
    """The axis-aligned box |p_i| <= half_extents[i]."""

    half_extents: tuple[float, float, float]

    def intersect(self, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        # One candidate per face plane, kept when the hit lies within the face: handles rays from
        # outside and from inside the box alike.
        h = torch.tensor(self.half_extents, dtype=origins.dtype)
        candidates = []
        for axis in range(3):
            others = [a for a in range(3) if a != axis]
            for sign in (-1.0, 1.0):
                t = (sign * h[axis] - origins[:, axis]) / dirs[:, axis]
                p = origins[:, others] + t[:, None] * dirs[:, others]
                within = (p.abs() <= h[others] * (1 + 1e-5)).all(dim=1)
                candidates.append(torch.where(within, t, torch.full_like(t, math.inf)))
        t, face = _nearest_candidate(torch.stack(candidates, dim=1))
        face_normals = torch.tensor(
            [[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]], dtype=origins.dtype
        )
        return t, face_normals[face]

    def surface_uv(self, points: Tensor) -> Tensor:
        # Project onto the plane of the dominant face; offset faces so they do not share a pattern.
        h = torch.tensor(self.half_extents, dtype=points.dtype)
        axis = (points.abs() / h).argmax(dim=1)
        uv_x = points[:, [1, 2]]
        uv_y = points[:, [0, 2]] + torch.tensor([3.7, 1.3], dtype=points.dtype)
        uv_z = points[:, [0, 1]] + torch.tensor([7.1, 5.9], dtype=points.dtype)
        return torch.where((axis == 0)[:, None], uv_x, torch.where((axis == 1)[:, None], uv_y, uv_z))


@dataclass(frozen=True)
class Ellipsoid(Shape):
    """The ellipsoid sum_i (p_i / radii_i)^2 = 1 (a sphere when the radii are equal)."""

    radii: tuple[float, float, float]

    def intersect(self, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        r = torch.tensor(self.radii, dtype=origins.dtype)
        o, d = origins / r, dirs / r
        a = (d * d).sum(dim=1)
        b = (o * d).sum(dim=1)
        c = (o * o).sum(dim=1) - 1.0
        disc = b * b - a * c
        root = torch.sqrt(disc.clamp(min=0.0))
        miss = torch.full_like(a, math.inf)
        t0 = torch.where(disc >= 0, (-b - root) / a, miss)
        t1 = torch.where(disc >= 0, (-b + root) / a, miss)
        t, _ = _nearest_candidate(torch.stack([t0, t1], dim=1))
        p = origins + torch.nan_to_num(t, posinf=0.0)[:, None] * dirs
        return t, p / (r * r)

    def surface_uv(self, points: Tensor) -> Tensor:
        r = torch.tensor(self.radii, dtype=points.dtype)
        q = points / r
        mean_r = sum(self.radii) / 3.0
        longitude = torch.atan2(q[:, 1], q[:, 0])
        latitude = torch.asin(q[:, 2].clamp(-1.0, 1.0))
        return torch.stack([longitude, latitude], dim=1) * mean_r


def sphere(radius: float) -> Ellipsoid:
    """A sphere of `radius` centred at the canonical origin."""
    return Ellipsoid((radius, radius, radius))


@dataclass(frozen=True)
class Cylinder(Shape):
    """The capped cylinder x^2 + y^2 <= radius^2, |z| <= half_height (axis = canonical z)."""

    radius: float
    half_height: float

    def intersect(self, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        ox, oy, oz = origins.unbind(dim=1)
        dx, dy, dz = dirs.unbind(dim=1)
        a = dx * dx + dy * dy
        b = ox * dx + oy * dy
        c = ox * ox + oy * oy - self.radius**2
        disc = b * b - a * c
        root = torch.sqrt(disc.clamp(min=0.0))
        miss = torch.full_like(a, math.inf)
        side_ok = (disc >= 0) & (a > 0)
        candidates = []
        for s in (-1.0, 1.0):
            t = torch.where(side_ok, (-b + s * root) / a, miss)
            z = oz + t * dz
            candidates.append(torch.where(z.abs() <= self.half_height, t, miss))
        for s in (-1.0, 1.0):
            t = (s * self.half_height - oz) / dz
            x, y = ox + t * dx, oy + t * dy
            candidates.append(torch.where(x * x + y * y <= self.radius**2, t, miss))
        t, which = _nearest_candidate(torch.stack(candidates, dim=1))
        p = origins + torch.nan_to_num(t, posinf=0.0)[:, None] * dirs
        side_normal = torch.stack([p[:, 0], p[:, 1], torch.zeros_like(t)], dim=1)
        cap_normal = torch.zeros_like(p)
        cap_normal[:, 2] = torch.where(which == 2, -1.0, 1.0)
        return t, torch.where((which < 2)[:, None], side_normal, cap_normal)

    def surface_uv(self, points: Tensor) -> Tensor:
        on_side = points[:, 2].abs() < self.half_height * (1 - 1e-4)
        side = torch.stack([torch.atan2(points[:, 1], points[:, 0]) * self.radius, points[:, 2]], dim=1)
        cap = points[:, :2] + torch.tensor([11.3, 4.2], dtype=points.dtype)
        return torch.where(on_side[:, None], side, cap)
