"""`fourd-synth`: write a synthetic dynamic scene with ground truth in the Nerfies / NeRF-DS layout.

Example: ``fourd-synth --scene bell --out data/synth/bell --seed 0 --num-frames 48``.
The layout is documented in `fourd_ns.synthetic`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fourd_ns.synthetic import generate_scene


@dataclass
class SynthArgs:
    out: Path
    """Output folder (created; must be empty unless --overwrite True)."""
    scene: Literal["bell", "cup", "press", "random"] = "bell"
    """Scene preset."""
    seed: int = 0
    """Random seed: the same seed and sizes give identical files."""
    num_frames: int = 48
    """Number of time steps (each rendered by the left and the right camera)."""
    width: int = 320
    """Image width at 1x (even)."""
    height: int = 180
    """Image height at 1x (even)."""
    supersample: int = 2
    """RGB samples per pixel side (antialiasing); depth and flow always use pixel centres."""
    overwrite: tyro.conf.FlagConversionOff[bool] = False
    """Replace the generator's files in a non-empty output folder."""
    num_threads: int = 1
    """Torch intra-op threads while rendering (small tensor ops: more threads are usually slower on shared CPUs)."""


def main(args: SynthArgs) -> Path:
    console = Console()
    start = time.perf_counter()
    columns = (
        TextColumn(f"[bold]{args.scene}[/bold] frames"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("render", total=args.num_frames)
        out = generate_scene(
            args.scene,
            args.out,
            seed=args.seed,
            num_frames=args.num_frames,
            width=args.width,
            height=args.height,
            supersample=args.supersample,
            overwrite=args.overwrite,
            num_threads=args.num_threads,
            on_frame=lambda done, total: progress.update(task, completed=done),
        )
    console.print(
        f"[green]Wrote[/green] {args.scene} (seed {args.seed}): {args.num_frames} time steps x 2 cameras, "
        f"{args.width}x{args.height} (1x) + {args.width // 2}x{args.height // 2} (2x) "
        f"to {out} in {time.perf_counter() - start:.1f} s"
    )
    return out


def entrypoint() -> None:
    """Console-script entry point (`fourd-synth`)."""
    args = tyro.cli(SynthArgs, description=__doc__.splitlines()[0])
    try:
        main(args)
    except (FileExistsError, ValueError) as error:
        Console(stderr=True).print(f"[red]fourd-synth:[/red] {error}")
        raise SystemExit(2) from error


if __name__ == "__main__":
    entrypoint()
