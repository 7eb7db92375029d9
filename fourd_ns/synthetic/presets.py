"""Scene presets: NeRF-DS-like tabletop scenes (`bell`, `cup`, `press`) and a seeded `random` arrangement.

World frame: z up, the table top is the plane z = 0, the wall is behind the table at y = 1, and
the camera looks roughly along +y. All scenes sit inside a textured room (a box seen from inside),
so every camera ray hits a surface and depth is finite everywhere.

Every preset is a pure function of a numpy generator, so a seed fully determines the scene.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from fourd_ns.synthetic.motion import Motion, Placement, Spin, Squash, Static, Swing, Translate, closed_path
from fourd_ns.synthetic.rig import RigSpec
from fourd_ns.synthetic.scene import Scene, SceneObject
from fourd_ns.synthetic.shading import DirectionalLight, Material
from fourd_ns.synthetic.shapes import Box, Cylinder, Ellipsoid, Rectangle, Shape, sphere
from fourd_ns.synthetic.textures import Checker, Glyphs, Stripes, Texture, ValueNoise

_WALL_ROTATION = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""Maps the canonical rectangle (normal +z) to a vertical wall facing the camera (normal -y)."""
_X_AXIS_HORIZONTAL = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
"""Maps a cylinder's canonical z axis to world x (for horizontal bars)."""


def _at(x: float, y: float, z: float, rotation: np.ndarray | None = None) -> Placement:
    return Placement(np.eye(3) if rotation is None else rotation, np.array([x, y, z], np.float64))


def _lights() -> tuple[DirectionalLight, ...]:
    return (
        DirectionalLight(np.array([-0.5, -0.8, 1.0]), (0.85, 0.82, 0.78)),
        DirectionalLight(np.array([0.8, -0.3, 0.4]), (0.25, 0.27, 0.32)),
    )


def _background(rng: np.random.Generator) -> list[SceneObject]:
    """Room, table top and a wall with a poster of text, all static."""
    room = Material(ValueNoise(2.0, 4, (0.55, 0.55, 0.6), (0.8, 0.78, 0.74), rng))
    table = Material(
        ValueNoise(6.0, 5, (0.45, 0.3, 0.18), (0.7, 0.5, 0.32), rng), specular=0.15, shininess=16.0
    )
    wall = Material(Stripes(0.25, 0.3, (0.6, 0.68, 0.62), (0.78, 0.84, 0.8), sharpness=1.5))
    poster = Material(Glyphs((0.05, 0.075), (0.1, 0.1, 0.15), (0.93, 0.92, 0.86), rng))
    return [
        SceneObject("room", Box((3.5, 3.5, 2.0)), room, Static(_at(0.0, 0.0, 1.2))),
        SceneObject("table", Rectangle(1.3, 1.0), table, Static(_at(0.0, 0.0, 0.0))),
        SceneObject("wall", Rectangle(1.8, 1.0), wall, Static(_at(0.0, 1.0, 0.8, _WALL_ROTATION))),
        SceneObject("poster", Rectangle(0.3, 0.22), poster, Static(_at(-0.55, 0.995, 0.75, _WALL_ROTATION))),
    ]


