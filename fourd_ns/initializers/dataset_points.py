"""``dataset-points``: the dataparser's own seed points (e.g. Nerfies' ``points.npy``), unchanged.

This is nerfstudio's behaviour (``VanillaPipeline`` seeds the model from metadata ``points3D_xyz``/``points3D_rgb``)
made explicit, and the default of every fourd_ns method. The points are time-less: no times, no velocities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

import torch

from fourd_ns.initializers.base import Initializer, InitializerConfig, InitializerInputs, InitializerResult


@dataclass
class DatasetPointsInitializerConfig(InitializerConfig):
    """Seed the Gaussians with the dataset's point cloud (the dataparser's points3D_xyz / points3D_rgb)."""

    _target: Type = field(default_factory=lambda: DatasetPointsInitializer)


class DatasetPointsInitializer(Initializer):
    name = "dataset-points"

    def initialize(self, inputs: InitializerInputs, device: torch.device | str = "cpu") -> InitializerResult:
        if inputs.dataset_points is None or inputs.dataset_points.shape[0] == 0:
            raise ValueError(
                f"The dataset {inputs.source} has no seed points (dataparser metadata 'points3D_xyz'; for Nerfies "
                "captures: points.npy with load_points True). Choose another initializer: "
                "'pipeline.initializer:random' (uniform points) or 'pipeline.initializer:flow4r "
                "--pipeline.initializer.weights <checkpoint>' (feed-forward reconstruction of the training video)."
            )
        return InitializerResult(
            points=inputs.dataset_points.detach().float().cpu().clone(),
            colors=inputs.dataset_colors.detach().cpu().to(torch.uint8).clone(),
        )
