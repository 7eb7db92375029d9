"""Flux4D's networks: the feed-forward predictor f_θ (Gaussians and their motion) and the optional refiner f_φ.

**f_θ** (paper §3.2; supplement Fig. A1 as a public reading describes it): a sparse 3D U-Net over the voxelised
initial Gaussians, whose features are scattered back to the Gaussians, predicts ΔG (14 channels) and the motion
(3 · order channels) of every Gaussian: ``G = G_init + ΔG`` (quaternions re-normalised on decoding), ``V``.

    input_i = [position − voxel centre (voxel units), unit quaternion, log-scale − log voxel, opacity, RGB, t_i − ½]
    voxel   = mean of input over its Gaussians   →   U-Net   →   feature of i's voxel
    out_i   = MLP([input_i, feature])                               (14 + 3 · order channels)
    ΔG_i    = out_i[:14] with positions × voxel size;  motion_i = out_i[14:] × (velocity, acceleration) scales

The 15 input channels are the paper's (p, q, s, o, c, t) with positions and scales made relative to the voxel, as in
our G3R network (`fourd_ns.networks.g3r_net`), so the output does not depend on the scene's units or on a shift by
whole voxels. Motion is predicted in metres per second (per s², …) up to ``velocity_scale_mps`` /
``acceleration_scale_mps2`` and converted to the scene's units per normalised clip time with the clip's metres per
unit and time span, so one network serves clips of any length and scale. The head's last layer starts at zero: an
untrained network returns the initial Gaussians, static (v = 0).

**f_φ** (the "iterative refinement inspired by G3R"): the G3R per-part update network (`PartUpdateNet`: sparse U-Net
on [state, normalised gradient], a per-Gaussian head, our learned-gain gradient skip path, step encoding at the
bottleneck) over the 14 + 3 · order updatable channels, with its own, smaller U-Net.

Only the LiDAR Gaussians (part ``"background"``) go through either network; the sky hemisphere sits at four times
the scene's extent, where a 0.3 m voxel grid has nothing to convolve, and stays as initialised.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Optional, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from fourd_ns.networks.g3r_net import G3RNetworkConfig, PartUpdateNet, voxel_relative
from fourd_ns.networks.sparse.sparse_tensor import SparseTensor
from fourd_ns.networks.sparse.unet import SparseResUNet, SparseUNetConfig
from fourd_ns.networks.sparse.voxelize import gather_from_voxels, scatter_to_voxels, voxelize
from fourd_ns.scene.flux4d_gaussians import Flux4DLayout
from fourd_ns.scene.neural_gaussians import COLOR, EXPLICIT_CHANNELS, LOG_SCALE, OPACITY, POSITION, QUAT

PREDICTOR_INPUT_CHANNELS = 15
"""Position (3), rotation (4), log-scale (3), opacity (1), colour (3), time (1)."""


@dataclass
class Flux4DNetworkConfig:
    """Architecture of f_θ and f_φ (stored with the weights as ``config.json``)."""

    motion_order: int = 2
    """Polynomial order of the motion: 1 = Flux4D's linear velocity; 2 = + constant acceleration (the paper's
    motion enhancement)."""
    voxel_metres: float = 0.3
    """Voxel edge of the U-Nets in metres (a public reimplementation: 0.3 m)."""
    stem_channels: int = 32
    encoder_channels: Tuple[int, ...] = (32, 64, 96, 128)
    decoder_channels: Tuple[int, ...] = (128, 96, 64, 64)
    blocks_per_level: int = 1
    norm: Literal["group", "batch", "none"] = "group"
    """GroupNorm by default (BatchNorm's running statistics differ between training and one-clip inference)."""
    activation: Literal["relu", "leaky_relu", "silu"] = "leaky_relu"
    """The supplement's blocks use LeakyReLU."""
    head_hidden: int = 64
    velocity_scale_mps: float = 10.0
    """One unit of the velocity output in m/s."""
    acceleration_scale_mps2: float = 5.0
    """One unit of the acceleration (and higher) outputs in m/s² (m/s³, …)."""
    refiner: bool = True
    """Build f_φ (needed for refinement iterations; its weights stay untrained if training uses none)."""
    refiner_stem_channels: int = 16
    refiner_encoder_channels: Tuple[int, ...] = (16, 32, 64)
    refiner_decoder_channels: Tuple[int, ...] = (64, 32, 32)
    refiner_head_hidden: int = 32
    refiner_gradient_gain: float = 1.0
    """Initial gain of f_φ's gradient skip path (0: the plain network)."""
    step_encoding_channels: int = 8
    backend: Literal["auto", "torch", "spconv"] = "auto"

    @property
    def layout(self) -> Flux4DLayout:
        return Flux4DLayout(self.motion_order)

    def refiner_config(self) -> G3RNetworkConfig:
        """f_φ as a G3R part network whose "latent" channels are the motion channels."""
        return G3RNetworkConfig(
            latent_dim=3 * self.motion_order, stem_channels=self.refiner_stem_channels,
            encoder_channels=tuple(self.refiner_encoder_channels), decoder_channels=tuple(self.refiner_decoder_channels),
            blocks_per_level=self.blocks_per_level, norm=self.norm, step_encoding_channels=self.step_encoding_channels,
            head_hidden=self.refiner_head_hidden, gradient_gain=self.refiner_gradient_gain, backend=self.backend,
        )  # fmt: skip

    def to_dict(self) -> dict:
        data = asdict(self)
        for name in ("encoder_channels", "decoder_channels", "refiner_encoder_channels", "refiner_decoder_channels"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Flux4DNetworkConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown Flux4D network settings {unknown}; known: {sorted(known)}")
        values = dict(data)
        for name in ("encoder_channels", "decoder_channels", "refiner_encoder_channels", "refiner_decoder_channels"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


TINY_FLUX4D_NETWORK = dict(
    stem_channels=8, encoder_channels=(8, 16), decoder_channels=(16, 8), head_hidden=16,
    refiner_stem_channels=8, refiner_encoder_channels=(8,), refiner_decoder_channels=(8,), refiner_head_hidden=8,
)  # fmt: skip
"""A network small enough for CPU tests."""


@dataclass(frozen=True)
class SceneUnits:
    """What the networks need to turn physical units into a clip's units."""

    metres_per_unit: float
    """Length of one output-world unit in metres."""
    seconds_per_time: float
    """Seconds of one unit of normalised clip time (the clip's time span)."""

    def voxel(self, metres: float) -> float:
        return metres / self.metres_per_unit


class Flux4DPredictor(nn.Module):
    """f_θ: initial Gaussians → (ΔG, motion); see the module docstring."""

    def __init__(self, config: Flux4DNetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.layout = config.layout
        self.unet = SparseResUNet(
            SparseUNetConfig(
                in_channels=PREDICTOR_INPUT_CHANNELS, out_channels=config.decoder_channels[-1],
                stem_channels=config.stem_channels, encoder_channels=tuple(config.encoder_channels),
                decoder_channels=tuple(config.decoder_channels), blocks_per_level=config.blocks_per_level,
                norm=config.norm, activation=config.activation, backend=config.backend,
            )
        )  # fmt: skip
        out = EXPLICIT_CHANNELS + self.layout.motion_channels
        self.head = nn.Sequential(
            nn.Linear(PREDICTOR_INPUT_CHANNELS + config.decoder_channels[-1], config.head_hidden),
            nn.GELU(),
            nn.Linear(config.head_hidden, out),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def inputs(self, state: Float[Tensor, "N C"], voxel_size: float) -> Float[Tensor, "N 15"]:
        """The 15 per-Gaussian input channels (module docstring)."""
        relative = voxel_relative(state[:, :EXPLICIT_CHANNELS], voxel_size)
        return torch.cat(
            [
                relative[:, POSITION],
                F.normalize(state[:, QUAT], dim=-1),
                relative[:, LOG_SCALE],
                torch.sigmoid(state[:, OPACITY]),
                torch.sigmoid(state[:, COLOR]),
                state[:, self.layout.time : self.layout.time + 1] - 0.5,
            ],
            dim=-1,
        )

    def motion_scale(self, units: SceneUnits, device: torch.device) -> Float[Tensor, "M"]:
        """Output unit of each motion channel in scene units per normalised time^k."""
        c = self.config
        values = []
        for k in range(1, self.layout.order + 1):
            physical = c.velocity_scale_mps if k == 1 else c.acceleration_scale_mps2
            values.append(physical * units.seconds_per_time**k / units.metres_per_unit)
        return torch.tensor(values, device=device).repeat_interleave(3)

    def forward(self, state: Float[Tensor, "N C"], units: SceneUnits) -> Float[Tensor, "N C"]:
        """The predicted state: initial explicit channels + ΔG, the predicted motion, the capture times kept."""
        self.layout.check(state, "initial state")
        if state.shape[0] == 0:
            return state
        voxel_size = units.voxel(self.config.voxel_metres)
        inputs = self.inputs(state, voxel_size)
        voxels = voxelize(state[:, POSITION].detach(), voxel_size)
        coords = voxels.coords - voxels.coords.amin(dim=0)
        pooled = scatter_to_voxels(inputs, voxels.point_to_voxel, voxels.num_voxels, reduce="mean")
        features = self.unet(SparseTensor(features=pooled, coords=coords)).features
        out = self.head(torch.cat([inputs, gather_from_voxels(features, voxels.point_to_voxel)], dim=-1))
        delta = out[:, :EXPLICIT_CHANNELS]
        delta = torch.cat([delta[:, POSITION] * voxel_size, delta[:, 3:]], dim=-1)
        motion = out[:, EXPLICIT_CHANNELS:] * self.motion_scale(units, state.device)
        explicit = state[:, :EXPLICIT_CHANNELS] + delta
        return torch.cat([explicit, state[:, self.layout.motion] + motion, state[:, self.layout.time :]], dim=-1)


class Flux4DNetwork(nn.Module):
    """The trained part of Flux4D: f_θ and (optionally) f_φ."""

    def __init__(self, config: Flux4DNetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.layout = config.layout
        self.predictor = Flux4DPredictor(config)
        self.refiner: Optional[PartUpdateNet] = PartUpdateNet(config.refiner_config()) if config.refiner else None

    def refiner_inputs(self, state: Float[Tensor, "N C"], gradient: Float[Tensor, "N U"], voxel_size: float):
        """f_φ's input: the updatable channels with positions and log-scales relative to the voxel, and the
        normalised gradient."""
        return torch.cat([voxel_relative(state[:, self.layout.updatable], voxel_size), gradient], dim=-1)

    def refine(
        self,
        state: Float[Tensor, "N C"],
        gradient: Float[Tensor, "N U"],
        units: SceneUnits,
        step_code: Float[Tensor, "E"],
    ) -> Float[Tensor, "N U"]:
        """Bounded update Δ ∈ (−1, 1) of the updatable channels from the state and its normalised gradient."""
        if self.refiner is None:
            raise ValueError("This Flux4D network was built without a refiner (refiner = False); use 0 refinement "
                             "iterations")  # fmt: skip
        voxel_size = units.voxel(self.config.voxel_metres)
        inputs = self.refiner_inputs(state, gradient, voxel_size)
        return self.refiner(inputs, gradient, state[:, POSITION].detach(), voxel_size, step_code)
