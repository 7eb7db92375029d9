"""Poses, the shared camera and points from Flow4R's anchored-sequence reconstruction (``--poses flow4r``).

For videos COLMAP cannot register (textureless, highly dynamic, barely moving). The checkpoint is loaded and checked
by the ``flow4r`` initializer's loader (every head weight must be trained), then
:func:`fourd_ns.feedforward.sequence_inference.reconstruct_sequence` pairs the anchor frame with every frame. Its
anchor camera becomes the world frame and its scale the world scale (arbitrary, as any monocular reconstruction's).

- Every frame is registered (the network gives each a pose); there is no reprojection error.
- One shared pinhole camera: the median of the per-frame focal lengths (mapped back to the 1x frames), the
  principal point at the image centre, no distortion.
- Points: pixels of every frame at or above the ``confidence_quantile`` of the confidences, finite, and static in
  the dynamic masks (resized to the network's input like the frames), a seeded random subset of ``num_points``,
  coloured from the frames. Moving things are left out because ``points.npy`` seeds the canonical scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from jaxtyping import UInt8

from fourd_ns.feedforward.sequence_inference import intrinsics_to_original, reconstruct_sequence, resize_for_network
from fourd_ns.initializers.feedforward import Flow4RInitializerConfig, select_confident_pixels
from fourd_ns.video.camera_solution import CameraSolution, SharedCamera
from fourd_ns.video.errors import VideoProcessingError


@dataclass
class Flow4ROptions:
    """Settings of ``--poses flow4r`` (the checkpoint is ``--weights``)."""

    long_side: int = 512
    """Long side of the frames fed to the network (sides then cropped to multiples of its patch size)."""
    anchor: int = 0
    """Index (in the selected frames) of the anchor frame; its camera is the world frame."""
    batch_size: int = 4
    """Pairs per forward pass."""
    confidence_quantile: float = 0.5
    """Keep pixels whose confidence is at least this quantile of all frames' confidences."""
    num_points: int = 50000
    """Points written to points.npy at most."""
    device: Optional[str] = None
    """Where the network runs (default: CUDA when available, else CPU)."""
    seed: int = 0
    """Seed of the random subset of confident pixels."""


def solve_with_flow4r(
    images: UInt8[np.ndarray, "T H W 3"],
    static_masks: Optional[UInt8[np.ndarray, "T H W"]],
    weights: str,
    options: Flow4ROptions,
    log: Callable[[str], None] = lambda message: None,
) -> CameraSolution:
    """The module docstring's reconstruction of the selected frames."""
    frames, height, width = images.shape[:3]
    if not 0 <= options.anchor < frames:
        raise VideoProcessingError(f"--flow4r.anchor {options.anchor} is not one of the {frames} selected frames")
    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = Flow4RInitializerConfig(weights=weights).setup().load_model()
    except (OSError, ValueError) as error:
        raise VideoProcessingError(f"--weights {weights}: {error}") from error
    model = model.to(device).eval()
    patch = model.backbone_config.patch_size
    video = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    network_images, resize = resize_for_network(video, options.long_side, patch=patch)
    log(f"Flow4R: {frames} frames at {resize.size[1]}x{resize.size[0]} on {device}, anchor frame {options.anchor}")
    reconstruction = reconstruct_sequence(model, network_images, anchor=options.anchor, batch_size=options.batch_size,
                                          device=device, patch=patch)  # fmt: skip

    camera_to_world = reconstruction.camera_to_anchor.double().numpy()
    intrinsics = intrinsics_to_original(reconstruction.intrinsics.float(), resize).double().numpy()
    focal = float(np.median(0.5 * (intrinsics[:, 0, 0] + intrinsics[:, 1, 1])))
    if not np.isfinite(focal) or focal <= 0:
        raise VideoProcessingError(f"--weights {weights}: the network's focal lengths are not usable (median {focal})")

    points = reconstruction.points
    finite = torch.isfinite(points).all(-1) & torch.isfinite(reconstruction.confidence)
    if static_masks is not None:
        static = torch.from_numpy(static_masks).float()[:, None].expand(-1, 3, -1, -1) / 255.0
        static_network, _ = resize_for_network(static, options.long_side, patch=patch)
        finite &= static_network[:, 0] > 0.999  # any moving pixel in the footprint excludes the point
    generator = torch.Generator().manual_seed(options.seed)
    try:
        chosen, _ = select_confident_pixels(reconstruction.confidence, finite, options.confidence_quantile,
                                            options.num_points, generator)  # fmt: skip
    except ValueError as error:
        raise VideoProcessingError(f"--weights {weights}: {error}") from error
    xyz = points.reshape(-1, 3)[chosen].double().numpy()
    colors = (reconstruction.colors.reshape(-1, 3)[chosen].clamp(0, 1) * 255).round().to(torch.uint8).numpy()

    return CameraSolution(
        source="flow4r",
        camera=SharedCamera("PINHOLE", width, height, focal, focal, width / 2.0, height / 2.0),
        registered=np.ones(frames, dtype=bool),
        orientation=np.transpose(camera_to_world[:, :3, :3], (0, 2, 1)),
        position=camera_to_world[:, :3, 3],
        points=xyz,
        point_colors=colors,
        notes=(f"Flow4R anchored reconstruction (anchor frame {options.anchor}); world frame = anchor camera, "
               "scale = the network's",),
    )
