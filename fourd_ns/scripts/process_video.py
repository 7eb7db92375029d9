"""`fourd-process-video`: turn a handheld video of a dynamic scene into a Nerfies-format dataset.

Example: ``fourd-process-video --data clip.mp4 --output-dir data/clip --num-frames 120 --long-side 640``, then
``ns-train deform4d --data data/clip``. Stages and outputs are documented in `fourd_ns.video`.
"""

from __future__ import annotations

import tyro
from rich.console import Console

from fourd_ns.video.errors import VideoProcessingError
from fourd_ns.video.process import ProcessVideoConfig, process_video


def main(config: ProcessVideoConfig):
    return process_video(config)


def entrypoint() -> None:
    """Console-script entry point (`fourd-process-video`)."""
    config = tyro.cli(ProcessVideoConfig, description=__doc__.splitlines()[0])
    try:
        main(config)
    except VideoProcessingError as error:
        Console(stderr=True).print(f"[red]fourd-process-video:[/red] {error}")
        raise SystemExit(2) from error


if __name__ == "__main__":
    entrypoint()
