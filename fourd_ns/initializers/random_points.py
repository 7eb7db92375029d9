"""``random``: points drawn uniformly, for datasets without a point cloud (and as an ablation baseline).

Two regions:

- ``scene-box``: uniform in the dataparser's axis-aligned scene box.
- ``camera-frusta`` (default): uniform in the part of the scene box that at least one training-video camera sees
  (in front of it and projecting inside its image). Gaussians placed where no camera looks receive no gradient and
  only cost memory, so when cameras are known this is the better prior. Sampled by rejection from the box, in
  batches; a region that is almost empty is an error that names the fix instead of a silent endless loop.

Colours are uniform random (as splatfacto's random initialisation). Everything is drawn from a ``torch.Generator``
seeded with ``seed``, so a configuration always gives the same points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Type

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from nerfstudio.cameras.cameras import Cameras

from fourd_ns.geometry.camera_conventions import viewmat_from_nerfstudio_c2w
from fourd_ns.geometry.pinhole import project_camera_points, unpack_intrinsics
from fourd_ns.initializers.base import Initializer, InitializerConfig, InitializerInputs, InitializerResult

_CANDIDATE_BATCH = 1 << 15
_CAMERA_CHUNK = 32
_MAX_CANDIDATES_PER_POINT = 1000


@dataclass
class RandomInitializerConfig(InitializerConfig):
    """Seed the Gaussians with uniformly random points in the scene box or in the cameras' view of it."""

    _target: Type = field(default_factory=lambda: RandomInitializer)
    num_points: int = 50000
    """Number of points."""
    region: Literal["camera-frusta", "scene-box"] = "camera-frusta"
    """camera-frusta: the part of the scene box that some training-video camera sees (scene-box when the dataset
    has no cameras); scene-box: the whole axis-aligned scene box."""
    seed: int = 0
    """Seed of the random generator (same seed and inputs, same points)."""


def visible_in_any_camera(points: Float[Tensor, "N 3"], cameras: Cameras) -> Bool[Tensor, "N"]:
    """Whether each world point is in front of at least one camera and projects inside its image.

    Pixel (i, j) covers [j, j + 1) × [i, i + 1), so a projection is inside when 0 ≤ u < W and 0 ≤ v < H. Lens
    distortion is ignored (it moves the border by a few pixels).
    """
    viewmats = viewmat_from_nerfstudio_c2w(cameras.camera_to_worlds.float())
    intrinsics = cameras.get_intrinsics_matrices().float()
    widths, heights = cameras.width.reshape(-1).float(), cameras.height.reshape(-1).float()
    visible = torch.zeros(points.shape[0], dtype=torch.bool)
    for start in range(0, viewmats.shape[0], _CAMERA_CHUNK):  # bounded memory for long videos
        chunk = slice(start, start + _CAMERA_CHUNK)
        camera_points = torch.einsum("cij,nj->cni", viewmats[chunk, :3, :3], points) + viewmats[chunk, None, :3, 3]
        fx, fy, cx, cy = unpack_intrinsics(intrinsics[chunk], point_dims=1)
        projection = project_camera_points(camera_points, fx, fy, cx, cy, min_depth=1e-6)
        u, v = projection.pixels.unbind(-1)
        inside = (u >= 0) & (u < widths[chunk, None]) & (v >= 0) & (v < heights[chunk, None])
        visible |= (projection.in_front & inside).any(dim=0)
    return visible


class RandomInitializer(Initializer):
    name = "random"
    config: RandomInitializerConfig

    def initialize(self, inputs: InitializerInputs, device: torch.device | str = "cpu") -> InitializerResult:
        count = self.config.num_points
        if count < 1:
            raise ValueError(f"pipeline.initializer.num-points must be at least 1, got {count}")
        generator = torch.Generator().manual_seed(self.config.seed)
        low, high = inputs.scene_box[0].float(), inputs.scene_box[1].float()
        if not bool((high > low).all()):
            raise ValueError(f"The scene box of {inputs.source} is empty ({low.tolist()} to {high.tolist()})")
        if self.config.region == "camera-frusta" and inputs.cameras is not None:
            points = self._sample_visible(count, low, high, inputs, generator)
        else:
            points = low + (high - low) * torch.rand(count, 3, generator=generator)
        colors = torch.randint(0, 256, (count, 3), generator=generator, dtype=torch.uint8)
        return InitializerResult(points=points, colors=colors)

    def _sample_visible(
        self, count: int, low: Tensor, high: Tensor, inputs: InitializerInputs, generator: torch.Generator
    ) -> Float[Tensor, "N 3"]:
        kept, found, drawn = [], 0, 0
        while found < count:
            if drawn >= _MAX_CANDIDATES_PER_POINT * count:
                raise ValueError(
                    f"Random initialization: only {found} of {drawn} points drawn in the scene box of {inputs.source} "
                    "are seen by a training camera. Check the scene box (dataparser scene_box_bound) or use "
                    "--pipeline.initializer.region scene-box."
                )
            candidates = low + (high - low) * torch.rand(_CANDIDATE_BATCH, 3, generator=generator)
            drawn += _CANDIDATE_BATCH
            visible = candidates[visible_in_any_camera(candidates, inputs.cameras)]
            kept.append(visible)
            found += visible.shape[0]
        return torch.cat(kept)[:count]
