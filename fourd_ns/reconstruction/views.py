"""Posed images of one driving log as the per-scene reconstruction methods (g3r, flux4d) consume them.

A `CameraView` is one image with its pinhole camera, capture time, optional LiDAR depth and where it came from in the
log. It is built once from nerfstudio ``Cameras`` (by the scene collection for cross-scene training, by the g3r
pipeline from its datamanager for ``ns-train``), so the reconstruction code never sees nerfstudio's datamanagers and
never opens dataset files.

Conventions are those of nerfstudio and of `fourd_ns.gaussians.rasterize`: ``camera_to_world`` is a nerfstudio
(OpenGL axes) pose, times are normalised clip time in [0, 1], depth is camera z in scene units (0 = no LiDAR return).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio.cameras.cameras import Cameras


@dataclass
class CameraView:
    """One posed image of a log."""

    camera_to_world: Float[Tensor, "3 4"]
    """nerfstudio camera-to-world pose (OpenGL axes)."""
    intrinsics: Float[Tensor, "3 3"]
    """Pinhole intrinsics at the image's resolution."""
    image: Float[Tensor, "H W 3"]
    """RGB in [0, 1]."""
    time: float
    """Normalised clip time of the capture."""
    frame_index: int
    """Log frame number of the capture."""
    camera_id: int = 0
    """Index of the camera in the log's camera list."""
    lidar_depth: Optional[Float[Tensor, "H W"]] = None
    """Camera z of the nearest LiDAR return per pixel (0 = none), in scene units, or None without LiDAR."""
    lidar_sweep: int = -1
    """Index into the log's `LidarSweeps` of the sweep of this view's frame (-1: none loaded)."""

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    def to(self, device: torch.device | str) -> "CameraView":
        return CameraView(
            camera_to_world=self.camera_to_world.to(device),
            intrinsics=self.intrinsics.to(device),
            image=self.image.to(device),
            time=self.time,
            frame_index=self.frame_index,
            camera_id=self.camera_id,
            lidar_depth=None if self.lidar_depth is None else self.lidar_depth.to(device),
            lidar_sweep=self.lidar_sweep,
        )


def views_from_cameras(
    cameras: Cameras,
    images: Sequence[Float[Tensor, "H W C"]],
    frame_indices: Sequence[int],
    camera_ids: Optional[Sequence[int]] = None,
    lidar_depths: Optional[Sequence[Optional[Tensor]]] = None,
    lidar_sweeps: Optional[Sequence[int]] = None,
) -> List[CameraView]:
    """One `CameraView` per camera of ``cameras`` (a flat batch) and its image (alpha, if any, is dropped).

    ``lidar_depths`` are ``[H, W]`` or ``[H, W, 1]`` maps as the driving dataset puts them in its batches.
    """
    count = cameras.shape[0]
    if len(images) != count or len(frame_indices) != count:
        raise ValueError(f"{count} cameras but {len(images)} images and {len(frame_indices)} frame indices")
    intrinsics = cameras.get_intrinsics_matrices()
    times = cameras.times.reshape(-1) if cameras.times is not None else torch.zeros(count)
    views = []
    for i in range(count):
        image = images[i][..., :3].float()
        if image.shape[0] != int(cameras.height[i]) or image.shape[1] != int(cameras.width[i]):
            raise ValueError(
                f"image {i} is {tuple(image.shape[:2])} but its camera is "
                f"{int(cameras.height[i])}x{int(cameras.width[i])} (height x width)"
            )
        depth = None if lidar_depths is None else lidar_depths[i]
        if depth is not None and depth.dim() == 3:
            depth = depth[..., 0]
        views.append(
            CameraView(
                camera_to_world=cameras.camera_to_worlds[i].float(),
                intrinsics=intrinsics[i].float(),
                image=image,
                time=float(times[i]),
                frame_index=int(frame_indices[i]),
                camera_id=0 if camera_ids is None else int(camera_ids[i]),
                lidar_depth=None if depth is None else depth.float(),
                lidar_sweep=-1 if lidar_sweeps is None else int(lidar_sweeps[i]),
            )
        )
    return views


def cameras_from_views(views: Sequence[CameraView]) -> Cameras:
    """The views' cameras as one flat nerfstudio ``Cameras`` batch (pinhole, with times)."""
    if not views:
        raise ValueError("cameras_from_views needs at least one view")
    intrinsics = torch.stack([v.intrinsics for v in views])
    return Cameras(
        camera_to_worlds=torch.stack([v.camera_to_world for v in views]),
        fx=intrinsics[:, 0, 0:1],
        fy=intrinsics[:, 1, 1:2],
        cx=intrinsics[:, 0, 2:3],
        cy=intrinsics[:, 1, 2:3],
        width=torch.tensor([[v.width] for v in views]),
        height=torch.tensor([[v.height] for v in views]),
        times=torch.tensor([[v.time] for v in views]),
    )
