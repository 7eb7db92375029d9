"""G3R-Net: the learned optimizer that maps (3D neural Gaussian state, lifted gradient, step) to a state update.

One network per scene part (background, actors, far field) with identical architecture, as the paper describes, or
one shared network that also sees a one-hot part embedding (``networks="shared"``). Each is a sparse residual
3D U-Net (`fourd_ns.networks.sparse`) over the part's Gaussians voxelised at the part's voxel size, followed by a
per-Gaussian head:

    input_i   = [geometry-normalised state_i (C), normalised gradient_i (C), part one-hot (3, shared only)]
    voxel     = mean of input over the Gaussians in the voxel   →   U-Net (step encoding at the bottleneck)
    Δ_i       = tanh(MLP([input_i, U-Net feature of i's voxel]) − s ⊙ ĝ_i)    (C channels)

where ĝ_i is the normalised gradient and s = softplus(ρ) a learned per-channel gain. The MLP's last layer starts at
zero, so an untrained network takes a normalised gradient-descent step (``gradient_gain`` = s at the start; 0 turns
the path off and gives the paper's plain network, which starts with Δ = 0). This skip path is our addition: the
paper trains for about 30 GPU-hours, and with the few hundred scene iterations a CPU allows, a network that must
discover descent from zero barely moves the scene; starting from descent, it learns a correction to it.

The per-Gaussian head matters: G3R updates every Gaussian, and many Gaussians share a voxel, so a voxel-only output
would give them identical updates. The state enters the network *normalised for geometry*: the position channels
are replaced by the Gaussian's offset from its voxel centre in voxel units and log-scales are taken relative to the
log voxel size; with voxel coordinates counted from the part's lowest voxel, Δ does not change when a part is
shifted by whole voxels (the sparse U-Net, strided levels included, sees only relative voxel positions) and does
not depend on the scene's units. Latent, rotation, colour and opacity channels are passed as they are.

The update applied by the reconstruction is ``S + γ(t) · step_scale ⊙ Δ`` (see
`fourd_ns.reconstruction.g3r_reconstruction`); ``step_scale`` is per channel, with positions in voxel units, because
a tanh bound of ±1 means something different for a position in metres and an opacity logit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import List, Literal, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from fourd_ns.networks.sparse.sparse_tensor import SparseTensor
from fourd_ns.networks.sparse.unet import SparseResUNet, SparseUNetConfig
from fourd_ns.networks.sparse.voxelize import gather_from_voxels, scatter_to_voxels, voxelize
from fourd_ns.scene.neural_gaussians import EXPLICIT_CHANNELS, LOG_SCALE, POSITION, NeuralGaussianDecoder

PART_KINDS: Tuple[str, ...] = ("background", "actor", "far")
"""Scene part kinds the learned optimizer has a network for (`fourd_ns.scene.driving_scene.PartKind`)."""


@dataclass
class G3RNetworkConfig:
    """Architecture of the learned optimizer (stored with its weights as ``config.json``)."""

    latent_dim: int = 32
    """Latent channels of each neural Gaussian (0: plain 3DGS parameters, the paper's ablation)."""
    stem_channels: int = 32
    encoder_channels: Tuple[int, ...] = (32, 64, 128, 256)
    decoder_channels: Tuple[int, ...] = (256, 128, 96, 96)
    blocks_per_level: int = 1
    norm: Literal["group", "batch", "none"] = "group"
    step_encoding_channels: int = 16
    """Width of the sinusoidal step encoding concatenated at the U-Net's bottleneck."""
    head_hidden: int = 64
    """Hidden width of the per-Gaussian update head."""
    gradient_gain: float = 1.0
    """Initial gain of the gradient skip path (see the module docstring); 0 removes the path (the paper's network)."""
    networks: Literal["separate", "shared"] = "separate"
    """One network per part kind (the paper), or one shared network with a part embedding."""
    backend: Literal["auto", "torch", "spconv"] = "auto"
    """Sparse convolution backend (auto: spconv on CUDA when installed, else pure torch)."""

    @property
    def state_channels(self) -> int:
        return EXPLICIT_CHANNELS + self.latent_dim

    def to_dict(self) -> dict:
        data = asdict(self)
        data["encoder_channels"] = list(self.encoder_channels)
        data["decoder_channels"] = list(self.decoder_channels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "G3RNetworkConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown G3R network settings {unknown}; known: {sorted(known)}")
        values = dict(data)
        for name in ("encoder_channels", "decoder_channels"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


def voxel_relative(state: Float[Tensor, "N C"], voxel_size: float) -> Float[Tensor, "N C"]:
    """``state`` with positions replaced by the offset from their voxel's centre in voxel units and log-scales taken
    relative to the log voxel size (the geometry normalisation of every sparse network's input)."""
    positions = state[:, POSITION]
    centres = (torch.floor(positions / voxel_size) + 0.5) * voxel_size
    normalised = state.clone()
    normalised[:, POSITION] = (positions - centres) / voxel_size
    normalised[:, LOG_SCALE] = state[:, LOG_SCALE] - math.log(voxel_size)
    return normalised


TINY_NETWORK = dict(stem_channels=8, encoder_channels=(8, 16), decoder_channels=(16, 8), head_hidden=16, latent_dim=8)
"""A network small enough for CPU tests and toy training runs."""


class PartUpdateNet(nn.Module):
    """Sparse U-Net + per-Gaussian head for one part kind (or all, when shared)."""

    def __init__(self, config: G3RNetworkConfig, extra_channels: int = 0) -> None:
        super().__init__()
        channels = config.state_channels
        in_channels = 2 * channels + extra_channels
        self.unet = SparseResUNet(
            SparseUNetConfig(
                in_channels=in_channels,
                out_channels=config.decoder_channels[-1],
                stem_channels=config.stem_channels,
                encoder_channels=tuple(config.encoder_channels),
                decoder_channels=tuple(config.decoder_channels),
                blocks_per_level=config.blocks_per_level,
                norm=config.norm,
                context_channels=config.step_encoding_channels,
                backend=config.backend,
            )
        )
        self.head = nn.Sequential(
            nn.Linear(in_channels + config.decoder_channels[-1], config.head_hidden),
            nn.GELU(),
            nn.Linear(config.head_hidden, channels),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.gradient_gain: Optional[nn.Parameter] = None
        if config.gradient_gain > 0:
            rho = math.log(math.expm1(config.gradient_gain))  # softplus(rho) = gradient_gain
            self.gradient_gain = nn.Parameter(torch.full((channels,), rho))

    def forward(
        self,
        inputs: Float[Tensor, "N I"],
        gradient: Float[Tensor, "N C"],
        positions: Float[Tensor, "N 3"],
        voxel_size: float,
        step_code: Float[Tensor, "E"],
        part_sizes: Optional[Sequence[int]] = None,
    ) -> Float[Tensor, "N C"]:
        """Bounded update Δ ∈ (−1, 1) for each of the N Gaussians.

        ``part_sizes`` splits the rows into consecutive parts (e.g. all actors of a scene) that are run through the
        U-Net in one call: each part is voxelised on its own, its voxel coordinates are counted from its lowest
        voxel (the U-Net's stride-2 levels group voxels by absolute coordinates; this makes the grouping, and so Δ,
        move with the part), and parts are laid side by side along x with a gap of two coarsest-level voxels, so no
        convolution at any level reaches from one part into another. The norm layers' statistics are then shared
        by the batched parts.
        """
        if inputs.shape[0] == 0:
            return inputs.new_zeros(0, self.head[-1].out_features)
        sizes = [inputs.shape[0]] if part_sizes is None else [int(n) for n in part_sizes]
        align = 2 ** len(self.unet.config.encoder_channels)
        coords, rows, shift, first = [], [], 0, 0
        for chunk in torch.split(positions, sizes):
            if chunk.shape[0] == 0:
                continue
            voxels = voxelize(chunk, voxel_size)
            local = voxels.coords - voxels.coords.amin(dim=0)
            local[:, 0] += shift
            shift += (int(local[:, 0].max()) - shift + 1 + 2 * align + align - 1) // align * align
            coords.append(local)
            rows.append(voxels.point_to_voxel + first)
            first += voxels.num_voxels
        point_to_voxel = torch.cat(rows)
        pooled = scatter_to_voxels(inputs, point_to_voxel, first, reduce="mean")
        features = self.unet(SparseTensor(features=pooled, coords=torch.cat(coords)), context=step_code).features
        per_gaussian = gather_from_voxels(features, point_to_voxel)
        update = self.head(torch.cat([inputs, per_gaussian], dim=-1))
        if self.gradient_gain is not None:
            update = update - F.softplus(self.gradient_gain) * gradient
        return torch.tanh(update)


class G3RLearnedOptimizer(nn.Module):
    """The trained part of G3R: the neural-Gaussian decoder and the update network(s)."""

    def __init__(self, config: G3RNetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.decoder = NeuralGaussianDecoder(config.latent_dim)
        if config.networks == "shared":
            self.nets = nn.ModuleDict({"shared": PartUpdateNet(config, extra_channels=len(PART_KINDS))})
        elif config.networks == "separate":
            self.nets = nn.ModuleDict({kind: PartUpdateNet(config) for kind in PART_KINDS})
        else:
            raise ValueError(f"networks must be 'separate' or 'shared', got {config.networks!r}")

    def network_inputs(
        self, kind: str, state: Float[Tensor, "N C"], gradient: Float[Tensor, "N C"], voxel_size: float
    ) -> Float[Tensor, "N I"]:
        """[geometry-normalised state, normalised gradient (+ part one-hot)] (see the module docstring)."""
        parts = [voxel_relative(state, voxel_size), gradient]
        if self.config.networks == "shared":
            one_hot = state.new_zeros(state.shape[0], len(PART_KINDS))
            one_hot[:, PART_KINDS.index(kind)] = 1.0
            parts.append(one_hot)
        return torch.cat(parts, dim=-1)

    def update(
        self,
        kind: str,
        state: Float[Tensor, "N C"],
        gradient: Float[Tensor, "N C"],
        voxel_size: float,
        step_code: Float[Tensor, "E"],
    ) -> Float[Tensor, "N C"]:
        """Δ ∈ (−1, 1) for the Gaussians of one part of kind ``kind``."""
        if kind not in PART_KINDS:
            raise ValueError(f"Unknown part kind {kind!r}; expected one of {PART_KINDS}")
        net = self.nets["shared" if self.config.networks == "shared" else kind]
        inputs = self.network_inputs(kind, state, gradient, voxel_size)
        return net(inputs, gradient, state[:, POSITION].detach(), voxel_size, step_code)

    def update_parts(
        self,
        kind: str,
        states: Sequence[Float[Tensor, "Ni C"]],
        gradients: Sequence[Float[Tensor, "Ni C"]],
        voxel_size: float,
        step_code: Float[Tensor, "E"],
    ) -> List[Float[Tensor, "Ni C"]]:
        """Δ for several parts of one kind in one network call (a scene's actors; see `PartUpdateNet.forward`)."""
        if kind not in PART_KINDS:
            raise ValueError(f"Unknown part kind {kind!r}; expected one of {PART_KINDS}")
        sizes = [int(state.shape[0]) for state in states]
        if sum(sizes) == 0:
            return [state.new_zeros(state.shape) for state in states]
        net = self.nets["shared" if self.config.networks == "shared" else kind]
        state = torch.cat(list(states))
        gradient = torch.cat(list(gradients))
        inputs = self.network_inputs(kind, state, gradient, voxel_size)
        delta = net(inputs, gradient, state[:, POSITION].detach(), voxel_size, step_code, part_sizes=sizes)
        return list(torch.split(delta, sizes))
