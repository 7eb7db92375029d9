"""Planar trajectories of street actors (vehicles, pedestrians, the ego car) and the motions of their parts.

Time: driving scenes pass ``tau`` = seconds since the scene's start time to `Motion.affine` (not the [0, 1] clip time
of the tabletop presets), so speeds are in metres per second and a motion does not depend on the clip length.

Actor frame: origin on the ground below the actor's centre, x forward (the heading), y to its left, z up. A
trajectory gives that frame in the world at every time; an actor's parts (body, cabin, torso, limbs) are placed in
the actor frame and carried along (`Carried`), limbs additionally swing about a joint (`SwingingLimb`). Every map is
analytic, so material points, velocities and scene flow are exact at any time.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from fourd_ns.synthetic.motion import Motion, Placement, rotation_about_axis


def yaw_rotation(heading: float) -> np.ndarray:
    """[3, 3] rotation about world z by `heading` radians (maps the actor frame's x axis to the heading)."""
    c, s = math.cos(heading), math.sin(heading)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _direction(heading: float) -> np.ndarray:
    return np.array([math.cos(heading), math.sin(heading), 0.0])


def _smootherstep(x: float) -> tuple[float, float]:
    """C2 ramp from 0 (x <= 0) to 1 (x >= 1) and its derivative."""
    x = min(max(x, 0.0), 1.0)
    return x**3 * (x * (6 * x - 15) + 10), 30 * x**2 * (x - 1) ** 2


class Trajectory(ABC):
    """Pose of an actor frame over time."""

    @abstractmethod
    def pose(self, t: float) -> tuple[np.ndarray, float]:
        """(origin [3] of the actor frame in world, heading in radians of its x axis from world x) at time t (s)."""

    def frame(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(rotation [3, 3], origin [3]): actor frame -> world at time t."""
        origin, heading = self.pose(t)
        return yaw_rotation(heading), origin


@dataclass(frozen=True)
class Stationary(Trajectory):
    origin: tuple[float, float, float]
    heading: float

    def pose(self, t: float) -> tuple[np.ndarray, float]:
        return np.asarray(self.origin, np.float64), self.heading


@dataclass(frozen=True)
class ConstantVelocity(Trajectory):
    """Straight line at constant `speed` (m/s) along `heading`, through `origin` at t = 0."""

    origin: tuple[float, float, float]
    heading: float
    speed: float

    def pose(self, t: float) -> tuple[np.ndarray, float]:
        return np.asarray(self.origin, np.float64) + self.speed * t * _direction(self.heading), self.heading


@dataclass(frozen=True)
class LaneChange(Trajectory):
    """Constant `speed` (m/s) along `heading` (the lane direction) plus a smooth sideways shift of `lateral_offset`
    metres (positive = to the left) between `start_time` and `start_time + duration`; the actor turns along the
    path (heading = lane heading + atan(lateral speed / speed))."""

    origin: tuple[float, float, float]
    heading: float
    speed: float
    lateral_offset: float
    start_time: float
    duration: float

    def pose(self, t: float) -> tuple[np.ndarray, float]:
        ramp, slope = _smootherstep((t - self.start_time) / self.duration)
        left = np.array([-math.sin(self.heading), math.cos(self.heading), 0.0])
        position = np.asarray(self.origin, np.float64) + self.speed * t * _direction(self.heading)
        lateral_speed = self.lateral_offset * slope / self.duration
        return position + self.lateral_offset * ramp * left, self.heading + math.atan2(lateral_speed, self.speed)


@dataclass(frozen=True)
class CruiseThenStop(Trajectory):
    """Straight line along `heading` at `speed` (m/s); with a `stop_time`, brakes from then on at `deceleration`
    (m/s^2) and stands still once stopped. The ego car's trajectory."""

    origin: tuple[float, float, float]
    heading: float
    speed: float
    stop_time: float | None = None
    deceleration: float = 3.0

    def distance(self, t: float) -> float:
        """Distance travelled (m) at time t."""
        if self.stop_time is None or t <= self.stop_time:
            return self.speed * t
        braking = min(t - self.stop_time, self.speed / self.deceleration)
        return self.speed * self.stop_time + self.speed * braking - 0.5 * self.deceleration * braking**2

    def velocity(self, t: float) -> np.ndarray:
        """World velocity [3] (m/s) at time t."""
        if self.stop_time is None or t <= self.stop_time:
            speed = self.speed
        else:
            speed = max(self.speed - self.deceleration * (t - self.stop_time), 0.0)
        return speed * _direction(self.heading)

    def pose(self, t: float) -> tuple[np.ndarray, float]:
        return np.asarray(self.origin, np.float64) + self.distance(t) * _direction(self.heading), self.heading


@dataclass(frozen=True, eq=False)
class Carried(Motion):
    """A rigid part of an actor: `placement` in the actor frame, carried along `trajectory`."""

    trajectory: Trajectory
    placement: Placement

    def affine(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        rotation, origin = self.trajectory.frame(tau)
        return rotation @ self.placement.rotation, origin + rotation @ self.placement.translation


@dataclass(frozen=True, eq=False)
class SwingingLimb(Motion):
    """A limb of a walking actor: at rest at `placement` (actor frame), swung about `axis` through `joint` (both in the
    actor frame) by amplitude * sin(2 pi frequency t + phase), then carried along `trajectory`."""

    trajectory: Trajectory
    placement: Placement
    joint: tuple[float, float, float]
    axis: tuple[float, float, float]
    amplitude: float
    """Radians."""
    frequency: float
    """Hz (one full swing forward and back per period)."""
    phase: float = 0.0

    def affine(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        angle = self.amplitude * math.sin(2 * math.pi * self.frequency * tau + self.phase)
        swing = rotation_about_axis(np.asarray(self.axis), angle)
        joint = np.asarray(self.joint, np.float64)
        local_rotation = swing @ self.placement.rotation
        local_translation = joint + swing @ (self.placement.translation - joint)
        rotation, origin = self.trajectory.frame(tau)
        return rotation @ local_rotation, origin + rotation @ local_translation
