"""The pipeline of ``ns-train g3r``: loads the learned optimizer, seeds the scene from the training frames' LiDAR
and hands both to the model (`fourd_ns.models.g3r`) before it is built.

Data flows one way: the datamanager's training images, cameras and LiDAR depth become `CameraView`s (the source
views); the dataparser's driving metadata (LiDAR sweeps, actor tracks) and those views seed the initial scene
(`fourd_ns.reconstruction.g3r_scene`); the weights (``--pipeline.model.weights``) bring the network and the step /
seeding settings it was trained with, which the pipeline's options can override (point budgets, far field). Only
``ns-train`` (``test_mode="val"``) does this; ``ns-eval`` / ``ns-viewer`` / ``ns-render`` / ``ns-export`` build an
empty model that the checkpoint fills, and never need the weights file.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Literal, Optional, Type

import torch
from torch.cuda.amp.grad_scaler import GradScaler

from nerfstudio.models.base_model import Model
from nerfstudio.utils.rich_utils import CONSOLE

from fourd_ns.models.g3r import G3RInputs, G3RModelConfig
from fourd_ns.networks.g3r_weights import load_g3r_weights
from fourd_ns.pipelines.initialized_pipeline import InitializedPipeline, InitializedPipelineConfig, SeedPoints
from fourd_ns.reconstruction.g3r_reconstruction import G3RStepConfig
from fourd_ns.reconstruction.g3r_scene import G3RSeedingConfig, seed_g3r_scene
from fourd_ns.reconstruction.views import CameraView, views_from_cameras
from fourd_ns.sensors.driving_metadata import get_driving_metadata


@dataclass
class G3RPipelineConfig(InitializedPipelineConfig):
    """Pipeline of g3r: weights + LiDAR seeding of the scene before the model is built (``initializer`` is not
    used: the scene is seeded per part from the training frames' LiDAR)."""

    _target: Type = field(default_factory=lambda: G3RPipeline)
    model: G3RModelConfig = field(default_factory=G3RModelConfig)
    max_background_points: Optional[int] = None
    """Background LiDAR Gaussians (None: the weights' training setting)."""
    max_points_per_actor: Optional[int] = None
    """Gaussians per actor (None: the weights' training setting)."""
    far_field: Optional[bool] = None
    """Add the far-field (sky) part (None: as in training)."""
    seeding_voxel_metres: Optional[float] = None
    """Voxel size of the LiDAR thinning in metres (None: as in training)."""
    sparse_actors: Optional[Literal["fill-box", "skip"]] = None
    """Actors with fewer LiDAR points than the minimum: filled with points in their box, or left out (None: as in
    training)."""
    latent_seed: int = 0
    """Seed of the random initial latents (the same scene on every run)."""


class G3RPipeline(InitializedPipeline):
    """See the module docstring."""

    config: G3RPipelineConfig
    seeding_seconds: float = 0.0
    """Wall-clock time of seeding the scene (part of a reconstruction's time, next to the learned steps)."""

    def initial_seed_points(self, device: str) -> SeedPoints:
        """None: g3r seeds its neural Gaussians from LiDAR per part (`setup_model`), not from an initializer."""
        return None

    def seeding_config(self, trained: dict) -> G3RSeedingConfig:
        seeding = G3RSeedingConfig.from_dict(trained) if trained else G3RSeedingConfig()
        return self.with_overrides(seeding)

    def with_overrides(self, seeding):
        """A seeding config (g3r's or flux4d's: fields ``lidar`` and ``far_field``) with the pipeline's options that
        are set applied to it."""
        c = self.config
        changes = dict(max_background_points=c.max_background_points, max_points_per_actor=c.max_points_per_actor,
                       voxel_size=c.seeding_voxel_metres, few_points=c.sparse_actors)  # fmt: skip
        lidar = dataclasses.replace(seeding.lidar, **{k: v for k, v in changes.items() if v is not None})
        far = seeding.far_field if c.far_field is None else c.far_field
        return dataclasses.replace(seeding, lidar=lidar, far_field=far)

    def source_views(self) -> list[CameraView]:
        """The training split as views (images in [0, 1], LiDAR depth, sweep index)."""
        dataset = self.datamanager.train_dataset
        cached = self.datamanager.cached_train
        images = []
        for data in cached:
            image = data["image"][..., :3]
            images.append(image.float() / 255.0 if image.dtype == torch.uint8 else image.float())
        metadata = dataset.metadata
        depths = [data.get("lidar_depth") for data in cached]
        return views_from_cameras(
            dataset.cameras,  # read after cached_train: undistortion updates the intrinsics in place
            [image.cpu() for image in images],
            frame_indices=metadata["frame_indices"].tolist(),
            camera_ids=metadata["camera_ids"].tolist(),
            lidar_depths=[d.cpu() for d in depths] if all(d is not None for d in depths) else None,
            lidar_sweeps=metadata["lidar_sweep_index"].tolist(),
        )

    def setup_model(self, device: str, grad_scaler: Optional[GradScaler], seed_points: SeedPoints) -> Model:
        dataset = self.datamanager.train_dataset
        inputs = None
        if self.test_mode == "val":
            driving = get_driving_metadata(dataset.metadata)
            if driving is None or driving.lidar is None:
                raise ValueError(
                    "g3r reconstructs driving logs from LiDAR and images: use the pandaset-data dataparser "
                    "(ns-train g3r pandaset-data --data LOG) with LiDAR loaded"
                )
            weights = load_g3r_weights(self.config.model.weights)
            CONSOLE.log(f"g3r: learned optimizer from {weights.source}")
            steps = G3RStepConfig(**weights.settings["steps"]) if "steps" in weights.settings else G3RStepConfig()
            seeding = self.seeding_config(weights.settings.get("seeding", {}))
            sources = self.source_views()
            generator = torch.Generator().manual_seed(self.config.latent_seed)
            start = time.perf_counter()
            scene = seed_g3r_scene(driving, sources, seeding, weights.network.config.latent_dim, generator)
            self.seeding_seconds = time.perf_counter() - start
            CONSOLE.log(
                f"g3r: seeded {scene.num_gaussians} neural Gaussians ({len(scene.names_of('actor'))} actors) from "
                f"{len(sources)} source views"
            )
            inputs = G3RInputs(scene=scene, sources=sources, network=weights.network.to(device), steps=steps,
                               metres_per_unit=driving.metres_per_unit)
        return super().setup_model(device, grad_scaler, seed_points, g3r_inputs=inputs)
