"""Make the ffmpeg binary shipped by the imageio-ffmpeg wheel visible to ``ns-render``.

``ns-render`` refuses to run unless ``ffmpeg`` is on PATH (``shutil.which``) and then writes videos through mediapy;
a pip-only environment has no ffmpeg. ``scripts/setup.sh`` links the wheel's binary as ``.venv/bin/ffmpeg``; when
PATH has no ffmpeg, this puts the interpreter's own bin folder (where that link lives) on PATH and points mediapy at
the binary, so ``.venv/bin/ns-render`` works without activating the environment. A system ffmpeg always wins.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def use_bundled_ffmpeg_if_missing() -> None:
    if shutil.which("ffmpeg") is not None:
        return
    interpreter_bin = Path(sys.executable).parent
    if (interpreter_bin / "ffmpeg").exists():
        os.environ["PATH"] = f"{interpreter_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        import imageio_ffmpeg
        import mediapy

        mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):  # no imageio-ffmpeg, or no binary for this platform: leave things as they are
        return
