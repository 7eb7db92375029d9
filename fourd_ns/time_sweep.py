"""Render one fixed camera across time: the quickest way to see what a 4D model learned."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.models.base_model import Model
from nerfstudio.utils import colormaps


@torch.no_grad()
def render_time_sweep(model: Model, camera: Cameras, times: Sequence[float], with_depth: bool = True) -> List[np.ndarray]:
    """Frames (uint8 H×W×3, or H×2W×3 with the depth map beside the colour) of ``camera`` at each time."""
    model.eval()
    frames = []
    for time in times:
        cam = camera.to(model.device)
        cam.times = torch.full((cam.shape[0], 1), float(time), device=model.device)
        outputs = model.get_outputs_for_camera(cam)
        image = outputs["rgb"].clamp(0, 1)
        if with_depth and outputs.get("depth") is not None:
            depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
            image = torch.cat([image, depth], dim=1)
        frames.append((image.cpu().numpy() * 255).round().astype(np.uint8))
    return frames


def write_video(frames: Sequence[np.ndarray], path: Path, fps: int = 12) -> Path:
    """Write an MP4 with the ffmpeg binary that the imageio-ffmpeg wheel (a dependency) ships."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    # libx264 needs even sizes; pad by one pixel instead of resampling.
    padded = [np.pad(f, ((0, f.shape[0] % 2), (0, f.shape[1] % 2), (0, 0)), mode="edge") for f in frames]
    imageio.mimwrite(path, padded, fps=fps, macro_block_size=1)
    return path
