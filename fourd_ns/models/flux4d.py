"""``ns-train flux4d``: a driving clip reconstructed feed-forward by Flux4D, as a nerfstudio Gaussian model.

Trainer iterations: iteration 0 is the feed-forward prediction (f_θ on the LiDAR Gaussians of the input frames),
iterations 1 … R the refinement iterations (f_φ on lifted gradients; R from the weights' training settings or
``--pipeline.model.refinement-iterations``), then ``finetune_steps`` iterations of ordinary per-scene optimisation
(Adam on every channel but the capture time, L1 + SSIM, optionally LiDAR depth and the velocity prior). The viewer's
time slider moves each Gaussian along its motion, also past the last input frame (future prediction).

The state machinery (``base + offset ⊙ step``, export at a time, rendering, the reported loss of the learned
phase) is g3r's (`fourd_ns.models.g3r.G3RModel`); what differs is the Gaussians (Flux4D's capture time and motion,
`fourd_ns.scene.flux4d_gaussians`), the learned phase, and the evaluation, which adds

- ``dynamic_psnr``: PSNR over the pixels covered by projected moving cuboids (`fourd_ns.metrics.dynamic_regions`),
  pooled over all evaluation images by the pipeline (cuboids are used for evaluation only);
- scene flow on the input frames' LiDAR points in the cameras' view (`scene_flow_metrics`, added to ``ns-eval``'s
  averages by `fourd_ns.pipelines.flux4d_pipeline`): each point's predicted flow over one frame interval is that of
  its nearest Gaussian at the point's capture time; the truth comes from the synthetic logs' per-point velocities or,
  on real logs, from the cuboid tracks (`fourd_ns.sensors.lidar_flow_truth`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Type

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from nerfstudio.utils.rich_utils import CONSOLE

from fourd_ns.models.g3r import G3RModel, G3RModelConfig
from fourd_ns.networks.flux4d_net import Flux4DNetwork
from fourd_ns.reconstruction.flux4d_losses import velocity_prior
from fourd_ns.reconstruction.flux4d_reconstruction import Flux4DReconstruction, Flux4DRefinementConfig, clip_units
from fourd_ns.reconstruction.views import CameraView
from fourd_ns.scene.driving_scene import BACKGROUND, DrivingScene
from fourd_ns.scene.flux4d_gaussians import Flux4DLayout, decode_at, positions_at
from fourd_ns.scene.gaussian_params import GaussianParams
from fourd_ns.scene.neural_gaussians import EXPLICIT_CHANNELS, per_channel
from fourd_ns.sensors.driving_metadata import get_driving_metadata
from fourd_ns.sensors.lidar_projection import project_points


@dataclass
class Flux4DInputs:
    """What the pipeline hands the model for a training run."""

    scene: DrivingScene
    """The initial Gaussians (part "background": LiDAR Gaussians; "far": the sky)."""
    sources: List[CameraView]
    """The input views (the training split)."""
    network: Flux4DNetwork
    refinement: Flux4DRefinementConfig
    frame_seconds: float = 0.1


@dataclass
class EvaluationViews:
    """Which log frame and camera each evaluation image is (for the dynamic-region metric)."""

    frame_indices: Sequence[int]
    camera_to_worlds: Tensor
    """[E, 3, 4] nerfstudio poses."""
    intrinsics: Tensor
    """[E, 3, 3]."""


@dataclass
class Flux4DModelConfig(G3RModelConfig):
    """Flux4D: LiDAR-lifted Gaussians with velocities predicted feed-forward (then optionally refined / fine-tuned)."""

    _target: Type = field(default_factory=lambda: Flux4DModel)
    weights: Optional[str] = None
    """Trained networks: a `fourd-train-flux4d` run folder (newest checkpoint), a checkpoint folder, or a Hugging
    Face hub id of one (offline with HF_HUB_OFFLINE=1). Required for training."""
    refinement_iterations: Optional[int] = None
    """Refinement iterations after the prediction (None: as the weights were trained; 0: the base prediction)."""
    num_steps: int = 1
    """Not set by hand: 1 + refinement iterations (the learned phase's length), filled in by the pipeline."""
    finetune_motion_step_mps: float = 0.05
    """Fine-tuning step of velocities, m/s per iteration (accelerations: the same per second)."""
    finetune_velocity_weight: float = 5e-3
    """Fine-tuning: weight of the "as static as possible" prior (mean speed, m/s)."""
    dynamic_min_displacement_metres: float = 0.5
    """An annotated actor counts as moving (for dynamic_psnr) when its box centre moves more than this in the clip."""
    scene_flow_evaluation: bool = True
    """Add scene-flow metrics on the input frames' LiDAR to ns-eval (needs the LiDAR of the log)."""

    def total_iterations(self) -> int:
        return self.num_steps + self.finetune_steps


class Flux4DModel(G3RModel):
    """See the module docstring."""

    config: Flux4DModelConfig
    method_label = "flux4d"

    # ---------------------------------------------------------------- construction
    def populate_modules(self) -> None:
        inputs: Optional[Flux4DInputs] = self.kwargs.get("flux4d_inputs")
        super().populate_modules()  # no g3r inputs: empty parts, no reconstruction
        self.flux4d_inputs = inputs
        self.evaluation_views: Optional[EvaluationViews] = self.kwargs.get("evaluation_views")
        metadata = self.kwargs.get("metadata") or {}
        self.driving = get_driving_metadata(metadata)
        self.layout = Flux4DLayout(2)
        self.flux4d: Optional[Flux4DReconstruction] = None
        self.units = clip_units(self.driving.metres_per_unit, self.driving.time_span) if self.driving else None
        if inputs is not None:
            self.layout = inputs.network.layout
            self._set_parts(inputs.scene.states)
            self.flux4d = Flux4DReconstruction(inputs.network, inputs.refinement, self.units,
                                               frame_seconds=inputs.frame_seconds)  # fmt: skip
        self.register_buffer("motion_order", torch.tensor(self.layout.order))

    @property
    def num_learned_steps(self) -> int:
        return 0 if self.flux4d is None else 1 + self.flux4d.refinement.iterations

    def resize_to_checkpoint(self, state_dict) -> None:
        """Parts shaped as in ``state_dict`` and the motion order it was saved with (no neural decoder)."""
        self.resize_parts(state_dict)
        if "motion_order" in state_dict:
            self.layout = Flux4DLayout(int(state_dict["motion_order"]))

    # ---------------------------------------------------------------- state
    def finetune_step_scale(self, channels: int, device: torch.device) -> Tensor:
        half_diagonal = float((self.scene_box.aabb[1] - self.scene_box.aabb[0]).norm() / 2)
        c = self.config
        explicit = per_channel(
            EXPLICIT_CHANNELS, c.finetune_position_step * half_diagonal, c.finetune_log_scale_step,
            c.finetune_rotation_step, c.finetune_colour_step, c.finetune_opacity_step, 0.0, device,
        )  # fmt: skip
        units = self.units
        motion = []
        for k in range(1, self.layout.order + 1):
            scale = c.finetune_motion_step_mps * units.seconds_per_time**k / units.metres_per_unit if units else 0.0
            motion += [scale] * 3
        return torch.cat([explicit, torch.tensor(motion, device=device), torch.zeros(1, device=device)])

    def part_step_scale(self, name: str, base: Tensor) -> Tensor:
        """The sky's motion stays zero (it is fine-tuned in place); LiDAR Gaussians tune every channel but time."""
        scale = self.finetune_step_scale(base.shape[1], base.device)
        if name != BACKGROUND:
            scale[self.layout.motion] = 0.0
        return scale

    def gaussians_at(self, time: float) -> GaussianParams:
        states = self.current_states()
        parts = [decode_at(state, time, self.layout) for state in states.values() if state.shape[0] > 0]
        if not parts:
            return GaussianParams.empty(self.device)
        return GaussianParams.cat(parts)

    # ---------------------------------------------------------------- the learned phase
    def learned_step(self, step: int) -> None:
        """Iteration 0: the prediction; 1 … R: refinement (no gradient to any parameter)."""
        if self.flux4d is None or self.flux4d_inputs is None or step >= self.num_learned_steps:
            return
        with torch.no_grad():
            states = self.current_states()
            if step == 0:
                states = self.flux4d.predict(self.scene().with_states(states))
                what = "feed-forward prediction"
            else:
                if self._device_sources is None:
                    self._device_sources = [view.to(self.device) for view in self.flux4d_inputs.sources]
                states, report = self.flux4d.refine(states, self._device_sources, step - 1, self.num_learned_steps - 1)
                what = f"refinement {step}/{self.num_learned_steps - 1} (source MSE before {report.source_loss / len(self._device_sources):.5f})"
            for index, name in enumerate(self.part_names):
                self.base_states[index].data.copy_(states[name])
            self.learned_steps_done.fill_(step + 1)
        speed = float(velocity_prior(states[BACKGROUND], self.layout, self.units.metres_per_unit,
                                     self.units.seconds_per_time))  # fmt: skip
        CONSOLE.log(f"flux4d: {what}; mean speed {speed:.3f} m/s over {states[BACKGROUND].shape[0]} Gaussians")

    # ---------------------------------------------------------------- losses
    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        losses = super().get_loss_dict(outputs, batch, metrics_dict)
        if self.config.finetune_velocity_weight > 0 and not self.in_learned_phase() and self.units is not None:
            states = self.current_states()
            if BACKGROUND in states:
                prior = velocity_prior(states[BACKGROUND], self.layout, self.units.metres_per_unit,
                                       self.units.seconds_per_time)  # fmt: skip
                losses["velocity_prior"] = self.config.finetune_velocity_weight * prior
        return losses

    # ---------------------------------------------------------------- evaluation
    def get_image_metrics_and_images(self, outputs, batch):
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        views = self.evaluation_views
        if views is not None and self.driving is not None and "image_idx" in batch:
            from fourd_ns.metrics.dynamic_regions import dynamic_mask
            from fourd_ns.metrics.masked_psnr import masked_squared_error

            index = int(batch["image_idx"])
            height, width = outputs["rgb"].shape[:2]
            mask = dynamic_mask(
                self.driving.actors, int(views.frame_indices[index]), views.camera_to_worlds[index],
                views.intrinsics[index], width, height,
                self.config.dynamic_min_displacement_metres / self.driving.metres_per_unit,
            )  # fmt: skip
            gt = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
            # per image: the squared error summed over its dynamic pixels and their count; the pipeline pools them
            # into one dynamic-region PSNR (an image without moving actors adds nothing)
            region = masked_squared_error(outputs["rgb"], gt, mask)
            metrics["dynamic_squared_error"] = region.squared_error_sum
            metrics["dynamic_pixels"] = float(region.pixels)
        return metrics, images

    @torch.no_grad()
    def scene_flow_metrics(self, input_views: Sequence[CameraView]) -> Dict[str, float]:
        """Scene flow over one frame interval on the LiDAR points of the input frames that an input camera sees
        (module docstring), and the same metrics of zero flow (``scene_flow_zero_*``); {} without LiDAR or
        Gaussians."""
        from fourd_ns.metrics.scene_flow import SceneFlowAccumulator
        from fourd_ns.sensors.lidar_flow_truth import lidar_scene_flow_truth

        driving = self.driving
        states = self.current_states()
        if driving is None or driving.lidar is None or BACKGROUND not in states or self.units is None:
            return {}
        state = states[BACKGROUND].detach().cpu()
        step = 0.1 / self.units.seconds_per_time
        accumulator, zero = SceneFlowAccumulator(), SceneFlowAccumulator()
        sources = set()
        metres = driving.metres_per_unit
        for sweep in sorted({v.lidar_sweep for v in input_views if v.lidar_sweep >= 0}):
            points = torch.from_numpy(driving.lidar.points[driving.lidar.sweep_slice(sweep)]).float()
            seen = torch.zeros(points.shape[0], dtype=torch.bool)
            for view in (v for v in input_views if v.lidar_sweep == sweep):
                k = view.intrinsics
                hits, _, _ = project_points(points, view.camera_to_world.cpu(), float(k[0, 0]), float(k[1, 1]),
                                            float(k[0, 2]), float(k[1, 2]), view.width, view.height)  # fmt: skip
                seen[hits] = True
            if not bool(seen.any()):
                continue
            truth, source = lidar_scene_flow_truth(driving, sweep)
            time = float(driving.lidar.sweep_times[sweep])
            now = positions_at(state, time, self.layout)
            later = positions_at(state, time + step, self.layout)
            _, nearest = cKDTree(now.numpy()).query(points[seen].numpy(), k=1)
            nearest = torch.from_numpy(np.asarray(nearest))
            predicted = (later - now)[nearest] * metres
            truth_m = torch.as_tensor(np.asarray(truth))[seen].float() * metres
            accumulator.add(predicted, truth_m)
            zero.add(torch.zeros_like(truth_m), truth_m)
            sources.add(source)
        if not sources:
            return {}
        values = {f"scene_flow_{name}": value for name, value in accumulator.metrics().items()}
        # the zero-flow baseline on the same points ("everything is static")
        values.update({f"scene_flow_zero_{name}": value for name, value in zero.metrics().items()})
        values["scene_flow_truth_from_cuboids"] = float("cuboids" in sources)
        return {name: float(value) for name, value in values.items()}
