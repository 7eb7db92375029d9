"""A pipeline that gives its model optical-flow guidance computed from the training video.

It is an :class:`~fourd_ns.pipelines.initialized_pipeline.InitializedPipeline`, so its Gaussians are seeded by
``--pipeline.initializer`` like every fourd_ns method.

Data flows one way: the datamanager owns the images and cameras; this pipeline turns them into a
:class:`~fourd_ns.flow.guidance.FlowGuidance` (through the cached :func:`load_or_compute_flow_embeddings`) and hands
the finished guidance to the model, which only consumes it and never calls back.

When it happens:

- ``ns-train`` (``test_mode="val"``): before the model is built, with a progress bar, through the cache in
  ``run_dir`` (the run's output folder, set by :class:`fourd_ns.engine.trainer.FourDTrainer`); the guidance and
  that folder are model keyword arguments (``flow_guidance``, ``flow_cache_dir``), and the model records the folder
  in its checkpoint. Without a ``run_dir`` (e.g. nerfstudio's own trainer) the embeddings are computed in memory and
  the log says so.
- ``ns-eval`` / ``ns-viewer`` / ``ns-render`` / ``ns-export`` (``test_mode`` "test" or "inference"): the folder is
  known only from the checkpoint, so the guidance is built in :meth:`FlowGuidedPipeline.load_pipeline`, right after
  the checkpoint is loaded and before anything is rendered, from the cache file found there again (the cache key
  hashes the frames, so the same dataset at the same resolution hits it). If the run folder was moved or the cache
  deleted, the embeddings are recomputed in memory, with a warning, and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Type

import torch
from torch.cuda.amp.grad_scaler import GradScaler

from nerfstudio.models.base_model import Model
from nerfstudio.utils.rich_utils import CONSOLE

from fourd_ns.datasets.training_video import TrainingVideo, select_training_video
from fourd_ns.flow.backend import FlowBackend
from fourd_ns.flow.cache import load_or_compute_flow_embeddings
from fourd_ns.flow.config import FlowEmbeddingConfig, select_flow_backend
from fourd_ns.flow.embeddings import compute_flow_embeddings
from fourd_ns.flow.guidance import FlowGuidance
from fourd_ns.geometry.camera_conventions import viewmat_from_nerfstudio_c2w
from fourd_ns.pipelines.initialized_pipeline import InitializedPipeline, InitializedPipelineConfig, SeedPoints


@dataclass
class FlowGuidedPipelineConfig(InitializedPipelineConfig):
    """Pipeline whose model is guided by optical-flow embeddings of the training video."""

    _target: Type = field(default_factory=lambda: FlowGuidedPipeline)
    flow: FlowEmbeddingConfig = field(default_factory=FlowEmbeddingConfig)
    """Optical-flow backend and embedding settings (embeddings are cached in the run's output folder)."""


class FlowGuidedPipeline(InitializedPipeline):
    """``InitializedPipeline`` + flow guidance for models that define ``needs_flow_guidance`` (module docstring)."""

    config: FlowGuidedPipelineConfig

    _backend: Optional[FlowBackend] = None
    """The flow backend, created on the first ``load_flow_guidance``."""

    @property
    def needs_flow_guidance(self) -> bool:
        """Whether the model config asks for flow guidance (flag4d: unless its GMN is switched off)."""
        return bool(getattr(self.config.model, "needs_flow_guidance", False))

    def setup_model(self, device: str, grad_scaler: Optional[GradScaler], seed_points: SeedPoints) -> Model:
        if hasattr(self.config.model, "flow_channels"):
            # The GMN's input width is the embedding width; one setting (pipeline.flow.embedding_channels) owns it.
            self.config.model.flow_channels = self.config.flow.embedding_channels
        if self.test_mode != "val" or not self.needs_flow_guidance:
            return super().setup_model(device, grad_scaler, seed_points)
        cache_dir = self.config.run_dir
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
        guidance = self.load_flow_guidance(cache_dir).to(torch.device(device))
        return super().setup_model(
            device,
            grad_scaler,
            seed_points,
            flow_guidance=guidance,
            flow_cache_dir=None if cache_dir is None else str(cache_dir),
        )

    def load_pipeline(self, loaded_state: Dict[str, Any], step: int) -> None:
        """Load a checkpoint; a model built without its guidance (ns-eval, ns-viewer, ns-render, ns-export) then
        gets it from the run folder the checkpoint records (module docstring)."""
        super().load_pipeline(loaded_state, step)
        model = self.model
        if self.needs_flow_guidance and not model.has_flow_guidance:
            cache_dir = Path(model.flow_cache_dir) if model.flow_cache_dir else None
            model.set_flow_guidance(self.load_flow_guidance(cache_dir).to(model.device))

    def training_video(self) -> TrainingVideo:
        dataset = self.datamanager.train_dataset
        cameras = dataset.cameras
        if cameras.times is None:
            raise ValueError(
                f"The training cameras of {self.datamanager.config.data} have no times: flow guidance needs a "
                "time-stamped video (use a 4D dataparser such as nerfies-data)."
            )
        camera_ids = dataset.metadata.get("camera_ids")
        video = select_training_video(cameras.times.reshape(-1).tolist(), camera_ids)
        if video.camera_id is not None and len(set(camera_ids)) > 1:
            CONSOLE.log(f"Optical flow: using the training images of camera {video.camera_id} as the video.")
        return video

    def load_flow_guidance(self, cache_dir: Optional[Path]) -> FlowGuidance:
        """Flow guidance of the training video, from ``cache_dir``'s cache when present (module docstring)."""
        video = self.training_video()
        cached = self.datamanager.cached_train
        frames = torch.stack([cached[i]["image"][..., :3].cpu() for i in video.dataset_indices])
        sizes = {tuple(cached[i]["image"].shape[:2]) for i in video.dataset_indices}
        if len(sizes) != 1:
            raise ValueError(
                f"Optical flow needs training images of one size; {self.datamanager.config.data} has {sorted(sizes)}."
            )
        if self._backend is None:
            self._backend = select_flow_backend(self.config.flow)
        if cache_dir is not None and Path(cache_dir).is_dir():
            dataset_key = f"{self.datamanager.config.data}|train|{frames.shape[1]}x{frames.shape[2]}"
            embeddings = load_or_compute_flow_embeddings(
                frames, video.times, self.config.flow, Path(cache_dir), dataset_key, backend=self._backend
            )
        else:
            if cache_dir is None:
                CONSOLE.log("Flow embeddings: no run folder given, so they are computed in memory and not cached.")
            else:
                CONSOLE.log(
                    f"[yellow]Flow-embedding cache folder {cache_dir} not found (run folder moved?): recomputing the "
                    "embeddings in memory; nothing is written."
                )
            embeddings = compute_flow_embeddings(frames, video.times, self._backend)
        train_cameras = self.datamanager.train_dataset.cameras
        index = torch.tensor(video.dataset_indices, dtype=torch.long)
        viewmats = viewmat_from_nerfstudio_c2w(train_cameras.camera_to_worlds[index].float())
        # Read after `cached_train`: undistorting the cached images updates these intrinsics in place.
        intrinsics = train_cameras.get_intrinsics_matrices()[index].float()
        return FlowGuidance(embeddings, viewmats, intrinsics)
