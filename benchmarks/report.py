"""Write one named section of ``docs/benchmarks.md``, leaving the other sections untouched.

Every benchmark script owns one section, delimited by HTML comments, so scripts can be re-run independently::

    <!-- begin:rasterizer -->
    ...
    <!-- end:rasterizer -->
"""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path

import torch

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEvery table below is written by a script in `benchmarks/`; each section names its command and machine.\n"


def machine_description() -> str:
    """One line naming the machine: CPU model and cores, GPU if any, torch version, git commit."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BENCHMARKS_MD.parent, check=False
        ).stdout.strip()
    except OSError:
        commit = "unknown"
    return (
        f"{cpu}, {torch.get_num_threads()} torch threads, {gpu}; torch {torch.__version__}, "
        f"Python {platform.python_version()}, commit {commit or 'unknown'}"
    )


def write_section(name: str, markdown: str, path: Path = BENCHMARKS_MD) -> Path:
    """Replace (or append) the section ``name`` of the benchmarks file with ``markdown``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else HEADER
    block = f"<!-- begin:{name} -->\n{markdown.strip()}\n<!-- end:{name} -->"
    pattern = re.compile(rf"<!-- begin:{re.escape(name)} -->.*?<!-- end:{re.escape(name)} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
    return path
