"""``ns-train g3r``: a driving log reconstructed by G3R's learned optimizer, as a nerfstudio Gaussian model.

The model's training iterations are the learned optimizer's steps: iteration t < T (``num_steps``, 24; 12 in the
turbo setting) lifts the photometric gradient of the source views (the training split) and applies the network's
update (`fourd_ns.reconstruction.g3r_reconstruction`), so the progress bar and the viewer show the reconstruction
forming step by step. Iterations T … T + ``finetune_steps`` − 1 are ordinary per-scene optimisation (Adam on the
neural state, L1 + SSIM as splatfacto, optionally LiDAR depth), no densification.

What crosses the layers: the pipeline (`fourd_ns.pipelines.g3r_pipeline`) loads the weights, seeds the scene from
the training frames' LiDAR and hands scene, source views and network to the model before ``setup``; the model
never opens files. The network is not part of the model's state dict (it is not trained per scene); the decoder is,
so ``ns-eval`` / ``ns-viewer`` / ``ns-render`` / ``ns-export`` need only the run's checkpoint. Actor tracks come from
the dataparser's driving metadata, so the viewer's time slider moves the actors along their boxes.

The state of each part is ``base + offset ⊙ finetune_step`` (per channel): the learned steps write ``base``, and
fine-tuning runs Adam with learning rate 1 on ``offset`` (zero at the start), so ``finetune_step`` is each channel's
per-iteration step size (splatfacto's learning rates, with positions relative to the scene's size). During the
learned steps the trainer still renders one training view and reports its loss, but no parameter receives a
gradient from it (the reported loss is a detached copy; see `G3RModel.get_loss_dict`).

Export (``ns-export gaussian-splat``) writes the whole scene composed at ``export_time`` (``FOURD_EXPORT_TIME``
overrides it; default 0, the first frame).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Type, Union

import torch
from pytorch_msssim import SSIM
from torch import Tensor, nn
from torch.nn import Parameter

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.splatfacto import SplatfactoModel, SplatfactoModelConfig
from nerfstudio.utils.colors import get_color
from nerfstudio.utils.rich_utils import CONSOLE

from fourd_ns.metrics.lpips import LazyLPIPS
from fourd_ns.geometry.camera_conventions import camera_time
from fourd_ns.models.image_metrics import GaussianImageMetrics, chosen_export_time
from fourd_ns.networks.g3r_net import G3RLearnedOptimizer
from fourd_ns.reconstruction.g3r_reconstruction import G3RReconstruction, G3RStepConfig
from fourd_ns.reconstruction.view_rendering import render_camera
from fourd_ns.reconstruction.views import CameraView
from fourd_ns.scene.driving_scene import DrivingScene, part_kind
from fourd_ns.scene.gaussian_params import GaussianParams
from fourd_ns.scene.neural_gaussians import EXPLICIT_CHANNELS, NeuralGaussianDecoder, logit, per_channel
from fourd_ns.sensors.driving_metadata import get_driving_metadata


@dataclass
class G3RInputs:
    """What the pipeline hands the model for a training run (see the module docstring)."""

    scene: DrivingScene
    """The initial scene (neural states of every part)."""
    sources: List[CameraView]
    """The training views: they seed the scene and feed the gradient lifting."""
    network: G3RLearnedOptimizer
    steps: G3RStepConfig
    metres_per_unit: float


@dataclass
class G3RModelConfig(SplatfactoModelConfig):
    """G3R: 3D neural Gaussians of a driving log refined by a learned optimizer (then optionally fine-tuned)."""

    _target: Type = field(default_factory=lambda: G3RModel)
    weights: Optional[str] = None
    """Trained learned optimizer: a `fourd-train-g3r` run folder (newest checkpoint), a checkpoint folder, or a
    Hugging Face hub id of one (offline with HF_HUB_OFFLINE=1). Required for training."""
    num_steps: int = 24
    """Learned-optimizer steps T (the paper: 24; G3R turbo: 12). The γ(t) schedule and step encoding are functions
    of t / T, so weights trained with any T run at another."""
    step_schedule: Optional[Literal["cosine", "constant"]] = None
    """Step size γ(t): None keeps the weights' training setting; "constant" is the paper's "no γ(t)" ablation."""
    finetune_steps: int = 0
    """Per-scene fine-tuning iterations after the learned steps (0: pure G3R)."""
    finetune_position_step: float = 1.6e-4
    """Fine-tuning step of the positions, as a fraction of the scene box's half-diagonal (splatfacto's means lr)."""
    finetune_log_scale_step: float = 5e-3
    finetune_rotation_step: float = 1e-3
    finetune_colour_step: float = 1e-2
    """Step of the colour logits (splatfacto's 2.5e-3 on SH DC ≈ 1e-2 on logits around 0.5)."""
    finetune_opacity_step: float = 5e-2
    finetune_latent_step: float = 1e-3
    lidar_depth_loss_weight: float = 0.0
    """Fine-tuning: weight of the L1 between rendered and LiDAR depth (scene units) on pixels with a return."""
    export_time: Optional[float] = None
    """Time in [0, 1] that `ns-export gaussian-splat` composes the scene at (None: 0); FOURD_EXPORT_TIME overrides."""
    lpips_net: Literal["alex", "vgg", "squeeze"] = "alex"
    """LPIPS backbone for evaluation; used only when its weights are present locally (never downloaded)."""
    background_color: Literal["black", "white"] = "black"
    sh_degree: int = 0
    """G3R's Gaussians carry RGB, not spherical harmonics (the paper's choice)."""
    num_downscales: int = 0

    def total_iterations(self) -> int:
        """Trainer iterations of a run: the learned steps, then the fine-tuning (the trainer sets its length)."""
        return self.num_steps + self.finetune_steps


class G3RModel(GaussianImageMetrics, SplatfactoModel):
    """See the module docstring."""

    config: G3RModelConfig
    method_label = "g3r"
    """Name used in messages."""

    # ---------------------------------------------------------------- construction
    def populate_modules(self) -> None:
        inputs: Optional[G3RInputs] = self.kwargs.get("g3r_inputs")
        self.inputs = inputs
        self._device_sources: Optional[List[CameraView]] = None
        metadata = self.kwargs.get("metadata") or {}
        driving = get_driving_metadata(metadata)
        self.tracks = {track.track_id: track for track in (driving.actors if driving is not None else [])}
        self.part_names: List[str] = []
        self.base_states = nn.ParameterList()
        self.offsets = nn.ParameterList()
        self.decoder = NeuralGaussianDecoder(0)
        self.reconstruction: Optional[G3RReconstruction] = None
        if inputs is not None:
            self.decoder = inputs.network.decoder
            self._set_parts(inputs.scene.states)
            steps = dataclasses.replace(inputs.steps, num_steps=self.config.num_steps)
            if self.config.step_schedule is not None:
                steps = dataclasses.replace(steps, schedule=self.config.step_schedule)
            # The update networks stay out of the state dict: G3RReconstruction is a plain object, not a module.
            self.reconstruction = G3RReconstruction(inputs.network, steps, inputs.metres_per_unit)
        self.actor_hold_time = inputs.scene.actor_hold_time if inputs is not None else 0.0
        self.register_buffer("learned_steps_done", torch.tensor(0))
        self.camera_optimizer = self.config.camera_optimizer.setup(num_cameras=self.num_train_data, device="cpu")
        from torchmetrics.image import PeakSignalNoiseRatio

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = SSIM(data_range=1.0, size_average=True, channel=3)
        self.lpips_metric = LazyLPIPS(self.config.lpips_net)
        self.step = 0
        self.crop_box: Optional[OrientedBox] = None
        self.background_color = get_color(self.config.background_color)
        self._export_logged = False

    def _set_parts(self, states: Dict[str, Tensor]) -> None:
        self.part_names = list(states)
        self.base_states = nn.ParameterList([Parameter(s.detach().clone(), requires_grad=False) for s in states.values()])
        self.offsets = nn.ParameterList([Parameter(torch.zeros_like(s)) for s in states.values()])

    @property
    def num_learned_steps(self) -> int:
        return 0 if self.reconstruction is None else self.reconstruction.config.num_steps

    def get_extra_state(self) -> dict:
        return {"part_names": list(self.part_names)}

    def set_extra_state(self, state: dict) -> None:
        self.part_names = list(state["part_names"])

    def load_state_dict(self, state_dict, strict: bool = True, **kwargs):  # type: ignore[override]
        """Resize the parts and the decoder to the checkpoint's before loading (evaluation builds an empty model)."""
        self.resize_to_checkpoint(state_dict)
        result = nn.Module.load_state_dict(self, state_dict, strict=strict)
        self.to(self.device)
        return result

    def resize_parts(self, state_dict) -> List[torch.Size]:
        """Zero parts shaped as the checkpoint's; returns their shapes."""
        count = len([k for k in state_dict if k.startswith("base_states.")])
        shapes = [state_dict[f"base_states.{i}"].shape for i in range(count)]
        self.base_states = nn.ParameterList([Parameter(torch.zeros(s), requires_grad=False) for s in shapes])
        self.offsets = nn.ParameterList([Parameter(torch.zeros(s)) for s in shapes])
        return shapes

    def resize_to_checkpoint(self, state_dict) -> None:
        """Parts (and the decoder's latent width) shaped as in ``state_dict``."""
        shapes = self.resize_parts(state_dict)
        if shapes:
            latent = int(shapes[0][1]) - EXPLICIT_CHANNELS
            if latent != self.decoder.latent_dim:
                self.decoder = NeuralGaussianDecoder(latent)

    # ---------------------------------------------------------------- state
    def finetune_step_scale(self, channels: int, device: torch.device) -> Tensor:
        half_diagonal = float((self.scene_box.aabb[1] - self.scene_box.aabb[0]).norm() / 2)
        c = self.config
        return per_channel(
            channels, c.finetune_position_step * half_diagonal, c.finetune_log_scale_step, c.finetune_rotation_step,
            c.finetune_colour_step, c.finetune_opacity_step, c.finetune_latent_step, device,
        )  # fmt: skip

    def current_states(self) -> Dict[str, Tensor]:
        """Part name -> state (base + scaled offset; differentiable in the offsets)."""
        return {name: base + offset * self.part_step_scale(name, base)
                for name, base, offset in zip(self.part_names, self.base_states, self.offsets)}

    def part_step_scale(self, name: str, base: Tensor) -> Tensor:
        """Per-channel fine-tuning step of part ``name`` (the same for every part of g3r)."""
        return self.finetune_step_scale(base.shape[1], base.device)

    def scene(self) -> DrivingScene:
        states = self.current_states()
        tracks = {name: self.tracks[name.split("/", 1)[1]] for name in states if part_kind(name) == "actor"}
        return DrivingScene(states=states, tracks=tracks, actor_hold_time=self.actor_hold_time)

    def gaussians_at(self, time: float) -> GaussianParams:
        return self.scene().scene_at(time, lambda kind, state: self.decoder(state))

    # ---------------------------------------------------------------- the learned steps
    def learned_step(self, step: int) -> None:
        """Iteration ``step`` < T: one learned-optimizer step on the source views (no gradient to any parameter)."""
        if self.reconstruction is None or self.inputs is None or step >= self.num_learned_steps:
            return
        with torch.no_grad():
            scene = self.scene()
            if self._device_sources is None:  # moved once, on the device training runs on
                self._device_sources = [view.to(self.device) for view in self.inputs.sources]
            sources = self._device_sources
            states, report = self.reconstruction.step(scene, scene.states, sources, step, self.num_learned_steps)
            for index, name in enumerate(self.part_names):
                self.base_states[index].data.copy_(states[name])
            self.learned_steps_done.fill_(step + 1)
        if step == 0 or step + 1 == self.num_learned_steps:
            CONSOLE.log(f"g3r: learned step {step + 1}/{self.num_learned_steps}, γ = {report.gamma:.3f}, source MSE "
                        f"before it {report.source_loss / max(len(sources), 1):.5f}")

    def in_learned_phase(self) -> bool:
        return self.training and self.step < self.num_learned_steps

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        return [
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self.step_cb),
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self.learned_step),
        ]

    def step_cb(self, step: int) -> None:  # type: ignore[override]
        self.step = step

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {"g3r_finetune": list(self.offsets)}

    # ---------------------------------------------------------------- rendering
    def get_outputs(self, camera: Cameras) -> Dict[str, Union[Tensor, List]]:
        if not isinstance(camera, Cameras):
            CONSOLE.print("[bold red]get_outputs expects a Cameras object")
            return {}
        width, height = int(camera.width.reshape(-1)[0]), int(camera.height.reshape(-1)[0])
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.in_learned_phase()):
            gaussians = self.gaussians_at(camera_time(camera))
        if self.crop_box is not None and not self.training:
            gaussians = gaussians.select(self.crop_box.within(gaussians.means).squeeze(-1))
        if gaussians.num == 0:
            return self.get_empty_outputs(width, height, self.background_color.to(self.device))
        intrinsics = camera.get_intrinsics_matrices().reshape(-1, 3, 3)[0].to(self.device)
        render = render_camera(gaussians, camera.camera_to_worlds.reshape(-1, 3, 4)[0].to(self.device), intrinsics,
                               width, height, background=self.background_color.to(self.device))
        self.last_size = (height, width)
        background = self.background_color.to(self.device)
        if not self.training:
            background = background.expand(height, width, 3)
        return {"rgb": render.rgb, "depth": render.depth[..., None], "accumulation": render.alpha[..., None],
                "background": background}

    # ---------------------------------------------------------------- losses
    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        gt = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
        pred = outputs["rgb"]
        l1 = (gt - pred).abs().mean()
        ssim = 1 - self.ssim(gt.permute(2, 0, 1)[None], pred.permute(2, 0, 1)[None])
        loss = (1 - self.config.ssim_lambda) * l1 + self.config.ssim_lambda * ssim
        losses = {"main_loss": loss}
        if self.config.lidar_depth_loss_weight > 0 and "lidar_depth" in batch:
            losses["lidar_depth_loss"] = self.config.lidar_depth_loss_weight * self.lidar_depth_l1(outputs["depth"], batch)
        if self.in_learned_phase():
            # The learned optimizer moved the scene before this iteration; the trainer's backward and optimizer
            # step must not touch it. A detached copy keeps the reported value without reaching any parameter.
            return {name: value.detach().clone().requires_grad_(True) for name, value in losses.items()}
        return losses

    # ---------------------------------------------------------------- export
    def _exported(self) -> GaussianParams:
        time = chosen_export_time(self.config.export_time)
        if not self._export_logged:
            self._export_logged = True
            CONSOLE.print(f"[bold]fourd_ns {self.method_label}: exporting the scene composed at time t={time if time is not None else 0.0}"
                          " (set FOURD_EXPORT_TIME=t to choose another).")
        with torch.no_grad():
            return self.gaussians_at(0.0 if time is None else time)

    @property
    def num_points(self) -> int:
        return sum(int(s.shape[0]) for s in self.base_states)

    @property
    def means(self):
        return self._exported().means

    @property
    def scales(self):
        return torch.log(self._exported().scales.clamp_min(1e-12))

    @property
    def quats(self):
        return self._exported().quats

    @property
    def opacities(self):
        return logit(self._exported().opacities)[:, None]

    @property
    def features_dc(self):
        return logit(self._exported().colors)

    @property
    def features_rest(self):
        return torch.zeros(self.num_points, 0, 3, device=self.device)