def bell(rng: np.random.Generator) -> tuple[Scene, RigSpec]:
    """A shiny bell on a rod swinging like a pendulum from a static gallows; its clapper swings with a lag."""
    pivot = np.array([0.0, 0.1, 0.95])
    axis = np.array([0.25, 1.0, 0.0])
    metal = Material(ValueNoise(3.0, 3, (0.2, 0.2, 0.22), (0.45, 0.45, 0.5), rng), specular=0.5, shininess=24.0)
    gold = Material(Stripes(0.06, 0.0, (0.62, 0.45, 0.12), (0.85, 0.7, 0.3), sharpness=2.0), 0.9, 60.0)
    rim = Material(Checker(0.05, (0.55, 0.38, 0.1), (0.8, 0.62, 0.25)), 0.9, 60.0)
    clapper = Material(ValueNoise(20.0, 2, (0.1, 0.1, 0.1), (0.4, 0.4, 0.45), rng), 0.7, 40.0)

    def swing(placement: Placement, amplitude: float = math.radians(25), phase: float = 0.0) -> Swing:
        return Swing(placement, pivot, axis, amplitude, cycles=1.5, phase=phase)

    objects = _background(rng) + [
        SceneObject("bar", Cylinder(0.025, 0.5), metal, Static(_at(0.0, 0.1, 0.95, _X_AXIS_HORIZONTAL))),
        SceneObject("post_left", Cylinder(0.025, 0.475), metal, Static(_at(-0.48, 0.1, 0.475))),
        SceneObject("post_right", Cylinder(0.025, 0.475), metal, Static(_at(0.48, 0.1, 0.475))),
        SceneObject("rod", Cylinder(0.012, 0.13), metal, swing(_at(0.0, 0.1, 0.82))),
        SceneObject("body", Ellipsoid((0.15, 0.15, 0.2)), gold, swing(_at(0.0, 0.1, 0.52))),
        SceneObject("rim", Cylinder(0.18, 0.025), rim, swing(_at(0.0, 0.1, 0.37))),
        SceneObject("clapper", sphere(0.05), clapper, swing(_at(0.0, 0.1, 0.3), math.radians(32), -0.5)),
    ]
    return Scene(tuple(objects), _lights()), RigSpec(target=(0.0, 0.1, 0.5), distance=2.0)


def cup(rng: np.random.Generator) -> tuple[Scene, RigSpec]:
    """A glossy printed cup with a handle spinning about its vertical axis on a static saucer."""
    axis_point = np.array([0.0, 0.05, 0.0])
    print_ = Material(Glyphs((0.04, 0.06), (0.15, 0.1, 0.4), (0.95, 0.95, 0.92), rng), 0.6, 48.0)
    glaze = Material(ValueNoise(25.0, 3, (0.2, 0.3, 0.65), (0.35, 0.5, 0.85), rng), 0.6, 48.0)
    saucer = Material(Checker(0.04, (0.9, 0.9, 0.88), (0.3, 0.45, 0.7)), 0.4, 32.0)

    def spin(placement: Placement) -> Spin:
        return Spin(placement, np.array([0.0, 0.0, 1.0]), turns=0.75, center=axis_point)

    objects = _background(rng) + [
        SceneObject("saucer", Cylinder(0.26, 0.01), saucer, Static(_at(0.0, 0.05, 0.01))),
        SceneObject("cup", Cylinder(0.15, 0.18), print_, spin(_at(0.0, 0.05, 0.2))),
        SceneObject("handle", Box((0.06, 0.025, 0.1)), glaze, spin(_at(0.19, 0.05, 0.21))),
    ]
    return Scene(tuple(objects), _lights()), RigSpec(target=(0.0, 0.05, 0.2), distance=1.5, elevation=20.0)


def press(rng: np.random.Generator) -> tuple[Scene, RigSpec]:
    """A shiny press plate moving down and up, squashing a soft ellipsoid (non-rigid, volume-preserving)."""
    height = 0.26  # of the soft ellipsoid at rest

    def plate_bottom(tau: float) -> float:
        pressed = 0.5 - 0.5 * math.cos(2 * math.pi * 2.0 * tau)
        return 0.38 - (0.38 - 0.6 * height) * pressed

    def squash(tau: float) -> np.ndarray:
        s_z = min(1.0, plate_bottom(tau) / height)
        return np.array([s_z**-0.6, s_z**-0.4, s_z])

    def lift(tau: float) -> np.ndarray:
        return np.array([0.0, 0.0, plate_bottom(tau) - plate_bottom(0.0)])

    steel = Material(Stripes(0.03, 1.2, (0.45, 0.47, 0.5), (0.7, 0.72, 0.76), sharpness=1.0), 0.9, 80.0)
    soft = Material(Checker(0.04, (0.85, 0.3, 0.25), (0.95, 0.8, 0.35)), 0.15, 12.0)
    plate_z = plate_bottom(0.0) + 0.03
    objects = _background(rng) + [
        SceneObject("plate", Box((0.3, 0.22, 0.03)), steel, Translate(_at(0.0, 0.05, plate_z), lift)),
        SceneObject("rod", Cylinder(0.03, 0.6), steel, Translate(_at(0.0, 0.05, plate_z + 0.63), lift)),
        SceneObject(
            "soft",
            Ellipsoid((0.2, 0.16, height / 2)),
            soft,
            Squash(_at(0.0, 0.05, height / 2), np.array([0.0, 0.0, -height / 2]), squash),
        ),
    ]
    return Scene(tuple(objects), _lights()), RigSpec(target=(0.0, 0.05, 0.2), distance=1.6, elevation=18.0)


