"""The pipeline of ``ns-train flux4d``: loads Flux4D's networks, lifts the input frames' LiDAR into the initial
Gaussians and hands both to the model (`fourd_ns.models.flux4d`) before it is built; adds scene-flow metrics to
``ns-eval``.

Data flows one way, as for g3r (`fourd_ns.pipelines.g3r_pipeline`): the training split's images, cameras and LiDAR
depth become the input views; the dataparser's LiDAR sweeps and those views give the initial Gaussians
(`fourd_ns.reconstruction.flux4d_scene`); the weights bring the networks and the seeding / refinement settings they
were trained with, which the pipeline's options override. Use ``pandaset-data --split-mode flux4d-interpolation``
(inputs 0, 2, …, 10 of a 16-frame clip; evaluation 1, 3, …, 9) or ``flux4d-future`` (evaluation 11-15). No cuboid
reaches the reconstruction; the evaluation reads them for the dynamic-region PSNR and, on real logs, the flow truth.
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

from fourd_ns.initializers.cache import load_or_compute_initialization
from fourd_ns.models.flux4d import EvaluationViews, Flux4DInputs, Flux4DModelConfig
from fourd_ns.networks.flux4d_weights import load_flux4d_weights
from fourd_ns.pipelines.g3r_pipeline import G3RPipeline, G3RPipelineConfig
from fourd_ns.pipelines.initialized_pipeline import SeedPoints
from fourd_ns.reconstruction.flux4d_reconstruction import Flux4DRefinementConfig
from fourd_ns.reconstruction.flux4d_scene import Flux4DSeedingConfig, seed_flux4d_scene
from fourd_ns.reconstruction.initial_motion import transfer_velocities
from fourd_ns.scene.driving_scene import BACKGROUND, DrivingScene
from fourd_ns.scene.flux4d_gaussians import Flux4DLayout
from fourd_ns.scene.neural_gaussians import POSITION
from fourd_ns.sensors.driving_metadata import get_driving_metadata


@dataclass
class Flux4DPipelineConfig(G3RPipelineConfig):
    """Pipeline of flux4d (``max_background_points`` caps the LiDAR Gaussians; ``far_field`` switches the sky;
    ``seeding_voxel_metres`` thins the points; the actor options do not apply: Flux4D uses no boxes).
    ``initializer`` is read only with ``initial_motion initializer``."""

    _target: Type = field(default_factory=lambda: Flux4DPipeline)
    model: Flux4DModelConfig = field(default_factory=Flux4DModelConfig)
    initial_motion: Literal["zero", "initializer"] = "zero"
    """Initial velocity of the LiDAR Gaussians: ``zero`` (Flux4D: every Gaussian starts at rest) or ``initializer``:
    the velocities that ``--pipeline.initializer`` (flow4r or flow3r, with ``--pipeline.initializer.weights``)
    computes from a feed-forward reconstruction of one camera's input frames; f_θ's motion is added to them
    (`fourd_ns.reconstruction.initial_motion`). The initializer's time counts as seeding time."""
    initial_motion_radius_metres: float = 1.0
    """With ``initial_motion initializer``: a Gaussian takes the velocity of the nearest initializer point within
    this distance (same frame time); farther ones (e.g. outside that camera's view) start at rest."""


