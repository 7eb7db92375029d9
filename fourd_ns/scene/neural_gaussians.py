"""G3R's 3D neural Gaussians: one state vector per Gaussian, decoded to activated Gaussians by a tiny network.

The state of N Gaussians is a tensor [N, 14 + L] whose channels are, in order (slices below):

====================  ========  ==================================================================
``POSITION``          3         centre (world for background / far field, box frame for actors)
``LOG_SCALE``         3         log of the standard deviations
``QUAT``              4         rotation, wxyz, unnormalised
``COLOR``             3         logit of RGB
``OPACITY``           1         logit of opacity
``LATENT``            L         free features (L = 32 in G3R) that act on rendering only through the decoder
====================  ========  ==================================================================

The learned optimizer updates the whole state (latent included); rendering decodes it with
`NeuralGaussianDecoder`: ``explicit = state[:, :14] + tanh(Linear(state))`` (G3R's single linear layer + tanh, added
residually so that the optimizer's updates of the explicit channels act directly), then the activations (exp scales,
normalised quaternion, sigmoid colour and opacity) give a `GaussianParams`.

Initialisation of the decoder: the linear layer's bias and its weights from the 14 explicit channels are zero and
its weights from the latent are small (``latent_weight_std``), so at the start the decoded Gaussians are the
explicit channels' activations up to a residual of about ``latent_weight_std · |latent|`` whatever the scene's
scale, and still the latent has a non-zero gradient (all-zero weights would cut the latent off from rendering until
the decoder had trained). With ``latent_dim = 0`` (G3R's "plain 3DGS parameters" ablation) the decoder has no
parameters and decoding is the activations alone.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from fourd_ns.scene.gaussian_params import GaussianParams

POSITION = slice(0, 3)
LOG_SCALE = slice(3, 6)
QUAT = slice(6, 10)
COLOR = slice(10, 13)
OPACITY = slice(13, 14)
EXPLICIT_CHANNELS = 14
EXPLICIT = slice(0, EXPLICIT_CHANNELS)
LATENT = slice(EXPLICIT_CHANNELS, None)

DEFAULT_LATENT_DIM = 32
INITIAL_OPACITY = 0.7
"""G3R's initial opacity."""
DEFAULT_LATENT_STD = 0.1
"""Standard deviation of the random initial latent."""
LOGIT_EPS = 1e-4
"""Colours and opacities are clamped to [eps, 1 - eps] before the logit so that black, white and 1 stay finite."""


def per_channel(
    channels: int,
    position: float,
    log_scale: float,
    rotation: float,
    colour: float,
    opacity: float,
    latent: float,
    device: torch.device | str = "cpu",
) -> Float[Tensor, "C"]:
    """A [C] vector with one value per channel group of a state (e.g. step sizes)."""
    values = torch.full((channels,), float(latent), device=device)
    values[POSITION], values[LOG_SCALE], values[QUAT] = position, log_scale, rotation
    values[COLOR], values[OPACITY] = colour, opacity
    return values


def state_channels(latent_dim: int) -> int:
    """Channels C of a state with an L-dimensional latent: 14 + L."""
    if latent_dim < 0:
        raise ValueError(f"latent_dim must be >= 0, got {latent_dim}")
    return EXPLICIT_CHANNELS + latent_dim


def logit(values: Tensor, eps: float = LOGIT_EPS) -> Tensor:
    """Inverse of the sigmoid, with values clamped to [eps, 1 - eps]."""
    values = values.clamp(eps, 1.0 - eps)
    return torch.log(values) - torch.log1p(-values)


def activate(explicit: Float[Tensor, "N 14"]) -> GaussianParams:
    """Activated Gaussians from the 14 explicit channels: exp scales, unit quaternions, sigmoid colour / opacity."""
    return GaussianParams(
        means=explicit[:, POSITION],
        quats=F.normalize(explicit[:, QUAT], dim=-1),
        scales=torch.exp(explicit[:, LOG_SCALE]),
        opacities=torch.sigmoid(explicit[:, OPACITY]).squeeze(-1),
        colors=torch.sigmoid(explicit[:, COLOR]),
    )


