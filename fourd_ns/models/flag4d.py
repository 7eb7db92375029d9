"""``flag4d``: FLAG-4D (Tan et al., AAAI 2026), canonical Gaussians deformed by an Instantaneous Deformation Network
and a flow-guided Global Motion Network trained with mutual learning, reimplemented from the paper (no code is
public; ``shared/notes/methods.md`` §2).

Per rendered frame at time t (module docstrings of ``fourd_ns/deformation/flag4d_idn.py`` and ``flag4d_gmn.py``
give the network-level choices):

1. IDN: ``IDN_core`` (the Deformable-3DGS MLP) at t … t+(W−1)Δ, Δ = one frame of the sequence in normalised time
   (the dataparser's ``TimeAxis.frame_step``); a GRU summarises the window into ``δθ_rep``; the forecast
   ``δθ^IDN_t`` is kept.
2. GMN: frame t's flow embeddings (of the training frame at or nearest to t, :mod:`fourd_ns.flow.guidance`) are
   fused by the TFE; each Gaussian's query ``δθ_rep + G`` attends to a bounded token set (a pooled grid and a window
   around its projection *into that training frame*, at its IDN-forecast position); the DRN maps
   ``[S(t), G_0 + δθ^IDN_t, M_scene]`` to the final deformation ``δθ^GMN_t``, which is what is rendered.
3. Losses (Eq. 12, every weight a config field, all 1 as in the paper's sum): rendering 0.8·L1 + 0.2·D-SSIM
   (splatfacto's); mutual learning (Eq. 7) over the Gaussians the rasterizer saw in this view (radius > 0), with the
   GMN term fed by the prediction computed from detached IDN inputs so each stop-gradient holds; depth (Eq. 9) when
   the dataset lists depth maps (the log says whether it is on; the term lives in
   `fourd_ns.models.deformable_splatfacto` so deform4d can have it too); local rigidity (Eq. 10–11) between the
   rendered Gaussians at t and the Gaussians at the neighbouring training frame (t−1, or t+1 for the first frame),
   the latter without gradient (a target, as Dynamic3DGaussians treats the previous time step), over k canonical
   nearest neighbours refreshed whenever the number of Gaussians changes and every ``rigidity_knn_every`` steps.
   Eq. 7 and Eq. 11 are means over Gaussians; each step estimates them on a uniform random subset
   (``mutual_max_gaussians``, ``rigidity_max_anchors``; 0 = all), which keeps their extra network passes bounded
   (the GMN's isolated prediction; deforming the anchors and their neighbours to the neighbouring frame) while the
   expected gradient is unchanged.
4. Smooth opacity (Eq. 8) right after each densification step.

Ablations (paper Table 3) are switches, not copies: ``use_idn=False`` (GMN alone: ``δθ_rep = 0`` and
``G_t = G_0``), ``use_gmn=False`` (the IDN forecast is rendered; no flow is computed), ``mutual_learning=False``
(each network only gets the rendering loss and the regularisers). Without one of the two networks there is nothing
to learn mutually, so the mutual term is off.

Choices where the paper is silent: IDN/GMN learning rate 1e-4 (the paper's) decaying exponentially to 1e-6; the
Deformable-3DGS schedule otherwise (static warm-up, annealed time noise — one draw per iteration shared by the IDN
time and the GMN's ``S(t)`` — densification). Eq. 8 defaults decay 0.001 per densification with the clamp [0, 1]:
with ``o_min`` above the prune threshold Eq. 8 would lift every faint Gaussian back over it and opacity pruning
would never fire, so the default keeps it off (it is a config field).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Type

import torch
from torch import Tensor
from torch.nn import Parameter

from fourd_ns.dataparsers.time_axis import get_time_axis
from fourd_ns.deformation.flag4d_gmn import GlobalMotionNetwork
from fourd_ns.deformation.flag4d_idn import DEFORMATION_DIM, InstantaneousDeformationNetwork, deformation_to_vector
from fourd_ns.deformation.flag4d_losses import (
    knn_graph,
    local_rigidity_loss,
    mutual_learning_loss,
    smooth_opacity_update,
)
from fourd_ns.deformation.mlp_field import Deformation, DeformationMLPOptions
from fourd_ns.flow.guidance import FlowGuidance
from fourd_ns.gaussians.gaussian_state import GaussianState
from fourd_ns.models.deformable_splatfacto import (
    DeformableSplatfactoModel,
    DeformableSplatfactoModelConfig,
    time_column,
)


@dataclass
class Flag4DModelConfig(DeformationMLPOptions, DeformableSplatfactoModelConfig):
    """FLAG-4D: IDN + flow-guided GMN with mutual learning, depth, rigidity and smooth-opacity terms."""

    _target: Type = field(default_factory=lambda: Flag4DModel)
    # ---- ablations (paper Table 3)
    use_idn: bool = True
    """Use the Instantaneous Deformation Network (False: 'w/o IDN', the GMN alone)."""
    use_gmn: bool = True
    """Use the flow-guided Global Motion Network (False: 'w/o GMN', the IDN's forecast is rendered)."""
    mutual_learning: bool = True
    """Train IDN and GMN with the mutual-learning loss (False: 'w/o Mutual Learning')."""
    # ---- IDN
    window_size: int = 4
    """W: times t, t+1, …, t+W−1 queried by the IDN core (paper: 4)."""
    representation_dim: int = 64
    """Width of the GRU state δθ_rep."""
    # (the IDN core's mlp_* / position_frequencies / time_frequencies / time_net_width options are inherited;
    #  position and time frequencies are also those of the GMN's encodings)
    zero_init_heads: bool = True
    """Start the IDN core's and the DRN's output heads at zero, so switching the deformation on after the static
    warm-up does not scramble the scene (random heads + the paper's 1e-4 learning rate take ~1000 steps to recover)."""
    # ---- GMN
    flow_channels: int = 128
    """Channels of each flow embedding; set by the pipeline from pipeline.flow.embedding-channels."""
    attention_dim: int = 64
    """Width D of the fused motion tokens and of the cross-attention."""
    attention_heads: int = 4
    """Heads of the Contextual Deformation Alignment."""
    pooled_tokens: Optional[Tuple[int, int]] = (8, 8)
    """(rows, cols) of the pooled motion grid every Gaussian attends to; None disables it."""
    local_window: int = 3
    """Side of the window of motion tokens around each Gaussian's projection; 0 disables it."""
    refinement_width: int = 128
    """Width of the Deformation Refinement Network."""
    refinement_depth: int = 3
    """Hidden layers of the Deformation Refinement Network."""
    refine_forecast: bool = False
    """The GMN's output is a correction added to the IDN's forecast instead of replacing it: with zero-initialised
    heads flag4d then starts exactly as its IDN alone (`fourd_ns.deformation.flag4d_gmn`, "Refining the
    forecast")."""
    # ---- losses (Eq. 12)
    mutual_weight: float = 1.0
    """Weight of the mutual-learning loss (Eq. 7)."""
    mutual_max_gaussians: int = 4096
    """Eq. 7 is averaged over at most this many random Gaussians per step (unbiased; bounds the cost of the GMN's
    isolated prediction); 0 uses every Gaussian."""
    depth_weight: float = 1.0
    """Weight of the depth loss (Eq. 9, the shared base class's term); used only when the dataset has depth maps."""
    rigidity_weight: float = 1.0
    """Weight of the local rigidity loss (Eq. 10–11); 0 disables it (and its extra forward pass)."""
    rigidity_neighbours: int = 20
    """k nearest canonical neighbours of the rigidity loss."""
    rigidity_falloff: Optional[float] = None
    """λ of w_ij = exp(−λ d²); None: 1 / median neighbour distance² (scale-free)."""
    rigidity_max_anchors: int = 512
    """Eq. 11's outer sum runs over at most this many random Gaussians per step (unbiased; only they and their
    neighbours are deformed to the neighbouring frame); 0 uses every Gaussian."""
    rigidity_knn_every: int = 100
    """Rebuild the neighbour graph every this many steps (and whenever the number of Gaussians changes)."""
    smooth_opacity: bool = True
    """Apply Eq. 8 to the opacities after every densification step."""
    opacity_decay: float = 0.001
    """δ_o of Eq. 8."""
    opacity_min: float = 0.0
    """o_min of Eq. 8 (see the module docstring before raising it above the prune threshold)."""
    opacity_max: float = 1.0
    """o_max of Eq. 8."""

    @property
    def needs_flow_guidance(self) -> bool:
        """Whether the pipeline builds flow guidance for this model (the GMN reads it)."""
        return self.use_gmn


class Flag4DModel(DeformableSplatfactoModel):
    config: Flag4DModelConfig
    method_label = "flag4d"

    # ---------------------------------------------------------------- construction
    def populate_deformation(self) -> None:
        cfg = self.config
        if not (cfg.use_idn or cfg.use_gmn):
            raise ValueError("flag4d needs at least one deformation network: use_idn and use_gmn cannot both be False.")
        self.idn: Optional[InstantaneousDeformationNetwork] = None
        self.gmn: Optional[GlobalMotionNetwork] = None
        if cfg.use_idn:
            self.idn = InstantaneousDeformationNetwork(
                window_size=cfg.window_size,
                representation_dim=cfg.representation_dim,
                zero_init_heads=cfg.zero_init_heads,
                **cfg.mlp_kwargs(),
            )
        if cfg.use_gmn:
            self.gmn = GlobalMotionNetwork(
                flow_channels=cfg.flow_channels,
                representation_dim=cfg.representation_dim,
                model_dim=cfg.attention_dim,
                num_heads=cfg.attention_heads,
                pooled_grid=cfg.pooled_tokens,
                local_window=cfg.local_window,
                refinement_width=cfg.refinement_width,
                refinement_depth=cfg.refinement_depth,
                position_frequencies=cfg.position_frequencies,
                time_frequencies=cfg.time_frequencies,
                zero_init_heads=cfg.zero_init_heads,
                refine_forecast=cfg.refine_forecast,
            )
        metadata = self.kwargs.get("metadata") or {}
        # Δ = one frame of the sequence in normalised time, as the dataparser's TimeAxis says; a dataparser without
        # one (not ours) is taken to have its training images evenly spaced over [0, 1].
        time_axis = get_time_axis(metadata)
        self.window_step = (
            time_axis.frame_step if time_axis is not None else 1.0 / max(self.num_train_data - 1, 1)
        )
        # The pipeline builds the flow guidance and hands it in (`fourd_ns.pipelines.flow_guided_pipeline`): as a
        # keyword argument when training, through `set_flow_guidance` once a checkpoint is loaded otherwise.
        # `flow_cache_dir` is the run folder holding its cache, recorded in checkpoints so ns-eval finds it again.
        self._flow_guidance: Optional[FlowGuidance] = self.kwargs.get("flow_guidance")
        self.flow_cache_dir: Optional[str] = self.kwargs.get("flow_cache_dir")
        self._record: Optional[dict] = None
        self._last_record: Optional[dict] = None
        self._knn: Optional[tuple] = None

    @property
    def has_flow_guidance(self) -> bool:
        return self._flow_guidance is not None

    @property
    def mutual_active(self) -> bool:
        cfg = self.config
        return cfg.mutual_learning and cfg.mutual_weight > 0 and self.idn is not None and self.gmn is not None

    def deformation_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = {}
        if self.idn is not None:
            groups["idn"] = list(self.idn.parameters())
        if self.gmn is not None:
            groups["gmn"] = list(self.gmn.parameters())
        return groups

    # ---------------------------------------------------------------- flow guidance
    def set_flow_guidance(self, guidance: FlowGuidance) -> None:
        """Called by the pipeline after loading a checkpoint: the training video's flow guidance, on this device."""
        self._flow_guidance = guidance

    def flow_guidance(self) -> FlowGuidance:
        if self._flow_guidance is None:
            raise RuntimeError(
                "flag4d's Global Motion Network needs optical-flow guidance, which the FlowGuidedPipeline "
                "provides (the flag4d method config uses it) when it builds the model for training or loads its "
                "checkpoint; this model has none."
            )
        return self._flow_guidance

    def get_extra_state(self) -> dict:
        # The run folder holding the flow-embedding cache, so ns-eval / ns-viewer find it again.
        return {"flow_cache_dir": self.flow_cache_dir}

    def set_extra_state(self, state: dict) -> None:
        # A model handed its guidance at construction (training, also when resuming) keeps that guidance's folder.
        if self._flow_guidance is None:
            self.flow_cache_dir = state.get("flow_cache_dir")

    # ---------------------------------------------------------------- deformation
    def _random_subset(self, count: int, limit: int) -> Optional[Tensor]:
        """``limit`` random row indices out of ``count`` (None when ``limit`` is 0 or not smaller than ``count``)."""
        if limit <= 0 or limit >= count:
            return None
        return torch.randperm(count, device=self.device)[:limit]

    def deformation_at(self, canonical: GaussianState, time: float, time_noise: float) -> Deformation:
        record = self._record
        means = canonical.means
        num = means.shape[0]
        idn_out = None
        if self.idn is not None:
            idn_out = self.idn(means, time_column(means, time + time_noise), self.window_step)
        if self.gmn is None:
            return idn_out.forecast
        if idn_out is not None:
            representation, forecast = idn_out.representation, deformation_to_vector(idn_out.forecast)
        else:
            representation = means.new_zeros(num, self.config.representation_dim)
            forecast = means.new_zeros(num, DEFORMATION_DIM)
        guidance = self.flow_guidance()
        frame = guidance.frame_at(time)
        past, future = guidance.frame_embeddings(frame)
        isolated = record is not None and self.mutual_active
        subset = self._random_subset(num, self.config.mutual_max_gaussians) if isolated else None
        output = self.gmn(
            means,
            canonical.quats,
            canonical.scales,
            representation,
            forecast,
            past,
            future,
            time=time,
            projections=guidance.project(frame, (means + forecast[:, :3]).detach()),
            time_noise=time_noise,
            with_isolated_prediction=isolated,
            isolated_indices=subset,
        )
        if isolated:
            record["mutual_rows"] = output.isolated_indices
            record["idn"] = forecast[output.isolated_indices]
            record["gmn"] = deformation_to_vector(output.isolated_deformation)
        return output.deformation

    def gaussians_at(self, time: float, rows: Optional[Tensor] = None) -> GaussianState:
        state = super().gaussians_at(time, rows)
        if self._record is not None:
            self._record.update(state=state, time=float(time))
        return state

    def get_outputs(self, camera):
        self._record = {} if self.training else None
        try:
            outputs = super().get_outputs(camera)
        finally:
            self._last_record, self._record = self._record, None
        return outputs

    # ---------------------------------------------------------------- losses
    def _visible(self) -> Tensor:
        radii = self.info["radii"]
        return (radii.reshape(radii.shape[0], radii.shape[1], -1) > 0).any(dim=-1).any(dim=0)

    def _neighbour_time(self, time: float) -> Optional[float]:
        if self.gmn is not None:
            guidance = self.flow_guidance()
            frame = guidance.frame_at(time)
            neighbour = guidance.neighbour_of(frame)
            return None if neighbour == frame else float(guidance.embeddings.times[neighbour])
        previous = time - self.window_step
        return previous if previous >= 0.0 else time + self.window_step

    def _neighbour_graph(self) -> Tuple[Tensor, Tensor]:
        num = self.num_points
        if self._knn is None or self._knn[0] != num or self.step - self._knn[1] >= self.config.rigidity_knn_every:
            indices, weights = knn_graph(
                self.gauss_params["means"], self.config.rigidity_neighbours, self.config.rigidity_falloff
            )
            self._knn = (num, self.step, indices, weights)
        return self._knn[2], self._knn[3]

    def rigidity_loss(self, state: GaussianState, time: float) -> Optional[Tensor]:
        """Eq. 10–11 between the rendered Gaussians at ``time`` and those at the neighbouring training frame, over
        at most ``rigidity_max_anchors`` random Gaussians and their neighbours."""
        neighbour_time = self._neighbour_time(time)
        if neighbour_time is None or self.num_points < 2:
            return None
        indices, weights = self._neighbour_graph()
        anchors = self._random_subset(self.num_points, self.config.rigidity_max_anchors)
        if anchors is None:
            anchors = torch.arange(self.num_points, device=self.device)
        needed = torch.unique(torch.cat([anchors, indices[anchors].reshape(-1)]))
        with torch.no_grad():
            previous = self.gaussians_at(neighbour_time, rows=needed)
            means_previous = state.means.detach().clone()
            quats_previous = state.quats.detach().clone()
            means_previous[needed] = previous.means
            quats_previous[needed] = previous.quats
        return local_rigidity_loss(
            means_previous, state.means, quats_previous, state.quats, indices, weights, self.config.rigidity_weight,
            anchors=anchors,
        )  # fmt: skip

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        losses = super().get_loss_dict(outputs, batch, metrics_dict)
        record = self._last_record
        if not self.training or not record or "state" not in record or not self.deformation_active():
            return losses
        if "gmn" in record:
            visible = self._visible()[record["mutual_rows"]]
            losses["mutual_loss"] = mutual_learning_loss(record["idn"], record["gmn"], visible, self.config.mutual_weight)
        if self.config.rigidity_weight > 0:
            rigidity = self.rigidity_loss(record["state"], record["time"])
            if rigidity is not None:
                losses["rigidity_loss"] = rigidity
        return losses

    # ---------------------------------------------------------------- smooth opacity (Eq. 8)
    def densified_at(self, step: int) -> bool:
        """Whether gsplat's DefaultStrategy grew and pruned Gaussians at ``step`` (its own condition)."""
        s = self.strategy
        return (
            step < s.refine_stop_iter
            and step > s.refine_start_iter
            and step % s.refine_every == 0
            and step % s.reset_every >= s.pause_refine_after_reset
        )

    def step_post_backward(self, step: int) -> None:
        super().step_post_backward(step)
        if self.config.smooth_opacity and self.densified_at(step):
            opacities = self.gauss_params["opacities"]
            opacities.data.copy_(
                smooth_opacity_update(
                    opacities.data, self.config.opacity_decay, self.config.opacity_min, self.config.opacity_max
                )
            )
