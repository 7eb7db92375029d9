"""Preparing the output folder without risking the input or anything else of the user's.

The output must not be the input, contain it, or lie inside an input image folder (everything computed goes to
the output, never next to the input). A non-empty output is refused unless ``overwrite``; even then only what this
command writes (``OUTPUT_DIRS`` / ``OUTPUT_FILES``) is removed, so a mistyped folder loses nothing else.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fourd_ns.video.errors import VideoProcessingError
from fourd_ns.video.nerfies_writer import DATASET_DIRS, DATASET_FILES
from fourd_ns.video.processing_report import REPORT_NAME

SFM_DIR = "sfm"
OUTPUT_DIRS = (*DATASET_DIRS, SFM_DIR)
OUTPUT_FILES = (*DATASET_FILES, REPORT_NAME)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def prepare_output(output: Path, source: Path, overwrite: bool) -> list[str]:
    """Check ``output`` against ``source`` and empty our own files from it; returns the names of other entries kept."""
    output, source = output.resolve(), source.resolve()
    if _inside(source, output):
        raise VideoProcessingError(f"--output-dir {output} contains the input {source}; choose a folder outside it")
    if source.is_dir() and _inside(output, source):
        raise VideoProcessingError(
            f"--output-dir {output} is inside the input image folder {source}; the input is never written to"
        )
    if output.exists() and not output.is_dir():
        raise VideoProcessingError(f"--output-dir {output} exists and is not a folder")
    kept: list[str] = []
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise VideoProcessingError(
                f"--output-dir {output} exists and is not empty; choose another folder or pass --overwrite (which "
                f"removes only this command's own outputs: {', '.join(OUTPUT_DIRS + OUTPUT_FILES)})"
            )
        for name in OUTPUT_DIRS:
            shutil.rmtree(output / name, ignore_errors=True)
        for name in OUTPUT_FILES:
            (output / name).unlink(missing_ok=True)
        kept = sorted(p.name for p in output.iterdir())
    output.mkdir(parents=True, exist_ok=True)
    return kept
