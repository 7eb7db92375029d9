"""The one structure a driving dataparser hands to pipelines and models through ``DataparserOutputs.metadata``.

`pandaset-data` fills it from real PandaSet logs and from synthetic driving logs written in the same layout, so
models never see which one they got. Keys of ``DataparserOutputs.metadata`` (a plain dict, as nerfstudio expects):

==========================  ===========================================================================================
``points3D_xyz``            [N, 3] float32 seed points (LiDAR of the training frames), nerfstudio's key
``points3D_rgb``            [N, 3] uint8 their colours from projecting into the training cameras, nerfstudio's key
``driving``                 a `DrivingMetadata` (below): LiDAR sweeps, actor tracks, clip timing, sensor names
``camera_ids``              [I] int64 index into ``DrivingMetadata.camera_names`` of each image of this split
``frame_indices``           [I] int64 log frame number of each image of this split
``lidar_sweep_index``       [I] int64 index into ``DrivingMetadata.lidar`` of the sweep of each image's frame (-1
                            when that frame has no sweep loaded)
``time_offset``             float, seconds of normalised time 0 (as neurad-studio's ``time_offset``)
``time_axis``               a ``fourd_ns.dataparsers.time_axis.TimeAxis``: frame count, one frame step in normalised
                            time, ``duration_seconds`` = ``DrivingMetadata.time_span``
==========================  ===========================================================================================

World convention: nerfstudio world (camera-to-world in OpenGL axes); z up as in the log; the origin and heading are
those of the clip's reference pose (documented by the dataparser); lengths are metres × ``1 / metres_per_unit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from fourd_ns.sensors.actor_tracks import ActorTrack
from fourd_ns.sensors.lidar_sweeps import LidarSweeps

METADATA_KEY = "driving"


@dataclass
class DrivingMetadata:
    """Everything beyond images and cameras that a driving log provides for one clip."""

    camera_names: Tuple[str, ...]
    """Camera folder names, e.g. ('front_camera', 'front_left_camera'); ``camera_ids`` index this."""
    lidar: Optional[LidarSweeps]
    """Sweeps of every frame of the clip (training and evaluation frames: evaluation reads them for depth)."""
    actors: List[ActorTrack] = field(default_factory=list)
    """Annotated actors of the clip (empty when cuboids are not loaded)."""
    time_offset: float = 0.0
    """Unix seconds of normalised time 0."""
    time_span: float = 0.0
    """Seconds between normalised time 0 and 1."""
    metres_per_unit: float = 1.0
    """Length of one output-world unit in metres."""
    world_from_log: np.ndarray = field(default_factory=lambda: np.eye(4, dtype=np.float64))
    """[4, 4] rigid log world -> output world (before scaling): output = (world_from_log @ p_log) / metres_per_unit."""
    source: str = ""
    """Log folder (for messages and cache keys)."""
    synthetic: bool = False
    """True when the log was written by fourd_ns's synthetic driving generator (it has ground-truth extras)."""

    def actors_at(self, frame_index: int) -> List[Tuple[ActorTrack, int]]:
        """(track, k) for each actor annotated in log frame ``frame_index``, k indexing its per-frame arrays."""
        found = []
        for track in self.actors:
            hits = np.nonzero(track.frame_indices == frame_index)[0]
            if hits.size:
                found.append((track, int(hits[0])))
        return found


def get_driving_metadata(metadata: Dict) -> Optional[DrivingMetadata]:
    """The `DrivingMetadata` in a dataparser metadata dict, or None for non-driving datasets."""
    value = metadata.get(METADATA_KEY)
    return value if isinstance(value, DrivingMetadata) else None
