"""Colours of world points looked up in posed images: the initial colour of LiDAR seeds and far-field Gaussians.

A point takes the colour of the pixel it projects into (`fourd_ns.sensors.lidar_projection.project_points`, the one
pinhole projection of the package) in the first image that sees it, in the order given; points that no image sees
keep a grey and are reported unseen. There is no occlusion test, as for `pandaset-data`'s seed colours: a LiDAR
point hidden from the camera by something nearer takes that thing's colour, which the reconstruction then fixes.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from fourd_ns.sensors.lidar_projection import pinhole_parameters, project_points
from nerfstudio.cameras.cameras import Cameras

UNSEEN_GREY = 0.5


def colour_points(
    points: Float[Tensor, "P 3"],
    cameras: Cameras,
    images: Sequence[Float[Tensor, "H W 3"]],
    unseen_colour: float = UNSEEN_GREY,
) -> Tuple[Float[Tensor, "P 3"], Bool[Tensor, "P"]]:
    """(colours [P, 3], seen [P]) of world ``points`` from ``images`` (float RGB in [0, 1], one per camera of the
    flat ``cameras``, each of its camera's size); the first image that sees a point gives its colour."""
    cameras = cameras.flatten()
    if len(images) != cameras.shape[0]:
        raise ValueError(f"colour_points got {cameras.shape[0]} cameras but {len(images)} images")
    colours = torch.full((points.shape[0], 3), unseen_colour, dtype=points.dtype, device=points.device)
    seen = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    for index, image in enumerate(images):
        camera_to_world, fx, fy, cx, cy, width, height = pinhole_parameters(cameras[index], "colour_points")
        if tuple(image.shape) != (height, width, 3):
            raise ValueError(
                f"colour_points: image {index} has shape {tuple(image.shape)} but its camera is {width}x{height}"
            )
        unseen = torch.nonzero(~seen).squeeze(1)
        if unseen.numel() == 0:
            break
        hits, pixel_ids, _ = project_points(points[unseen], camera_to_world.to(points), fx, fy, cx, cy, width, height)
        found = unseen[hits]
        colours[found] = image.reshape(-1, 3)[pixel_ids.to(image.device)].to(colours)
        seen[found] = True
    return colours, seen
