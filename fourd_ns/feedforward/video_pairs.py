"""Unlabeled video pairs: frames of ordinary videos with optical-flow pseudo-labels and no geometry, for training
the Flow3r factored-flow (correspondence) head on footage that has no depth or cameras (Flow3r's "flow-only"
datasets).

A video is a folder of frames (``.png``/``.jpg``/``.jpeg``, in name order) or a video file that imageio's ffmpeg
plugin reads (``.mp4`` …). Pairs are all (i, j) with ``min_gap ≤ j − i ≤ max_gap``, enumerated like
``SequencePairDataset``; frames are scaled and centre-cropped to ``image_size`` exactly as there.

**Pseudo-labels.** The flow backend of ``fourd_ns.flow`` (DIS by default, which needs no weights; RAFT when the
``flow`` config asks for it and its weights exist) runs on the two frames *at the training resolution*, in both
directions. A pixel's ``flow_target`` p + f is kept (``flow_valid``) where it lands inside the other image and
passes the forward–backward consistency check of Sundaram et al. (2010) with their thresholds for estimated flow
(``pair_dataset.forward_backward_consistent``: |f + b(p + f)|² < 0.01 (|f|² + |b|²) + 0.5 px²). Estimated flow is unreliable exactly where that check fails —
occlusions, disocclusions, textureless or fast-moving regions — so those pixels get no supervision instead of a
wrong one. A small ``max_gap`` (default 4) keeps most pixels consistent; large gaps mostly produce masked pixels.

**No geometry.** ``valid``, ``motion_valid`` are all False and the point maps are zeros, so every 3D term of the
Flow4R loss is masked. The pairs still need intrinsics, a pose and a dynamic flag to fit ``PairBatch``: they get
placeholders — a centred pinhole with focal length max(H, W) (a ~53° field of view), the identity pose and
``dynamic = True`` (nothing is known about the scene). Losses must not read them for pairs without valid depth
(``flow4r_losses`` applies its 2D terms through the intrinsics only on pairs with geometry).

Nothing is cached on disk: a caller that revisits pairs decides where flow may be stored. Video files are decoded
per item (imageio seeks by time), which is slow for long videos; extract frames to a folder for those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import imageio.v2 as imageio
import numpy as np
import torch
from jaxtyping import Float, UInt8
from torch import Tensor
from torch.utils.data import Dataset

from fourd_ns.feedforward.flow4r_geometry import pixel_grid
from fourd_ns.feedforward.pair_dataset import (
    CropResize,
    FramePairIndex,
    check_image_size,
    forward_backward_consistent,
    inside_image,
)
from fourd_ns.feedforward.pair_types import PairSample, ViewTargets
from fourd_ns.flow.backend import FlowBackend
from fourd_ns.flow.config import FlowEmbeddingConfig, select_flow_backend

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")


class VideoFrames:
    """Random access to the frames of one video: a folder of images or a video file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS)
            if not self._files:
                raise ValueError(f"{self.path}: no frames ({', '.join(FRAME_EXTENSIONS)} files) in this folder")
            self.num_frames = len(self._files)
        elif self.path.is_file():
            self._files = []
            try:
                with imageio.get_reader(self.path, "ffmpeg") as reader:
                    self.num_frames = int(reader.count_frames())
            except (OSError, RuntimeError, ValueError) as error:
                raise ValueError(f"{self.path}: cannot read this video with imageio-ffmpeg ({error})") from error
        else:
            raise FileNotFoundError(f"{self.path} does not exist; give a folder of frames or a video file")

    def __len__(self) -> int:
        return self.num_frames

    def read(self, indices: list[int]) -> list[UInt8[Tensor, "H W 3"]]:
        """The frames at ``indices`` as uint8 RGB."""
        if self._files:
            frames = [np.asarray(imageio.imread(self._files[i])) for i in indices]
        else:
            with imageio.get_reader(self.path, "ffmpeg") as reader:
                frames = [np.asarray(reader.get_data(i)) for i in indices]
        return [torch.from_numpy(np.ascontiguousarray(_rgb(frame, self.path))) for frame in frames]


def _rgb(frame: np.ndarray, path: Path) -> np.ndarray:
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4) or frame.dtype != np.uint8:
        raise ValueError(f"{path}: frames must be 8-bit grey, RGB or RGBA, got {frame.dtype} {list(frame.shape)}")
    return frame[..., :3]


def placeholder_intrinsics(height: int, width: int) -> Float[Tensor, "3 3"]:
    """A centred pinhole with focal length max(H, W), for pairs whose camera is unknown."""
    focal = float(max(height, width))
    return torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def flow_targets(forward: Float[Tensor, "H W 2"], backward: Float[Tensor, "H W 2"]) -> ViewTargets:
    """Targets of the first image of a pair from its forward flow and the pair's backward flow: p + f where it is
    inside the other image and forward–backward consistent; no geometry."""
    height, width = forward.shape[:2]
    target = pixel_grid(height, width, dtype=forward.dtype) + forward
    flow_valid = inside_image(target, height, width) & forward_backward_consistent(forward, backward)
    nothing = torch.zeros(height, width, dtype=torch.bool)
    return ViewTargets(
        points=torch.zeros(height, width, 3),
        points_other=torch.zeros(height, width, 3),
        valid=nothing,
        motion_valid=nothing.clone(),
        flow_target=torch.where(flow_valid[..., None], target, 0.0),
        flow_valid=flow_valid,
    )


class VideoPairDataset(Dataset):
    """Frame pairs of unlabeled videos with forward–backward-checked flow pseudo-labels (module docstring)."""

    def __init__(
        self,
        videos: Iterable[str | Path],
        image_size: tuple[int, int] = (224, 224),
        max_gap: int = 4,
        min_gap: int = 1,
        flow: Optional[FlowEmbeddingConfig] = None,
    ) -> None:
        """``videos``: frame folders or video files; ``image_size``: (H, W), multiples of 16; ``flow``: the flow
        backend (default: DIS with its 'medium' preset; a ``FlowEmbeddingConfig(backend="raft_large", ...)`` uses
        RAFT)."""
        check_image_size(image_size, "VideoPairDataset.image_size")
        self.videos = [VideoFrames(video) for video in videos]
        self.pairs = FramePairIndex([len(v) for v in self.videos], min_gap, max_gap, "VideoPairDataset")
        self.image_size = tuple(image_size)
        self.backend: FlowBackend = select_flow_backend(
            flow if flow is not None else FlowEmbeddingConfig(backend="dis")
        )

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> PairSample:
        video, i, j = self.pairs[index]
        first, second = self.videos[video].read([i, j])
        if first.shape != second.shape:
            raise ValueError(
                f"{self.videos[video].path}: frames {i} and {j} differ in size ({first.shape}, {second.shape})"
            )
        resize = CropResize(tuple(first.shape[:2]), self.image_size)
        image1, image2 = resize.image(first), resize.image(second)
        frames = [(image * 255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous() for image in (image1, image2)]
        forward = self.backend.compute_pair(frames[0], frames[1]).flow.permute(1, 2, 0)
        backward = self.backend.compute_pair(frames[1], frames[0]).flow.permute(1, 2, 0)
        intrinsics = placeholder_intrinsics(*self.image_size)
        return PairSample(
            image1=image1,
            image2=image2,
            intrinsics1=intrinsics,
            intrinsics2=intrinsics.clone(),
            pose_1to2=torch.eye(4),
            dynamic=torch.tensor(True),
            targets1=flow_targets(forward, backward),
            targets2=flow_targets(backward, forward),
        )
