"""``processing_report.json``: what ``fourd-process-video`` did, written even when it stops with an error.

It records frames in (selected) and registered, the ids of dropped frames, COLMAP's mean reprojection error, the
mean share of masked pixels, the shared camera, the number of points, seconds per stage and the settings, so a run
can be judged (and a failed one diagnosed) without re-running it. Stage times are wall-clock seconds of this
process on whatever else the machine was doing.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

REPORT_NAME = "processing_report.json"


@dataclass
class ProcessingReport:
    input: str
    output: str
    poses: str
    status: str = "running"
    """'ok', or 'failed' with ``error`` set."""
    error: Optional[str] = None
    source_frames: int = 0
    """Frames in the whole input."""
    frames_in: int = 0
    """Frames selected and handed to the pose source."""
    frames_registered: int = 0
    registered_share: float = 0.0
    dropped_frames: list[str] = field(default_factory=list)
    """Ids of selected frames the pose source gave no pose (not in the dataset)."""
    mean_reprojection_error_px: Optional[float] = None
    masked_pixel_share: float = 0.0
    """Mean over the selected frames of the share of pixels marked dynamic."""
    mask_frames_without_model: int = 0
    """Selected frames for which no static-scene model could be fitted (their masks are empty)."""
    mask_homography_share: float = 0.0
    """Share of frame pairs whose static-scene model was the homography (GRIC)."""
    camera: dict[str, Any] = field(default_factory=dict)
    num_points: int = 0
    train_ids: list[str] = field(default_factory=list)
    val_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall-clock seconds per stage."""
    settings: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage into ``seconds[name]`` (also when it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 3)

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / REPORT_NAME
        path.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        return path
