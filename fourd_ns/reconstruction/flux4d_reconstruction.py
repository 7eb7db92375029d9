"""Per-clip reconstruction by Flux4D: one feed-forward prediction, then 0-2 G3R-style refinement iterations.

1. **Prediction**: f_θ maps the initial LiDAR Gaussians to Gaussians with motion (`Flux4DNetwork.predictor`).
2. **Refinement** (iteration r = 1 … R): render the input (source) views at their times, lift the gradient of their
   summed MSE to every updatable channel of the LiDAR Gaussians (`fourd_ns.reconstruction.gradient_lifting`,
   normalised per channel), and apply f_φ's bounded update ``S ← S + γ_r · step_scale ⊙ Δ`` (γ_r: the cosine
   schedule of `fourd_ns.reconstruction.step_schedule` over the R iterations; ``step_scale`` per channel as below).
   The capture times never change.

Whether the base network learns through the refinement is a switch (``gradient_to_base``): with it (the default)
the state entering each refinement iteration keeps its graph, so a loss on the refined output reaches f_θ through
f_φ's input and the residual; without it the state is detached there (what one public reimplementation does — its
base network then learns from the un-refined output only and starved). The lifted gradient itself is always a
stop-gradient input (no second-order terms), as in G3R.

Rendering at a time t′ moves every LiDAR Gaussian along its polynomial motion
(`fourd_ns.scene.flux4d_gaussians.decode_at`); the sky does not move. With ``with_flow`` the render also carries
each pixel's image-plane velocity (pixels per ``frame_seconds``) for the loss's re-weighting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from fourd_ns.networks.flux4d_net import Flux4DNetwork, SceneUnits
from fourd_ns.reconstruction.flux4d_losses import image_plane_displacement
from fourd_ns.reconstruction.gradient_lifting import lift_gradients, normalise_gradient
from fourd_ns.reconstruction.step_schedule import step_encoding, step_size
from fourd_ns.reconstruction.view_rendering import ViewRender, render_view
from fourd_ns.reconstruction.views import CameraView
from fourd_ns.scene.driving_scene import BACKGROUND, DrivingScene
from fourd_ns.scene.flux4d_gaussians import Flux4DLayout, decode_at, positions_at
from fourd_ns.scene.gaussian_params import GaussianParams
from fourd_ns.scene.neural_gaussians import per_channel


@dataclass
class Flux4DRefinementConfig:
    """How f_φ's updates are applied."""

    iterations: int = 0
    """Refinement iterations after the prediction (the paper: "as few as two")."""
    gradient_to_base: bool = True
    """Let a loss on refined outputs reach the base network through the refinement (see the module docstring)."""
    position_step_voxels: float = 0.5
    log_scale_step: float = 0.5
    rotation_step: float = 0.5
    colour_step: float = 2.0
    opacity_step: float = 2.0
    velocity_step_mps: float = 2.0
    """Largest velocity change of one full step (γ = 1, Δ = ±1), m/s."""
    acceleration_step_mps2: float = 1.0

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"refinement iterations must be >= 0, got {self.iterations}")


@dataclass
class RefinementReport:
    iteration: int
    gamma: float
    source_loss: float
    """Summed source-view MSE of the state the iteration started from."""


