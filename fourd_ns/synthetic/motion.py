"""Object motions: time-dependent affine maps from canonical to world coordinates.

Every motion gives, at normalised clip time tau in [0, 1], a map x_world = A(tau) p + b(tau) of
canonical points p. Rigid motions have A = rotation; the non-rigid `Squash` has A = R diag(s(tau)).
Because the map is analytic, a material point p is known exactly at every time, which makes
optical flow and scene flow ground truth exact rather than estimated.

Each motion starts from a rest `Placement` (where the object sits in the world) and moves it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


def rotation_about_axis(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation matrix [3, 3] for a right-handed rotation of `angle` radians about `axis`."""
    k = np.asarray(axis, np.float64)
    k = k / np.linalg.norm(k)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


@dataclass(frozen=True, eq=False)
class Placement:
    """Rest pose: x_world = rotation @ p + translation."""

    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))


class Motion(ABC):
    """A canonical-to-world affine map as a function of time."""

    placement: Placement
    dynamic: bool = True
    """False only for objects that never move; their pixels are static in the dynamic mask."""

    @abstractmethod
    def affine(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        """(A [3, 3], b [3]) with x_world = A @ p + b at clip time tau in [0, 1]."""


@dataclass(frozen=True, eq=False)
class Static(Motion):
    """An object that stays at its placement."""

    placement: Placement = field(default_factory=Placement)
    dynamic = False

    def affine(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        return self.placement.rotation, self.placement.translation


@dataclass(frozen=True, eq=False)
class Swing(Motion):
    """Pendulum: rotation about a horizontal `axis` through `pivot` by amplitude * sin(2 pi (cycles tau) + phase)."""

    placement: Placement
    pivot: np.ndarray
    axis: np.ndarray
    amplitude: float
    """Radians."""
    cycles: float = 1.0
    phase: float = 0.0

    def affine(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        angle = self.amplitude * math.sin(2 * math.pi * self.cycles * tau + self.phase)
        r = rotation_about_axis(self.axis, angle)
        pivot = np.asarray(self.pivot, np.float64)
        return r @ self.placement.rotation, pivot + r @ (self.placement.translation - pivot)


@dataclass(frozen=True, eq=False)
class Spin(Motion):
    """Rotation about `axis` through `center` (default: the placement origin) by `turns` full turns over the clip."""

    placement: Placement
    axis: np.ndarray
    turns: float
    center: np.ndarray | None = None

    def affine(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        r = rotation_about_axis(self.axis, 2 * math.pi * self.turns * tau)
        c = self.placement.translation if self.center is None else np.asarray(self.center, np.float64)
        return r @ self.placement.rotation, c + r @ (self.placement.translation - c)


@dataclass(frozen=True, eq=False)
class Translate(Motion):
    """Rigid translation by a world offset [3] that is a function of tau (e.g. `closed_path`)."""

    placement: Placement
    offset: Callable[[float], np.ndarray]

    def affine(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        return self.placement.rotation, self.placement.translation + self.offset(tau)


@dataclass(frozen=True, eq=False)
class Squash(Motion):
    """Non-rigid anisotropic scaling of the canonical shape about a canonical `anchor` point.

    p -> anchor + scales(tau) * (p - anchor) before the placement, so e.g. an ellipsoid resting on
    a table (anchor = its lowest point) is squashed without leaving the table.
    """

    placement: Placement
    anchor: np.ndarray
    scales: Callable[[float], np.ndarray]
    """Per-axis canonical scale factors [3] at time tau."""

    def affine(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        s = np.asarray(self.scales(tau), np.float64)
        anchor = np.asarray(self.anchor, np.float64)
        rot = self.placement.rotation
        return rot @ np.diag(s), self.placement.translation + rot @ (anchor - s * anchor)


def closed_path(waypoints: np.ndarray) -> Callable[[float], np.ndarray]:
    """Closed Catmull-Rom curve through waypoints [K, 3], traversed once over tau in [0, 1].

    The offset is C1-continuous and returns to its start, so looping clips do not jump. With two
    waypoints it is a smooth back-and-forth that eases in and out at both ends.
    """
    pts = np.asarray(waypoints, np.float64)
    k = len(pts)

    def offset(tau: float) -> np.ndarray:
        x = (tau % 1.0) * k
        i = int(math.floor(x)) % k
        s = x - math.floor(x)
        p0, p1, p2, p3 = pts[(i - 1) % k], pts[i], pts[(i + 1) % k], pts[(i + 2) % k]
        return 0.5 * (
            2 * p1
            + (-p0 + p2) * s
            + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s**2
            + (-p0 + 3 * p1 - 3 * p2 + p3) * s**3
        )

    return offset
