"""Unsupervised training of Flux4D across driving clips (``fourd-train-flux4d``; paper §3.4).

One *clip iteration*: draw a log and a window of consecutive frames (`fourd_ns.datasets.scene_collection`): the even
positions are the input frames (their LiDAR seeds the Gaussians, their images colour them and feed the refinement's
gradient lifting), the odd positions are in-between frames. Lift the initial Gaussians from the inputs
(`fourd_ns.reconstruction.flux4d_scene`), predict Gaussians and motion with f_θ, refine R times with f_φ, render the
supervised views at their own times and take one optimizer step on

    L = mean over supervised views of L_view  +  λ_vel · mean_i ‖v_i‖        (`fourd_ns.reconstruction.flux4d_losses`)

No labels of any kind are used: images, LiDAR depth and camera poses only. Logs listed as evaluation logs contribute
only their never-evaluated frames (`SceneCollectionConfig.evaluation_logs`).

Choices where the paper is silent:

- **Supervised views**: the input views and the in-between views (``supervise_inputs`` can drop the inputs; then
  only novel times supervise, which forces motion to explain them).
- **Supervised outputs**: with refinement, the prediction and every refined state each get the loss (mean over
  them; ``supervise_every_iteration``), so the base network always has a direct signal; otherwise only the last.
- **Memory**: each view's loss is back-propagated on its own to a detached copy of the output states, then the summed
  state gradients go through the networks once (as in `fourd_ns.learning.g3r_training`).
- **Learning rate**: linear warm-up then cosine to ``min_lr``, per clip iteration; Adam; gradient-norm clip.

Distributed: under ``torchrun`` every rank draws its own clips, gradients are averaged by an explicit all-reduce
(`all_reduce_gradients`; f_φ gets no gradient without refinement), ranks stay identical, only rank 0 writes.
Checkpoints at iteration boundaries resume exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence

import numpy as np
import torch
from rich.console import Console

from fourd_ns.datasets.scene_collection import SceneCollection, SceneCollectionConfig, SceneDraw
from fourd_ns.learning import all_reduce_gradients, seed_everything
from fourd_ns.learning.cross_scene import IterationResult, run_cross_scene_training, run_distributed, schedule_of
from fourd_ns.learning.optimizer_step import clipped_step
from fourd_ns.networks.flux4d_net import Flux4DNetwork, Flux4DNetworkConfig
from fourd_ns.networks.flux4d_weights import RECONSTRUCTION_SETTINGS
from fourd_ns.reconstruction.flux4d_losses import Flux4DLossConfig, velocity_prior, view_loss
from fourd_ns.reconstruction.flux4d_reconstruction import Flux4DReconstruction, Flux4DRefinementConfig, clip_units
from fourd_ns.reconstruction.flux4d_scene import Flux4DSeedingConfig, seed_flux4d_scene
from fourd_ns.reconstruction.views import CameraView
from fourd_ns.scene.driving_scene import BACKGROUND, DrivingScene


def _clip_collection() -> SceneCollectionConfig:
    return SceneCollectionConfig(sources=6, targets=5)


@dataclass
class Flux4DTrainConfig:
    """`fourd-train-flux4d`: train Flux4D's networks without labels on a collection of driving logs."""

    output_dir: Path = Path("outputs/flux4d")
    """Run folder: checkpoints/step-NNNNNNN (config.json + model.safetensors + reconstruction.json +
    trainer_state.pt), tensorboard/."""
    data: SceneCollectionConfig = field(default_factory=_clip_collection)
    """Logs and the clip window: ``sources`` input frames interleaved with ``targets`` in-between frames (the
    paper's 1 s clips at 10 Hz: 6 inputs 0, 2, …, 10 and 5 in-between frames)."""
    network: Flux4DNetworkConfig = field(default_factory=Flux4DNetworkConfig)
    seeding: Flux4DSeedingConfig = field(default_factory=Flux4DSeedingConfig)
    refinement: Flux4DRefinementConfig = field(default_factory=Flux4DRefinementConfig)
    loss: Flux4DLossConfig = field(default_factory=Flux4DLossConfig)
    supervise_inputs: bool = True
    """Put the loss on the input views too (not only on the in-between views)."""
    supervise_every_iteration: bool = True
    """With refinement: a loss on the prediction and on every refined state (else only on the last)."""
    iterations: int = 30_000
    """Clip iterations (the paper: 30k on 4 GPUs)."""
    lr: float = 1e-3
    min_lr: float = 1e-4
    lr_warmup_iterations: int = 20
    clip_norm: float = 1.0
    save_every: int = 50
    keep_last: int = 3
    seed: int = 0
    device: Literal["auto", "cuda", "cpu"] = "auto"
    resume: Optional[Path] = None
    """A run folder or checkpoint folder to continue exactly from."""
    torch_threads: Optional[int] = None

    def validate(self) -> None:
        if self.iterations < 1:
            raise ValueError("--iterations must be at least 1")
        if self.data.sources < 1:
            raise ValueError("--data.sources (input frames per clip) must be at least 1")
        if self.refinement.iterations > 0 and not self.network.refiner:
            raise ValueError("--refinement.iterations > 0 needs --network.refiner True")
        if not self.supervise_inputs and self.data.targets < 1:
            raise ValueError("--supervise-inputs False needs in-between views (--data.targets >= 1)")


def reconstruction_settings(config: Flux4DTrainConfig) -> dict:
    """Settings stored beside the weights, so ``ns-train flux4d`` reconstructs as the networks were trained."""
    return json.loads(json.dumps(
        {"seeding": asdict(config.seeding), "refinement": asdict(config.refinement), "loss": asdict(config.loss)},
        default=list,
    ))  # fmt: skip


