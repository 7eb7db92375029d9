"""Image regions covered by moving actors, and PSNR over them: the "dynamic" scores of driving reconstruction papers.

Flux4D, STORM and EmerNeRF report PSNR over the pixels of moving actors besides the full image, because static
scenery dominates a driving image and hides how well the (harder) moving actors are reconstructed. The dynamic
region of a frame is the union of the image footprints of the 3D boxes of the actors that move during the clip
(`moving_tracks`: not flagged stationary and displaced by more than a threshold).

A box's footprint is computed exactly rather than by rasterising sampled points: the image of a convex solid
through a pinhole is the convex hull of the images of its vertices. When part of the box lies behind the camera
the box is first clipped by the near plane ``z = near`` (camera z, OpenCV axes): the clipped solid is convex, its
vertices are the corners in front of the plane plus the points where the 12 box edges cross it, and the hull of
their projections is the footprint of the visible part (unbounded boxes through the camera give hulls far larger
than the image, which is what the camera sees: the box fills the view on that side). A pixel (row i, column j)
is covered when its centre ``(j + 0.5, i + 0.5)`` lies in the hull or on its border, the pixel convention of
`fourd_ns.sensors.lidar_projection`. Occlusion is not modelled: an actor behind a building still counts, as in the
papers' box-based masks.

Cameras are nerfstudio camera-to-world poses (OpenGL axes: x right, y up, looking along -z) in the output world of
the actor tracks; intrinsics are a 3 × 3 pinhole matrix (``fx, fy`` on the diagonal, ``cx, cy`` in the last
column) of an undistorted image.
"""

from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from fourd_ns.geometry.opencv_projection import project_points_opencv
from fourd_ns.metrics.masked_psnr import masked_squared_error, pooled_psnr
from fourd_ns.sensors.actor_tracks import ActorTrack
from fourd_ns.sensors.lidar_projection import DEFAULT_NEAR, points_to_camera

_CORNER_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
"""[8, 3] signs of the box corners; corner ``4 ix + 2 iy + iz`` has sign ``2 i - 1`` on each axis."""
_BOX_EDGES = np.array([(a, a | bit) for bit in (4, 2, 1) for a in range(8) if not a & bit], dtype=np.int64)
"""[12, 2] corner pairs joined by an edge (they differ in one sign)."""


def moving_tracks(tracks: Sequence[ActorTrack], min_displacement: float) -> List[ActorTrack]:
    """Tracks not flagged ``stationary`` whose box centre moves more than ``min_displacement`` (output-world units)
    between some two of their annotations, in their input order."""
    if not min_displacement >= 0:
        raise ValueError(f"moving_tracks: min_displacement must be >= 0, got {min_displacement}")
    moving = []
    for track in tracks:
        if track.stationary or track.frame_indices.shape[0] < 2:
            continue
        centres = track.poses[:, :3, 3].astype(np.float64)
        largest = float(np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1).max())
        if largest > min_displacement:
            moving.append(track)
    return moving


def box_corners(track: ActorTrack, k: int) -> Float[np.ndarray, "8 3"]:
    """World corners of the box of annotation ``k`` of ``track`` (float64): half sizes (length, width, height) / 2
    along the box x, y, z axes."""
    half = np.array([track.size_wlh[1], track.size_wlh[0], track.size_wlh[2]], dtype=np.float64) / 2.0
    pose = track.poses[k].astype(np.float64)
    return (_CORNER_SIGNS * half) @ pose[:3, :3].T + pose[:3, 3]


def _clip_to_front(camera_corners: Float[np.ndarray, "8 3"], near: float) -> Float[np.ndarray, "V 3"]:
    """Vertices of the box (corners in camera axes, OpenCV) clipped to ``z >= near``: the corners in front and
    the crossings of the edges with the plane; empty when the whole box is behind."""
    z = camera_corners[:, 2]
    front = z > near
    vertices = [camera_corners[front]]
    a, b = _BOX_EDGES[:, 0], _BOX_EDGES[:, 1]
    crossing = front[a] != front[b]
    if crossing.any():
        a, b = a[crossing], b[crossing]
        weight = (near - z[a]) / (z[b] - z[a])
        points = camera_corners[a] + weight[:, None] * (camera_corners[b] - camera_corners[a])
        points[:, 2] = near  # exactly on the plane, whatever the rounding
        vertices.append(points)
    return np.concatenate(vertices)


