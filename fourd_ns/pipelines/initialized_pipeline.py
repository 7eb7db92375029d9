"""A ``VanillaPipeline`` whose model is seeded by a configurable initializer (``--pipeline.initializer``).

nerfstudio's ``VanillaPipeline.__init__`` builds the datamanager, reads the dataparser's seed points and builds the
model in one go; the initializer has to run between the first and the last step, so this constructor repeats those
few lines with the initializer in the middle. Data flows one way: the datamanager's training video, cameras, scene
box and points go into the initializer, its points go into ``model.setup(seed_points=...)``, and the model never
sees where they came from.

When it runs:

- ``ns-train`` (``test_mode="val"``): once, before the model is built, through the cache in ``run_dir``. The
  fourd_ns trainer (:class:`fourd_ns.engine.trainer.FourDTrainer`) sets ``run_dir`` to the run's output folder, so a
  resumed or repeated run with unchanged inputs loads the file instead of recomputing. Without a ``run_dir`` (e.g.
  nerfstudio's own trainer) the result is computed in memory and the log says so.
- ``ns-eval`` / ``ns-viewer`` / ``ns-render`` / ``ns-export`` (``test_mode`` "test" or "inference"): never. The
  checkpoint replaces every Gaussian, so the model is built as ``VanillaPipeline`` builds it (from the dataparser's
  points when there are any) and the initializer's settings are not even read.

Evaluation (``ns-eval``, the trainer's all-image evaluation) adds ``dynamic_psnr`` to nerfstudio's averages when
the model reports per-image dynamic-region error sums (`fourd_ns.models.image_metrics`): the PSNR pooled over every
dynamic pixel of the evaluation images (`fourd_ns.metrics.masked_psnr`).

The result stays available as ``pipeline.initialization`` (velocities, predicted cameras) for components that use
more than the seed points.

Configs written before the initializer existed (YAML ``config.yml`` of older runs) lack the new fields; they load
with the fields' defaults (``__setstate__``), i.e. the dataset points they were trained with.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Literal, Optional, Type

import torch
import torch.distributed as dist
import tyro
from torch.cuda.amp.grad_scaler import GradScaler
from torch.nn.parallel import DistributedDataParallel as DDP

from nerfstudio.models.base_model import Model
from nerfstudio.pipelines.base_pipeline import Pipeline, VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE

from fourd_ns.datasets.training_video import select_training_video
from fourd_ns.initializers import (
    DatasetPointsInitializerConfig,
    InitializerConfigUnion,
    InitializerInputs,
    InitializerResult,
    load_or_compute_initialization,
)
from fourd_ns.metrics.masked_psnr import pooled_psnr

SeedPoints = Optional[tuple[torch.Tensor, torch.Tensor]]
"""(points3D_xyz [N, 3], points3D_rgb [N, 3]) for ``model.setup(seed_points=...)``, or None (the model seeds
itself)."""


@dataclass
class InitializedPipelineConfig(VanillaPipelineConfig):
    """Pipeline whose model is seeded by an initializer (dataset points, random, Flow4R or Flow3r)."""

    _target: Type = field(default_factory=lambda: InitializedPipeline)
    initializer: InitializerConfigUnion = field(default_factory=DatasetPointsInitializerConfig)
    """How the Gaussians are seeded before training: dataset-points (the dataparser's point cloud), random, flow4r or
    flow3r (a feed-forward reconstruction of the training video; set --pipeline.initializer.weights)."""
    run_dir: tyro.conf.Suppress[Optional[Path]] = None
    """Folder where the initializer's result is cached; set by the fourd_ns trainer to the run's output folder."""

    def __setstate__(self, state: dict) -> None:
        """Unpickling / YAML loading: fields missing from an older config take their defaults."""
        for f in fields(self):
            if f.name not in state:
                state[f.name] = f.default_factory() if f.default is MISSING else f.default
        self.__dict__.update(state)


class InitializedPipeline(VanillaPipeline):
    """``VanillaPipeline`` with an initializer between the datamanager and the model (see the module docstring)."""

    config: InitializedPipelineConfig

    def __init__(
        self,
        config: InitializedPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[GradScaler] = None,
    ) -> None:
        Pipeline.__init__(self)  # VanillaPipeline.__init__ is replaced, not extended (module docstring)
        self.config = config
        self.test_mode = test_mode
        self.datamanager = config.datamanager.setup(
            device=device, test_mode=test_mode, world_size=world_size, local_rank=local_rank
        )
        self.initialization: Optional[InitializerResult] = None
        seed_points = self.initial_seed_points(device) if test_mode == "val" else self.dataparser_points()
        self.datamanager.to(device)
        if self.datamanager.train_dataset is None:
            raise ValueError(f"The datamanager of {config.datamanager.data} has no training dataset")

        self._model = self.setup_model(device, grad_scaler, seed_points)
        self.model.to(device)

        self.world_size = world_size
        if world_size > 1:
            self._model = typing.cast(Model, DDP(self._model, device_ids=[local_rank], find_unused_parameters=True))
            dist.barrier(device_ids=[local_rank])

    def initial_seed_points(self, device: str) -> SeedPoints:
        """Run the initializer (through its cache in ``run_dir``) and return its seed points; ``ns-train`` only."""
        self.initialization = load_or_compute_initialization(
            self.config.initializer.setup(), self.initializer_inputs(), self.config.run_dir, device=device
        )
        return self.initialization.seed_points()

    def setup_model(
        self, device: str, grad_scaler: Optional[GradScaler], seed_points: SeedPoints, **model_inputs
    ) -> Model:
        """``config.model.setup`` for the training dataset and the seed points (and ``model_inputs``, handed to the
        model as keyword arguments); subclasses that adjust the model's config or hand the model more inputs extend
        this instead of the constructor."""
        dataset = self.datamanager.train_dataset
        return self.config.model.setup(
            scene_box=dataset.scene_box,
            num_train_data=len(dataset),
            metadata=dataset.metadata,
            device=device,
            grad_scaler=grad_scaler,
            seed_points=seed_points,
            **model_inputs,
        )

    def get_average_eval_image_metrics(
        self, step: Optional[int] = None, output_path: Optional[Path] = None, get_std: bool = False
    ):
        metrics = super().get_average_eval_image_metrics(step, output_path, get_std)
        if metrics.get("dynamic_pixels", 0.0) > 0:
            # both are means over the same evaluation images, so their ratio is the pooled MSE of the dynamic pixels
            metrics["dynamic_psnr"] = pooled_psnr(metrics["dynamic_squared_error"], metrics["dynamic_pixels"])
        return metrics

    def dataparser_points(self) -> SeedPoints:
        """The dataparser's (points3D_xyz, points3D_rgb), as ``VanillaPipeline`` reads them, or None."""
        metadata = self.datamanager.train_dataparser_outputs.metadata
        if "points3D_xyz" not in metadata:
            return None
        return metadata["points3D_xyz"], metadata["points3D_rgb"]

    def initializer_inputs(self, single_camera: bool = False) -> InitializerInputs:
        """The training video (one camera, one image per time, time order; see ``select_training_video``, whose
        ``single_camera`` this passes on), its cameras, the scene box and the dataparser's points."""
        dataset = self.datamanager.train_dataset
        cameras = dataset.cameras
        count = len(dataset)
        # Without times (a static dataset) every image is at time 0, so the video is a single frame.
        times = cameras.times.reshape(-1).tolist() if cameras.times is not None else [0.0] * count
        camera_ids = dataset.metadata.get("camera_ids")
        video = select_training_video(times, camera_ids, single_camera)
        if video.camera_id is not None and len({int(c) for c in camera_ids}) > 1:
            CONSOLE.log(f"Initializer: using the training images of camera {video.camera_id} as the video.")
        cached = self.datamanager.cached_train
        images = [cached[i]["image"][..., :3] for i in video.dataset_indices]
        # Read the cameras after `cached_train`: undistorting the cached images updates the intrinsics in place.
        video_cameras = cameras[torch.tensor(video.dataset_indices, dtype=torch.long)]
        points = self.dataparser_points()
        return InitializerInputs(
            images=images,
            times=video.times,
            scene_box=dataset.scene_box.aabb,
            source=f"{self.datamanager.config.data}|train",
            cameras=video_cameras,
            dataset_points=None if points is None else points[0],
            dataset_colors=None if points is None else points[1],
        )
