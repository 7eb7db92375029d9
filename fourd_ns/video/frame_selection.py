"""Which frames of a video (or image folder) go into the dataset: a range, then a stride or a target count.

``--start`` / ``--end`` take a frame index (``"120"``) or a time in seconds with an ``s`` suffix (``"4.5s"``);
the range is half-open, [start, end). A time selects the first frame whose presentation time is at or after it,
so ``--start 2s --end 4s`` keeps the frames shown during those two seconds. Seconds need frame timestamps, which
only a video has.

Inside the range, ``stride`` keeps every stride-th frame starting at the first one; without a stride, a target
``num_frames`` keeps that many frames spread evenly over the range (first and last included, indices rounded),
or every frame when the range has fewer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from fourd_ns.video.errors import VideoProcessingError

_POSITION = re.compile(r"^\s*(\d+)\s*$|^\s*(\d+(?:\.\d*)?|\.\d+)\s*s\s*$")


@dataclass(frozen=True)
class FramePosition:
    """A place in the source: a frame index, or a time in seconds."""

    index: Optional[int] = None
    seconds: Optional[float] = None

    @classmethod
    def parse(cls, text: str, setting: str) -> "FramePosition":
        """``"120"`` → frame 120; ``"4.5s"`` → 4.5 seconds; anything else is an error naming ``setting``."""
        match = _POSITION.match(text)
        if match is None:
            raise VideoProcessingError(
                f"{setting}={text!r} is neither a frame index (e.g. 120) nor a time in seconds (e.g. 4.5s)"
            )
        if match.group(1) is not None:
            return cls(index=int(match.group(1)))
        return cls(seconds=float(match.group(2)))

    def resolve(self, timestamps: Optional[Sequence[float]], count: int, setting: str) -> int:
        """The frame index this position stands for in a source of ``count`` frames (may equal ``count``)."""
        if self.index is not None:
            return min(self.index, count)
        if timestamps is None:
            raise VideoProcessingError(
                f"{setting} is given in seconds, but an image folder has no frame times; give a frame index instead"
            )
        times = np.asarray(timestamps, dtype=np.float64)
        return int(np.searchsorted(times, self.seconds - 1e-9, side="left"))


def select_frame_indices(
    count: int,
    timestamps: Optional[Sequence[float]],
    start: str = "0",
    end: Optional[str] = None,
    stride: Optional[int] = None,
    num_frames: Optional[int] = None,
) -> list[int]:
    """Indices (into the source's frames, increasing) chosen by the rules of the module docstring."""
    first = FramePosition.parse(start, "--start").resolve(timestamps, count, "--start")
    last = count if end is None else FramePosition.parse(end, "--end").resolve(timestamps, count, "--end")
    if last <= first:
        raise VideoProcessingError(
            f"--start {start} / --end {end} select no frame of a source with {count} frames (frame {first} to "
            f"{last}, end excluded)"
        )
    if stride is not None:
        if stride < 1:
            raise VideoProcessingError(f"--stride must be at least 1, got {stride}")
        return list(range(first, last, stride))
    available = last - first
    if num_frames is None or num_frames >= available:
        return list(range(first, last))
    if num_frames < 1:
        raise VideoProcessingError(f"--num-frames must be at least 1, got {num_frames}")
    if num_frames == 1:
        return [first]
    spaced = first + np.round(np.linspace(0, available - 1, num_frames)).astype(np.int64)
    return sorted(set(int(i) for i in spaced))


def describe_selection(indices: Sequence[int]) -> str:
    """Short human description, e.g. 'frames 0-118 every 2nd (60 frames)'."""
    if not indices:
        return "no frames"
    steps = np.diff(np.asarray(indices))
    if len(steps) and np.all(steps == steps[0]):
        every = f" every {int(steps[0])}" if steps[0] > 1 else ""
    elif len(steps):
        every = f" every ~{math.floor(float(steps.mean()) * 10) / 10:g}"
    else:
        every = ""
    return f"frames {indices[0]}-{indices[-1]}{every} ({len(indices)} frames)"
