"""Rendering one camera view at one time: supersampled RGB and per-pixel ground truth.

RGB is rendered with s x s stratified samples per pixel and area-averaged, so edges and textures
are antialiased. Geometry ground truth (depth, flow, scene flow, dynamic mask) comes from a single
ray through each pixel centre: averaging depths or flows across an edge would produce values that
belong to no surface.

Flow ground truth follows the material point: the canonical point hit at time t is mapped to the
world with the object's motion at the next time and projected with the camera of the next time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fourd_ns.synthetic.camera import PinholeCamera, camera_rays, pixel_centres, project
from fourd_ns.synthetic.scene import Hits, Scene, cast_rays, material_points_at
from fourd_ns.synthetic.shading import shade


@dataclass
class GroundTruth:
    """Per-pixel ground truth of one view at the camera's resolution H x W."""

    depth: Tensor
    """[H, W] camera z of the surface seen through the pixel centre (world units)."""
    distance: Tensor
    """[H, W] distance from the camera centre to that surface (world units)."""
    world: Tensor
    """[H, W, 3] that surface point in world coordinates."""
    flow: Tensor
    """[H, W, 2] forward optical flow (pixels) to the next time step of the next camera; zero without one."""
    scene_flow: Tensor
    """[H, W, 3] world displacement of the material point to the next time step; zero for static objects."""
    dynamic: Tensor
    """[H, W] bool, True where the pixel sees an object whose pose or shape changes during the clip."""


def render_rgb(scene: Scene, camera: PinholeCamera, tau: float, samples_per_side: int = 2) -> Tensor:
    """Linear RGB [H * s, W * s, 3] in [0, 1] sampled s x s times per pixel (s = samples_per_side).

    Average s x s blocks (`area_downsample`) to get the antialiased image.
    """
    uv = pixel_centres(camera.width, camera.height, samples_per_side).reshape(-1, 2)
    origins, dirs = camera_rays(camera, uv)
    hits = cast_rays(scene, origins, dirs, tau)
    n = uv.shape[0]
    albedo = torch.zeros(n, 3)
    specular = torch.zeros(n)
    shininess = torch.ones(n)
    for i, obj in enumerate(scene.objects):
        mask = hits.object == i
        if not mask.any():
            continue
        albedo[mask] = obj.material.texture(obj.shape.surface_uv(hits.canonical[mask]))
        specular[mask] = obj.material.specular
        shininess[mask] = obj.material.shininess
    to_camera = -torch.nn.functional.normalize(dirs, dim=1)
    rgb = shade(albedo, hits.normal, to_camera, specular, shininess, scene.lights, scene.ambient)
    return rgb.reshape(camera.height * samples_per_side, camera.width * samples_per_side, 3)


def area_downsample(image: Tensor, factor: int) -> Tensor:
    """Average factor x factor blocks: [H * f, W * f, C] -> [H, W, C]."""
    h, w, c = image.shape
    return image.reshape(h // factor, factor, w // factor, factor, c).mean(dim=(1, 3))


def _flow_to_next(
    scene: Scene, hits: Hits, uv: Tensor, next_camera: PinholeCamera, next_tau: float
) -> tuple[Tensor, Tensor]:
    """Optical flow [N, 2] and scene flow [N, 3] of the material points in `hits` to (next_camera, next_tau)."""
    world_next = material_points_at(scene, hits, next_tau)
    uv_next, _ = project(next_camera, world_next)
    return uv_next - uv, world_next - hits.world


def ground_truth(
    scene: Scene,
    camera: PinholeCamera,
    tau: float,
    next_camera: PinholeCamera | None = None,
    next_tau: float | None = None,
) -> GroundTruth:
    """Ground truth through the pixel centres of `camera` at time tau.

    Flow and scene flow point to (next_camera, next_tau); pass neither for the last frame of a
    clip, which gets zero flow and zero scene flow.
    """
    h, w = camera.height, camera.width
    uv = pixel_centres(w, h).reshape(-1, 2)
    origins, dirs = camera_rays(camera, uv)
    hits = cast_rays(scene, origins, dirs, tau)
    if next_camera is None:
        flow, scene_flow = torch.zeros(h * w, 2), torch.zeros(h * w, 3)
    else:
        flow, scene_flow = _flow_to_next(scene, hits, uv, next_camera, next_tau)
    dynamic_ids = torch.tensor([i for i, obj in enumerate(scene.objects) if obj.motion.dynamic], dtype=torch.int64)
    return GroundTruth(
        depth=hits.depth.reshape(h, w),
        distance=(hits.depth * dirs.norm(dim=1)).reshape(h, w),
        world=hits.world.reshape(h, w, 3),
        flow=flow.reshape(h, w, 2),
        scene_flow=scene_flow.reshape(h, w, 3),
        dynamic=torch.isin(hits.object, dynamic_ids).reshape(h, w),
    )