def deactivate(params: GaussianParams) -> Float[Tensor, "N 14"]:
    """The explicit channels whose activation is ``params`` (the inverse of :func:`activate`)."""
    return torch.cat(
        [params.means, torch.log(params.scales), params.quats, logit(params.colors), logit(params.opacities)[:, None]],
        dim=-1,
    )


def state_from_params(
    params: GaussianParams,
    latent_dim: int = DEFAULT_LATENT_DIM,
    latent_std: float = DEFAULT_LATENT_STD,
    generator: Optional[torch.Generator] = None,
) -> Float[Tensor, "N C"]:
    """A state [N, 14 + L] whose explicit channels decode (by activation) to ``params`` and whose latent is
    ``latent_std`` × standard normal noise drawn from ``generator`` (on the generator's device, then moved)."""
    latent = torch.randn(
        params.num, state_channels(latent_dim) - EXPLICIT_CHANNELS, generator=generator,
        dtype=params.means.dtype, device=generator.device if generator is not None else params.means.device,
    )  # fmt: skip
    return torch.cat([deactivate(params), latent.to(params.means.device) * latent_std], dim=-1)


def initial_state(
    positions: Float[Tensor, "N 3"],
    colors: Float[Tensor, "N 3"],
    scales: Float[Tensor, "N 3"],
    opacities: Union[float, Float[Tensor, "N"]] = INITIAL_OPACITY,
    quats: Optional[Float[Tensor, "N 4"]] = None,
    latent_dim: int = DEFAULT_LATENT_DIM,
    latent_std: float = DEFAULT_LATENT_STD,
    generator: Optional[torch.Generator] = None,
) -> Float[Tensor, "N C"]:
    """G3R's initial state of seed points: given positions, colours in [0, 1] and scales, opacity 0.7 and the
    identity rotation unless given, a random latent (see :func:`state_from_params`)."""
    n = positions.shape[0]
    if quats is None:
        quats = positions.new_zeros(n, 4)
        quats[:, 0] = 1.0
    if not isinstance(opacities, Tensor):
        opacities = positions.new_full((n,), float(opacities))
    params = GaussianParams(means=positions, quats=quats, scales=scales, opacities=opacities, colors=colors)
    return state_from_params(params, latent_dim, latent_std, generator)


class NeuralGaussianDecoder(nn.Module):
    """``f_mlp`` of G3R: state [N, 14 + L] -> activated Gaussians, ``explicit + tanh(Linear(state))``."""

    def __init__(self, latent_dim: int = DEFAULT_LATENT_DIM, latent_weight_std: float = 1e-2) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.linear: Optional[nn.Linear] = None
        if latent_dim > 0:
            self.linear = nn.Linear(state_channels(latent_dim), EXPLICIT_CHANNELS)
            with torch.no_grad():
                self.linear.weight.zero_()
                self.linear.weight[:, LATENT].normal_(0.0, latent_weight_std)
                self.linear.bias.zero_()

    def explicit(self, state: Float[Tensor, "N C"]) -> Float[Tensor, "N 14"]:
        """The 14 explicit channels after the residual update (before activation)."""
        if state.shape[-1] != state_channels(self.latent_dim):
            raise ValueError(
                f"NeuralGaussianDecoder(latent_dim={self.latent_dim}) decodes states with "
                f"{state_channels(self.latent_dim)} channels; got {state.shape[-1]}"
            )
        if self.linear is None:
            return state[:, EXPLICIT]
        return state[:, EXPLICIT] + torch.tanh(self.linear(state))

    def forward(self, state: Float[Tensor, "N C"]) -> GaussianParams:
        return activate(self.explicit(state))
