"""Frames of a video file or an image folder, selected (``frame_selection``) and resized, as one uint8 array.

Videos are decoded with PyAV (FFmpeg's libraries; a nerfstudio dependency). Decoding runs twice: the first pass
only counts the frames and reads their presentation times (a container's frame count is often missing or off by
one: OpenCV's ``box.mp4`` sample has 456 packets but decodes to 455 frames), the second converts the selected ones,
so memory holds only what the dataset keeps. Phone videos store their orientation as a display rotation; frames are
turned upright the way a player shows them.

An image folder is read in natural order of its file names (``frame_2`` before ``frame_10``), PNG / JPEG only.

Resizing (``long_side``) uses area averaging and never enlarges; both sides are rounded to even numbers so that
``rgb/2x`` is an exact half of ``rgb/1x``. The input is opened read-only and never written to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import av
import cv2
import numpy as np
from jaxtyping import UInt8
from PIL import Image, UnidentifiedImageError

from fourd_ns.progress import progress_bar
from fourd_ns.video.errors import VideoProcessingError
from fourd_ns.video.frame_selection import describe_selection, select_frame_indices

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".m4v", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class VideoFrames:
    """The frames that go into the dataset, in source order."""

    source: Path
    """The video file or image folder they come from."""
    images: UInt8[np.ndarray, "T H W 3"]
    """RGB frames at the dataset's 1x resolution."""
    source_indices: list[int]
    """Index of each frame in the source (decoded frame number, or position in the sorted image folder)."""
    timestamps: Optional[list[float]]
    """Presentation time of each frame in seconds (videos only)."""
    source_frame_count: int
    """Number of frames in the whole source."""
    source_size: tuple[int, int]
    """(W, H) of the source frames (after the display rotation)."""

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) at 1x."""
        return int(self.images.shape[2]), int(self.images.shape[1])

    def __len__(self) -> int:
        return int(self.images.shape[0])


def output_size(width: int, height: int, long_side: Optional[int]) -> tuple[int, int]:
    """(W, H) after scaling the long side to ``long_side`` (never enlarging), both rounded to even numbers."""
    factor = 1.0 if not long_side else min(1.0, long_side / max(width, height))
    even = lambda value: max(2, 2 * int(round(value * factor / 2)))  # noqa: E731
    return even(width), even(height)


def resize_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` [H, W, 3] at ``size`` (W, H); area averaging, unchanged when the size already matches."""
    if (image.shape[1], image.shape[0]) == size:
        return np.ascontiguousarray(image)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _open_video(path: Path) -> "av.container.InputContainer":
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise VideoProcessingError(f"{path} is not a readable video ({type(error).__name__}: {error})") from error
    if not container.streams.video:
        container.close()
        raise VideoProcessingError(f"{path} has no video stream (is it an audio file?)")
    return container


def _upright(frame: "av.VideoFrame") -> np.ndarray:
    """RGB [H, W, 3] turned by the frame's display rotation (degrees counter-clockwise)."""
    image = frame.to_ndarray(format="rgb24")
    quarter_turns = int(round(getattr(frame, "rotation", 0) / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, k=quarter_turns)) if quarter_turns else image


