"""Anchored-pair inference of a two-view Flow4R-style model over a video (paper §3.2, "Sequence Processing").

Frame ``anchor`` is paired with every frame k (itself included) as (I_anchor, I_k), following St4RTrack's anchored
connections; no global optimisation follows. Per pair, view 1 carries S(I_anchor, I_k) and view 2 carries
S(I_k, I_anchor). Everything is expressed in the anchor camera (OpenCV axes).

Scale alignment (as in the paper): every pair predicts the anchor's local point map P, so its mean norm s_k measures
that pair's scale; all of pair k (P and P_vt of both views, hence the solved translations) is multiplied by
s_ref / s_k. We take s_ref from the first pair in processing order, (anchor, frame 0) — the paper's first pair is
(I_0, I_1), but any fixed reference only changes the (arbitrary) global scale, and frame 0 always exists.

Which pose for frame k (the paper does not say for sequences): Eq. 2 can be solved on frame k's pixels (view 2:
P → P_vt gives camera k → anchor camera) or on the anchor's pixels (view 1: anchor camera → camera k, inverted).
``pose_from`` selects "frame" (view 2 only: the points are exactly Eq. 3), "anchor" (view 1 only: the tracks are
exactly Eq. 6), or "both" (default): one joint weighted Procrustes over both views' correspondences, view 1's in
the inverse direction (‖T·P_vt,1 − P_1‖), each view's W counting half. The joint solve uses twice the support and
gives one camera per frame that is consistent with both the points and the tracks. Whatever the choice, that single
``camera_to_anchor`` maps every output of frame k: ``points = T_k·P_2`` and ``tracks = T_k·P_vt,1``, so tracks and
points re-project into frame k exactly where the network placed them. The anchor's own camera is the identity by
definition (any residual of the self-pair solve is the network's error, not a camera motion).

Intrinsics: focal from Eq. 7 on frame k's own point map (view 2's P) with the principal point at the image centre;
``focal_method="weiszfeld"`` (default) is robust to the outliers of real predictions.

Resolution: the network needs H, W multiples of the patch size; ``resize_for_network`` scales the long side and
centre-crops (like DUSt3R's loader) and ``intrinsics_to_original`` maps the estimated intrinsics back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from fourd_ns.feedforward.flow4r_geometry import (
    estimate_focal,
    image_centre,
    invert_pose,
    pinhole_intrinsics,
    solve_pose,
    transform_points,
)
from fourd_ns.feedforward.pair_types import PairPrediction, SequenceReconstruction
from fourd_ns.progress import progress_bar

PairModel = Callable[[Tensor, Tensor], PairPrediction]
"""``model(image1, image2)`` on [B, 3, H, W] images in [−1, 1] → the property sets of both views."""

_SCALE_EPS = 1e-8
_RANGE_TOLERANCE = 1e-3
"""Slack on the [0, 1] input check: resampling can round a hair past the range (the images are clamped anyway)."""


@dataclass(frozen=True)
class NetworkResize:
    """How ``resize_for_network`` mapped an image: scale to ``resized_size``, then crop ``crop_offset`` off."""

    original_size: tuple[int, int]
    """(H, W) of the input images."""
    resized_size: tuple[int, int]
    """(H, W) after scaling, before cropping."""
    crop_offset: tuple[int, int]
    """(x0, y0): columns and rows removed at the left and top of the scaled image."""
    size: tuple[int, int]
    """(H, W) of the network input (multiples of the patch size)."""

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): resized / original size per axis (equal up to rounding of the resized size)."""
        return self.resized_size[1] / self.original_size[1], self.resized_size[0] / self.original_size[0]


def resize_for_network(
    images: Float[Tensor, "T 3 H W"], long_side: int = 512, patch: int = 16
) -> tuple[Float[Tensor, "T 3 h w"], NetworkResize]:
    """Scale the long side to ``long_side`` (bilinear, antialiased) and centre-crop both sides to multiples of
    ``patch``. A pixel at (u, v) of the input lands at (u·sx − x0, v·sy − y0) of the output (pixel centres at +0.5)."""
    _, _, height, width = images.shape
    factor = long_side / max(height, width)
    resized_h, resized_w = round(height * factor), round(width * factor)
    crop_h, crop_w = resized_h // patch * patch, resized_w // patch * patch
    if crop_h == 0 or crop_w == 0:
        raise ValueError(
            f"resize_for_network: a {height}×{width} image scaled to long side {long_side} is {resized_h}×{resized_w}, "
            f"smaller than one {patch}-pixel patch; raise long_side"
        )
    x0, y0 = (resized_w - crop_w) // 2, (resized_h - crop_h) // 2
    resized = F.interpolate(images, size=(resized_h, resized_w), mode="bilinear", align_corners=False, antialias=True)
    cropped = resized[:, :, y0 : y0 + crop_h, x0 : x0 + crop_w]
    return cropped, NetworkResize((height, width), (resized_h, resized_w), (x0, y0), (crop_h, crop_w))


def intrinsics_to_original(intrinsics: Float[Tensor, "T 3 3"], resize: NetworkResize) -> Float[Tensor, "T 3 3"]:
    """Intrinsics at the network resolution mapped back to the original images: u = (u_net + x0) / sx."""
    sx, sy = resize.scale
    x0, y0 = resize.crop_offset
    to_original = torch.tensor(
        [[1.0 / sx, 0.0, x0 / sx], [0.0, 1.0 / sy, y0 / sy], [0.0, 0.0, 1.0]],
        dtype=intrinsics.dtype,
        device=intrinsics.device,
    )
    return to_original @ intrinsics


