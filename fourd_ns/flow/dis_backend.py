"""Weight-free fallback: OpenCV DIS optical flow lifted to a C-channel embedding by a fixed encoding.

DIS (Kroeger et al., ECCV 2016) needs no learned weights, so a run without a RAFT checkpoint still gets real flows
and an embedding with the same shape and stride as RAFT's. The encoding has no parameters and is deterministic;
each 8×8 cell (``stride``) of the pair's first image gets, in this channel order:

====================  =====  ==========================================================================
channels              count  content (cell means unless stated)
====================  =====  ==========================================================================
0–1                   2      flow (u, v) / s, with s = max(H, W), so values are resolution-independent
2                     1      flow magnitude / s
3–4                   2      flow direction: the cell flow's unit vector (u, v) / (|(u, v)| + 1e-6 px), 0 for
                             no motion
5–36                  4L     sinusoidal encoding of the cell flow: for k = 0 … L−1 (L = 8),
                             [sin(2^k π u/s), cos(2^k π u/s), sin(2^k π v/s), cos(2^k π v/s)]
37–40                 4      flow spatial derivatives du/dx, du/dy, dv/dx, dv/dy (pixels per pixel, so
                             already resolution-independent): rotation, divergence and shear
41–42                 2      within-cell standard deviation of u and v, / s (high at motion boundaries)
43–46                 4      image structure: grey level in [0, 1], its gradients d/dx, d/dy and gradient
                             magnitude (central differences of the [0, 1] grey image)
47 … C−1              …      zeros up to C (the layout is truncated from the end if C is smaller)
====================  =====  ==========================================================================

With L = 8 the native width is 47 channels (``DIS_NATIVE_CHANNELS``). The sinusoids of the cell-mean flow give a
downstream attention layer fine-grained displacement information at several scales, as RAFT's motion features
would; the magnitude/direction and derivative channels make the dominant motion patterns linearly readable.
"""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, UInt8
from torch import Tensor

from fourd_ns.flow.backend import FlowBackend, PairFlow, fit_channels

DISPreset = Literal["ultrafast", "fast", "medium"]
_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
NUM_FLOW_FREQUENCIES = 8
DIS_NATIVE_CHANNELS = 2 + 1 + 2 + 4 * NUM_FLOW_FREQUENCIES + 4 + 2 + 4


def rgb_to_gray(image: UInt8[Tensor, "H W 3"]) -> np.ndarray:
    """uint8 grey image as DIS expects it (OpenCV's BT.601 weights)."""
    return cv2.cvtColor(np.ascontiguousarray(image.numpy()), cv2.COLOR_RGB2GRAY)


def _cell_mean(x: Float[Tensor, "K H W"], stride: int) -> Float[Tensor, "K h w"]:
    """Mean over stride×stride cells; border cells average only the pixels that exist (replicate-padded)."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % stride, (-width) % stride
    padded = F.pad(x[None], (0, pad_w, 0, pad_h), mode="replicate") if (pad_h or pad_w) else x[None]
    return F.avg_pool2d(padded, stride)[0]


def _gradients(x: Float[Tensor, "K H W"]) -> tuple[Tensor, Tensor]:
    """Central differences (one-sided at the border) along x and y, per channel."""
    gx = torch.zeros_like(x)
    gy = torch.zeros_like(x)
    if x.shape[-1] > 1:
        gx[..., 1:-1] = (x[..., 2:] - x[..., :-2]) / 2
        gx[..., 0] = x[..., 1] - x[..., 0]
        gx[..., -1] = x[..., -1] - x[..., -2]
    if x.shape[-2] > 1:
        gy[..., 1:-1, :] = (x[..., 2:, :] - x[..., :-2, :]) / 2
        gy[..., 0, :] = x[..., 1, :] - x[..., 0, :]
        gy[..., -1, :] = x[..., -1, :] - x[..., -2, :]
    return gx, gy


def encode_flow_and_image(
    flow: Float[Tensor, "2 H W"], gray: Float[Tensor, "H W"], stride: int, channels: int
) -> Float[Tensor, "C h w"]:
    """The fixed DIS embedding described in the module docstring."""
    height, width = gray.shape
    scale = float(max(height, width))
    cell_flow = _cell_mean(flow, stride) / scale  # [2, h, w]
    magnitude = cell_flow.norm(dim=0, keepdim=True)
    direction = cell_flow / (magnitude + 1e-6 / scale)
    frequencies = (2.0 ** torch.arange(NUM_FLOW_FREQUENCIES, dtype=flow.dtype)) * math.pi
    phases = cell_flow[:, None] * frequencies[None, :, None, None]  # [2, L, h, w]
    # Per frequency: sin u, cos u, sin v, cos v.
    sinusoids = torch.stack([phases.sin(), phases.cos()], dim=1).permute(2, 0, 1, 3, 4).reshape(-1, *phases.shape[-2:])
    flow_dx, flow_dy = _gradients(flow)
    derivatives = _cell_mean(torch.stack([flow_dx[0], flow_dy[0], flow_dx[1], flow_dy[1]]), stride)
    spread = (_cell_mean(flow**2, stride) - _cell_mean(flow, stride) ** 2).clamp_min(0).sqrt() / scale
    gray_dx, gray_dy = _gradients(gray[None])
    structure = _cell_mean(
        torch.cat([gray[None], gray_dx, gray_dy, torch.sqrt(gray_dx**2 + gray_dy**2)]), stride
    )
    native = torch.cat([cell_flow, magnitude, direction, sinusoids, derivatives, spread, structure])
    return fit_channels(native, channels)


class DISFlowBackend(FlowBackend):
    """OpenCV Dense Inverse Search flow on grey uint8 images, with the fixed embedding of ``encode_flow_and_image``."""

    name = "dis"

    def __init__(self, channels: int = 128, preset: DISPreset = "medium", stride: int = 8) -> None:
        if preset not in _PRESETS:
            raise ValueError(f"Unknown DIS preset {preset!r}; choose one of {sorted(_PRESETS)}.")
        self.channels = channels
        self.preset = preset
        self.stride = stride

    def identity(self) -> str:
        return f"opencv-{cv2.__version__}-dis-{self.preset}-L{NUM_FLOW_FREQUENCIES}-stride{self.stride}"

    def compute_pair(self, image1: UInt8[Tensor, "H W 3"], image2: UInt8[Tensor, "H W 3"]) -> PairFlow:
        gray1, gray2 = rgb_to_gray(image1), rgb_to_gray(image2)
        # A fresh estimator per pair: DIS keeps no useful state between pairs, and this keeps results independent of
        # the order in which pairs are processed.
        dis = cv2.DISOpticalFlow_create(_PRESETS[self.preset])
        flow = torch.from_numpy(dis.calc(gray1, gray2, None)).permute(2, 0, 1).float().contiguous()
        gray = torch.from_numpy(gray1).float() / 255.0
        return PairFlow(flow=flow, embedding=encode_flow_and_image(flow, gray, self.stride, self.channels))
