"""FLAG-4D's Instantaneous Deformation Network (IDN), Eq. 3–4 of the paper.

The IDN is the Deformable-3DGS MLP (``DeformationMLP``, ``shared/notes/methods.md`` §1.1) used as ``IDN_core`` and
queried for a window of ``W`` times ``t, t+Δ, ..., t+(W−1)Δ`` (Δ = one frame in normalised time). The ``W``
provisional deformations ``H_future = [δθ_t, ..., δθ_{t+W−1}]`` go through a GRU whose last hidden state is the
compact representation ``δθ_rep = GRU(H_future)`` (Eq. 4). The direct forecast ``δθ_t`` (used by the GMN as
``G_t = G_0 + δθ_t`` in Eq. 6, and by the mutual loss Eq. 7) is the first element of the window.

Choices where the paper is silent:

- A deformation vector ``δθ`` is ``[Δx (3), Δq (4), Δs (3)]`` = 10 channels, the three heads of Deformable-3DGS;
  colour and opacity offsets of Eq. 3 are not predicted (Deformable-3DGS does not deform them either).
- The GRU reads the 10-channel deformation vectors themselves (Eq. 4 says it processes the deformation sequence),
  one layer, hidden width ``representation_dim`` (default 64), zero initial state; ``δθ_rep`` is its final hidden
  state. All ``W`` core queries run as one batched MLP call of ``W·N`` rows.
- ``window_step`` (Δ) is an argument of ``forward`` because it depends on the number of frames of the sequence.
- As in Deformable-3DGS, the canonical positions enter the MLP detached.
- The core's output heads start at zero (``zero_init_heads``): with the paper's learning rate of 1e-4, randomly
  initialised heads produce offsets that scramble the warmed-up static scene when the deformation is switched on
  and take on the order of a thousand iterations to unlearn; measured in ``docs/benchmarks.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

from fourd_ns.deformation.mlp_field import Deformation, DeformationMLP

DEFORMATION_DIM = 10
"""Channels of a deformation vector ``[Δx, Δq, Δs]``."""


def deformation_to_vector(deformation: Deformation) -> Float[Tensor, "N 10"]:
    """``[Δx, Δq, Δs]`` concatenated, the vector ``δθ`` of the paper."""
    return torch.cat([deformation.d_means, deformation.d_quats, deformation.d_scales], dim=-1)


def vector_to_deformation(vector: Float[Tensor, "*batch 10"]) -> Deformation:
    """Inverse of :func:`deformation_to_vector`."""
    d_means, d_quats, d_scales = torch.split(vector, [3, 4, 3], dim=-1)
    return Deformation(d_means=d_means, d_quats=d_quats, d_scales=d_scales)


@dataclass
class IDNOutput:
    """What the IDN hands to the GMN and to the losses."""

    forecast: Deformation
    """Direct forecast ``δθ_t`` of ``IDN_core`` at the query time t (= ``window[:, 0]``), offsets of ``[N, ·]``."""
    window: Float[Tensor, "N W 10"]
    """Provisional deformations ``H_future`` for times ``t + k·Δ``, k = 0..W−1."""
    representation: Float[Tensor, "N R"]
    """``δθ_rep = GRU(H_future)`` (Eq. 4), the GRU's final hidden state."""


class InstantaneousDeformationNetwork(nn.Module):
    """IDN: ``IDN_core`` (Deformable-3DGS MLP) queried over a time window, summarised by a GRU.

    Args:
        window_size: W, number of times queried (t and the W−1 following frames). Paper: 4.
        representation_dim: hidden width of the GRU, i.e. the width of ``δθ_rep``.
        depth, width, skips, position_frequencies, time_frequencies, time_net_width: ``DeformationMLP`` options.
        zero_init_heads: start ``IDN_core`` at zero offsets (module docstring).
    """

    def __init__(
        self,
        window_size: int = 4,
        representation_dim: int = 64,
        depth: int = 8,
        width: int = 256,
        skips: Tuple[int, ...] = (4,),
        position_frequencies: int = 10,
        time_frequencies: int = 10,
        time_net_width: Optional[int] = None,
        zero_init_heads: bool = True,
    ) -> None:
        super().__init__()
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {window_size}")
        self.window_size = window_size
        self.representation_dim = representation_dim
        self.core = DeformationMLP(
            depth=depth,
            width=width,
            skips=skips,
            position_frequencies=position_frequencies,
            time_frequencies=time_frequencies,
            time_net_width=time_net_width,
            zero_init_heads=zero_init_heads,
        )
        self.trajectory_gru = nn.GRU(DEFORMATION_DIM, representation_dim, num_layers=1, batch_first=True)

    def window_times(self, times: Float[Tensor, "N 1"], window_step: float) -> Float[Tensor, "N W 1"]:
        """``t + k·Δ`` for k = 0..W−1."""
        offsets = torch.arange(self.window_size, device=times.device, dtype=times.dtype) * window_step
        return times[:, None, :] + offsets[None, :, None]

    def forward(self, means: Float[Tensor, "N 3"], times: Float[Tensor, "N 1"], window_step: float) -> IDNOutput:
        """Query ``IDN_core`` at the W window times of each canonical Gaussian and summarise them.

        Args:
            means: canonical Gaussian centres (detached internally).
            times: query time t per Gaussian, normalised to [0, 1].
            window_step: Δ, the normalised time between two consecutive frames.
        """
        num = means.shape[0]
        window_times = self.window_times(times, window_step)  # [N, W, 1]
        repeated_means = means.detach()[:, None, :].expand(num, self.window_size, 3)
        core = self.core(repeated_means.reshape(-1, 3), window_times.reshape(-1, 1))
        window = deformation_to_vector(core).reshape(num, self.window_size, DEFORMATION_DIM)
        _, last_hidden = self.trajectory_gru(window)  # [1, N, R]
        return IDNOutput(
            forecast=vector_to_deformation(window[:, 0]),
            window=window,
            representation=last_hidden[0],
        )
