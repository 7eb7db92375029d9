"""A NeRF-DS-like stereo rig: a handheld "left" camera for training, a rigidly attached "right" one for testing.

The left camera drifts slowly along a horizontal arc around the point of interest and shakes with
a few low-frequency sinusoids (random phases from the seed), like a phone held by hand; it always
looks at the point of interest (plus a small aim jitter). The right camera has the same
orientation and sits `baseline` to the right along the left camera's x axis, at every time step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fourd_ns.synthetic.camera import PinholeCamera, look_at


@dataclass(frozen=True)
class RigSpec:
    """Where the rig looks from; all lengths in world units, angles in degrees."""

    target: tuple[float, float, float]
    """Point of interest the left camera looks at (world, z up)."""
    distance: float
    """Distance of the left camera from the target."""
    azimuth: float = 0.0
    """Horizontal angle of the camera around the target; 0 = on the -y side, looking along +y."""
    elevation: float = 15.0
    """Angle above the horizontal plane through the target."""
    sweep: float = 12.0
    """Total azimuth change over the clip (slow drift)."""
    shake: float = 0.03
    """Amplitude of the handheld shake relative to `distance`."""
    baseline: float = 0.1
    """Left-right camera offset relative to `distance`."""
    fov: float = 60.0
    """Horizontal field of view."""


def _orbit_position(spec: RigSpec, azimuth_deg: float) -> np.ndarray:
    az, el = math.radians(azimuth_deg), math.radians(spec.elevation)
    offset = spec.distance * np.array([math.sin(az) * math.cos(el), -math.cos(az) * math.cos(el), math.sin(el)])
    return np.asarray(spec.target, np.float64) + offset


def stereo_rig(
    spec: RigSpec, num_frames: int, width: int, height: int, rng: np.random.Generator
) -> tuple[list[PinholeCamera], list[PinholeCamera]]:
    """Left and right cameras for each of `num_frames` time steps (same intrinsics, principal point at the centre)."""
    focal = 0.5 * width / math.tan(math.radians(spec.fov) / 2)
    phases = rng.uniform(0, 2 * math.pi, size=(2, 3, 3))
    frequencies = np.array([0.7, 1.3, 2.1])
    target = np.asarray(spec.target, np.float64)
    left, right = [], []
    for k in range(num_frames):
        tau = k / max(num_frames - 1, 1)
        position = _orbit_position(spec, spec.azimuth + spec.sweep * (tau - 0.5))
        wobble = np.sin(2 * math.pi * frequencies[None, :] * tau + phases[0]).sum(axis=1) / 3
        aim = np.sin(2 * math.pi * frequencies[None, :] * tau + phases[1]).sum(axis=1) / 3
        position = position + spec.shake * spec.distance * wobble
        rotation = look_at(position, target + 0.3 * spec.shake * spec.distance * aim)
        intrinsics = dict(focal=focal, principal_point=(width / 2, height / 2), width=width, height=height)
        left.append(PinholeCamera(rotation=rotation, position=position, **intrinsics))
        right_position = position + spec.baseline * spec.distance * rotation[0]
        right.append(PinholeCamera(rotation=rotation, position=right_position, **intrinsics))
    return left, right
