"""Actor tracks (annotated 3D boxes over time) in the dataparser's output world.

Field names follow neurad-studio's ``trajectories`` (poses box -> world, dims as w, l, h, stationary, deformable)
so code written against that layout maps over directly. Box frame: origin at the box centre, +x along the actor's
length (its heading), +y across its width (to its left), +z up; ``size_wlh`` = (width along box y, length along
box x, height along box z), full side lengths. Dataparsers convert their log's yaw convention into this frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFORMABLE_LABELS = ("Pedestrian", "Pedestrian with Object", "Animals - Other")
"""PandaSet labels of actors that are not rigid (neurad treats pedestrians as deformable)."""


@dataclass
class ActorTrack:
    """One actor seen in K frames of the clip."""

    track_id: str
    """Stable id across frames (PandaSet cuboid uuid)."""
    label: str
    """Class name as in the log (PandaSet: 'Car', 'Pedestrian', ...)."""
    frame_indices: np.ndarray
    """[K] int64 log frame numbers the actor is annotated in, increasing."""
    times: np.ndarray
    """[K] float32 normalised clip time of each annotation."""
    poses: np.ndarray
    """[K, 4, 4] float32 box -> output world."""
    size_wlh: np.ndarray
    """[3] float32 width, length, height in output-world units (the maximum over the track)."""
    stationary: bool
    """True when the log marks the actor as not moving during the clip."""
    deformable: bool
    """True for non-rigid actors (pedestrians)."""

    def __post_init__(self) -> None:
        k = self.frame_indices.shape[0]
        if self.times.shape != (k,) or self.poses.shape != (k, 4, 4) or self.size_wlh.shape != (3,):
            raise ValueError(
                f"ActorTrack {self.track_id}: frame_indices {self.frame_indices.shape}, times {self.times.shape}, "
                f"poses {self.poses.shape}, size_wlh {self.size_wlh.shape} do not describe K annotations"
            )
