"""Camera images and per-pixel ground truth of a driving scene, rendered tile by tile with culling.

Each image is cut into square tiles; a tile is a `PinholeCamera` with the same pose and focal length whose
principal point is shifted by the tile's corner, so its rays are exactly the full camera's rays through those
pixels. Every tile is rendered by the engine's `render_rgb` (supersampled, shaded) and cast by `cast_rays` on the
sub-scene of objects its frustum can reach (`culling`); results equal those of the whole scene.

Ground truth uses one ray through each pixel centre (never averaged across edges):
depth = camera z of the hit (inf where the pixel sees the sky), instance = the hit object's instance id
(`street.SKY_INSTANCE` on the sky), scene flow = world displacement of the hit material point from the view's
time to `next_time` (zeros without one; zero on static scenery and the sky).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from fourd_ns.synthetic.camera import PinholeCamera, camera_rays, pixel_centres
from fourd_ns.synthetic.driving.culling import cast_rays_culled, sub_scene, visible_objects
from fourd_ns.synthetic.driving.street import SKY_INSTANCE, DrivingScene
from fourd_ns.synthetic.driving.surface_truth import instance_ids, material_positions
from fourd_ns.synthetic.render import area_downsample, render_rgb

TILE_SIZE = 64
"""Tile side in pixels: small tiles cull more objects, large ones pay less per-call overhead."""


@dataclass
class ViewTruth:
    """Per-pixel ground truth of one H x W view."""

    depth: np.ndarray
    """[H, W] float32 camera z-depth (m); inf on the sky."""
    instance: np.ndarray
    """[H, W] uint16 instance id (0 static scenery, SKY_INSTANCE sky, else the actor's id)."""
    scene_flow: np.ndarray
    """[H, W, 3] float32 world displacement (m) of the seen material point to the next time."""


def tiles(camera: PinholeCamera, tile: int = TILE_SIZE) -> Iterator[tuple[int, int, PinholeCamera]]:
    """(x0, y0, tile camera) covering the image row by row; edge tiles are smaller."""
    cx, cy = camera.principal_point
    for y0 in range(0, camera.height, tile):
        for x0 in range(0, camera.width, tile):
            width, height = min(tile, camera.width - x0), min(tile, camera.height - y0)
            principal_point = (cx - x0, cy - y0)
            yield x0, y0, PinholeCamera(camera.rotation, camera.position, camera.focal, principal_point, width, height)


def _corner_rays(camera: PinholeCamera) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through the four image corners: their cone contains every ray of the image (a convex pyramid)."""
    w, h = camera.width, camera.height
    corners = torch.tensor([[0.0, 0.0], [w, 0.0], [0.0, h], [w, h]])
    return camera_rays(camera, corners)


def render_view(driving: DrivingScene, camera: PinholeCamera, t: float, supersample: int = 2, tile: int = TILE_SIZE):
    """uint8 RGB [H, W, 3] of `camera` at time t (s): s x s samples per pixel (s = supersample), area-averaged."""
    scene = driving.scene
    spheres = driving.bounds.at(t)
    image = np.zeros((camera.height, camera.width, 3), np.uint8)
    for x0, y0, part in tiles(camera, tile):
        _, dirs = _corner_rays(part)
        keep = visible_objects(spheres, camera.position, dirs)
        rgb = area_downsample(render_rgb(sub_scene(scene, keep), part, t, supersample), supersample)
        image[y0 : y0 + part.height, x0 : x0 + part.width] = (rgb.clamp(0.0, 1.0).numpy() * 255.0).round()
    return image


def view_truth(
    driving: DrivingScene, camera: PinholeCamera, t: float, next_time: float | None, tile: int = TILE_SIZE
) -> ViewTruth:
    """Depth, instance ids and scene flow to `next_time` (s) through the pixel centres of `camera` at time t (s)."""
    scene = driving.scene
    spheres = driving.bounds.at(t)
    depth = np.zeros((camera.height, camera.width), np.float32)
    instance = np.zeros((camera.height, camera.width), np.uint16)
    flow = np.zeros((camera.height, camera.width, 3), np.float32)
    for x0, y0, part in tiles(camera, tile):
        origins, dirs = camera_rays(part, pixel_centres(part.width, part.height).reshape(-1, 2))
        hits = cast_rays_culled(scene, origins, dirs, t, spheres)
        window = (slice(y0, y0 + part.height), slice(x0, x0 + part.width))
        sky = (hits.object == driving.sky_object) | (hits.object < 0)
        depth[window] = torch.where(sky, math.inf, hits.depth).reshape(part.height, part.width).numpy()
        instance[window] = instance_ids(hits, driving.object_instance, SKY_INSTANCE).reshape(part.height, part.width)
        if next_time is not None:
            moved = material_positions(scene, hits, next_time) - material_positions(scene, hits, t)
            flow[window] = moved.reshape(part.height, part.width, 3)
    return ViewTruth(depth=depth, instance=instance, scene_flow=flow)
