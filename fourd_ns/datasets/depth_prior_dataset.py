"""An ``InputDataset`` that also returns the dataset's own depth maps as ``batch["depth_image"]``.

nerfstudio's ``DepthDataset`` would run a monocular depth network (downloading ZoeDepth) when a dataset has no depth
files; FLAG-4D's depth term must instead switch off in that case. This dataset only reads what the dataparser lists
in ``metadata["depth_filenames"]`` (``.npy`` float arrays, or 16-bit images scaled by ``depth_unit_scale_factor``)
and returns nothing extra otherwise.

A depth map whose size differs from its image (e.g. stored at another downscale) is resized with nearest-neighbour
sampling so no depth is invented across object boundaries. Non-finite or non-positive values mean "no depth" and
are stored as 0; the loss masks them out.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F

from nerfstudio.data.datasets.base_dataset import InputDataset


_NPY_HEADER_LOCK = threading.Lock()
"""nerfstudio caches images (and so calls `get_metadata`) from a thread pool; ``np.load`` parses the ``.npy`` header
with ``ast``, and CPython 3.11 (3.11.7 here) can fail concurrent ``ast`` parses with "SystemError: AST constructor
recursion depth mismatch" (seen in a benchmark run). Loading one file at a time costs nothing measurable."""


def read_depth_file(path: Path, unit_scale: float = 1.0) -> np.ndarray:
    """A ``[H, W]`` float32 depth map from ``.npy`` (values as stored) or an image (values × ``unit_scale``)."""
    path = Path(path)
    if path.suffix == ".npy":
        with _NPY_HEADER_LOCK:
            depth = np.load(path)
    else:
        from PIL import Image

        with Image.open(path) as image:
            depth = np.asarray(image).astype(np.float32) * unit_scale
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise ValueError(f"Depth map {path} has shape {depth.shape}; expected [H, W].")
    return depth


class DepthPriorDataset(InputDataset):
    """Images plus, when the dataparser lists depth files, a ``depth_image`` ``[H, W, 1]`` (0 = unknown)."""

    @property
    def has_depth(self) -> bool:
        return "depth_filenames" in self.metadata

    def get_metadata(self, data: Dict) -> Dict:
        if not self.has_depth:
            return {}
        index = data["image_idx"]
        path = self.metadata["depth_filenames"][index]
        unit_scale = float(self.metadata.get("depth_unit_scale_factor", 1.0))
        depth = torch.from_numpy(read_depth_file(path, unit_scale))
        depth = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.zeros_like(depth))
        height, width = data["image"].shape[:2]
        if depth.shape != (height, width):
            depth = F.interpolate(depth[None, None], size=(height, width), mode="nearest")[0, 0]
        return {"depth_image": depth[..., None]}