class Flux4DPipeline(G3RPipeline):
    """See the module docstring."""

    config: Flux4DPipelineConfig

    def flux4d_seeding(self, trained: dict) -> Flux4DSeedingConfig:
        seeding = Flux4DSeedingConfig.from_dict(trained) if trained else Flux4DSeedingConfig()
        return self.with_overrides(seeding)

    def evaluation_views(self) -> Optional[EvaluationViews]:
        dataset = self.datamanager.eval_dataset
        if dataset is None or "frame_indices" not in dataset.metadata:
            return None
        cameras = dataset.cameras
        return EvaluationViews(
            frame_indices=dataset.metadata["frame_indices"].tolist(),
            camera_to_worlds=cameras.camera_to_worlds.float(),
            intrinsics=cameras.get_intrinsics_matrices().float(),
        )

    def setup_model(self, device: str, grad_scaler: Optional[GradScaler], seed_points: SeedPoints) -> Model:
        dataset = self.datamanager.train_dataset
        inputs = None
        model_config = self.config.model
        if self.test_mode == "val":
            driving = get_driving_metadata(dataset.metadata)
            if driving is None or driving.lidar is None:
                raise ValueError(
                    "flux4d lifts its Gaussians from LiDAR: use the pandaset-data dataparser (ns-train flux4d "
                    "pandaset-data --data LOG --split-mode flux4d-interpolation) with LiDAR loaded"
                )
            weights = load_flux4d_weights(model_config.weights)
            CONSOLE.log(f"flux4d: networks from {weights.source}")
            refinement = Flux4DRefinementConfig(**weights.settings.get("refinement", {}))
            if model_config.refinement_iterations is not None:
                refinement = dataclasses.replace(refinement, iterations=model_config.refinement_iterations)
            if refinement.iterations > 0 and weights.network.refiner is None:
                raise ValueError(f"--pipeline.model.refinement-iterations {refinement.iterations} needs a refiner, but "
                                 f"the weights {weights.source} have none")  # fmt: skip
            model_config.refinement_iterations = refinement.iterations
            model_config.num_steps = 1 + refinement.iterations
            seeding = self.flux4d_seeding(weights.settings.get("seeding", {}))
            sources = self.source_views()
            generator = torch.Generator().manual_seed(self.config.latent_seed)
            start = time.perf_counter()
            scene = seed_flux4d_scene(driving, sources, seeding, weights.network.layout, generator)
            if self.config.initial_motion == "initializer":
                self.start_from_initializer_motion(scene, weights.network.layout, driving.metres_per_unit, device)
            self.seeding_seconds = time.perf_counter() - start
            CONSOLE.log(f"flux4d: lifted {scene.states['background'].shape[0]} LiDAR Gaussians (+ "
                        f"{scene.num_gaussians - scene.states['background'].shape[0]} sky) from {len(sources)} "
                        "input views")  # fmt: skip
            frame_seconds = float(weights.settings.get("loss", {}).get("frame_seconds", 0.1))
            inputs = Flux4DInputs(scene=scene, sources=sources, network=weights.network.to(device),
                                  refinement=refinement, frame_seconds=frame_seconds)  # fmt: skip
        # InitializedPipeline.setup_model, with flux4d's inputs (G3RPipeline's would seed g3r's scene)
        return super(G3RPipeline, self).setup_model(
            device, grad_scaler, seed_points, flux4d_inputs=inputs, evaluation_views=self.evaluation_views()
        )

    def start_from_initializer_motion(
        self, scene: DrivingScene, layout: Flux4DLayout, metres_per_unit: float, device: str
    ) -> None:
        """Set the LiDAR Gaussians' velocities (in place) from the initializer's (``initial_motion initializer``)."""
        initializer = self.config.initializer.setup()
        result = load_or_compute_initialization(
            initializer, self.initializer_inputs(single_camera=True), self.config.run_dir, device=device
        )
        if result.velocities is None or result.point_times is None:
            raise ValueError(
                f"--pipeline.initial-motion initializer needs an initializer that computes velocities "
                f"(pipeline.initializer:flow4r or pipeline.initializer:flow3r with --pipeline.initializer.weights); "
                f"'{initializer.name}' gives none"
            )
        state = scene.states[BACKGROUND]
        radius = self.config.initial_motion_radius_metres / metres_per_unit
        motion = transfer_velocities(state[:, POSITION], state[:, layout.time], result.points.float(),
                                     result.point_times.float(), result.velocities.float(), radius)  # fmt: skip
        state[:, layout.velocity] = motion.velocities.to(state)
        speeds = motion.velocities.norm(dim=-1)
        CONSOLE.log(
            f"flux4d: {motion.matched} of {state.shape[0]} LiDAR Gaussians start with the velocity of a "
            f"'{initializer.name}' point within {self.config.initial_motion_radius_metres} m (median speed of those "
            f"{float(speeds[speeds > 0].median()) if motion.matched else 0.0:.4f} units per clip time); the rest at rest"
        )

    def get_average_eval_image_metrics(self, step: Optional[int] = None, output_path=None, get_std: bool = False):
        metrics = super().get_average_eval_image_metrics(step, output_path, get_std)  # with the pooled dynamic_psnr
        model = self.model
        if model.config.scene_flow_evaluation:
            flow = model.scene_flow_metrics(self.source_views())
            metrics.update(flow)
            if flow:
                CONSOLE.log("flux4d scene flow on the input frames' LiDAR: " + ", ".join(
                    f"{name} {value:.4f}" for name, value in flow.items()))  # fmt: skip
        return metrics
