"""Scenes (objects with shape, material and motion, plus lights) and the vectorised ray caster.

The caster loops over the few objects of a scene, never over pixels: every object is intersected
with all rays at once in its canonical frame and the nearest hit wins. It keeps, per ray, the
canonical (material) point that was hit, which is what optical-flow and scene-flow ground truth
are computed from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fourd_ns.synthetic.motion import Motion
from fourd_ns.synthetic.shading import DirectionalLight, Material
from fourd_ns.synthetic.shapes import Shape


@dataclass(frozen=True, eq=False)
class SceneObject:
    name: str
    shape: Shape
    material: Material
    motion: Motion


@dataclass(frozen=True, eq=False)
class Scene:
    objects: tuple[SceneObject, ...]
    lights: tuple[DirectionalLight, ...]
    ambient: float = 0.25


@dataclass
class Hits:
    """Nearest hits of N rays. Rays that hit nothing have object = -1 and depth = inf."""

    depth: Tensor
    """[N] ray parameter of the hit (z-depth for rays from `camera_rays`)."""
    object: Tensor
    """[N] int64 index into scene.objects."""
    canonical: Tensor
    """[N, 3] hit point in the hit object's canonical coordinates (the material point)."""
    world: Tensor
    """[N, 3] hit point in world coordinates."""
    normal: Tensor
    """[N, 3] unit world normal (outward for the object, not yet flipped towards the viewer)."""


def object_affine(obj: SceneObject, tau: float) -> tuple[Tensor, Tensor]:
    """The object's canonical-to-world map at tau as float32 tensors A [3, 3], b [3]."""
    a, b = obj.motion.affine(tau)
    return torch.as_tensor(np.asarray(a), dtype=torch.float32), torch.as_tensor(np.asarray(b), dtype=torch.float32)


def material_points_at(scene: Scene, hits: Hits, tau: float) -> Tensor:
    """World positions [N, 3] at time tau of the material points in `hits`: each moving object's canonical points
    mapped by its motion at tau; points on static objects (and rays that hit nothing) keep `hits.world`."""
    world = hits.world.clone()
    for i, obj in enumerate(scene.objects):
        mask = hits.object == i
        if not obj.motion.dynamic or not mask.any():
            continue
        a, b = object_affine(obj, tau)
        world[mask] = hits.canonical[mask] @ a.T + b
    return world


def _inverse(a: np.ndarray) -> np.ndarray:
    """Inverse of a 3x3 matrix by cross products (np.linalg.inv costs milliseconds per call here)."""
    c0, c1, c2 = a[:, 0], a[:, 1], a[:, 2]
    rows = np.stack([np.cross(c1, c2), np.cross(c2, c0), np.cross(c0, c1)])
    return rows / np.dot(c0, rows[0])


def cast_rays(scene: Scene, origins: Tensor, dirs: Tensor, tau: float) -> Hits:
    """Intersect world rays origins [N, 3] + t dirs [N, 3] with the scene at time tau."""
    n = origins.shape[0]
    depth = torch.full((n,), math.inf)
    index = torch.full((n,), -1, dtype=torch.int64)
    per_object = []
    for i, obj in enumerate(scene.objects):
        a, b = obj.motion.affine(tau)
        a_inv = torch.as_tensor(_inverse(np.asarray(a, np.float64)), dtype=torch.float32)
        b = torch.as_tensor(np.asarray(b), dtype=torch.float32)
        o_local = (origins - b) @ a_inv.T
        d_local = dirs @ a_inv.T
        t, n_local = obj.shape.intersect(o_local, d_local)
        closer = t < depth
        depth = torch.where(closer, t, depth)
        index = torch.where(closer, i, index)
        per_object.append((a_inv, o_local, d_local, n_local))
    # Gather the winners' canonical points and normals once, instead of blending [N, 3] tensors per object.
    canonical = torch.zeros(n, 3)
    normal = torch.zeros(n, 3)
    for i, (a_inv, o_local, d_local, n_local) in enumerate(per_object):
        won = (index == i).nonzero()[:, 0]
        canonical[won] = o_local[won] + depth[won, None] * d_local[won]
        # Normals transform with the inverse transpose: n_world = A^-T n_local.
        normal[won] = n_local[won] @ a_inv
    world = origins + torch.nan_to_num(depth, posinf=0.0)[:, None] * dirs
    return Hits(depth, index, canonical, world, torch.nn.functional.normalize(normal, dim=1))
