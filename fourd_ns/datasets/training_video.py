"""The training video of a multi-view, time-stamped dataset: one training image per distinct time, in time order.

Optical flow (flag4d's guidance) and the initializers (``InitializedPipeline.initializer_inputs``) read the
training split as a video. When several training images share a time (multi-camera captures), the video keeps the
image of the camera that appears at the most times (ties: the lowest camera id, then the first image), so
consecutive frames come from one camera and their flow is motion, not a change of viewpoint. Callers log the camera.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from jaxtyping import Float
from torch import Tensor


@dataclass
class TrainingVideo:
    """The training images read as a video: one per distinct time, sorted by time."""

    dataset_indices: List[int]
    """Index of each frame in the training dataset."""
    times: Float[Tensor, "T"]
    """Frame times (strictly increasing)."""
    camera_id: Optional[int]
    """The camera the frames come from (None when the dataset has no camera ids)."""


def select_training_video(
    times: Sequence[float], camera_ids: Optional[Sequence[int]] = None, single_camera: bool = False
) -> TrainingVideo:
    """Pick one training image per distinct time (module docstring for which) and sort them by time.

    Args:
        times: time of each training image.
        camera_ids: camera id of each training image (``None``: a single camera).
        single_camera: keep only the chosen camera's images, never filling its missing times from other cameras
            (driving logs, whose cameras fire at slightly different times, would otherwise interleave cameras).
    """
    times = [float(t) for t in times]
    if not times:
        raise ValueError("The training split has no images: optical flow needs at least one frame.")
    if camera_ids is None:
        camera_ids = [0] * len(times)
        chosen_camera: Optional[int] = None
    else:
        camera_ids = [int(c) for c in camera_ids]
        times_per_camera = Counter()
        for camera in set(camera_ids):
            times_per_camera[camera] = len({t for t, c in zip(times, camera_ids) if c == camera})
        chosen_camera = min(times_per_camera, key=lambda c: (-times_per_camera[c], c))
    by_time: dict = {}
    for index, (time, camera) in enumerate(zip(times, camera_ids)):
        if single_camera and chosen_camera is not None and camera != chosen_camera:
            continue
        rank = (camera != (chosen_camera if chosen_camera is not None else camera), index)
        if time not in by_time or rank < by_time[time][0]:
            by_time[time] = (rank, index)
    ordered = sorted(by_time)
    return TrainingVideo(
        dataset_indices=[by_time[t][1] for t in ordered],
        times=torch.tensor(ordered, dtype=torch.float32),
        camera_id=chosen_camera,
    )
