"""FLAG-4D's Global Motion Network (GMN): Temporal Fusion Encoder, Contextual Deformation Alignment (Eq. 5) and
Deformation Refinement Network (Eq. 6).

Data flow for one rendered frame at normalised time t (N Gaussians, flow embeddings ``[C, h, w]`` on the frame's
1/8 grid, ``C = 128``):

1. ``TemporalFusionEncoder``: ``M_final = Fusion_enc(Concat[past, future], t)``, a ``[D, h, w]`` motion map.
2. ``ContextualDeformationAlignment``: multi-head cross-attention, query ``G_unified = δθ_rep + G`` per Gaussian,
   keys/values a bounded set of tokens of ``M_final``; result ``M_scene`` ``[N, D]``.
3. ``DeformationRefinementNetwork``: ``δθ^GMN = DRN(Concat(S(t), G_t, M_scene))`` with ``G_t = G_0 + δθ_t`` (the IDN's
   direct forecast) and ``S`` the noise-augmented time embedding; output offsets ``(Δx, Δq, Δs)`` from ``G_0``, i.e. a
   ``Deformation`` the Deformable-3DGS model base applies as it applies the MLP's.

Choices where the paper is silent:

- **Time indexing.** The paper writes the GMN output at ``t+1`` conditioned on ``G_t``; Eq. 7 compares ``δθ^GMN_t``
  and ``δθ^IDN_t`` at the same index. Here both networks predict the deformation of the rendered frame t: the IDN
  window starts at t, the flow embeddings are frame t's (motion t−1→t and t→t+1), ``S`` encodes t.
- **Widths.** ``model_dim`` D = 64 and 4 heads by default (16 channels per head), DRN 3 layers of 128 (ReLU), all
  arguments.
- **Temporal Fusion Encoder.** Past and future embeddings are concatenated on channels and fused by a 1×1 conv
  (2C→D), GELU, 3×3 conv (D→D) — the fusion mixes the two motions per pixel and with their 3×3 neighbourhood.
  ``M_final`` then gets the sinusoidal encodings the paper mentions: a 2D spatial one (half the channels for y, half
  for x, standard ``1/10000^(2i/D)`` frequencies) and one of the time t, scaled by ``time_position_scale`` (1000) so
  that t ∈ [0, 1] spans the range of positions the standard frequencies were designed for.
- **G as a vector.** ``G`` is embedded by a linear layer from ``[γ(x) (NeRF encoding, 10 frequencies), q, s]`` of
  the canonical Gaussian to D; ``δθ_rep`` is mapped to D by a linear layer (identity when its width is already D);
  ``G_unified`` is their sum (Eq. 5). Canonical quantities enter detached, as positions do in Deformable-3DGS; the
  caller passes the *normalised* quaternions and *activated* scales, the quantities the offsets are added to.
- **Bounded keys (memory linear in N).** Each Gaussian attends to at most
  ``pooled_grid[0]·pooled_grid[1] + local_window²`` tokens: a coarse grid of ``M_final`` average-pooled to
  ``pooled_grid`` (default 8×8, shared by all Gaussians, global context) and/or a ``local_window × local_window``
  (default 3×3) bilinear sample of ``M_final`` around the Gaussian's 2D projection, one 1/8-grid cell apart (local
  context). Keys and values are projected on the map before pooling/sampling (both commute with the linear
  projection), and the shared and local logits are softmaxed jointly without materialising per-Gaussian copies of
  the shared tokens. Either part can be disabled (``pooled_grid=None`` or ``local_window=0``).
- **Projections** are ``(x, y)`` in [−1, 1] over the flow map, −1 the left/top image edge
  (``grid_sample`` with ``align_corners=False``); outside the image the border tokens are used. The local tokens
  are gathered by :func:`bilinear_window_sample` (tested against ``grid_sample``), once per call.
- **Stop-gradient of Eq. 7 through the GMN's conditioning.** The GMN's prediction depends on the IDN's outputs
  (``δθ_rep``, ``δθ_t``), so even with ``sg(δθ^IDN)`` as target, the first term of Eq. 7 would push gradients into
  the IDN through the GMN's inputs. ``forward(..., with_isolated_prediction=True)`` also returns the same prediction
  computed from *detached* IDN inputs (same values, shared motion map, sampled tokens and time noise), for all
  Gaussians or a chosen subset (``isolated_indices``; the per-Gaussian networks then run on N + M rows); feed that one to the mutual loss and the attached one to the renderer, so the rendering loss trains
  both networks while Eq. 7's first term trains only the GMN.
- **Zero-initialised DRN heads** (``zero_init_heads``): the final deformation starts at the identity when the
  deformation is switched on after the static warm-up (see the IDN module for why).
- **Refining the forecast** (``refine_forecast``). The paper's DRN maps ``[S(t), G_0 + δθ^IDN_t, M_scene]`` to
  "the final deformation"; read literally (``refine_forecast=False``), its output replaces the IDN's forecast, so
  with zero-initialised heads the model renders *no* deformation when the deformation is switched on, and the IDN
  reaches the image only through the DRN's inputs. With ``refine_forecast=True`` the DRN predicts a correction
  added to the forecast (``δθ^GMN_t = δθ^IDN_t + DRN(…)``): the model starts exactly as its IDN alone
  (Deformable-3DGS with a GRU window) and the flow-guided GMN can only add to it. Eq. 7 then pulls the correction
  towards zero and the IDN towards the refined deformation.
- **Noise augmentation S(t).** Annealed smooth training of Deformable-3DGS: the caller's scalar ``time_noise`` (the
  same draw the IDN's time gets; 0 at evaluation) is added to t before the NeRF frequency encoding (10 frequencies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from fourd_ns.deformation.encodings import FrequencyEncoding
from fourd_ns.deformation.flag4d_idn import DEFORMATION_DIM, deformation_to_vector, vector_to_deformation
from fourd_ns.deformation.mlp_field import Deformation, DeformationHeads


def sinusoidal_spatial_encoding(channels: int, height: int, width: int, device: torch.device) -> Float[Tensor, "D h w"]:
    """2D sinusoidal encoding: channels ``[0, D/2)`` encode the row, ``[D/2, D)`` the column (sin, cos halves)."""
    if channels % 4 != 0:
        raise ValueError(f"channels must be a multiple of 4 for a 2D sinusoidal encoding, got {channels}")
    quarter = channels // 4
    inv_freq = 1.0 / (10000.0 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    rows = torch.arange(height, device=device, dtype=torch.float32)[:, None] * inv_freq  # [h, D/4]
    cols = torch.arange(width, device=device, dtype=torch.float32)[:, None] * inv_freq  # [w, D/4]
    row_enc = torch.cat([rows.sin(), rows.cos()], dim=-1).T[:, :, None].expand(-1, height, width)
    col_enc = torch.cat([cols.sin(), cols.cos()], dim=-1).T[:, None, :].expand(-1, height, width)
    return torch.cat([row_enc, col_enc], dim=0)


def sinusoidal_time_encoding(channels: int, time: float, scale: float, device: torch.device) -> Float[Tensor, "D"]:
    """Standard 1D sinusoidal encoding of the position ``time · scale``."""
    half = channels // 2
    inv_freq = 1.0 / (10000.0 ** (torch.arange(half, device=device, dtype=torch.float32) / half))
    angles = time * scale * inv_freq
    return torch.cat([angles.sin(), angles.cos()])


class TemporalFusionEncoder(nn.Module):
    """``M_final = Fusion_enc(Concat[flow_{t−1→t}, flow_{t→t+1}], t)``: fused motion map with positional encodings."""

    def __init__(self, flow_channels: int = 128, model_dim: int = 64, time_position_scale: float = 1000.0) -> None:
        super().__init__()
        self.model_dim = model_dim
        self.time_position_scale = time_position_scale
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * flow_channels, model_dim, kernel_size=1),
            nn.GELU(),
            nn.Conv2d(model_dim, model_dim, kernel_size=3, padding=1),
        )

    def forward(
        self, past: Float[Tensor, "C h w"], future: Float[Tensor, "C h w"], time: float
    ) -> Float[Tensor, "D h w"]:
        fused = self.fuse(torch.cat([past, future], dim=0)[None])[0]
        _, height, width = fused.shape
        spatial = sinusoidal_spatial_encoding(self.model_dim, height, width, fused.device)
        temporal = sinusoidal_time_encoding(self.model_dim, time, self.time_position_scale, fused.device)
        return fused + spatial.to(fused.dtype) + temporal.to(fused.dtype)[:, None, None]


def bilinear_window_sample(
    feature_map: Float[Tensor, "C h w"], centers: Float[Tensor, "N 2"], window: int
) -> Float[Tensor, "N K C"]:
    """Bilinear samples of ``feature_map`` at the ``window × window`` points one cell apart around each centre
    (K = window², row-major, y outer; centres are ``(x, y)`` in [−1, 1]) — what ``F.grid_sample(mode="bilinear",
    padding_mode="border", align_corners=False)`` returns at those points (the reference it is tested against),
    computed from one ``(window+1)²`` patch of cells per centre: gathering rows is several times faster than
    ``grid_sample``'s backward on the CPU.

    Points one cell apart share their fractional position inside a cell, so the K bilinear samples are a separable
    interpolation of the patch: (window+1)² gathered cells instead of 4·window². Border padding is exact: clamping
    the integer cell indices (not the continuous coordinate) gives what ``grid_sample`` gives for every position,
    inside or outside the map.
    """
    channels, height, width = feature_map.shape
    half = (window - 1) / 2
    x = ((centers[:, 0] + 1.0) * width - 1.0) / 2.0 - half  # continuous cell coordinate of the first window point
    y = ((centers[:, 1] + 1.0) * height - 1.0) / 2.0 - half
    x0, y0 = x.detach().floor(), y.detach().floor()
    fx, fy = (x - x0)[:, None, None, None], (y - y0)[:, None, None, None]
    steps = torch.arange(window + 1, device=centers.device)
    cols = (x0.long()[:, None] + steps).clamp(0, width - 1)  # [N, window+1]
    rows = (y0.long()[:, None] + steps).clamp(0, height - 1)
    cells = rows[:, :, None] * width + cols[:, None, :]  # [N, window+1, window+1]
    table = feature_map.reshape(channels, height * width).T
    patch = torch.index_select(table, 0, cells.reshape(-1)).reshape(-1, window + 1, window + 1, channels)
    across = patch[:, :, :-1] * (1 - fx) + patch[:, :, 1:] * fx  # [N, window+1, window, C]
    down = across[:, :-1] * (1 - fy) + across[:, 1:] * fy  # [N, window, window, C]
    return down.reshape(-1, window * window, channels)


class ContextualDeformationAlignment(nn.Module):
    """Multi-head cross-attention (Eq. 5): ``M_scene = softmax(G_unified K^T / √d) V`` over a bounded token set.

    Keys and values come from the motion map: an average-pooled ``pooled_grid`` shared by every Gaussian and/or a
    ``local_window²`` bilinear neighbourhood around each Gaussian's projection (module docstring). Queries map to
    Gaussians through ``rows``, so the isolated prediction reuses the tokens sampled for its Gaussians.
    """

    def __init__(
        self,
        model_dim: int = 64,
        num_heads: int = 4,
        pooled_grid: Optional[Tuple[int, int]] = (8, 8),
        local_window: int = 3,
    ) -> None:
        super().__init__()
        if model_dim % num_heads != 0:
            raise ValueError(f"model_dim ({model_dim}) must be divisible by num_heads ({num_heads})")
        if pooled_grid is None and local_window < 1:
            raise ValueError("at least one token source is needed: set pooled_grid or local_window >= 1")
        self.model_dim = model_dim
        self.num_heads = num_heads
        self.head_dim = model_dim // num_heads
        self.pooled_grid = tuple(pooled_grid) if pooled_grid is not None else None
        self.local_window = local_window
        self.query_projection = nn.Linear(model_dim, model_dim)
        self.key_projection = nn.Linear(model_dim, model_dim)
        self.value_projection = nn.Linear(model_dim, model_dim)
        self.output_projection = nn.Linear(model_dim, model_dim)

    @property
    def max_tokens_per_gaussian(self) -> int:
        """Upper bound on the key length of one Gaussian's attention, independent of the flow-map size."""
        pooled = self.pooled_grid[0] * self.pooled_grid[1] if self.pooled_grid is not None else 0
        return pooled + self.local_window**2

    def _project_map(self, linear: nn.Linear, motion_map: Float[Tensor, "D h w"]) -> Float[Tensor, "D h w"]:
        return torch.einsum("oc,chw->ohw", linear.weight, motion_map) + linear.bias[:, None, None]

    def _local_tokens(
        self, feature_map: Float[Tensor, "D h w"], projections: Float[Tensor, "N 2"]
    ) -> Float[Tensor, "N K D"]:
        """Bilinear samples at the window around each projection."""
        return bilinear_window_sample(feature_map, projections, self.local_window)

    def forward(
        self,
        query: Float[Tensor, "Q D"],
        motion_map: Float[Tensor, "D h w"],
        projections: Optional[Float[Tensor, "N 2"]] = None,
        rows: Optional[Tensor] = None,
    ) -> Tuple[Float[Tensor, "Q D"], Float[Tensor, "Q H K"]]:
        """Aligned motion feature ``M_scene`` and attention weights ``[Q, heads, key length]``.

        ``rows[q]`` is the Gaussian (row of ``projections``) that query q belongs to; ``None`` means query q is
        Gaussian q. Several queries may share a Gaussian (the isolated prediction): its local tokens are sampled once.
        """
        total = query.shape[0]
        heads, head_dim = self.num_heads, self.head_dim
        q = self.query_projection(query).reshape(total, heads, head_dim) / math.sqrt(head_dim)
        key_map = self._project_map(self.key_projection, motion_map)
        value_map = self._project_map(self.value_projection, motion_map)

        logits = []
        if self.pooled_grid is not None:
            shared_keys = F.adaptive_avg_pool2d(key_map[None], self.pooled_grid)[0].flatten(1).T  # [M, D]
            shared_values = F.adaptive_avg_pool2d(value_map[None], self.pooled_grid)[0].flatten(1).T
            shared_values = shared_values.reshape(-1, heads, head_dim)
            logits.append(torch.einsum("qhd,mhd->qhm", q, shared_keys.reshape(-1, heads, head_dim)))
        if self.local_window > 0:
            if projections is None:
                raise ValueError("local_window > 0 needs the Gaussians' 2D projections (pass projections=[N, 2])")
            # Keys and values sampled in one pass (sampling commutes with the per-cell linear projections).
            local = self._local_tokens(torch.cat([key_map, value_map]), projections)  # [N, K, 2D]
            if rows is not None:
                local = local[rows]
            local_keys, local_values = local.reshape(total, -1, 2, heads, head_dim).unbind(dim=2)
            # multiply-and-sum: as an einsum this is a batch of tiny matrix products, far slower on the CPU
            logits.append((q[:, None] * local_keys).sum(-1).transpose(1, 2))

        weights = torch.softmax(torch.cat(logits, dim=-1), dim=-1)  # [Q, H, K]: shared tokens first, then local
        output = q.new_zeros(total, heads, head_dim)
        num_shared = 0
        if self.pooled_grid is not None:
            num_shared = shared_values.shape[0]
            output = output + torch.einsum("qhm,mhd->qhd", weights[..., :num_shared], shared_values)
        if self.local_window > 0:
            output = output + (weights[..., num_shared:].transpose(1, 2)[..., None] * local_values).sum(1)
        return self.output_projection(output.reshape(total, self.model_dim)), weights


