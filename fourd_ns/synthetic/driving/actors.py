"""Street actors: vehicles (box body + cabin + wheel blocks) and articulated pedestrians, with their cuboids.

An actor is a few scene objects sharing one `Trajectory` and one instance id, plus the annotation a PandaSet log
would carry for it. Box (cuboid) frame = actor frame shifted up by half the height: centre at (0, 0, h / 2) in the
actor frame, x along the heading (length), y across (width), z up (height). PandaSet writes the same box as
yaw = heading - pi/2 (its heading vector is Rz(yaw) @ (0, 1, 0)) with dimensions.x = width, dimensions.y = length,
dimensions.z = height; `pandaset_yaw` converts.

Pedestrian: legs and arms are boxes hanging from hip and shoulder joints, swinging about the actor's y axis in
opposite phase (left leg with right arm) at the gait frequency speed / stride; torso and head are carried rigidly.
The cuboid is fixed in the actor frame and sized to contain the limbs at every swing angle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fourd_ns.synthetic.driving.slab_box import SlabBox
from fourd_ns.synthetic.driving.trajectories import Carried, Stationary, SwingingLimb, Trajectory
from fourd_ns.synthetic.motion import Motion, Placement, Static
from fourd_ns.synthetic.scene import SceneObject
from fourd_ns.synthetic.shading import Material
from fourd_ns.synthetic.shapes import sphere
from fourd_ns.synthetic.textures import Checker, Stripes, ValueNoise

VEHICLE_SIZES = {
    # label: ((width range), (length range), (height range)) in metres, as annotated in PandaSet.
    "Car": ((1.75, 1.95), (4.1, 4.9), (1.4, 1.75)),
    "Pickup Truck": ((1.95, 2.1), (5.3, 5.9), (1.8, 1.95)),
    "Medium-sized Truck": ((2.2, 2.5), (6.5, 8.0), (2.8, 3.3)),
}
VEHICLE_LABEL_WEIGHTS = {"Car": 0.8, "Pickup Truck": 0.12, "Medium-sized Truck": 0.08}
PAINT_COLOURS = (
    (0.75, 0.75, 0.77), (0.08, 0.08, 0.09), (0.55, 0.06, 0.06), (0.1, 0.2, 0.45), (0.85, 0.85, 0.82),
    (0.35, 0.37, 0.4), (0.15, 0.3, 0.2), (0.7, 0.55, 0.15),
)
SHIRT_COLOURS = ((0.7, 0.15, 0.1), (0.15, 0.3, 0.6), (0.85, 0.85, 0.8), (0.2, 0.5, 0.25), (0.9, 0.6, 0.1))
SKIN_COLOURS = ((0.87, 0.7, 0.58), (0.6, 0.43, 0.3), (0.36, 0.25, 0.18))


def pandaset_yaw(heading: float) -> float:
    """PandaSet cuboid yaw (radians in [-pi, pi)) of a box whose length axis points along `heading`."""
    return (heading - math.pi / 2 + math.pi) % (2 * math.pi) - math.pi


@dataclass(frozen=True, eq=False)
class Actor:
    """One annotated actor: its scene objects, trajectory and cuboid annotation."""

    uuid: str
    label: str
    instance_id: int
    """Value of this actor's pixels in ``ground_truth/*/instance`` and of its LiDAR points' ``instance``."""
    trajectory: Trajectory
    size_wlh: tuple[float, float, float]
    """Cuboid width (across), length (along the heading), height, in metres."""
    stationary: bool
    attributes: dict
    """PandaSet attribute columns without the ``attributes.`` prefix (NaN when not applicable is written by the
    writer): object_motion, rider_status, pedestrian_behavior, pedestrian_age."""
    parts: tuple[SceneObject, ...]
    description: dict = field(default_factory=dict)
    """Provenance: kind, speed, lane, ... (JSON-serialisable)."""

    def box(self, t: float) -> tuple[np.ndarray, float]:
        """(cuboid centre [3] in world, heading of its length axis in radians) at time t (s)."""
        origin, heading = self.trajectory.pose(t)
        return origin + np.array([0.0, 0.0, self.size_wlh[2] / 2]), heading

    def world_to_box(self, t: float, points: np.ndarray) -> np.ndarray:
        """World points [N, 3] in the cuboid frame at time t (x along the length, y across, z up; origin = centre)."""
        centre, heading = self.box(t)
        c, s = math.cos(heading), math.sin(heading)
        rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return (np.asarray(points, np.float64) - centre) @ rotation


def _motion(trajectory: Trajectory, placement: Placement) -> Motion:
    """Parts of actors that never move are static objects (zero scene flow, no per-time transform)."""
    if isinstance(trajectory, Stationary):
        rotation, origin = trajectory.frame(0.0)
        return Static(Placement(rotation @ placement.rotation, origin + rotation @ placement.translation))
    return Carried(trajectory, placement)


def _at(x: float, y: float, z: float) -> Placement:
    return Placement(np.eye(3), np.array([x, y, z], np.float64))


def draw_vehicle_label(rng: np.random.Generator) -> str:
    labels = list(VEHICLE_LABEL_WEIGHTS)
    weights = np.array([VEHICLE_LABEL_WEIGHTS[k] for k in labels])
    return labels[int(rng.choice(len(labels), p=weights / weights.sum()))]


def draw_vehicle_size(label: str, rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(rng.uniform(*bounds)) for bounds in VEHICLE_SIZES[label])


def vehicle(
    name: str,
    label: str,
    size_wlh: tuple[float, float, float],
    trajectory: Trajectory,
    rng: np.random.Generator,
    **annotation,
) -> Actor:
    """A vehicle of `size_wlh` (width, length, height): cars and pickups are a body with a cabin on top, trucks a cab
    in front of a cargo box; two dark wheel blocks stand in for the axles."""
    width, length, height = size_wlh
    paint = np.asarray(PAINT_COLOURS[int(rng.integers(len(PAINT_COLOURS)))])
    body_material = Material(
        ValueNoise(2.5, 3, tuple(paint * 0.8), tuple(np.minimum(paint * 1.15 + 0.03, 1.0)), rng), 0.5, 40.0
    )
    glass = Material(Stripes(1.1, 0.0, (0.06, 0.08, 0.1), tuple(paint * 0.9), sharpness=6.0), 0.8, 80.0)
    tyre = Material(Checker(0.12, (0.03, 0.03, 0.03), (0.12, 0.12, 0.12)))
    clearance, wheel = 0.3, 0.62
    parts = []
    if label == "Medium-sized Truck":
        cab_length = 1.9
        cargo = Material(ValueNoise(1.0, 4, (0.72, 0.72, 0.7), (0.92, 0.92, 0.9), rng))
        cab_height = 0.72 * height
        cab_waist = clearance + 0.55 * (cab_height - clearance)
        parts += [
            ("cab", SlabBox((cab_length / 2, width / 2, (cab_waist - clearance) / 2)), body_material,
             _at(length / 2 - cab_length / 2, 0.0, (cab_waist + clearance) / 2)),
            ("cab_glass", SlabBox((cab_length / 2 - 0.05, width / 2 - 0.04, (cab_height - cab_waist) / 2)), glass,
             _at(length / 2 - cab_length / 2 - 0.05, 0.0, (cab_height + cab_waist) / 2)),
            ("cargo", SlabBox(((length - cab_length - 0.2) / 2, width / 2, (height - clearance) / 2)), cargo,
             _at(-length / 2 + (length - cab_length - 0.2) / 2, 0.0, (height + clearance) / 2)),
        ]
    else:
        body_top = 0.58 * height
        cabin_length = 0.5 * length if label == "Car" else 0.35 * length
        cabin_x = -0.05 * length if label == "Car" else 0.08 * length
        parts += [
            ("body", SlabBox((length / 2, width / 2, (body_top - clearance) / 2)), body_material,
             _at(0.0, 0.0, (body_top + clearance) / 2)),
            ("cabin", SlabBox((cabin_length / 2, width / 2 - 0.08, (height - body_top) / 2)), glass,
             _at(cabin_x, 0.0, (height + body_top) / 2)),
        ]
    axle = length / 2 - 0.2 * min(length, 5.0)
    for side, x in (("front_wheels", axle), ("rear_wheels", -axle)):
        parts.append((side, SlabBox((wheel / 2, width / 2 - 0.02, wheel / 2)), tyre, _at(x, 0.0, wheel / 2)))
    objects = tuple(
        SceneObject(f"{name}/{part}", shape, material, _motion(trajectory, placement))
        for part, shape, material, placement in parts
    )
    return Actor(label=label, trajectory=trajectory, size_wlh=size_wlh, parts=objects, **annotation)


def _limb_reach(half_thickness: float, length: float, amplitude: float) -> float:
    """Largest |x| (actor frame, from the joint) of a box limb hanging from its joint and swung by up to amplitude."""
    return half_thickness * math.cos(amplitude) + length * math.sin(amplitude)


def pedestrian(
    name: str, height: float, speed: float, trajectory: Trajectory, rng: np.random.Generator, **annotation
) -> Actor:
    """An articulated walker of `height` (m) walking at `speed` (m/s) along `trajectory`."""
    leg, arm, torso = 0.47 * height, 0.38 * height, 0.36 * height
    hip = leg + 0.02
    shoulder = hip + torso - 0.06
    head_radius = 0.065 * height
    leg_half, arm_half, torso_half = (0.075, 0.07), (0.05, 0.05), (0.12, 0.19)
    leg_amplitude, arm_amplitude = 0.45, 0.35
    frequency = speed / 1.4  # one gait cycle (two steps) per ~1.4 m stride
    phase = float(rng.uniform(0, 2 * math.pi))
    skin = Material(ValueNoise(12.0, 2, *_shades(SKIN_COLOURS[int(rng.integers(len(SKIN_COLOURS)))], 0.1), rng))
    shirt_colour = SHIRT_COLOURS[int(rng.integers(len(SHIRT_COLOURS)))]
    shirt = Material(Stripes(0.08, 0.0, shirt_colour, tuple(0.6 * c for c in shirt_colour), sharpness=3.0))
    trousers = Material(ValueNoise(15.0, 3, (0.08, 0.1, 0.2), (0.2, 0.25, 0.4), rng))
    axis = (0.0, 1.0, 0.0)
    arm_y = torso_half[1] + arm_half[1] + 0.01

    def limb(part: str, half: tuple[float, float], length: float, joint: tuple, material, offset: float, amp: float):
        shape = SlabBox((half[0], half[1], length / 2))
        rest = _at(joint[0], joint[1], joint[2] - length / 2)
        motion = SwingingLimb(trajectory, rest, joint, axis, amp, frequency, phase + offset)
        return SceneObject(f"{name}/{part}", shape, material, motion)

    parts = (
        SceneObject(f"{name}/torso", SlabBox((torso_half[0], torso_half[1], torso / 2)), shirt,
                    Carried(trajectory, _at(0.0, 0.0, hip + torso / 2))),
        SceneObject(
            f"{name}/head", sphere(head_radius), skin, Carried(trajectory, _at(0.0, 0.0, height - head_radius))
        ),
        limb("left_leg", leg_half, leg, (0.0, 0.09, hip), trousers, 0.0, leg_amplitude),
        limb("right_leg", leg_half, leg, (0.0, -0.09, hip), trousers, math.pi, leg_amplitude),
        limb("left_arm", arm_half, arm, (0.0, arm_y, shoulder), shirt, math.pi, arm_amplitude),
        limb("right_arm", arm_half, arm, (0.0, -arm_y, shoulder), shirt, 0.0, arm_amplitude),
    )
    half_length = max(
        _limb_reach(leg_half[0], leg, leg_amplitude), _limb_reach(arm_half[0], arm, arm_amplitude),
        torso_half[0], head_radius,
    )
    size = (2 * (arm_y + arm_half[1]), 2 * half_length, height)
    return Actor(label="Pedestrian", trajectory=trajectory, size_wlh=size, parts=parts, **annotation)


def _shades(colour: tuple[float, float, float], spread: float) -> tuple[tuple, tuple]:
    c = np.asarray(colour)
    return tuple(np.clip(c * (1 - spread), 0, 1)), tuple(np.clip(c * (1 + spread), 0, 1))
