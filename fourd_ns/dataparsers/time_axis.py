"""`TimeAxis`: how a dataset's frames sit on nerfstudio's normalised time axis [0, 1], with one meaning per field.

Every dataparser that gives cameras times fills one under ``DataparserOutputs.metadata[TIME_AXIS_KEY]`` and models
read it with :func:`get_time_axis`, never from loose metadata keys. It replaces the key ``time_span``, which held the
largest time id in ``nerfies-data`` (so ``1 / time_span`` was one frame) but seconds in ``pandaset-data`` (where the
same formula gave about ten frames of a 10 Hz log): flag4d's IDN window and rigidity neighbour were silently ten
frames apart on driving logs.

- ``nerfies-data``: normalised time = time id / largest time id, so ``frame_step`` = 1 / largest time id and
  ``num_frames`` = largest time id + 1; the capture has no clock (``duration_seconds`` None).
- ``pandaset-data``: normalised time = (Unix seconds - first timestamp) / clip duration, so ``frame_step`` = the
  cameras' mean frame period / clip duration (1 / (frames - 1) when frames are evenly spaced) and
  ``duration_seconds`` = the clip duration (``DrivingMetadata.time_span``, which the driving models keep using).

A one-frame sequence has no second frame; its ``frame_step`` is 1, the whole axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional

TIME_AXIS_KEY = "time_axis"
"""Key of the `TimeAxis` in ``DataparserOutputs.metadata``."""


@dataclass(frozen=True)
class TimeAxis:
    """The frames of a sequence on the normalised time axis [0, 1] (time 0 = first frame, 1 = last frame)."""

    num_frames: int
    """Time steps of the sequence from normalised time 0 to 1, both included (training and evaluation frames)."""
    frame_step: float
    """Normalised time between two consecutive frames (1 for a one-frame sequence)."""
    duration_seconds: Optional[float] = None
    """Seconds between normalised times 0 and 1 when the dataset has a clock (driving logs); None otherwise."""

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"A time axis needs at least one frame, got num_frames={self.num_frames}")
        if not (math.isfinite(self.frame_step) and 0.0 < self.frame_step <= 1.0):
            raise ValueError(f"frame_step must be in (0, 1], got {self.frame_step}")
        if self.duration_seconds is not None and not (
            math.isfinite(self.duration_seconds) and self.duration_seconds >= 0.0
        ):
            raise ValueError(f"duration_seconds must be finite and >= 0 (or None), got {self.duration_seconds}")

    @classmethod
    def evenly_spaced(cls, num_frames: int, duration_seconds: Optional[float] = None) -> "TimeAxis":
        """``num_frames`` frames evenly spaced over [0, 1] (frame k at k / (num_frames - 1))."""
        return cls(num_frames, 1.0 / (num_frames - 1) if num_frames > 1 else 1.0, duration_seconds)


def get_time_axis(metadata: Dict) -> Optional[TimeAxis]:
    """The `TimeAxis` in a dataparser metadata dict, or None when the dataparser gives none (not one of ours)."""
    value = metadata.get(TIME_AXIS_KEY)
    return value if isinstance(value, TimeAxis) else None
