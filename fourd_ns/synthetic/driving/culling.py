"""Bounding-sphere culling in front of `cast_rays`, so that a street of ~100 objects renders in seconds.

`cast_rays` intersects every object with every ray. A bundle of rays from one origin (an image tile, a LiDAR
azimuth sector) only meets the few objects whose bounding sphere overlaps the bundle's cone, so the bundle is cast
against that sub-scene with the unchanged `cast_rays` and the hit object indices are mapped back to the full
scene. The test is conservative (a superset of the objects that can be hit), so the hits are those of the full
scene: culling changes speed, not results.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from fourd_ns.synthetic.scene import Hits, Scene, cast_rays
from fourd_ns.synthetic.shapes import Box, Cylinder, Ellipsoid, Rectangle, Shape


def bounding_radius(shape: Shape) -> float:
    """Radius of a sphere about the canonical origin that contains `shape` (inf for unknown shapes: never culled)."""
    if isinstance(shape, Box):
        return math.sqrt(sum(h * h for h in shape.half_extents))
    if isinstance(shape, Ellipsoid):
        return max(shape.radii)
    if isinstance(shape, Cylinder):
        return math.hypot(shape.radius, shape.half_height)
    if isinstance(shape, Rectangle):
        return math.hypot(shape.half_x, shape.half_y)
    return math.inf


def _sphere(obj, tau: float) -> tuple[np.ndarray, float]:
    a, b = obj.motion.affine(tau)
    a = np.asarray(a, np.float64)
    # The canonical origin maps to b; the spectral norm of A bounds how far any canonical radius stretches
    # (1 for the rotations of rigid motions, which skip the costly SVD).
    rigid = np.abs(a.T @ a - np.eye(3)).max() < 1e-9
    return np.asarray(b, np.float64), bounding_radius(obj.shape) * (1.0 if rigid else np.linalg.norm(a, 2))


def bounding_spheres(scene: Scene, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """World bounding spheres of every object at time tau: centres [K, 3], radii [K] (float64)."""
    spheres = [_sphere(obj, tau) for obj in scene.objects]
    return np.stack([c for c, _ in spheres]), np.asarray([r for _, r in spheres])


class BoundingSpheres:
    """`bounding_spheres` of one scene at any time, with the static objects' spheres computed once."""

    def __init__(self, scene: Scene):
        self.scene = scene
        self.dynamic = [i for i, obj in enumerate(scene.objects) if obj.motion.dynamic]
        self.centres, self.radii = bounding_spheres(scene, 0.0)

    def at(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        centres, radii = self.centres.copy(), self.radii.copy()
        for i in self.dynamic:
            centres[i], radii[i] = _sphere(self.scene.objects[i], tau)
        return centres, radii


def visible_objects(
    spheres: tuple[np.ndarray, np.ndarray], origin: np.ndarray, dirs: Tensor, max_distance: float = math.inf
) -> np.ndarray:
    """Indices [K'] (increasing) of the objects whose bounding sphere meets the cone around rays from `origin` [3]
    along dirs [N, 3] (not necessarily unit), and lies partly within `max_distance` of the origin."""
    unit = torch.nn.functional.normalize(dirs.double(), dim=1)
    axis = torch.nn.functional.normalize(unit.sum(dim=0), dim=0)
    cos_half = (unit @ axis).min().clamp(-1.0, 1.0).item()
    half_angle = math.acos(cos_half) + 1e-6
    centres, radii = spheres
    offset = centres - np.asarray(origin, np.float64)[None]
    distance = np.linalg.norm(offset, axis=1)
    inside = distance <= radii
    cos_centre = (offset @ axis.numpy()) / np.maximum(distance, 1e-12)
    angle = np.arccos(np.clip(cos_centre, -1.0, 1.0))
    spread = np.arcsin(np.clip(radii / np.maximum(distance, 1e-12), 0.0, 1.0))
    # A bundle wider than a hemisphere gets no useful cone: keep everything in range.
    in_cone = inside | (angle <= half_angle + spread) | (half_angle >= math.pi / 2)
    in_range = distance - radii <= max_distance
    return np.nonzero(in_cone & in_range)[0]


def sub_scene(scene: Scene, keep: np.ndarray) -> Scene:
    """The scene restricted to objects `keep` (indices into scene.objects)."""
    return Scene(tuple(scene.objects[i] for i in keep), scene.lights, scene.ambient)


def cast_rays_culled(
    scene: Scene,
    origins: Tensor,
    dirs: Tensor,
    tau: float,
    spheres: tuple[np.ndarray, np.ndarray] | None = None,
    max_distance: float = math.inf,
) -> Hits:
    """`cast_rays` for rays origins [N, 3] + t dirs [N, 3] that share one origin, on the objects they can reach.

    `spheres` are `bounding_spheres(scene, tau)` (computed when not given; pass them when casting many bundles at
    one time). Objects entirely beyond `max_distance` (in units of |dirs| ray parameter for unit dirs) are skipped,
    so a ray whose nearest surface lies beyond it may report a farther object or none: callers that use
    `max_distance` must treat hits beyond it as misses. Object indices in the result refer to `scene.objects`.
    """
    if origins.shape[0] == 0:
        return cast_rays(sub_scene(scene, np.zeros(0, np.int64)), origins, dirs, tau)
    origin = origins[0]
    if not torch.equal(origins, origin.expand_as(origins)):
        raise ValueError("cast_rays_culled needs rays that share one origin (a camera tile or a LiDAR sector)")
    spheres = bounding_spheres(scene, tau) if spheres is None else spheres
    keep = visible_objects(spheres, origin.double().numpy(), dirs, max_distance)
    hits = cast_rays(sub_scene(scene, keep), origins, dirs, tau)
    index = torch.as_tensor(keep, dtype=torch.int64)
    hits.object = torch.where(hits.object >= 0, index[hits.object.clamp(min=0)] if len(keep) else hits.object, -1)
    return hits
