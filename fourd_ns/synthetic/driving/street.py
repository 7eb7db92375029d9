"""A seeded straight street with parked and moving vehicles, pedestrians, buildings and a sky: the driving scene.

Street frame: x along the street, y to its left, z up, ground at z = 0; right-hand traffic, so lanes driving +x lie
at y < 0. World frame (what the log is written in): the street frame rotated about z by a seeded `heading` and
shifted so that the ego car starts at the world origin, like a PandaSet world whose axes are not aligned with the
road. Lengths are metres, times seconds since the scene's start (see `trajectories`).

Collision-free traffic by construction: all moving vehicles of one direction share that direction's speed and start
at least `MIN_GAP` apart, a vehicle may use the ego car's lane only when it starts well ahead of the ego car and is at
least as fast, and pedestrians walk along the sidewalks on lines at least `WALKER_GAP` apart.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np

from fourd_ns.synthetic.driving.actors import (
    Actor,
    draw_vehicle_label,
    draw_vehicle_size,
    pedestrian,
    vehicle,
)
from fourd_ns.synthetic.driving.culling import BoundingSpheres
from fourd_ns.synthetic.driving.sky import SkyDome, SkyGradient
from fourd_ns.synthetic.driving.slab_box import SlabBox
from fourd_ns.synthetic.driving.textures import LaneLine, RoadSurface, WindowGrid
from fourd_ns.synthetic.driving.trajectories import (
    ConstantVelocity,
    CruiseThenStop,
    LaneChange,
    Stationary,
    Trajectory,
    yaw_rotation,
)
from fourd_ns.synthetic.motion import Placement, Static
from fourd_ns.synthetic.scene import Scene, SceneObject
from fourd_ns.synthetic.shading import DirectionalLight, Material
from fourd_ns.synthetic.shapes import Rectangle
from fourd_ns.synthetic.textures import Checker, ValueNoise

BACKGROUND_INSTANCE = 0
"""Instance id of static scenery (road, sidewalks, buildings, poles, ground)."""
SKY_INSTANCE = 65535
"""Instance id of the sky (and of camera pixels that see it)."""
AMBIENT = 0.3
"""Ambient shading term of street scenes (the unlit sky's texture is divided by it)."""
MIN_GAP = 12.0
"""Smallest distance (m) between the starting positions of two moving vehicles driving the same way."""
WALKER_GAP = 0.8
"""Smallest sideways distance (m) between the walking lines of two pedestrians."""
EGO_LANE_LEAD = 15.0
"""A vehicle may drive in (or change into) the ego lane only when it starts this far (m) ahead of the ego car."""
WALL_COLOURS = (
    ((0.62, 0.55, 0.48), (0.75, 0.68, 0.6)), ((0.55, 0.3, 0.24), (0.66, 0.38, 0.3)),
    ((0.78, 0.78, 0.74), (0.9, 0.9, 0.86)), ((0.42, 0.45, 0.5), (0.55, 0.58, 0.62)),
    ((0.8, 0.72, 0.55), (0.9, 0.83, 0.66)),
)


@dataclass(frozen=True)
class StreetConfig:
    """Ranges (low, high) the seed draws a street from; lengths in metres, speeds in m/s."""

    lanes_per_direction: tuple[int, int] = (1, 2)
    lane_width: tuple[float, float] = (3.0, 3.7)
    parking_probability: float = 0.8
    """Chance that the street has a parking lane on both sides."""
    parking_width: tuple[float, float] = (2.2, 2.6)
    sidewalk_width: tuple[float, float] = (2.5, 5.0)
    kerb_height: float = 0.15
    building_height: tuple[float, float] = (6.0, 30.0)
    building_length: tuple[float, float] = (8.0, 30.0)
    building_depth: tuple[float, float] = (10.0, 20.0)
    building_gap: tuple[float, float] = (0.0, 6.0)
    building_setback: tuple[float, float] = (0.0, 4.0)
    lamp_spacing: tuple[float, float] = (20.0, 35.0)
    extent_behind: float = 130.0
    """Street (buildings, road) behind the ego's start (m)."""
    extent_ahead: float = 170.0
    """Street ahead of the farthest point the ego can reach in the clip (m)."""
    parked_vehicles: tuple[int, int] = (3, 10)
    """Parked vehicles on both sides together (fewer when the parking lanes are full)."""
    moving_vehicles: tuple[int, int] = (2, 6)
    """Moving vehicles (fewer when no collision-free start is found)."""
    pedestrians: tuple[int, int] = (1, 3)
    ego_speed: tuple[float, float] = (0.0, 10.0)
    ego_stop_probability: float = 0.3
    """Chance that the ego car brakes to a stop during the clip."""
    traffic_speed: tuple[float, float] = (3.0, 12.0)
    lane_change_probability: float = 0.3
    """Chance that a moving vehicle on a two-lane carriageway changes lanes."""
    pedestrian_speed: tuple[float, float] = (1.0, 1.6)
    pedestrian_height: tuple[float, float] = (1.55, 1.9)
    sky_radius: float = 1500.0


@dataclass(frozen=True, eq=False)
class DrivingScene:
    """A street scene: the ray-castable `Scene`, its annotated actors and the ego car's trajectory; ``bounds`` holds
    the objects' bounding spheres for culling (`BoundingSpheres`)."""

    scene: Scene
    actors: tuple[Actor, ...]
    ego: CruiseThenStop
    object_instance: np.ndarray
    """[K] uint16 instance id of each scene object: 0 static scenery, SKY_INSTANCE the sky, else its actor's id."""
    sky_object: int
    """Index of the sky in scene.objects (LiDAR rays that reach it return nothing)."""
    layout: dict = field(default_factory=dict)
    """The drawn street (JSON-serialisable, for synthetic.json)."""
    bounds: BoundingSpheres = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bounds", BoundingSpheres(self.scene))


@dataclass(frozen=True)
class _StreetFrame:
    heading: float
    origin: np.ndarray
    """World position of the street-frame origin."""

    @property
    def rotation(self) -> np.ndarray:
        return yaw_rotation(self.heading)

    def point(self, x: float, y: float, z: float = 0.0) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.origin + self.rotation @ np.array([x, y, z]))

    def placement(self, x: float, y: float, z: float) -> Placement:
        return Placement(self.rotation, np.asarray(self.point(x, y, z)))


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _integer(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _nan_attributes(**values) -> dict:
    keys = ("object_motion", "rider_status", "pedestrian_behavior", "pedestrian_age")
    return {key: values.get(key) for key in keys}


def build_street(seed: int, config: StreetConfig = StreetConfig(), duration: float = 2.4) -> DrivingScene:
    """Draw the street of `seed` for a clip of `duration` seconds (the extent of the street and where traffic starts
    depend on it). A pure function of its arguments."""
    streams = np.random.default_rng(seed).spawn(7)
    layout_rng, building_rng, parked_rng, traffic_rng, walker_rng, look_rng, id_rng = streams

    lanes = _integer(layout_rng, config.lanes_per_direction)
    lane_width = _uniform(layout_rng, config.lane_width)
    parking = _uniform(layout_rng, config.parking_width) if layout_rng.random() < config.parking_probability else 0.0
    sidewalk = _uniform(layout_rng, config.sidewalk_width)
    road_half = lanes * lane_width + parking
    ego_lane = int(layout_rng.integers(lanes))
    ego_y = -(ego_lane + 0.5) * lane_width
    ego_speed = _uniform(layout_rng, config.ego_speed)
    stops = ego_speed > 1.0 and layout_rng.random() < config.ego_stop_probability
    ego_stop = float(layout_rng.uniform(0.3, 0.7) * duration) if stops else None
    heading = float(layout_rng.uniform(-math.pi, math.pi))
    traffic_speed = {"+x": _uniform(layout_rng, config.traffic_speed), "-x": _uniform(layout_rng, config.traffic_speed)}
    travel = ego_speed * duration
    x_min, x_max = -config.extent_behind, travel + config.extent_ahead
    x_mid, length = (x_min + x_max) / 2, x_max - x_min
    frame = _StreetFrame(heading, -yaw_rotation(heading) @ np.array([0.0, ego_y, 0.0]))

    objects: list[SceneObject] = []

    def static(name: str, shape, material: Material, x: float, y: float, z: float) -> None:
        objects.append(SceneObject(name, shape, material, Static(frame.placement(x, y, z))))

    # Ground, road with markings, sidewalks (their sides are the kerbs).
    ground = Material(ValueNoise(0.3, 3, (0.22, 0.26, 0.15), (0.42, 0.4, 0.28), look_rng))
    static("ground", Rectangle(1.05 * config.sky_radius, 1.05 * config.sky_radius), ground, x_mid, 0.0, -0.02)
    lines = [LaneLine(-0.12, (0.85, 0.68, 0.15), 0.12), LaneLine(0.12, (0.85, 0.68, 0.15), 0.12)]
    for k in range(1, lanes):
        lines += [LaneLine(-k * lane_width, dash=3.0), LaneLine(k * lane_width, dash=3.0)]
    if parking:
        lines += [LaneLine(-lanes * lane_width), LaneLine(lanes * lane_width)]
    static("road", Rectangle(length / 2, road_half), Material(RoadSurface(tuple(lines), look_rng)), x_mid, 0.0, 0.0)
    paving = Material(Checker(0.75, (0.58, 0.57, 0.55), (0.68, 0.67, 0.64)))
    for side in (-1, 1):
        y = side * (road_half + sidewalk / 2)
        static(f"sidewalk_{side:+d}", SlabBox((length / 2, sidewalk / 2, config.kerb_height / 2)), paving,
               x_mid, y, config.kerb_height / 2)

    # Buildings and lamp posts along both sides.
    buildings = []
    for side in (-1, 1):
        x = x_min + _uniform(building_rng, (0.0, 10.0))
        while x < x_max:
            size = [_uniform(building_rng, r) for r in (config.building_length, config.building_depth,
                                                        config.building_height)]
            setback = _uniform(building_rng, config.building_setback)
            wall = WALL_COLOURS[int(building_rng.integers(len(WALL_COLOURS)))]
            # Box.surface_uv maps its +-y faces (the facades facing the street) to (x + 3.7, z + 1.3).
            facade = Material(WindowGrid(wall, -size[2] / 2 + 1.3, building_rng))
            y = side * (road_half + sidewalk + setback + size[1] / 2)
            static(f"building_{len(buildings)}", SlabBox((size[0] / 2, size[1] / 2, size[2] / 2)), facade,
                   x + size[0] / 2, y, size[2] / 2)
            buildings.append({"side": side, "x": x + size[0] / 2, "length": size[0], "depth": size[1],
                              "height": size[2], "setback": setback})
            x += size[0] + _uniform(building_rng, config.building_gap)
    metal = Material(ValueNoise(4.0, 2, (0.3, 0.31, 0.33), (0.45, 0.46, 0.48), look_rng), 0.3, 20.0)
    for side in (-1, 1):
        x = x_min + _uniform(building_rng, (0.0, 10.0))
        while x < x_max:
            static(f"lamp_{side:+d}_{int(x)}", SlabBox((0.08, 0.08, 3.0)), metal, x, side * (road_half + 0.35), 3.0)
            x += _uniform(building_rng, config.lamp_spacing)

    # The sky: a huge sphere about the street, so every camera ray hits something.
    sky_texture = SkyGradient(config.sky_radius, (0.78, 0.84, 0.9), (0.3, 0.48, 0.78),
                              _uniform(look_rng, (0.1, 0.5)), look_rng, exposure=1.0 / AMBIENT)
    static("sky", SkyDome(config.sky_radius), Material(sky_texture), x_mid, 0.0, 0.0)
    sky_object = len(objects) - 1

    actors: list[Actor] = []

    def annotation(kind: str, **description) -> dict:
        return {"uuid": _uuid(id_rng), "instance_id": len(actors) + 1, "description": {"kind": kind, **description}}

    # Parked vehicles: slots along both parking lanes, a random subset filled.
    if parking:
        slots = []
        for side in (-1, 1):
            x = -40.0 + _uniform(parked_rng, (0.0, 4.0))
            while x < travel + 70.0:
                label = draw_vehicle_label(parked_rng)
                size = draw_vehicle_size(label, parked_rng)
                slots.append((side, x + size[1] / 2, label, size))
                x += size[1] + _uniform(parked_rng, (1.0, 6.0))
        count = min(_integer(parked_rng, config.parked_vehicles), len(slots))
        for index in sorted(parked_rng.choice(len(slots), size=count, replace=False).tolist()):
            side, x, label, size = slots[index]
            y = side * (road_half - parking / 2) + _uniform(parked_rng, (-0.15, 0.15))
            local_heading = (0.0 if side < 0 else math.pi) + _uniform(parked_rng, (-0.05, 0.05))
            trajectory = Stationary(frame.point(x, y), heading + local_heading)
            actors.append(vehicle(f"parked_{len(actors)}", label, size, trajectory, parked_rng, stationary=True,
                                  attributes=_nan_attributes(object_motion="Parked"),
                                  **annotation("parked", street_x=x, street_y=y)))

    # Moving vehicles: per direction one speed, starts MIN_GAP apart, the ego lane only far enough ahead.
    starts: dict[str, list[float]] = {"+x": [], "-x": []}
    for _ in range(_integer(traffic_rng, config.moving_vehicles)):
        direction = "+x" if traffic_rng.random() < 0.5 else "-x"
        speed = traffic_speed[direction]
        label = draw_vehicle_label(traffic_rng)
        size = draw_vehicle_size(label, traffic_rng)
        changes = lanes == 2 and traffic_rng.random() < config.lane_change_probability
        change_start = float(traffic_rng.uniform(0.0, 0.6) * duration)
        change_duration = _uniform(traffic_rng, (2.5, 4.0))
        for _attempt in range(50):
            x0 = _uniform(traffic_rng, (-40.0, 60.0 + travel) if direction == "+x" else (10.0, 100.0 + travel))
            lane = int(traffic_rng.integers(lanes))
            used = {lane, 1 - lane} if changes else {lane}
            ego_ok = x0 >= EGO_LANE_LEAD and speed >= ego_speed
            if direction == "+x" and ego_lane in used and not ego_ok:
                continue
            if all(abs(x0 - other) >= MIN_GAP for other in starts[direction]):
                break
        else:
            continue
        starts[direction].append(x0)
        sign = 1.0 if direction == "+x" else -1.0
        y = -sign * (lane + 0.5) * lane_width
        local_heading = 0.0 if direction == "+x" else math.pi
        origin = frame.point(x0, y)
        if changes:
            target_y = -sign * (1 - lane + 0.5) * lane_width
            # LaneChange's lateral offset is to the vehicle's left, i.e. +y for +x traffic and -y for -x traffic.
            trajectory: Trajectory = LaneChange(origin, heading + local_heading, speed, sign * (target_y - y),
                                                change_start, change_duration)
        else:
            trajectory = ConstantVelocity(origin, heading + local_heading, speed)
        actors.append(vehicle(f"moving_{len(actors)}", label, size, trajectory, traffic_rng, stationary=False,
                              attributes=_nan_attributes(object_motion="Moving"),
                              **annotation("lane_change" if changes else "constant_velocity", direction=direction,
                                           speed=speed, street_x=x0, street_y=y, lane_change=changes)))

    # Pedestrians walking along the sidewalks.
    walking_lines: list[float] = []
    for _ in range(_integer(walker_rng, config.pedestrians)):
        # Walkers on one sidewalk keep WALKER_GAP apart sideways, so they pass each other without touching.
        for _attempt in range(20):
            side = -1 if walker_rng.random() < 0.5 else 1
            y = side * (road_half + _uniform(walker_rng, (0.9, sidewalk - 0.5)))
            if all(abs(y - other) >= WALKER_GAP for other in walking_lines):
                break
        else:
            continue
        walking_lines.append(y)
        x0 = _uniform(walker_rng, (5.0, 45.0 + travel))
        local_heading = 0.0 if walker_rng.random() < 0.5 else math.pi
        speed = _uniform(walker_rng, config.pedestrian_speed)
        height = _uniform(walker_rng, config.pedestrian_height)
        trajectory = ConstantVelocity(frame.point(x0, y), heading + local_heading, speed)
        actors.append(pedestrian(f"pedestrian_{len(actors)}", height, speed, trajectory, walker_rng, stationary=False,
                                 attributes=_nan_attributes(pedestrian_behavior="Walking", pedestrian_age="Adult"),
                                 **annotation("walker", speed=speed, street_x=x0, street_y=y, height=height)))

    object_instance = [BACKGROUND_INSTANCE] * len(objects)
    object_instance[sky_object] = SKY_INSTANCE
    for actor in actors:
        objects.extend(actor.parts)
        object_instance += [actor.instance_id] * len(actor.parts)

    sun_azimuth = _uniform(look_rng, (0.0, 2 * math.pi))
    sun_elevation = _uniform(look_rng, (math.radians(25), math.radians(65)))
    sun = np.array([math.cos(sun_azimuth) * math.cos(sun_elevation), math.sin(sun_azimuth) * math.cos(sun_elevation),
                    math.sin(sun_elevation)])
    lights = (DirectionalLight(sun, (0.85, 0.82, 0.76)), DirectionalLight(np.array([0.0, 0.0, 1.0]), (0.2, 0.22, 0.26)))
    ego = CruiseThenStop((0.0, 0.0, 0.0), heading, ego_speed, ego_stop)
    layout = {
        "heading": heading,
        "street_origin_in_world": [float(v) for v in frame.origin],
        "lanes_per_direction": lanes,
        "lane_width": lane_width,
        "parking_width": parking,
        "sidewalk_width": sidewalk,
        "road_half_width": road_half,
        "street_x_range": [x_min, x_max],
        "ego_lane": ego_lane,
        "ego_speed": ego_speed,
        "ego_stop_time": ego_stop,
        "traffic_speed": traffic_speed,
        "sun_direction": sun.tolist(),
        "buildings": buildings,
        "config": asdict(config),
    }
    return DrivingScene(
        scene=Scene(tuple(objects), lights, ambient=AMBIENT),
        actors=tuple(actors),
        ego=ego,
        object_instance=np.asarray(object_instance, np.uint16),
        sky_object=sky_object,
        layout=layout,
    )
