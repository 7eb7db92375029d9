"""Training G3R's learned optimizer across driving scenes (``fourd-train-g3r``; paper §3.3 / supplement).

One *scene iteration*: draw a log and a window of interleaved source / target frames
(`fourd_ns.datasets.scene_collection`), seed the scene's 3D neural Gaussians from the source frames' LiDAR
(`fourd_ns.reconstruction.g3r_scene`), then unroll ``k`` reconstruction steps. After **every** step the new state is
rendered into the source and target views and the network is updated once (Adam, paper lr 1e-4):

    L = MSE + λ_lpips · LPIPS + λ_reg · flatness,   on sources and (unless ``target_supervision`` is off) targets.

The input gradient of each step comes from the source views only; target views never enter the lifting, and logs
listed as evaluation logs contribute only their never-evaluated frames. Choices where the paper is silent:

- **Truncated unroll**: each step starts from the previous state detached (see
  `fourd_ns.reconstruction.g3r_reconstruction`).
- **Warm-up of the unroll**: iteration i unrolls ``k_i = 1 + (T − 1) · min(1, i / warmup_iterations)`` steps
  (rounded down), and γ(t) / the step encoding are those of a k_i-step reconstruction, so early iterations teach
  big single steps and later ones the full schedule.
- **Loss per view**: each view's loss is back-propagated on its own to the new state (the view's rendering graph
  freed after it), so memory does not grow with the number of views, and the summed state gradient goes through
  the network once per step; the total is the mean over views.
- **LPIPS** is used only when its backbone weights are on disk (`fourd_ns.metrics.lpips`); otherwise it is off and
  one warning says so — no substitute weights.
- **Learning rate**: linear warm-up over ``lr_warmup_iterations`` then cosine to ``min_lr`` over the run, stepped
  per scene iteration.

Distributed: under ``torchrun`` every rank draws its own scenes (its own RNG stream) but unrolls the same number of
steps, and gradients are averaged by an explicit all-reduce after every step (`all_reduce_gradients`: a scene without
actors leaves the actor network without gradients on that rank, which DDP's reducer does not allow). Ranks therefore
hold identical weights throughout; only rank 0 writes checkpoints, TensorBoard logs and progress. Checkpoints are
written at scene-iteration boundaries and resume exactly (weights, Adam, scheduler, every rank's RNG).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Literal, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from fourd_ns.datasets.scene_collection import SceneCollection, SceneCollectionConfig, SceneDraw
from fourd_ns.learning import all_reduce_gradients, seed_everything
from fourd_ns.learning.cross_scene import IterationResult, run_cross_scene_training, run_distributed, schedule_of
from fourd_ns.learning.optimizer_step import clipped_step
from fourd_ns.metrics.lpips import LazyLPIPS
from fourd_ns.networks.g3r_net import G3RLearnedOptimizer, G3RNetworkConfig
from fourd_ns.networks.g3r_weights import RECONSTRUCTION_SETTINGS
from fourd_ns.reconstruction.g3r_reconstruction import G3RReconstruction, G3RStepConfig, flatness_loss
from fourd_ns.reconstruction.g3r_scene import G3RSeedingConfig, seed_g3r_scene
from fourd_ns.reconstruction.views import CameraView
from fourd_ns.scene.driving_scene import DrivingScene



@dataclass
class G3RTrainConfig:
    """`fourd-train-g3r`: train G3R's learned optimizer on a collection of driving logs."""

    output_dir: Path = Path("outputs/g3r")
    """Run folder: checkpoints/step-NNNNNNN (config.json + model.safetensors + trainer_state.pt), tensorboard/."""
    data: SceneCollectionConfig = field(default_factory=SceneCollectionConfig)
    network: G3RNetworkConfig = field(default_factory=G3RNetworkConfig)
    steps: G3RStepConfig = field(default_factory=G3RStepConfig)
    seeding: G3RSeedingConfig = field(default_factory=G3RSeedingConfig)
    iterations: int = 1000
    """Scene iterations (the paper: about 1000)."""
    warmup_iterations: int = 100
    """Iterations over which the number of unrolled steps grows from 1 to T."""
    lr: float = 1e-4
    min_lr: float = 1e-5
    lr_warmup_iterations: int = 10
    clip_norm: float = 1.0
    """Global gradient-norm clip of each network update."""
    lpips_weight: float = 0.01
    lpips_net: Literal["alex", "vgg", "squeeze"] = "vgg"
    flatness_weight: float = 0.01
    flatness_epsilon_metres: float = 0.01
    """ε of the flatness regulariser max(0, smallest scale − ε), in metres."""
    target_supervision: bool = True
    """Supervise the target (novel) views after each step too (off: the paper's "no novel-view supervision")."""
    save_every: int = 50
    keep_last: int = 3
    seed: int = 0
    device: Literal["auto", "cuda", "cpu"] = "auto"
    resume: Optional[Path] = None
    """A run folder or checkpoint folder to continue exactly from."""
    torch_threads: Optional[int] = None
    """CPU threads per process (default: torch's)."""

    def validate(self) -> None:
        if self.iterations < 1 or self.steps.num_steps < 1:
            raise ValueError("--iterations and --steps.num-steps must be at least 1")
        if self.data.sources < 1:
            raise ValueError("--data.sources must be at least 1")