class DeformationRefinementNetwork(DeformationHeads):
    """``δθ = DRN(Concat(S(t), G_t, M_scene))`` (Eq. 6): a ReLU MLP with Deformable-3DGS-style heads."""

    def __init__(
        self,
        model_dim: int = 64,
        width: int = 128,
        depth: int = 3,
        position_frequencies: int = 10,
        time_frequencies: int = 10,
        zero_init_heads: bool = True,
    ) -> None:
        super().__init__()
        self.position_encoding = FrequencyEncoding(3, position_frequencies)
        self.time_encoding = FrequencyEncoding(1, time_frequencies)
        in_dim = self.time_encoding.out_dim + self.position_encoding.out_dim + 4 + 3 + model_dim
        layers = []
        for i in range(depth):
            layers += [nn.Linear(in_dim if i == 0 else width, width), nn.ReLU(inplace=True)]
        self.trunk = nn.Sequential(*layers)
        self.build_heads(width, zero_init_heads)

    def forward(
        self,
        noisy_times: Float[Tensor, "N 1"],
        state_means: Float[Tensor, "N 3"],
        state_quats: Float[Tensor, "N 4"],
        state_scales: Float[Tensor, "N 3"],
        scene_motion: Float[Tensor, "N D"],
    ) -> Deformation:
        features = torch.cat(
            [self.time_encoding(noisy_times), self.position_encoding(state_means), state_quats, state_scales,
             scene_motion],
            dim=-1,
        )  # fmt: skip
        return self.heads(self.trunk(features))