class Flux4DReconstruction:
    """Runs Flux4D's networks on one clip (training and inference share it)."""

    def __init__(
        self,
        network: Flux4DNetwork,
        refinement: Flux4DRefinementConfig,
        units: SceneUnits,
        background: Optional[Float[Tensor, "3"]] = None,
        frame_seconds: float = 0.1,
    ) -> None:
        self.network = network
        self.layout: Flux4DLayout = network.layout
        self.refinement = refinement
        self.units = units
        self.background = background
        self.frame_seconds = frame_seconds

    # ---------------------------------------------------------------- rendering
    def gaussians_at(self, states: Dict[str, Tensor], time: float) -> GaussianParams:
        parts = [decode_at(state, time, self.layout) for state in states.values() if state.shape[0] > 0]
        if not parts:
            first = next(iter(states.values()))
            return GaussianParams.empty(first.device, first.dtype)
        return GaussianParams.cat(parts)

    def render(self, states: Dict[str, Tensor], view: CameraView, with_flow: bool = False) -> ViewRender:
        gaussians = self.gaussians_at(states, view.time)
        features = None
        if with_flow:
            later = view.time + self.frame_seconds / self.units.seconds_per_time
            now_points = torch.cat([positions_at(s, view.time, self.layout) for s in states.values()])
            later_points = torch.cat([positions_at(s, later, self.layout) for s in states.values()])
            features = image_plane_displacement(now_points.detach(), later_points.detach(), view)
        return render_view(gaussians, view, background=self.background, features=features)

    # ---------------------------------------------------------------- prediction
    def predict(self, scene: DrivingScene) -> Dict[str, Tensor]:
        """f_θ on the LiDAR Gaussians; the other parts as they are."""
        states = dict(scene.states)
        states[BACKGROUND] = self.network.predictor(states[BACKGROUND], self.units)
        return states

    # ---------------------------------------------------------------- refinement
    def step_scale(self, device: torch.device) -> Float[Tensor, "U"]:
        c, units = self.refinement, self.units
        voxel = units.voxel(self.network.config.voxel_metres)
        motion = []
        for k in range(1, self.layout.order + 1):
            physical = c.velocity_step_mps if k == 1 else c.acceleration_step_mps2
            motion += [physical * units.seconds_per_time**k / units.metres_per_unit] * 3
        explicit = per_channel(14, c.position_step_voxels * voxel, c.log_scale_step, c.rotation_step, c.colour_step,
                               c.opacity_step, 0.0, device)  # fmt: skip
        return torch.cat([explicit, torch.tensor(motion, device=device)])

    def lift(self, states: Dict[str, Tensor], sources: Sequence[CameraView]) -> Tuple[Tensor, float]:
        """Normalised gradient of the summed source MSE w.r.t. the LiDAR Gaussians' updatable channels, and that
        loss (the sky is rendered but not lifted)."""
        others = {name: state.detach() for name, state in states.items() if name != BACKGROUND}

        def loss(leaves: Dict[str, Tensor], index: int) -> Tensor:
            render = self.render({BACKGROUND: leaves[BACKGROUND], **others}, sources[index])
            return F.mse_loss(render.rgb, sources[index].image)

        grads, total = lift_gradients({BACKGROUND: states[BACKGROUND]}, loss, range(len(sources)))
        return normalise_gradient(grads[BACKGROUND][:, self.layout.updatable]), total

    def refine(
        self, states: Dict[str, Tensor], sources: Sequence[CameraView], iteration: int, total: Optional[int] = None
    ) -> Tuple[Dict[str, Tensor], RefinementReport]:
        """Refinement iteration ``iteration`` (0-based) of ``total`` from ``states``."""
        total = self.refinement.iterations if total is None else total
        state = states[BACKGROUND]
        if not self.refinement.gradient_to_base:
            state = state.detach()
        with torch.no_grad():
            gradient, loss = self.lift(states, sources)
        gamma = step_size(iteration, total)
        code = step_encoding(iteration, total, self.network.config.step_encoding_channels).to(state.device)
        delta = self.network.refine(state, gradient, self.units, code)
        update = gamma * self.step_scale(state.device) * delta
        refined = torch.cat([state[:, self.layout.updatable] + update, state[:, self.layout.time :]], dim=-1)
        return {**states, BACKGROUND: refined}, RefinementReport(iteration, gamma, loss)

    def run(
        self, scene: DrivingScene, sources: Sequence[CameraView], iterations: Optional[int] = None
    ) -> Tuple[List[Dict[str, Tensor]], List[RefinementReport]]:
        """Prediction then every refinement iteration; the states after each (index 0 = the prediction). Under
        ``torch.no_grad`` this is inference; with gradients the outputs carry the networks' graph."""
        total = self.refinement.iterations if iterations is None else iterations
        outputs = [self.predict(scene)]
        reports = []
        for r in range(total):
            states, report = self.refine(outputs[-1], sources, r, total)
            outputs.append(states)
            reports.append(report)
        return outputs, reports


def clip_units(metres_per_unit: float, time_span_seconds: float, frames: int = 16) -> SceneUnits:
    """`SceneUnits` of a clip; a one-frame clip (time span 0) counts one frame interval (0.1 s) per unit."""
    seconds = time_span_seconds if time_span_seconds > 0 else 0.1 * max(frames - 1, 1)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"The clip's time span must be positive; got {time_span_seconds}")
    return SceneUnits(metres_per_unit=float(metres_per_unit), seconds_per_time=float(seconds))
