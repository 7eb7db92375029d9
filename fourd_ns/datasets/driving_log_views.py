"""One driving log (PandaSet layout, real or synthetic) read into `CameraView`s through the `pandaset-data` parser.

Cross-scene training and benchmarks need a log's images, cameras and LiDAR depth without a nerfstudio trainer. This
module runs the same parser and the same dataset class that ``ns-train ... pandaset-data`` uses
(`PandaSetDataParser` with ``split_mode="all"`` and `DepthPriorDataset`, which box-filters images to the parser's
downscale and projects each frame's LiDAR sweep), so a log looks identical to the learned optimizer in training and
in ``ns-train g3r``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

from fourd_ns.dataparsers.pandaset_dataparser import PandaSetDataParserConfig
from fourd_ns.datasets.depth_prior_dataset import DepthPriorDataset
from fourd_ns.reconstruction.views import CameraView, views_from_cameras
from fourd_ns.sensors.driving_metadata import DrivingMetadata, get_driving_metadata


@dataclass
class DrivingLogViews:
    """Every image of a clip (all frames of the chosen cameras), frame-major, with the clip's driving metadata."""

    name: str
    views: List[CameraView]
    driving: DrivingMetadata

    def frames(self) -> List[int]:
        """Log frame numbers of the clip, increasing."""
        return sorted({view.frame_index for view in self.views})

    def views_of_frames(self, frames: Sequence[int]) -> List[CameraView]:
        wanted = set(int(f) for f in frames)
        return [view for view in self.views if view.frame_index in wanted]


def read_log_views(log: Path, parser: PandaSetDataParserConfig) -> DrivingLogViews:
    """All frames of ``log`` as views (``parser.split_mode`` is overridden with "all"; the other settings apply)."""
    config = dataclasses.replace(parser, data=Path(log), split_mode="all")
    outputs = config.setup().get_dataparser_outputs("train")
    driving = get_driving_metadata(outputs.metadata)
    if driving is None:
        raise ValueError(f"{log}: the pandaset-data parser returned no driving metadata")
    dataset = DepthPriorDataset(outputs)
    images, depths = [], []
    for index in range(len(dataset)):
        data = dataset.get_data(index)
        images.append(data["image"])
        depths.append(data.get("lidar_depth"))
    metadata = outputs.metadata
    views = views_from_cameras(
        outputs.cameras,
        images,
        frame_indices=metadata["frame_indices"].tolist(),
        camera_ids=metadata["camera_ids"].tolist(),
        lidar_depths=depths if all(d is not None for d in depths) else None,
        lidar_sweeps=metadata["lidar_sweep_index"].tolist(),
    )
    return DrivingLogViews(name=Path(log).name, views=views, driving=driving)


def interleaved_split(frames: Sequence[int], offset: int = 0) -> Tuple[List[int], List[int]]:
    """Every-other split: (frames at even positions + offset, the others), the split G3R's protocol evaluates."""
    frames = list(frames)
    first = [f for i, f in enumerate(frames) if (i + offset) % 2 == 0]
    second = [f for i, f in enumerate(frames) if (i + offset) % 2 == 1]
    return first, second