@dataclass
class GMNOutput:
    deformation: Deformation
    """Final offsets ``δθ^GMN`` from the canonical Gaussians."""
    attention_weights: Float[Tensor, "N H K"]
    """CDA attention weights; K ≤ ``max_tokens_per_gaussian``."""
    isolated_deformation: Optional[Deformation] = None
    """The same prediction from detached IDN inputs (``with_isolated_prediction``), for Eq. 7's GMN term, for the
    Gaussians ``isolated_indices``."""
    isolated_indices: Optional[Tensor] = None
    """``[M]`` rows of the Gaussians ``isolated_deformation`` is computed for (all N unless a subset was asked)."""


class GlobalMotionNetwork(nn.Module):
    """GMN: TFE → CDA → DRN (module docstring).

    Args:
        flow_channels: C, channels of each of the past/future flow embeddings.
        representation_dim: width of the IDN's ``δθ_rep``.
        model_dim: D, width of motion tokens and of the attention.
        num_heads: CDA heads.
        pooled_grid: (rows, cols) of the shared pooled tokens, ``None`` to disable.
        local_window: side of the per-Gaussian token window around its projection, 0 to disable.
        refinement_width, refinement_depth: DRN MLP size.
        position_frequencies, time_frequencies: NeRF frequency encodings of positions and time.
        refine_forecast: the final deformation is the IDN's forecast plus the DRN's output (a correction), instead
            of the DRN's output alone. With zero-initialised heads the model then starts exactly as its IDN alone
            and the GMN can only add to it (module docstring, "Refining the forecast").
    """

    def __init__(
        self,
        flow_channels: int = 128,
        representation_dim: int = 64,
        model_dim: int = 64,
        num_heads: int = 4,
        pooled_grid: Optional[Tuple[int, int]] = (8, 8),
        local_window: int = 3,
        refinement_width: int = 128,
        refinement_depth: int = 3,
        position_frequencies: int = 10,
        time_frequencies: int = 10,
        zero_init_heads: bool = True,
        refine_forecast: bool = False,
    ) -> None:
        super().__init__()
        self.refine_forecast = refine_forecast
        self.temporal_fusion = TemporalFusionEncoder(flow_channels, model_dim)
        self.alignment = ContextualDeformationAlignment(model_dim, num_heads, pooled_grid, local_window)
        self.refinement = DeformationRefinementNetwork(
            model_dim, refinement_width, refinement_depth, position_frequencies, time_frequencies, zero_init_heads
        )
        self.canonical_position_encoding = FrequencyEncoding(3, position_frequencies)
        self.canonical_embedding = nn.Linear(self.canonical_position_encoding.out_dim + 4 + 3, model_dim)
        self.representation_projection: nn.Module = (
            nn.Identity() if representation_dim == model_dim else nn.Linear(representation_dim, model_dim)
        )

    @property
    def max_tokens_per_gaussian(self) -> int:
        return self.alignment.max_tokens_per_gaussian

    def unified_query(
        self,
        representation: Float[Tensor, "N R"],
        canonical_means: Float[Tensor, "N 3"],
        canonical_quats: Float[Tensor, "N 4"],
        canonical_scales: Float[Tensor, "N 3"],
    ) -> Float[Tensor, "N D"]:
        """``G_unified = δθ_rep + G`` with G the embedded canonical Gaussian."""
        canonical = torch.cat(
            [self.canonical_position_encoding(canonical_means.detach()), canonical_quats.detach(),
             canonical_scales.detach()],
            dim=-1,
        )  # fmt: skip
        return self.representation_projection(representation) + self.canonical_embedding(canonical)

    def forward(
        self,
        canonical_means: Float[Tensor, "N 3"],
        canonical_quats: Float[Tensor, "N 4"],
        canonical_scales: Float[Tensor, "N 3"],
        representation: Float[Tensor, "N R"],
        forecast: Float[Tensor, "N 10"],
        past_flow: Float[Tensor, "C h w"],
        future_flow: Float[Tensor, "C h w"],
        time: float,
        projections: Optional[Float[Tensor, "N 2"]] = None,
        time_noise: float = 0.0,
        with_isolated_prediction: bool = False,
        isolated_indices: Optional[Tensor] = None,
    ) -> GMNOutput:
        """Final deformation of the canonical Gaussians at time ``time``.

        Args:
            canonical_means, canonical_quats, canonical_scales: G_0 (normalised quaternions, activated scales).
            representation: ``δθ_rep`` from the IDN.
            forecast: the IDN's direct forecast ``δθ_t`` as ``[Δx, Δq, Δs]`` (``deformation_to_vector``).
            past_flow, future_flow: frame t's flow embeddings (motion t−1→t and t→t+1) on its 1/8 grid.
            time: normalised time t of the frame.
            projections: ``[N, 2]`` in [−1, 1] over the flow map; required when ``local_window > 0``.
            time_noise: the scalar added to t in ``S(t)`` only (0 at evaluation); the model base draws the annealed
                noise once per iteration and shares it between the IDN and the GMN.
            with_isolated_prediction: also return ``isolated_deformation`` (module docstring).
            isolated_indices: compute the isolated prediction for these rows only (default: all); Eq. 7 averaged
                over a random subset is an unbiased estimate of its mean at a bounded cost.
        """
        if forecast.shape[-1] != DEFORMATION_DIM:
            raise ValueError(f"forecast must have {DEFORMATION_DIM} channels [Δx, Δq, Δs], got {forecast.shape}")
        num = canonical_means.shape[0]
        motion_map = self.temporal_fusion(past_flow, future_flow, time)
        rows = None
        if with_isolated_prediction:
            if isolated_indices is None:
                isolated_indices = torch.arange(num, device=canonical_means.device)
            rows = torch.cat([torch.arange(num, device=canonical_means.device), isolated_indices])
            representation = torch.cat([representation, representation.detach()[isolated_indices]])
            forecast = torch.cat([forecast, forecast.detach()[isolated_indices]])
            canonical_means, canonical_quats, canonical_scales = (
                x[rows] for x in (canonical_means, canonical_quats, canonical_scales)
            )
        query = self.unified_query(representation, canonical_means, canonical_quats, canonical_scales)
        scene_motion, weights = self.alignment(query, motion_map, projections, rows=rows)

        total = query.shape[0]
        noisy_times = torch.full((total, 1), float(time) + time_noise, device=canonical_means.device)
        step = vector_to_deformation(forecast)
        deformation = self.refinement(
            noisy_times,
            canonical_means.detach() + step.d_means,
            canonical_quats.detach() + step.d_quats,
            canonical_scales.detach() + step.d_scales,
            scene_motion,
        )
        if self.refine_forecast:
            deformation = Deformation(
                d_means=step.d_means + deformation.d_means,
                d_quats=step.d_quats + deformation.d_quats,
                d_scales=step.d_scales + deformation.d_scales,
            )
        if not with_isolated_prediction:
            return GMNOutput(deformation=deformation, attention_weights=weights)
        vector = deformation_to_vector(deformation)
        return GMNOutput(
            deformation=vector_to_deformation(vector[:num]),
            attention_weights=weights[:num],
            isolated_deformation=vector_to_deformation(vector[num:]),
            isolated_indices=isolated_indices,
        )