def unrolled_steps(iteration: int, total_steps: int, warmup_iterations: int) -> int:
    """Steps unrolled in scene iteration ``iteration`` (see the module docstring)."""
    if warmup_iterations <= 0:
        return total_steps
    fraction = min(1.0, iteration / warmup_iterations)
    return 1 + int(math.floor((total_steps - 1) * fraction))


def reconstruction_settings(config: G3RTrainConfig) -> dict:
    """The settings stored beside the weights, so ``ns-train g3r`` reconstructs the way the network was trained."""
    return {"steps": asdict(config.steps), "seeding": json.loads(json.dumps(asdict(config.seeding), default=list))}


class G3RLoss:
    """MSE + λ_lpips · LPIPS on one rendered view, and the flatness term on a state."""

    def __init__(self, config: G3RTrainConfig, console: Console) -> None:
        self.config = config
        self.lpips = LazyLPIPS(config.lpips_net) if config.lpips_weight > 0 else None
        if self.lpips is not None and not self.lpips.available:
            console.print(f"[yellow]G3R training: LPIPS is off ({self.lpips.unavailable_reason}); the loss is MSE + "
                          "flatness only.[/yellow]")
            self.lpips = None

    def view(self, rgb: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        loss = F.mse_loss(rgb, image)
        if self.lpips is not None:
            pred = rgb.permute(2, 0, 1)[None]
            target = image.permute(2, 0, 1)[None]
            loss = loss + self.config.lpips_weight * self.lpips(pred, target)
        return loss


@dataclass
class IterationReport:
    source_mse_before: float
    """Source MSE of the seeded scene (before any step)."""
    source_mse: float
    """Source MSE after the last unrolled step."""
    target_mse: float
    """Target MSE after the last unrolled step (NaN without targets)."""
    steps: int


def train_on_scene(
    reconstruction: G3RReconstruction,
    scene: DrivingScene,
    sources: Sequence[CameraView],
    targets: Sequence[CameraView],
    num_steps: int,
    loss: G3RLoss,
    optimizer: torch.optim.Optimizer,
    network: torch.nn.Module,
    config: G3RTrainConfig,
    context,
    metres_per_unit: float,
) -> IterationReport:
    """Unroll ``num_steps`` steps on one scene, updating the network after each (module docstring)."""
    supervised: List[Tuple[CameraView, bool]] = [(v, True) for v in sources]
    if config.target_supervision:
        supervised += [(v, False) for v in targets]
    states = dict(scene.states)
    before = float("nan")
    source_mse = target_mse = float("nan")
    epsilon = config.flatness_epsilon_metres / metres_per_unit
    for step in range(num_steps):
        optimizer.zero_grad(set_to_none=True)
        new_states, report = reconstruction.step(scene, states, sources, step, num_steps)
        if step == 0:
            before = report.source_loss / max(len(sources), 1)
        # Two-stage backward: each view's loss goes back to a detached copy of the new state (its rendering graph
        # freed after its own backward; the decoder's parameters get their share here), then the summed state
        # gradient goes through the network once. The same gradient as back-propagating every view through the
        # network, at one network backward per step instead of one per view.
        leaves = {name: s.detach().requires_grad_(s.requires_grad) for name, s in new_states.items()}
        sums = {True: 0.0, False: 0.0}
        for view, is_source in supervised:
            render = reconstruction.render(scene, leaves, view)
            view_loss = loss.view(render.rgb, view.image) / len(supervised)
            if view_loss.requires_grad:
                view_loss.backward()
            sums[is_source] += float(F.mse_loss(render.rgb.detach(), view.image))
        if config.flatness_weight > 0:
            flat = sum(flatness_loss(s, epsilon) for s in leaves.values())
            if flat.requires_grad:
                (config.flatness_weight * flat).backward()
        reached = [name for name, leaf in leaves.items() if leaf.grad is not None]
        if reached:
            torch.autograd.backward([new_states[n] for n in reached], [leaves[n].grad for n in reached])
        all_reduce_gradients(network.parameters(), context)
        clipped_step(optimizer, network.parameters(), config.clip_norm)
        states = {name: s.detach() for name, s in new_states.items()}
        source_mse = sums[True] / max(len(sources), 1)
        if targets and config.target_supervision:
            target_mse = sums[False] / len(targets)
    if targets and not config.target_supervision:
        with torch.no_grad():
            target_mse = float(
                np.mean([F.mse_loss(reconstruction.render(scene, states, v).rgb, v.image).item() for v in targets])
            )
    return IterationReport(source_mse_before=before, source_mse=source_mse, target_mse=target_mse, steps=num_steps)


def build_network(config: G3RNetworkConfig, device: torch.device) -> G3RLearnedOptimizer:
    return G3RLearnedOptimizer(config).to(device)


def train(config: G3RTrainConfig, console: Optional[Console] = None) -> Path:
    """Run (or resume) training; returns the newest checkpoint folder."""
    return run_distributed(config, _train, console)


def _train(config: G3RTrainConfig, context, console: Console) -> Path:
    device = context.device
    seed_everything(config.seed)
    network = build_network(config.network, device)
    loss = G3RLoss(config, console)
    settings = json.dumps(reconstruction_settings(config), indent=2) + "\n"

    def iterate(iteration: int, draw: SceneDraw, rng: np.random.Generator, optimizer) -> IterationResult:
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        scene = seed_g3r_scene(draw.log.driving, draw.sources, config.seeding, config.network.latent_dim,
                               generator).to(device)  # fmt: skip
        metres = draw.log.driving.metres_per_unit
        reconstruction = G3RReconstruction(network, config.steps, metres)
        k = unrolled_steps(iteration, config.steps.num_steps, config.warmup_iterations)
        report = train_on_scene(reconstruction, scene, [v.to(device) for v in draw.sources],
                                [v.to(device) for v in draw.targets], k, loss, optimizer, network, config, context,
                                metres)  # fmt: skip
        has_targets = bool(draw.targets)

        def status(values: dict) -> str:
            text = (f"k={k} src PSNR {-10 * math.log10(max(values['source_mse_before'], 1e-12)):.2f}→"
                    f"{-10 * math.log10(max(values['source_mse'], 1e-12)):.2f} dB")  # fmt: skip
            if has_targets:
                text += f" tgt {-10 * math.log10(max(values['target_mse'], 1e-12)):.2f} dB"
            return text

        values = dict(source_mse_before=report.source_mse_before, source_mse=report.source_mse,
                      target_mse=report.target_mse if draw.targets else 0.0, unrolled_steps=float(k))  # fmt: skip
        return IterationResult(values, status)

    def banner(collection) -> str:
        return (f"G3R training: {len(collection)} log(s), {config.iterations} scene iterations, T = "
                f"{config.steps.num_steps}, {context.world_size} process(es) on {device}")

    return run_cross_scene_training(
        schedule_of(config), "G3R", network, config.network.to_dict(), lambda: SceneCollection(config.data), iterate,
        context, console, extra_files={RECONSTRUCTION_SETTINGS: settings}, banner=banner,
    )  # fmt: skip