@dataclass
class ClipReport:
    input_mse: float
    """Mean input-view MSE of the last output."""
    between_mse: float
    """Mean in-between-view MSE of the last output (NaN without such views)."""
    depth_l1_m: float
    speed_mps: float
    """Mean Gaussian speed of the last output (m/s)."""
    loss: float


def train_on_clip(
    reconstruction: Flux4DReconstruction,
    scene: DrivingScene,
    sources: Sequence[CameraView],
    targets: Sequence[CameraView],
    config: Flux4DTrainConfig,
) -> ClipReport:
    """Forward, loss and backward on one clip (gradients accumulate in the networks; no optimizer step)."""
    units = reconstruction.units
    outputs, _ = reconstruction.run(scene, sources)
    supervised_outputs = outputs if config.supervise_every_iteration else outputs[-1:]
    views: List[tuple[CameraView, bool]] = [(v, True) for v in sources] if config.supervise_inputs else []
    views += [(v, False) for v in targets]
    weight = 1.0 / len(supervised_outputs)
    roots, grads = [], []
    sums: Dict[str, List[float]] = {"input": [], "between": [], "depth": []}
    total = 0.0
    for index, states in enumerate(supervised_outputs):
        leaves = {name: s.detach().requires_grad_(s.requires_grad) for name, s in states.items()}
        last = index == len(supervised_outputs) - 1
        for view, is_input in views:
            render = reconstruction.render(leaves, view, with_flow=config.loss.velocity_reweighting)
            loss, parts = view_loss(render, view, config.loss, units.metres_per_unit)
            loss = loss * weight / len(views)
            if loss.requires_grad:
                loss.backward()
            total += float(loss.detach())
            if last:
                sums["input" if is_input else "between"].append(parts["mse"])
                if "depth_l1_m" in parts:
                    sums["depth"].append(parts["depth_l1_m"])
        if config.loss.velocity_weight > 0:
            prior = velocity_prior(leaves[BACKGROUND], reconstruction.layout, units.metres_per_unit,
                                   units.seconds_per_time)  # fmt: skip
            if prior.requires_grad:
                (config.loss.velocity_weight * weight * prior).backward()
            total += float(config.loss.velocity_weight * weight * prior.detach())
        for name, leaf in leaves.items():
            if leaf.grad is not None and states[name].requires_grad:
                roots.append(states[name])
                grads.append(leaf.grad)
    if roots:
        torch.autograd.backward(roots, grads)
    if not config.supervise_inputs:  # still report the input views' fit
        with torch.no_grad():
            sums["input"] = [float(((reconstruction.render(outputs[-1], v).rgb - v.image) ** 2).mean()) for v in sources]
    with torch.no_grad():
        speed = velocity_prior(outputs[-1][BACKGROUND], reconstruction.layout, units.metres_per_unit,
                               units.seconds_per_time)  # fmt: skip
    mean = lambda values: float(np.mean(values)) if values else float("nan")  # noqa: E731
    return ClipReport(input_mse=mean(sums["input"]), between_mse=mean(sums["between"]),
                      depth_l1_m=mean(sums["depth"]), speed_mps=float(speed), loss=total)  # fmt: skip


def build_network(config: Flux4DNetworkConfig, device: torch.device) -> Flux4DNetwork:
    return Flux4DNetwork(config).to(device)


def train(config: Flux4DTrainConfig, console: Optional[Console] = None) -> Path:
    """Run (or resume) training; returns the newest checkpoint folder."""
    return run_distributed(config, _train, console)


def _train(config: Flux4DTrainConfig, context, console: Console) -> Path:
    device = context.device
    seed_everything(config.seed)
    network = build_network(config.network, device)
    settings = json.dumps(reconstruction_settings(config), indent=2) + "\n"

    def iterate(iteration: int, draw: SceneDraw, rng: np.random.Generator, optimizer) -> IterationResult:
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        driving = draw.log.driving
        scene = seed_flux4d_scene(driving, draw.sources, config.seeding, network.layout, generator).to(device)
        units = clip_units(driving.metres_per_unit, driving.time_span)
        reconstruction = Flux4DReconstruction(network, config.refinement, units,
                                              frame_seconds=config.loss.frame_seconds)  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        report = train_on_clip(reconstruction, scene, [v.to(device) for v in draw.sources],
                               [v.to(device) for v in draw.targets], config)  # fmt: skip
        all_reduce_gradients(network.parameters(), context)
        clipped_step(optimizer, network.parameters(), config.clip_norm)
        has_targets = bool(draw.targets)

        def status(values: dict) -> str:
            text = f"inputs {-10 * math.log10(max(values['input_mse'], 1e-12)):.2f} dB"
            if has_targets:
                text += f", between {-10 * math.log10(max(values['between_mse'], 1e-12)):.2f} dB"
            return text + f", speed {values['speed_mps']:.2f} m/s"

        values = dict(loss=report.loss, input_mse=report.input_mse,
                      between_mse=report.between_mse if draw.targets else 0.0,
                      depth_l1_m=0.0 if math.isnan(report.depth_l1_m) else report.depth_l1_m,
                      speed_mps=report.speed_mps)  # fmt: skip
        return IterationResult(values, status)

    def banner(collection) -> str:
        return (f"Flux4D training: {len(collection)} log(s), {config.iterations} clip iterations, "
                f"{config.refinement.iterations} refinement iteration(s), motion order "
                f"{config.network.motion_order}, {context.world_size} process(es) on {device}")  # fmt: skip

    return run_cross_scene_training(
        schedule_of(config), "Flux4D", network, config.network.to_dict(), lambda: SceneCollection(config.data),
        iterate, context, console, extra_files={RECONSTRUCTION_SETTINGS: settings}, banner=banner,
    )  # fmt: skip