def _random_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(0.1, 0.95, 3))


def _random_texture(rng: np.random.Generator) -> Texture:
    a, b = _random_colour(rng), _random_colour(rng)
    kind = rng.integers(4)
    if kind == 0:
        return Checker(float(rng.uniform(0.02, 0.06)), a, b)
    if kind == 1:
        return ValueNoise(float(rng.uniform(8, 30)), 3, a, b, rng)
    if kind == 2:
        return Stripes(float(rng.uniform(0.03, 0.08)), float(rng.uniform(0, math.pi)), a, b, float(rng.uniform(1, 4)))
    return Glyphs((0.04, 0.06), a, b, rng)


def _random_shape(rng: np.random.Generator) -> tuple[Shape, float]:
    """A random shape and the height of its centre above the table when it rests on it."""
    size = rng.uniform(0.07, 0.15, 3)
    kind = rng.integers(4)
    if kind == 0:
        return Box(tuple(float(s) for s in size)), float(size[2])
    if kind == 1:
        return sphere(float(size[0])), float(size[0])
    if kind == 2:
        return Ellipsoid(tuple(float(s) for s in size)), float(size[2])
    return Cylinder(float(size[0]), float(size[2])), float(size[2])


def _random_motion(rng: np.random.Generator, placement: Placement, lift: float) -> Motion:
    """One of spin / swing / path / squash, with moderate speeds so per-frame flow stays a few pixels."""
    kind = rng.integers(4)
    centre = placement.translation
    if kind == 0:
        axis = np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.2, 3)
        return Spin(placement, axis, turns=float(rng.uniform(0.3, 1.0)) * rng.choice([-1, 1]))
    if kind == 1:
        pivot = centre + np.array([0.0, 0.0, 0.5])
        axis = np.array([rng.normal(), rng.normal(), 0.0])
        return Swing(placement, pivot, axis, float(rng.uniform(0.2, 0.45)), cycles=float(rng.uniform(0.5, 1.5)))
    if kind == 2:
        waypoints = rng.uniform(-0.15, 0.15, (int(rng.integers(2, 5)), 3)) * np.array([1.0, 1.0, 0.5])
        waypoints[:, 2] = np.abs(waypoints[:, 2])
        waypoints[0] = 0.0
        return Translate(placement, closed_path(waypoints))
    depth = float(rng.uniform(0.2, 0.4))
    cycles = float(rng.integers(1, 3))

    def scales(tau: float) -> np.ndarray:
        s_z = 1.0 - depth * (0.5 - 0.5 * math.cos(2 * math.pi * cycles * tau))
        return np.array([s_z**-0.5, s_z**-0.5, s_z])

    return Squash(placement, np.array([0.0, 0.0, -lift]), scales)


def random_objects(rng: np.random.Generator) -> tuple[Scene, RigSpec]:
    """2-5 random objects on the table, each with a random texture, shininess and motion."""
    count = int(rng.integers(2, 6))
    slots = [(x, y) for y in (-0.25, 0.25) for x in (-0.6, -0.2, 0.2, 0.6)]
    objects = _background(rng)
    for i, slot in enumerate(rng.permutation(len(slots))[:count]):
        shape, lift = _random_shape(rng)
        x, y = slots[slot] + rng.uniform(-0.05, 0.05, 2)
        placement = _at(float(x), float(y), lift)
        material = Material(_random_texture(rng), float(rng.uniform(0.0, 0.9)), float(rng.uniform(8, 80)))
        objects.append(SceneObject(f"object_{i}", shape, material, _random_motion(rng, placement, lift)))
    azimuth = float(rng.uniform(-20, 20))
    return Scene(tuple(objects), _lights()), RigSpec(target=(0.0, 0.0, 0.15), distance=2.0, azimuth=azimuth)


PRESETS: dict[str, Callable[[np.random.Generator], tuple[Scene, RigSpec]]] = {
    "bell": bell,
    "cup": cup,
    "press": press,
    "random": random_objects,
}
"""Preset name -> builder taking a seeded numpy generator."""
