"""Flux4D's unsupervised losses (paper §3.3 and supplement A.1): photometric, LiDAR depth, "as static as possible".

Per supervised view, rendered at the view's time:

    L_view = λ_rgb · mean_px(w ⊙ |I − Î|) + λ_SSIM · (1 − SSIM(I, Î)) + λ_depth · mean_{px with LiDAR} |D − D̂|

and per clip ``L_vel = λ_vel · mean_i ‖v_i‖₂`` over the LiDAR Gaussians, with λ = (0.8, 0.2, 0.01, 5e-3). Units are
physical so the weights keep the paper's meaning whatever the dataparser's scale: depths in metres, velocities in
m/s (`fourd_ns.scene.flux4d_gaussians.motion_in_metres_per_second`).

Velocity re-weighting (the motion enhancement, a switch): ``w = 1 + clip(‖sg(v_r)‖, 0, 10)`` per pixel, where v_r is
the rendered image-plane velocity: each Gaussian's projected displacement over one frame interval (``frame_seconds``,
0.1 s at PandaSet's 10 Hz), alpha-composited like a colour. Without the switch w = 1. The weight multiplies the L1
term only (SSIM is a windowed statistic without a per-pixel value to weight; a public reading of the supplement
applies it to "L_rgb").

No flow, masks, tracks or pretrained networks enter any loss; cuboids are used only by the evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import torch
from jaxtyping import Float
from pytorch_msssim import ssim
from torch import Tensor

from fourd_ns.geometry.pinhole import project_camera_points
from fourd_ns.reconstruction.view_rendering import ViewRender
from fourd_ns.reconstruction.views import CameraView
from fourd_ns.scene.flux4d_gaussians import Flux4DLayout, motion_in_metres_per_second
from fourd_ns.sensors.lidar_projection import points_to_camera


@dataclass
class Flux4DLossConfig:
    """Weights of the unsupervised loss (the paper's values by default)."""

    rgb_weight: float = 0.8
    ssim_weight: float = 0.2
    depth_weight: float = 0.01
    """L1 of rendered against LiDAR depth, in metres, on pixels with a LiDAR return."""
    velocity_weight: float = 5e-3
    """The "as static as possible" prior on the mean velocity norm (m/s)."""
    velocity_reweighting: bool = True
    """Weight the photometric L1 per pixel by 1 + clip(‖sg(v_r)‖, 0, clip) (the motion enhancement)."""
    reweighting_clip_pixels: float = 10.0
    frame_seconds: float = 0.1
    """Interval over which the image-plane velocity v_r is measured (one frame at 10 Hz)."""


def image_plane_displacement(
    now: Float[Tensor, "N 3"], later: Float[Tensor, "N 3"], view: CameraView, near: float = 1e-3
) -> Float[Tensor, "N 2"]:
    """Pixel displacement of each Gaussian's projection from ``now`` to ``later`` (world points) in ``view``; zero
    for Gaussians behind the camera at either time."""
    intrinsics = view.intrinsics.to(now)
    pixels = []
    depth_ok = torch.ones(now.shape[0], dtype=torch.bool, device=now.device)
    for points in (now, later):
        camera = points_to_camera(points, view.camera_to_world.to(points))
        # The principal point cancels in the displacement, so it is left out (cx = cy = 0).
        projection = project_camera_points(camera, intrinsics[0, 0], intrinsics[1, 1], 0.0, 0.0, min_depth=near)
        depth_ok &= projection.in_front
        pixels.append(projection.pixels)
    return torch.where(depth_ok[:, None], pixels[1] - pixels[0], torch.zeros_like(pixels[0]))


def _ssim_window(height: int, width: int) -> int:
    side = min(11, height, width)
    return side if side % 2 == 1 else side - 1


def view_loss(
    render: ViewRender, view: CameraView, config: Flux4DLossConfig, metres_per_unit: float
) -> Tuple[Tensor, Dict[str, float]]:
    """The weighted loss of one rendered view and its parts (as floats, unweighted)."""
    image = view.image.to(render.rgb)
    error = (render.rgb - image).abs().mean(dim=-1)
    weight = torch.ones_like(error)
    if config.velocity_reweighting and render.features is not None:
        speed = render.features.detach()[..., :2].norm(dim=-1)
        weight = 1.0 + speed.clamp(0.0, config.reweighting_clip_pixels)
    l1 = (weight * error).mean()
    loss = config.rgb_weight * l1
    parts = {"l1": float(error.detach().mean())}
    if config.ssim_weight > 0:
        window = _ssim_window(view.height, view.width)
        value = ssim(render.rgb.permute(2, 0, 1)[None], image.permute(2, 0, 1)[None], data_range=1.0,
                     size_average=True, win_size=window) if window >= 3 else render.rgb.new_tensor(1.0)  # fmt: skip
        loss = loss + config.ssim_weight * (1.0 - value)
        parts["ssim"] = float(value.detach())
    if config.depth_weight > 0 and view.lidar_depth is not None:
        truth = view.lidar_depth.to(render.depth)
        hit = truth > 0
        if bool(hit.any()):
            depth_l1 = (render.depth[hit] - truth[hit]).abs().mean() * metres_per_unit
            loss = loss + config.depth_weight * depth_l1
            parts["depth_l1_m"] = float(depth_l1.detach())
    parts["mse"] = float(((render.rgb.detach() - image) ** 2).mean())
    return loss, parts


def velocity_prior(
    state: Float[Tensor, "N C"], layout: Flux4DLayout, metres_per_unit: float, seconds_per_time: float
) -> Tensor:
    """mean_i ‖v_i‖₂ in m/s over the Gaussians of ``state`` (0 for an empty state)."""
    if state.shape[0] == 0:
        return state.sum() * 0.0
    velocity = motion_in_metres_per_second(state[:, layout.velocity], metres_per_unit, seconds_per_time)
    # sqrt(|v|² + ε) instead of the norm: finite gradient at v = 0, where every Gaussian starts.
    return (velocity.square().sum(dim=-1) + 1e-12).sqrt().mean()
