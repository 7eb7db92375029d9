"""Ground truth of the surface points found by a ray cast: albedo, instance id, position over time, velocity.

All of it follows from `Hits.canonical` (the material point that was hit) and the hit object's motion, evaluated in
float64: the position of that material point at any time tau is A(tau) p + b(tau), its velocity the time
derivative (a central difference of the analytic map; the motions are smooth, so the error is ~1e-9 m/s).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fourd_ns.synthetic.scene import Hits, Scene

VELOCITY_STEP = 1e-3
"""Half-width (s) of the central difference that gives material velocities."""


def _hit_objects(hits: Hits) -> list[int]:
    return [i for i in torch.unique(hits.object).tolist() if i >= 0]


def surface_albedo(scene: Scene, hits: Hits) -> Tensor:
    """Albedo [N, 3] of the hit surfaces (zeros where a ray hit nothing)."""
    albedo = torch.zeros(hits.object.shape[0], 3)
    for i in _hit_objects(hits):
        obj = scene.objects[i]
        mask = hits.object == i
        albedo[mask] = obj.material.texture(obj.shape.surface_uv(hits.canonical[mask]))
    return albedo


def material_positions(scene: Scene, hits: Hits, tau: float) -> np.ndarray:
    """float64 [N, 3] world positions at time tau of the hit material points; points on static objects (and misses)
    keep `hits.world`."""
    world = hits.world.double().numpy().copy()
    canonical = hits.canonical.double().numpy()
    objects = hits.object.numpy()
    for i in _hit_objects(hits):
        motion = scene.objects[i].motion
        if not motion.dynamic:
            continue
        mask = objects == i
        a, b = motion.affine(tau)
        world[mask] = canonical[mask] @ np.asarray(a, np.float64).T + np.asarray(b, np.float64)
    return world


def material_velocities(scene: Scene, hits: Hits, tau: float) -> np.ndarray:
    """float64 [N, 3] world velocities (m/s when tau is in seconds) of the hit material points at time tau."""
    ahead = material_positions(scene, hits, tau + VELOCITY_STEP)
    behind = material_positions(scene, hits, tau - VELOCITY_STEP)
    return (ahead - behind) / (2 * VELOCITY_STEP)


def instance_ids(hits: Hits, object_instance: np.ndarray, miss: int) -> np.ndarray:
    """uint16 [N] instance id of each hit: `object_instance` [K] (one per scene object) where a ray hit, else `miss`."""
    objects = hits.object.numpy()
    ids = np.full(objects.shape, miss, np.uint16)
    hit = objects >= 0
    ids[hit] = object_instance[objects[hit]]
    return ids
