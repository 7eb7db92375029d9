"""Per-frame past/future motion embeddings of a video, the input of FLAG-4D's Temporal Fusion Encoder.

FLAG-4D (§ Global Motion Network) concatenates, for frame t, the embedding of the motion t−1 → t and of t → t+1.
Both are stored here on frame t's pixel grid so that a Gaussian projected into frame t samples both at one place:

- ``future[t]`` / ``flow_forward[t]`` come from the pair (image1 = frame t, image2 = frame t+1);
- ``past[t]`` / ``flow_backward[t]`` come from the pair (image1 = frame t, image2 = frame t−1), i.e. the motion
  between t−1 and t seen from frame t. Its flow points to where each pixel of frame t was at t−1, so for a rigid
  translation ``flow_backward[t] ≈ −flow_forward[t−1]``.

Boundary frames have no neighbour on one side: ``past[0]``, ``flow_backward[0]``, ``future[T−1]`` and
``flow_forward[T−1]`` are zeros (``has_past`` / ``has_future`` say which entries are real). Zeros rather than the
reversed one-sided pair because a reversed pair would claim motion that was never observed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from fourd_ns.flow.backend import FlowBackend, embedding_size
from fourd_ns.progress import progress_bar

Frames = Union[Tensor, np.ndarray]
"""A time-ordered ``[T, H, W, 3]`` RGB video, float in [0, 1] or uint8."""


@dataclass
class FlowEmbeddings:
    """Motion embeddings and flows of every frame of a video (see the module docstring for the conventions)."""

    past: Float[Tensor, "T C h w"]
    """Embedding of the motion between frame t−1 and t, on frame t's grid (zeros for t = 0)."""
    future: Float[Tensor, "T C h w"]
    """Embedding of the motion between frame t and t+1, on frame t's grid (zeros for t = T−1)."""
    flow_backward: Float[Tensor, "T 2 H W"]
    """Flow t → t−1 in pixels (x, y) at full resolution (zeros for t = 0)."""
    flow_forward: Float[Tensor, "T 2 H W"]
    """Flow t → t+1 in pixels (x, y) at full resolution (zeros for t = T−1)."""
    times: Float[Tensor, "T"]
    """Frame times, strictly increasing (nerfstudio's [0, 1] convention)."""
    stride: int
    """Embedding cell size in pixels: h = ceil(H / stride), w = ceil(W / stride)."""

    @property
    def num_frames(self) -> int:
        return self.times.shape[0]

    @property
    def has_past(self) -> Tensor:
        """[T] bool: whether ``past[t]`` / ``flow_backward[t]`` hold a computed pair (False only for t = 0)."""
        mask = torch.ones(self.num_frames, dtype=torch.bool)
        mask[0] = False
        return mask

    @property
    def has_future(self) -> Tensor:
        """[T] bool: whether ``future[t]`` / ``flow_forward[t]`` hold a computed pair (False only for t = T−1)."""
        mask = torch.ones(self.num_frames, dtype=torch.bool)
        mask[-1] = False
        return mask

    def nearest(self, time: float) -> int:
        """Index of the frame at or nearest to ``time`` (ties go to the earlier frame), e.g. for a test view whose
        time lies between training frames."""
        return int(torch.argmin((self.times.double() - float(time)).abs()).item())


def frames_to_uint8(frames: Frames) -> Tensor:
    """``[T, H, W, 3]`` float in [0, 1] or uint8 → uint8 tensor on the CPU (the common input of all backends)."""
    frames = torch.as_tensor(frames).detach().cpu()
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"Expected frames of shape [T, H, W, 3], got {tuple(frames.shape)}.")
    if frames.dtype == torch.uint8:
        return frames.contiguous()
    if not frames.is_floating_point():
        raise ValueError(f"Frames must be uint8 or float in [0, 1], got dtype {frames.dtype}.")
    return (frames.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).contiguous()


def check_times(times: Union[Tensor, np.ndarray, list], num_frames: int) -> Tensor:
    """Times as a float64 ``[T]`` tensor; the pairs (t, t±1) only mean 'neighbouring in time' if they increase."""
    times = torch.as_tensor(times, dtype=torch.float64).flatten()
    if times.shape[0] != num_frames:
        raise ValueError(f"Got {times.shape[0]} times for {num_frames} frames.")
    if num_frames > 1 and not bool((times[1:] > times[:-1]).all()):
        raise ValueError("Frame times must be strictly increasing: sort the frames by time before computing flow.")
    return times


def compute_flow_embeddings(frames: Frames, times, backend: FlowBackend) -> FlowEmbeddings:
    """Run ``backend`` on every forward (t, t+1) and backward (t, t−1) pair, with a progress bar over pairs."""
    video = frames_to_uint8(frames)
    num_frames, height, width, _ = video.shape
    times = check_times(times, num_frames)
    h, w = embedding_size(height, width, backend.stride)
    past = torch.zeros(num_frames, backend.channels, h, w)
    future = torch.zeros_like(past)
    flow_backward = torch.zeros(num_frames, 2, height, width)
    flow_forward = torch.zeros_like(flow_backward)

    pairs = [(t, t + 1) for t in range(num_frames - 1)] + [(t, t - 1) for t in range(1, num_frames)]
    with progress_bar(f"Optical flow ({backend.name})") as progress:
        task = progress.add_task("pairs", total=len(pairs))
        for source, target in pairs:
            result = backend.compute_pair(video[source], video[target])
            if target > source:
                future[source], flow_forward[source] = result.embedding, result.flow
            else:
                past[source], flow_backward[source] = result.embedding, result.flow
            progress.advance(task)
    return FlowEmbeddings(
        past=past,
        future=future,
        flow_backward=flow_backward,
        flow_forward=flow_forward,
        times=times.float(),
        stride=backend.stride,
    )
