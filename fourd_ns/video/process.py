"""``process_video``: a handheld video (or image folder) of a dynamic scene → a Nerfies-format dataset.

Stages, each timed in ``processing_report.json``:

1. **frames** — decode and select (``frame_source``, ``frame_selection``), resize to ``long_side``;
2. **masks** — dynamic masks from flow vs. the static scene's two-view geometry (``dynamic_masks``);
3. **poses** — COLMAP SfM with those masks as feature masks (``colmap_poses``), or Flow4R (``flow4r_poses``);
   frames without a pose are dropped; below ``min_registered_share`` the run stops;
4. **write** — the dataset (``nerfies_writer``), scene bounds from the sparse points (``scene_bounds``), the split
   (``frame_split``).

The input is only read. The report is written at the end of every run, also one that fails after the output
folder was prepared, so what was computed up to the failure stays inspectable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from nerfstudio.utils.rich_utils import CONSOLE

from fourd_ns.video.colmap_poses import ColmapOptions, solve_with_colmap
from fourd_ns.video.dynamic_masks import DynamicMaskOptions, compute_dynamic_masks
from fourd_ns.video.errors import VideoProcessingError
from fourd_ns.video.flow4r_poses import Flow4ROptions, solve_with_flow4r
from fourd_ns.video.frame_source import read_frames
from fourd_ns.video.frame_split import SplitName, split_frame_ids
from fourd_ns.video.nerfies_writer import frame_id, write_dataset
from fourd_ns.video.output_folder import SFM_DIR, prepare_output
from fourd_ns.video.processing_report import ProcessingReport
from fourd_ns.video.scene_bounds import scene_normalisation


@dataclass
class ProcessVideoConfig:
    """Turn a handheld video of a dynamic scene into a Nerfies-format dataset for ns-train deform4d / flag4d."""

    data: Path
    """Input video (mp4, mov, avi, mkv, ...) or folder of PNG / JPEG frames; only read, never written to."""
    output_dir: Path
    """Dataset folder to create (must be empty or absent unless --overwrite)."""
    num_frames: Optional[int] = 150
    """Frames to keep, spread evenly over [start, end); all of them when the range has fewer."""
    stride: Optional[int] = None
    """Keep every stride-th frame of [start, end) instead (overrides --num-frames)."""
    start: str = "0"
    """First frame: a frame index ('120') or a time in seconds ('4.5s')."""
    end: Optional[str] = None
    """End of the range, excluded: a frame index or a time in seconds; default: the end of the input."""
    long_side: Optional[int] = 960
    """Resize frames so their long side is at most this (pixels; never enlarged); None keeps the input size.
    Sides are rounded to even numbers so rgb/2x is an exact half."""
    poses: Literal["colmap", "flow4r"] = "colmap"
    """Pose source: COLMAP SfM (pycolmap), or the anchored Flow4R reconstruction (needs --weights)."""
    weights: Optional[str] = None
    """Trained Flow4R checkpoint for --poses flow4r (folder of save_pretrained, hub id, or .pth)."""
    split: SplitName = "interp"
    """interp: train ids[::4], hold out ids[2::4] (nerfies-data's interp split); holdout: hold out every
    --holdout-every-th frame, train on the rest."""
    holdout_every: int = 8
    """Held-out spacing of --split holdout."""
    min_frames: int = 8
    """Stop when fewer frames are selected than this."""
    min_registered_share: float = 0.6
    """Stop when the pose source registers a smaller share of the selected frames."""
    overwrite: bool = False
    """Allow a non-empty --output-dir; only this command's own outputs in it are replaced."""
    masks: DynamicMaskOptions = field(default_factory=DynamicMaskOptions)
    """Dynamic masks (moving regions kept out of SfM and marked in resized_mask/)."""
    colmap: ColmapOptions = field(default_factory=ColmapOptions)
    """COLMAP settings of --poses colmap."""
    flow4r: Flow4ROptions = field(default_factory=Flow4ROptions)
    """Flow4R settings of --poses flow4r."""
    progress: bool = True
    """Show progress bars."""


def _log(message: str) -> None:
    CONSOLE.log(message)


def _settings(config: ProcessVideoConfig) -> dict:
    return {key: (str(value) if isinstance(value, Path) else value) for key, value in dataclasses.asdict(config).items()}


def process_video(config: ProcessVideoConfig) -> ProcessingReport:
    """Run every stage (module docstring); returns the report, raises :class:`VideoProcessingError` on bad input."""
    if config.poses == "flow4r" and not config.weights:
        raise VideoProcessingError("--poses flow4r needs --weights CKPT (a trained Flow4R checkpoint)")
    if not 0.0 <= config.min_registered_share <= 1.0:
        raise VideoProcessingError(f"--min-registered-share must be in [0, 1], got {config.min_registered_share}")
    if not Path(config.data).exists():
        raise VideoProcessingError(f"Input {config.data} does not exist")
    kept = prepare_output(config.output_dir, config.data, config.overwrite)
    output = Path(config.output_dir)
    report = ProcessingReport(input=str(config.data), output=str(output), poses=config.poses, settings=_settings(config))
    if kept:
        report.notes.append(f"kept entries of the output folder that this command does not write: {', '.join(kept)}")
    try:
        _run(config, output, report)
        report.status = "ok"
    except VideoProcessingError as error:
        report.status, report.error = "failed", str(error)
        raise
    finally:
        report.write(output)
    return report


def _run(config: ProcessVideoConfig, output: Path, report: ProcessingReport) -> None:
    with report.stage("frames"):
        frames = read_frames(config.data, start=config.start, end=config.end, stride=config.stride,
                             num_frames=config.num_frames, long_side=config.long_side, min_frames=config.min_frames,
                             progress=config.progress, log=_log)  # fmt: skip
    report.source_frames, report.frames_in = frames.source_frame_count, len(frames)
    ids = [frame_id(i) for i in frames.source_indices]
    _log(f"{len(frames)} frames at {frames.size[0]}x{frames.size[1]} (input {frames.source_size[0]}x"
         f"{frames.source_size[1]})")  # fmt: skip

    with report.stage("masks"):
        masks = compute_dynamic_masks(frames.images, config.masks, progress=config.progress)
    static = masks.static_uint8() if config.masks.enabled else None
    report.masked_pixel_share = masks.masked_share
    report.mask_frames_without_model = int((~masks.fitted).sum()) if config.masks.enabled else 0
    report.mask_homography_share = masks.homography_share
    if config.masks.enabled:
        _log(f"Dynamic masks: {100 * masks.masked_share:.1f} % of pixels masked on average")

    with report.stage("poses"):
        if config.poses == "colmap":
            solution = solve_with_colmap(frames.images, ids, static, output / SFM_DIR, config.colmap, log=_log)
        else:
            solution = solve_with_flow4r(frames.images, static, config.weights, config.flow4r, log=_log)
    report.notes.extend(solution.notes)
    report.frames_registered = solution.num_registered
    report.registered_share = solution.num_registered / len(frames)
    report.dropped_frames = [i for i, ok in zip(ids, solution.registered) if not ok]
    report.mean_reprojection_error_px = solution.mean_reprojection_error
    report.camera = solution.camera.as_dict()
    report.num_points = len(solution.points)
    _log(f"Poses ({config.poses}): {solution.num_registered} of {len(frames)} frames registered"
         + (f", mean reprojection error {solution.mean_reprojection_error:.3f} px"
            if solution.mean_reprojection_error is not None else ""))  # fmt: skip
    if report.registered_share < config.min_registered_share or solution.num_registered < 2:
        hint = ("try a lower --stride or more --num-frames (more overlap between frames), a shorter range of "
                "--start/--end, checking that the masks do not cover most of the frame (--masks.sampson-threshold), "
                "or --poses flow4r --weights CKPT" if config.poses == "colmap" else "try another checkpoint")
        detail = "; ".join(solution.notes)
        raise VideoProcessingError(
            f"{config.data}: {config.poses} registered {solution.num_registered} of {len(frames)} selected frames "
            f"({100 * report.registered_share:.0f} %), below --min-registered-share {config.min_registered_share:g}"
            f"{' (' + detail + ')' if detail else ''}; {hint}. Details: {output / 'processing_report.json'}"
        )

    with report.stage("write"):
        normalisation = scene_normalisation(solution)
        registered_ids = [i for i, ok in zip(ids, solution.registered) if ok]
        train_ids, val_ids = split_frame_ids(registered_ids, config.split, config.holdout_every)
        write_dataset(output, frames.images, static, ids, solution, normalisation, train_ids, val_ids)
    report.train_ids, report.val_ids = train_ids, val_ids
    _log(f"[green]Wrote[/green] {len(registered_ids)} frames ({len(train_ids)} train, {len(val_ids)} held out) and "
         f"{len(solution.points)} points to {output}; train with: ns-train deform4d --data {output}")
