"""``fourd-render-sweep``: render a trained 4D model from one camera while time goes from 0 to 1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

from nerfstudio.utils.eval_utils import eval_setup
from nerfstudio.utils.rich_utils import CONSOLE


@dataclass
class RenderTimeSweep:
    """Render a fixed camera of the dataset at evenly spaced times in [0, 1] and write a video (colour | depth)."""

    load_config: Path
    """config.yml of a trained run (as for ns-eval / ns-render)."""
    output: Path = Path("time_sweep.mp4")
    """Output video (.mp4)."""
    split: Literal["train", "test"] = "test"
    """Take the camera from the training or the test split."""
    camera_index: int = 0
    """Which camera of that split."""
    num_frames: int = 48
    """Number of time steps between 0 and 1."""
    fps: int = 12
    """Frames per second of the video."""
    with_depth: bool = True
    """Put the rendered depth beside the colour."""

    def main(self) -> Path:
        from fourd_ns.time_sweep import render_time_sweep, write_video

        _, pipeline, _, _ = eval_setup(self.load_config, test_mode="test")
        dataset = pipeline.datamanager.train_dataset if self.split == "train" else pipeline.datamanager.eval_dataset
        if not 0 <= self.camera_index < len(dataset):
            raise ValueError(f"--camera-index {self.camera_index} is outside the {len(dataset)} {self.split} cameras")
        camera = dataset.cameras[self.camera_index : self.camera_index + 1]
        times = np.linspace(0.0, 1.0, self.num_frames)
        CONSOLE.print(f"Rendering {self.num_frames} times from {self.split} camera {self.camera_index}")
        frames = render_time_sweep(pipeline.model, camera, times, with_depth=self.with_depth)
        written = write_video(frames, self.output, fps=self.fps)
        CONSOLE.print(f"[bold green]Wrote {written}")
        return written


def entrypoint() -> None:
    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(RenderTimeSweep).main()


if __name__ == "__main__":
    entrypoint()