def convex_hull_2d(points: Float[np.ndarray, "N 2"]) -> Float[np.ndarray, "K 2"]:
    """Convex hull of 2D points (Andrew's monotone chain), counter-clockwise in the points' own axes (positive
    signed area), without repeated or collinear vertices; fewer than 3 vertices when the points span no area.
    Unlike ``scipy.spatial.ConvexHull`` it accepts degenerate input (a box seen exactly edge-on)."""
    unique = np.unique(np.asarray(points, dtype=np.float64), axis=0)  # sorted by x, then y
    if len(unique) < 3:
        return unique

    def cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def chain(ordered: np.ndarray) -> List[np.ndarray]:
        hull: List[np.ndarray] = []
        for point in ordered:
            while len(hull) >= 2 and cross(hull[-2], hull[-1], point) <= 0:
                hull.pop()
            hull.append(point)
        return hull

    lower, upper = chain(unique), chain(unique[::-1])
    return np.array(lower[:-1] + upper[:-1])


def polygon_mask(hull: Float[np.ndarray, "K 2"], width: int, height: int) -> Bool[Tensor, "H W"]:
    """Pixels whose centre ``(j + 0.5, i + 0.5)`` lies inside or on a convex polygon (counter-clockwise vertices in
    pixel coordinates (u, v), as `convex_hull_2d` returns them); all False for fewer than 3 vertices."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    if len(hull) < 3:
        return mask
    low, high = hull.min(axis=0), hull.max(axis=0)
    # Columns / rows whose centre can lie within the polygon's bounding box, clipped to the image.
    j0, j1 = max(0, math.ceil(low[0] - 0.5)), min(width - 1, math.floor(high[0] - 0.5))
    i0, i1 = max(0, math.ceil(low[1] - 0.5)), min(height - 1, math.floor(high[1] - 0.5))
    if j0 > j1 or i0 > i1:
        return mask
    u, v = np.meshgrid(np.arange(j0, j1 + 1) + 0.5, np.arange(i0, i1 + 1) + 0.5)
    inside = np.ones(u.shape, dtype=bool)
    for start, end in zip(hull, np.roll(hull, -1, axis=0)):
        inside &= (end[0] - start[0]) * (v - start[1]) - (end[1] - start[1]) * (u - start[0]) >= 0
    mask[i0 : i1 + 1, j0 : j1 + 1] = torch.from_numpy(inside)
    return mask


def box_mask(
    track: ActorTrack,
    frame_index: int,
    camera_to_world: Float[Tensor, "3 4"],
    intrinsics: Float[Tensor, "3 3"],
    width: int,
    height: int,
    near: float = DEFAULT_NEAR,
) -> Bool[Tensor, "H W"]:
    """Pixels covered by the image of the actor's box in log frame ``frame_index`` (CPU tensor); all False when the
    actor is not annotated in that frame or its box lies behind the camera (see the module docstring)."""
    if width < 1 or height < 1:
        raise ValueError(f"box_mask: image size must be positive, got width {width}, height {height}")
    hits = np.nonzero(track.frame_indices == frame_index)[0]
    if hits.size == 0:
        return torch.zeros(height, width, dtype=torch.bool)
    corners = torch.from_numpy(box_corners(track, int(hits[0])))
    camera_corners = points_to_camera(corners, camera_to_world.detach().to("cpu", torch.float64)).numpy()
    vertices = _clip_to_front(camera_corners, near)
    if len(vertices) == 0:
        return torch.zeros(height, width, dtype=torch.bool)
    k = intrinsics.detach().to("cpu", torch.float64)
    # Vertices are already in camera axes: identity orientation, camera centre at the origin.
    pixels, _ = project_points_opencv(
        vertices, np.eye(3), np.zeros(3), focal=(float(k[0, 0]), float(k[1, 1])),
        principal_point=(float(k[0, 2]), float(k[1, 2])),
    )  # fmt: skip
    return polygon_mask(convex_hull_2d(pixels), width, height)


def dynamic_mask(
    tracks: Sequence[ActorTrack],
    frame_index: int,
    camera_to_world: Float[Tensor, "3 4"],
    intrinsics: Float[Tensor, "3 3"],
    width: int,
    height: int,
    min_displacement: float,
) -> Bool[Tensor, "H W"]:
    """Union of `box_mask` over the `moving_tracks` (``min_displacement`` in output-world units) in log frame
    ``frame_index``."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    for track in moving_tracks(tracks, min_displacement):
        mask |= box_mask(track, frame_index, camera_to_world, intrinsics, width, height)
    return mask


def masked_psnr(
    predicted: Float[Tensor, "H W 3"], truth: Float[Tensor, "H W 3"], mask: Bool[Tensor, "H W"]
) -> float:
    """PSNR (data range 1) over the pixels where ``mask`` is True, all channels averaged in the squared error:
    ``10 log10(1 / mean((predicted - truth)²))``; NaN for an empty mask, inf for a perfect match (one image; pool
    many with `fourd_ns.metrics.masked_psnr`)."""
    region = masked_squared_error(predicted, truth, mask)
    return pooled_psnr(region.squared_error_sum, region.pixels)