def _frame_times(path: Path, progress: bool) -> list[float]:
    """Presentation time (s) of every decodable frame, in order; decoding errors name the file."""
    container = _open_video(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    expected = stream.frames or None
    times: list[float] = []
    try:
        with progress_bar("Counting video frames", disable=not progress) as bar:
            task = bar.add_task("frames", total=expected)
            for frame in container.decode(stream):
                # Streams without timestamps (rare, raw formats): evenly spaced at the nominal rate.
                fallback = len(times) / float(stream.average_rate or 1)
                times.append(float(frame.time) if frame.time is not None else fallback)
                bar.advance(task)
    except av.FFmpegError as error:
        if not times:
            raise VideoProcessingError(f"{path}: no frame could be decoded ({type(error).__name__}: {error})") from error
        # A truncated file: keep the frames before the damage, as a player would show them.
    finally:
        container.close()
    return times


def _decode_selected(
    path: Path, indices: Sequence[int], size_for: Callable[[int, int], tuple[int, int]], progress: bool
) -> tuple[list[np.ndarray], tuple[int, int]]:
    wanted = set(indices)
    frames: list[np.ndarray] = []
    source_size = (0, 0)
    container = _open_video(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    try:
        with progress_bar("Decoding selected frames", disable=not progress) as bar:
            task = bar.add_task("frames", total=len(indices))
            for index, frame in enumerate(container.decode(stream)):
                if index > indices[-1]:
                    break
                if index in wanted:
                    image = _upright(frame)
                    source_size = (image.shape[1], image.shape[0])
                    frames.append(resize_frame(image, size_for(*source_size)))
                    bar.advance(task)
    except av.FFmpegError:
        pass  # same truncation rule as the counting pass; the count check below reports a mismatch
    finally:
        container.close()
    if len(frames) != len(indices):
        raise VideoProcessingError(
            f"{path}: decoded {len(frames)} of the {len(indices)} selected frames on the second pass; the file may be "
            "damaged. Re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) and try again"
        )
    return frames, source_size


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise VideoProcessingError(f"{path} is not a readable image ({type(error).__name__}: {error})") from error


def read_frames(
    source: Path,
    start: str = "0",
    end: Optional[str] = None,
    stride: Optional[int] = None,
    num_frames: Optional[int] = None,
    long_side: Optional[int] = None,
    min_frames: int = 2,
    progress: bool = True,
    log: Callable[[str], None] = lambda message: None,
) -> VideoFrames:
    """The selected frames of a video file or image folder (see the module docstring), at least ``min_frames``."""
    source = Path(source)
    if not source.exists():
        raise VideoProcessingError(f"Input {source} does not exist")
    if source.is_dir():
        files = sorted((p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=_natural_key)
        if not files:
            raise VideoProcessingError(
                f"Input folder {source} holds no {'/'.join(IMAGE_SUFFIXES)} images; give a video file or a folder of frames"
            )
        timestamps_all = None
        count = len(files)
    else:
        if source.stat().st_size == 0:
            raise VideoProcessingError(f"Input video {source} is empty (0 bytes)")
        if source.suffix.lower() not in VIDEO_SUFFIXES:
            log(f"{source.suffix or 'no suffix'}: not a usual video suffix ({', '.join(VIDEO_SUFFIXES)}); trying anyway")
        timestamps_all = _frame_times(source, progress)
        count = len(timestamps_all)
        if count == 0:
            raise VideoProcessingError(f"Input video {source} holds no frame")

    indices = select_frame_indices(count, timestamps_all, start, end, stride, num_frames)
    if len(indices) < min_frames:
        raise VideoProcessingError(
            f"{source}: {describe_selection(indices)} selected of {count}, fewer than the minimum of {min_frames}; "
            "lower --stride, raise --num-frames or widen --start/--end (a shorter input cannot be reconstructed)"
        )
    log(f"{source}: {count} frames, keeping {describe_selection(indices)}")

    sizes: dict[tuple[int, int], tuple[int, int]] = {}

    def size_for(width: int, height: int) -> tuple[int, int]:
        if (width, height) not in sizes:
            sizes[(width, height)] = output_size(width, height, long_side)
        return sizes[(width, height)]

    if source.is_dir():
        images = []
        with progress_bar("Reading images", disable=not progress) as bar:
            task = bar.add_task("images", total=len(indices))
            for index in indices:
                image = _read_image(files[index])
                source_size = (image.shape[1], image.shape[0])
                images.append(resize_frame(image, size_for(*source_size)))
                bar.advance(task)
        timestamps = None
    else:
        images, source_size = _decode_selected(source, indices, size_for, progress)
        timestamps = [timestamps_all[i] for i in indices]
    if len(sizes) > 1:
        raise VideoProcessingError(
            f"{source}: frames of different sizes ({', '.join(f'{w}x{h}' for w, h in sizes)}); one camera needs one size"
        )
    return VideoFrames(
        source=source,
        images=np.stack(images),
        source_indices=list(indices),
        timestamps=timestamps,
        source_frame_count=count,
        source_size=source_size,
    )