def _model_device(model: PairModel, fallback: torch.device) -> torch.device:
    if isinstance(model, nn.Module):
        parameter = next(model.parameters(), None)
        if parameter is not None:
            return parameter.device
    return fallback


def _check_inputs(images: Tensor, anchor: int, patch: int) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"reconstruct_sequence: images must be [T, 3, H, W], got {tuple(images.shape)}")
    frames, _, height, width = images.shape
    if height % patch or width % patch:
        raise ValueError(
            f"reconstruct_sequence: image size {height}×{width} is not a multiple of the {patch}-pixel patch; resize "
            "with fourd_ns.feedforward.sequence_inference.resize_for_network(images) and map the intrinsics back with "
            "intrinsics_to_original"
        )
    if not 0 <= anchor < frames:
        raise ValueError(f"reconstruct_sequence: anchor={anchor} is not a frame index of a {frames}-frame sequence")
    low, high = float(images.min()), float(images.max())
    if low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
        raise ValueError(
            f"reconstruct_sequence: images must be RGB in [0, 1] (got values in [{low:.3g}, {high:.3g}]); "
            "divide uint8 frames by 255 and do not pre-normalise to [-1, 1]"
        )


def reconstruct_sequence(
    model: PairModel,
    images: Float[Tensor, "T 3 H W"],
    anchor: int = 0,
    batch_size: int = 4,
    progress: bool = True,
    device: torch.device | str | None = None,
    pose_from: Literal["frame", "anchor", "both"] = "both",
    focal_method: Literal["least_squares", "weiszfeld"] = "weiszfeld",
    patch: int = 16,
) -> SequenceReconstruction:
    """Run ``model`` on the anchored pairs (I_anchor, I_k), k = 0..T−1, and assemble a scale-aligned reconstruction.

    Args:
        model: ``model(image1, image2) -> PairPrediction`` on images in [−1, 1] whose sides are multiples of
            ``patch``. An ``nn.Module`` is run in eval mode (its previous mode is restored afterwards).
        images: the video as RGB in [0, 1].
        anchor: index of the anchor frame; outputs are in its camera.
        batch_size: pairs per forward pass.
        progress: show a progress bar.
        device: where the model runs (default: the device of its parameters, else the images'); results come back
            on the images' device.
        pose_from: which correspondences give each frame's camera (see the module docstring).
        focal_method: ``estimate_focal`` method for each frame's focal length.
        patch: the network's patch size (image sides must be multiples of it).
    """
    _check_inputs(images, anchor, patch)
    if batch_size < 1:
        raise ValueError(f"reconstruct_sequence: batch_size must be ≥ 1, got {batch_size}")
    if pose_from not in ("frame", "anchor", "both"):
        raise ValueError(f"reconstruct_sequence: unknown pose_from={pose_from!r}; use 'frame', 'anchor' or 'both'")
    frames, _, height, width = images.shape
    output_device = images.device
    device = _model_device(model, images.device) if device is None else torch.device(device)
    network_images = images.to(device).clamp(0.0, 1.0) * 2.0 - 1.0
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()

    reference_scale: Tensor | None = None
    parts: dict[str, list[Tensor]] = {name: [] for name in ("pose", "intrinsics", "points", "confidence", "tracks")}
    try:
        with (
            torch.no_grad(),
            progress_bar("Anchored pairs", disable=not progress) as bar,
        ):
            task = bar.add_task("pairs", total=frames)
            for start in range(0, frames, batch_size):
                indices = torch.arange(start, min(start + batch_size, frames), device=device)
                image2 = network_images[indices]
                prediction = model(network_images[anchor].expand_as(image2), image2)
                view1, view2 = prediction.view1, prediction.view2
                anchor_scale = view1.points.float().norm(dim=-1).mean((1, 2))
                if reference_scale is None:
                    reference_scale = anchor_scale[0]
                factor = (reference_scale / anchor_scale.clamp_min(_SCALE_EPS))[:, None, None, None]
                points1, points1_other = view1.points.float() * factor, view1.points_other.float() * factor
                points2, points2_other = view2.points.float() * factor, view2.points_other.float() * factor

                if pose_from == "frame":
                    pose = solve_pose(points2, points2_other, view2.pose_weight.float())
                elif pose_from == "anchor":
                    pose = invert_pose(solve_pose(points1, points1_other, view1.pose_weight.float()))
                else:
                    pose = solve_pose(
                        torch.cat([points2, points1_other], dim=1),
                        torch.cat([points2_other, points1], dim=1),
                        torch.cat([view2.pose_weight.float(), view1.pose_weight.float()], dim=1),
                    )
                pose = torch.where((indices == anchor)[:, None, None], torch.eye(4, device=device), pose)

                focal = estimate_focal(points2, method=focal_method)
                centre = image_centre(len(indices), height, width, device=device)
                parts["pose"].append(pose.to(output_device))
                parts["intrinsics"].append(pinhole_intrinsics(focal, centre).to(output_device))
                parts["points"].append(transform_points(pose, points2).to(output_device))
                parts["confidence"].append(view2.confidence.float().to(output_device))
                parts["tracks"].append(transform_points(pose, points1_other).to(output_device))
                bar.advance(task, len(indices))
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)

    return SequenceReconstruction(
        anchor=anchor,
        camera_to_anchor=torch.cat(parts["pose"]),
        intrinsics=torch.cat(parts["intrinsics"]),
        points=torch.cat(parts["points"]),
        confidence=torch.cat(parts["confidence"]),
        tracks=torch.cat(parts["tracks"]),
        colors=images.permute(0, 2, 3, 1).float().clamp(0.0, 1.0),
        image_size=(height, width),
    )
