"""Per-scene reconstruction by G3R's learned optimizer: T steps of render → lift gradients → network update.

One step (``G3RReconstruction.step``):

1. decode the 3D neural Gaussians of every part, compose the scene at each source view's time
   (`fourd_ns.scene.driving_scene.DrivingScene.scene_at`), render, and lift the summed MSE to per-Gaussian
   gradients (`fourd_ns.reconstruction.gradient_lifting`), normalised per channel and part;
2. for each part, the network of its kind predicts a bounded update Δ from (state, gradient, step encoding);
3. ``S ← S + γ(t) · step_scale ⊙ Δ`` with the cosine step size γ(t) (`fourd_ns.reconstruction.step_schedule`).

The state that enters a step is detached: the unroll is truncated to one step (the paper is silent on how far it
back-propagates; both public reimplementations we read truncate, and a full 24-step unroll through rasterisation
does not fit in memory at the paper's point counts). With gradients enabled the returned states carry the graph to
the network's parameters, so a trainer can put a loss on them after every step; under ``torch.no_grad`` (inference)
only the lifting builds graphs, one view at a time.

``step_scale`` gives Δ = ±1 a meaning per channel: positions move at most ``position_step_voxels`` voxels per step,
log-scales ``log_scale_step``, and so on (defaults below, chosen so that a few full-size steps can move any channel
across its useful range).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Literal, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from fourd_ns.networks.g3r_net import G3RLearnedOptimizer
from fourd_ns.reconstruction.gradient_lifting import lift_gradients, normalise_gradient
from fourd_ns.reconstruction.step_schedule import step_encoding, step_size
from fourd_ns.reconstruction.view_rendering import ViewRender, render_view
from fourd_ns.reconstruction.views import CameraView
from fourd_ns.scene.driving_scene import DrivingScene, part_kind
from fourd_ns.scene.neural_gaussians import LOG_SCALE, POSITION, per_channel


@dataclass
class G3RStepConfig:
    """How the learned optimizer's updates are applied (independent of the trained weights)."""

    num_steps: int = 24
    """Reconstruction steps T (the paper: 24; its turbo setting: 12)."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """Step size γ(t): the cosine schedule, or a constant (the paper's "no γ(t)" ablation)."""
    constant_step: float = 0.5
    """γ for every step when ``schedule`` is constant."""
    background_voxel_metres: float = 0.5
    """Voxel size of the background's sparse U-Net, in metres (the paper does not report one; 0.2 m in a public
    reimplementation at 800k points; coarser here because the CPU budgets are 10-100× smaller)."""
    actor_voxel_metres: float = 0.25
    """Voxel size for actor parts (in their box frames), in metres."""
    far_voxel_fraction: float = 0.05
    """Voxel size for the far field as a fraction of its radius (median distance of its Gaussians from their
    centre), so its shell of Gaussians is a one-voxel-thick surface and the 3D U-Net acts on it like a 2D CNN on
    the sky's grid."""
    position_step_voxels: float = 0.5
    """Largest position change of one full step (γ = 1, Δ = ±1), in voxels of the part."""
    log_scale_step: float = 0.5
    rotation_step: float = 0.5
    colour_step: float = 2.0
    """Largest change of the colour logits per full step."""
    opacity_step: float = 2.0
    """Largest change of the opacity logit per full step."""
    latent_step: float = 1.0


def channel_step_scale(
    config: G3RStepConfig, state_channels: int, voxel_size: float, device: torch.device
) -> Float[Tensor, "C"]:
    """Per-channel bound of one full step (see `G3RStepConfig`)."""
    return per_channel(
        state_channels, config.position_step_voxels * voxel_size, config.log_scale_step, config.rotation_step,
        config.colour_step, config.opacity_step, config.latent_step, device,
    )  # fmt: skip


@dataclass
class StepReport:
    """What one reconstruction step saw."""

    step: int
    gamma: float
    source_loss: float
    """Summed source-view MSE of the state the step started from (the lifted loss)."""


class G3RReconstruction:
    """Runs the learned optimizer on one scene (training and inference share it)."""

    def __init__(
        self,
        network: G3RLearnedOptimizer,
        config: G3RStepConfig,
        metres_per_unit: float,
        background: Optional[Float[Tensor, "3"]] = None,
    ) -> None:
        self.network = network
        self.config = config
        self.metres_per_unit = float(metres_per_unit)
        self.background = background

    # ---------------------------------------------------------------- geometry of the parts
    def voxel_size(self, kind: str, state: Tensor) -> float:
        """Voxel size (scene units) of the U-Net for a part of kind ``kind`` with state ``state``."""
        if kind == "background":
            return self.config.background_voxel_metres / self.metres_per_unit
        if kind == "actor":
            return self.config.actor_voxel_metres / self.metres_per_unit
        if kind == "far":
            positions = state[:, POSITION].detach()
            radius = float((positions - positions.mean(dim=0)).norm(dim=-1).median())
            return self.config.far_voxel_fraction * max(radius, 1e-6)
        raise ValueError(f"Unknown part kind {kind!r}")

    # ---------------------------------------------------------------- rendering
    def decode(self, kind: str, state: Tensor):
        return self.network.decoder(state)

    def render(self, scene: DrivingScene, states: Dict[str, Tensor], view: CameraView) -> ViewRender:
        gaussians = scene.with_states(states).scene_at(view.time, self.decode)
        return render_view(gaussians, view, background=self.background)

    def source_loss(self, scene: DrivingScene, states: Dict[str, Tensor], view: CameraView) -> Tensor:
        """The lifted objective of one view: MSE of the render against the image."""
        return F.mse_loss(self.render(scene, states, view).rgb, view.image)

    def lift(
        self, scene: DrivingScene, states: Dict[str, Tensor], sources: Sequence[CameraView]
    ) -> Tuple[Dict[str, Tensor], float]:
        """Per-part normalised gradients of the summed source-view MSE, and that loss."""
        grads, loss = lift_gradients(
            states, lambda leaves, i: self.source_loss(scene, leaves, sources[i]), range(len(sources))
        )
        return {name: normalise_gradient(grad) for name, grad in grads.items()}, loss

    # ---------------------------------------------------------------- the update
    def step(
        self,
        scene: DrivingScene,
        states: Dict[str, Tensor],
        sources: Sequence[CameraView],
        step: int,
        num_steps: Optional[int] = None,
    ) -> Tuple[Dict[str, Tensor], StepReport]:
        """One learned-optimizer step from ``states`` (detached first: truncated unroll)."""
        total = self.config.num_steps if num_steps is None else num_steps
        states = {name: state.detach() for name, state in states.items()}
        with torch.no_grad():
            grads, loss = self.lift(scene, states, sources)
        gamma = step_size(step, total, self.config.schedule, self.config.constant_step)
        device = next(iter(states.values())).device
        code = step_encoding(step, total, self.network.config.step_encoding_channels).to(device)
        updated = {}
        for kind in ("background", "actor", "far"):
            names = [name for name in states if part_kind(name) == kind and states[name].shape[0] > 0]
            if not names:
                continue
            # One network call per kind: a scene's actors (often dozens) go through the U-Net together.
            voxel = self.voxel_size(kind, torch.cat([states[name] for name in names]))
            deltas = self.network.update_parts(kind, [states[n] for n in names], [grads[n] for n in names], voxel, code)
            scale = channel_step_scale(self.config, states[names[0]].shape[1], voxel, device)
            for name, delta in zip(names, deltas):
                updated[name] = states[name] + gamma * scale * delta
        updated = {name: updated.get(name, state) for name, state in states.items()}
        return updated, StepReport(step=step, gamma=gamma, source_loss=loss)

    def run(
        self,
        scene: DrivingScene,
        sources: Sequence[CameraView],
        num_steps: Optional[int] = None,
        on_step: Optional[Callable[[Dict[str, Tensor], StepReport], None]] = None,
    ) -> Tuple[Dict[str, Tensor], List[StepReport]]:
        """All T steps under no-grad (inference); ``on_step`` sees each step's result."""
        total = self.config.num_steps if num_steps is None else num_steps
        states = dict(scene.states)
        reports = []
        with torch.no_grad():
            for t in range(total):
                states, report = self.step(scene, states, sources, t, total)
                reports.append(report)
                if on_step is not None:
                    on_step(states, report)
        return states, reports


def flatness_loss(state: Float[Tensor, "N C"], epsilon: float) -> Tensor:
    """G3R's flatness regulariser: mean over Gaussians of max(0, smallest scale − ε) (pushes Gaussians to discs)."""
    if state.shape[0] == 0:
        return state.sum() * 0.0
    smallest = torch.exp(state[:, LOG_SCALE]).amin(dim=-1)
    return torch.relu(smallest - epsilon).mean()

