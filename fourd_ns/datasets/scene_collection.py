"""A collection of driving logs for cross-scene training, and the per-iteration draw of a scene and its views.

Logs are folders in the PandaSet layout (real logs, or synthetic ones from ``fourd-synth-driving``), read through
`fourd_ns.datasets.driving_log_views` on first use and kept in memory (at the reduced resolutions a CPU can train at,
a 24-frame single-camera log is a few MB). A folder that holds log folders (each with ``camera/`` and ``lidar/``)
stands for all of them.

Each draw picks a log and a window of ``sources + targets`` consecutive frames around a random centre (G3R's
"closest 10 source and 10 target frames"), then interleaves them: even positions of the window are sources (they
seed the scene and feed the gradient lifting), odd positions are targets (novel views for the training loss only).

Logs listed in ``evaluation_logs`` are used for training only through the frames that their evaluation never reads:
the even positions of the clip (the training half of the every-other split that ``ns-train g3r`` and the
benchmarks evaluate on); their odd frames are never loaded into a draw, also when a folder given in ``logs`` holds
them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from fourd_ns.dataparsers.pandaset_dataparser import PandaSetDataParserConfig
from fourd_ns.datasets.driving_log_views import DrivingLogViews, interleaved_split, read_log_views
from fourd_ns.reconstruction.views import CameraView


def is_log_folder(path: Path) -> bool:
    return (path / "camera").is_dir() and (path / "lidar").is_dir()


def expand_log_folders(paths: Tuple[Path, ...]) -> List[Path]:
    """Each path that is a log, or the log folders directly inside it (sorted); an error names a path with none."""
    logs: List[Path] = []
    for path in paths:
        path = Path(path)
        if is_log_folder(path):
            logs.append(path)
            continue
        children = sorted(child for child in path.iterdir() if child.is_dir() and is_log_folder(child)) if path.is_dir() else []
        if not children:
            raise FileNotFoundError(
                f"{path} is neither a driving log (a folder with camera/ and lidar/) nor a folder of logs; "
                "generate synthetic logs with `fourd-synth-driving --out DIR` or pass PandaSet sequence folders"
            )
        logs.extend(children)
    return logs


@dataclass
class SceneCollectionConfig:
    """Which logs to train on and how views are drawn from them."""

    logs: Tuple[Path, ...] = ()
    """Log folders (PandaSet layout), or folders of log folders."""
    evaluation_logs: Tuple[Path, ...] = ()
    """Logs that are also evaluated on: only their every-other training frames (even positions) are drawn."""
    parser: PandaSetDataParserConfig = field(
        default_factory=lambda: PandaSetDataParserConfig(downscale_factor=8, load_cuboids=True, max_seed_points=1)
    )
    """How each log is read (cameras, clip range, downscale, LiDAR filters); its split mode is ignored."""
    sources: int = 10
    """Source views per draw (seed the scene, feed the gradient lifting)."""
    targets: int = 10
    """Target (novel) views per draw (training loss only)."""


@dataclass
class SceneDraw:
    log: DrivingLogViews
    sources: List[CameraView]
    targets: List[CameraView]


class SceneCollection:
    """Logs read lazily and kept; `draw` picks a scene and its source / target views."""

    def __init__(self, config: SceneCollectionConfig) -> None:
        self.config = config
        training = expand_log_folders(tuple(config.logs))
        evaluation = expand_log_folders(tuple(config.evaluation_logs))
        # Counted after expansion (an evaluation entry may be a folder of logs), and an evaluation log that a
        # training folder also holds is drawn only once, restricted: its odd frames must never reach a draw.
        evaluated = {path.resolve() for path in evaluation}
        self.paths = [path for path in training if path.resolve() not in evaluated] + evaluation
        self.restricted = set(range(len(self.paths) - len(evaluation), len(self.paths)))
        if not self.paths:
            raise ValueError("The scene collection is empty: pass --data.logs (log folders or folders of logs)")
        self._logs: Dict[int, DrivingLogViews] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def log(self, index: int) -> DrivingLogViews:
        if index not in self._logs:
            self._logs[index] = read_log_views(self.paths[index], self.config.parser)
        return self._logs[index]

    def usable_frames(self, index: int) -> List[int]:
        frames = self.log(index).frames()
        return interleaved_split(frames)[0] if index in self.restricted else frames

    def draw(self, rng: np.random.Generator, index: Optional[int] = None) -> SceneDraw:
        """A log (uniformly, unless ``index``) and a window of interleaved source / target frames in it."""
        index = int(rng.integers(len(self.paths))) if index is None else index
        frames = self.usable_frames(index)
        window = min(self.config.sources + self.config.targets, len(frames))
        if window < 2:
            raise ValueError(f"{self.paths[index]}: {len(frames)} usable frame(s); a draw needs at least 2")
        start = int(rng.integers(len(frames) - window + 1))
        chosen = frames[start : start + window]
        source_frames, target_frames = interleaved_split(chosen)
        source_frames = source_frames[: self.config.sources]
        target_frames = target_frames[: self.config.targets]
        log = self.log(index)
        return SceneDraw(log=log, sources=log.views_of_frames(source_frames), targets=log.views_of_frames(target_frames))
