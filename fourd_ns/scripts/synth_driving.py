"""`fourd-synth-driving`: write seeded synthetic driving logs in PandaSet's layout, with ground truth.

Example: ``fourd-synth-driving --out data/synth_driving --num-scenes 4 --first-seed 0`` writes logs
``data/synth_driving/000`` .. ``003``. The layout is documented in `fourd_ns.synthetic.driving`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

import tyro
from rich.console import Console

from fourd_ns.synthetic.driving import DRIVING_PRESETS, DrivingSceneConfig, generate_driving_scenes

CameraName = Literal["front_camera", "front_left_camera", "front_right_camera"]


@dataclass
class SynthDrivingArgs:
    out: Path
    """Output root: the log of seed s goes to <out>/<s as 3 digits> (created; must be empty unless --overwrite True)."""
    num_scenes: int = 1
    """Number of logs (seeds first_seed, first_seed + 1, ...)."""
    first_seed: int = 0
    """Seed of the first log: the same seed and settings give identical files."""
    preset: Literal["default", "small"] = "default"
    """'default': 24 frames, three 480x270 cameras, 0.4° LiDAR; 'small': 4 frames at 96x54, 2° LiDAR, a short street."""
    num_frames: Optional[int] = None
    """Frames per log (10 Hz); default: the preset's."""
    width: Optional[int] = None
    """Image width; default: the preset's."""
    height: Optional[int] = None
    """Image height; default: the preset's."""
    cameras: Optional[Tuple[CameraName, ...]] = None
    """Cameras to write; default: the preset's (all three front cameras)."""
    supersample: Optional[int] = None
    """RGB samples per pixel side; default: the preset's (2)."""
    lidar_azimuth_resolution: Optional[float] = None
    """Degrees between LiDAR columns (must divide 360); default: the preset's."""
    lidar_sectors: Optional[int] = None
    """Azimuth sectors cast at their own time (must divide the column count); default: the preset's."""
    overwrite: tyro.conf.FlagConversionOff[bool] = False
    """Replace the generator's files in non-empty log folders."""
    num_threads: int = 1
    """Torch intra-op threads while rendering (small tensor ops: more threads are usually slower on shared CPUs)."""

    def config(self) -> DrivingSceneConfig:
        """The preset with this command's overrides."""
        config = DRIVING_PRESETS[self.preset]
        overrides = {
            name: getattr(self, name)
            for name in ("num_frames", "width", "height", "cameras", "supersample")
            if getattr(self, name) is not None
        }
        lidar = {
            field: value
            for field, value in (
                ("azimuth_resolution_deg", self.lidar_azimuth_resolution),
                ("sectors", self.lidar_sectors),
            )
            if value is not None
        }
        return dataclasses.replace(config, lidar=dataclasses.replace(config.lidar, **lidar), **overrides)


def main(args: SynthDrivingArgs) -> list[Path]:
    console = Console()
    start = time.perf_counter()
    config = args.config()
    folders = generate_driving_scenes(
        args.out, args.num_scenes, args.first_seed, config, overwrite=args.overwrite, num_threads=args.num_threads
    )
    console.print(
        f"[green]Wrote[/green] {len(folders)} synthetic driving log(s) (seeds {args.first_seed}.."
        f"{args.first_seed + args.num_scenes - 1}, {config.num_frames} frames, {len(config.cameras)} cameras at "
        f"{config.width}x{config.height}) to {args.out} in {time.perf_counter() - start:.1f} s"
    )
    return folders


def entrypoint() -> None:
    """Console-script entry point (`fourd-synth-driving`)."""
    args = tyro.cli(SynthDrivingArgs, description=__doc__.splitlines()[0])
    try:
        main(args)
    except (FileExistsError, ValueError) as error:
        Console(stderr=True).print(f"[red]fourd-synth-driving:[/red] {error}")
        raise SystemExit(2) from error


if __name__ == "__main__":
    entrypoint()
