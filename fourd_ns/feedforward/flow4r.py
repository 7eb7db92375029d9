"""Flow4R (Qian et al., 2026): a symmetric two-view network predicting, per pixel of each view, the property set
``{P, P_vt, W, C}`` (paper §3.1–3.2), optionally with a Flow3r-style factored-flow head.

Architecture (paper §3.2 "Architecture Simplicity"): a CroCo v2 encoder shared by both views, **one** cross-attention
decoder shared by both directions and **one** head, so that ``S(I1, I2)`` and ``S(I2, I1)`` come from the same
weights and swapping the inputs swaps the outputs. The model is initialised from CroCo (paper §4); DUSt3R weights
also load (see :mod:`fourd_ns.feedforward.pretrained`).

The shared head (``downstream_head``, linear or DPT) outputs 8 raw channels per pixel:

=========  =====================================================================================================
channels   meaning and post-processing (explicit functions below, separate from the layers, as in DUSt3R)
=========  =====================================================================================================
0–2        P: this view's points in its camera — DUSt3R's ``exp`` depth mode, ``xyz/‖xyz‖ · expm1(‖xyz‖)``
3–5        P_vt: the same points in the other camera at the other time, predicted directly (the paper found
           predicting P_vt better than predicting F = P_vt − P, Tab. 3), same depth mode
6          W logit: ``W = (1 − ε)·softmax + ε/N`` over the N (valid) pixels of the view, ``ε = pose_weight_floor``
7          C = 1 + exp(x) ∈ (1, ∞) (DUSt3R's ``conf_mode=('exp', 1, inf)``), shared by P and P_vt (paper Eq. 11)
=========  =====================================================================================================

Choices where the paper is silent:

- **Pose-weight floor** ε (default 1e-4): a uniform floor keeps the weighted Procrustes solve (Eq. 2) well posed when
  the softmax collapses onto one or two pixels (notes §14.3); 0 disables it.
- **Validity masks** for W (optional ``valid1``/``valid2``): masked pixels get −∞ logits before the softmax (and no
  floor), so padding or sky never takes part in the pose solve.
- **Heads run in float32** with autocast disabled (as DUSt3R does): ``expm1``/``exp`` and the softmax over H·W
  pixels are where half precision overflows or loses the small weights.
- The input images are in [−1, 1] (DUSt3R's normalisation, which CroCo-initialised training uses too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal, Optional

import torch
import tyro
from jaxtyping import Bool, Float
from torch import Tensor

from fourd_ns.feedforward.croco_backbone import (
    BACKBONE_PRESETS,
    CroCoBackbone,
    CroCoBackboneConfig,
    backbone_preset,
)
from fourd_ns.feedforward.dpt_head import DPT_UPSAMPLING, DPTHead, default_dpt_hooks
from fourd_ns.feedforward.factored_flow_head import FactoredFlowHead
from fourd_ns.feedforward.linear_head import LinearHead
from fourd_ns.feedforward.pair_types import PairPrediction, ViewPrediction

FLOW4R_CHANNELS = 8
"""Raw head channels per pixel: P (3), P_vt (3), W logit (1), C (1)."""


@dataclass
class Flow4RConfig:
    """Flow4R network settings (also the command-line options of the tools that build one)."""

    backbone: str = "croco-vitl-basedec"
    """Backbone size preset (``tiny``, ``small``, ``croco-vitb-smalldec``, ``croco-vitb-basedec``,
    ``croco-vitl-basedec``); ignored when a checkpoint's explicit ``backbone_config`` is used (the weight loader
    then names it ``custom``)."""
    backbone_config: tyro.conf.Suppress[Optional[CroCoBackboneConfig]] = None
    """Explicit backbone sizes, set by the weight loader from a checkpoint's own settings (``config.json`` or a
    CroCo / DUSt3R constructor) or in code. Not a command-line option: there ``backbone`` picks a preset, and
    ``--init`` / ``--resume`` bring a checkpoint's own (possibly custom) sizes."""
    head: Literal["linear", "dpt"] = "dpt"
    """Dense head: ``linear`` (paper's first, 224-px stage) or ``dpt`` (second stage; needs patch size 16)."""
    dpt_hooks: Optional[tuple[int, int, int, int]] = None
    """Indices into ``[encoder, dec_1, …, dec_L]`` read by the DPT heads; default ``[0, L/2, 3L/4, L]``."""
    dpt_layer_dims: tuple[int, int, int, int] = (96, 192, 384, 768)
    """DPT reassembly widths (DUSt3R's)."""
    dpt_feature_dim: int = 256
    """DPT fusion width."""
    dpt_last_dim: int = 128
    """Width of the DPT output head's last hidden layer."""
    factored_flow: bool = False
    """Add the Flow3r-style factored-flow head (dense 2D correspondences, ``PairPrediction.correspondence1/2``)."""
    pose_weight_floor: float = 1e-4
    """ε in ``W = (1 − ε)·softmax + ε/N``; 0 gives the plain softmax."""

    @classmethod
    def tiny(cls, **overrides) -> "Flow4RConfig":
        """A model of a few hundred thousand parameters for tests and smoke runs (``tiny`` backbone, narrow DPT)."""
        settings = dict(backbone="tiny", dpt_layer_dims=(8, 16, 32, 64), dpt_feature_dim=16, dpt_last_dim=8)
        settings.update(overrides)
        return cls(**settings)

    def resolved_backbone(self) -> CroCoBackboneConfig:
        """``backbone_config`` if given, else a copy of the ``backbone`` preset."""
        if self.backbone_config is not None:
            return self.backbone_config
        if self.backbone not in BACKBONE_PRESETS:
            raise ValueError(f"Flow4RConfig.backbone={self.backbone!r} is not a preset; choose one of "
                             f"{sorted(BACKBONE_PRESETS)} or set backbone_config")
        return backbone_preset(self.backbone)

    def resolved_hooks(self) -> list[int]:
        """The DPT hooks, validated against the decoder depth."""
        depth = self.resolved_backbone().dec_depth
        hooks = list(self.dpt_hooks) if self.dpt_hooks is not None else default_dpt_hooks(depth)
        if len(hooks) != 4 or any(not 0 <= hook <= depth for hook in hooks):
            raise ValueError(f"Flow4RConfig.dpt_hooks={hooks} must be four indices in [0, {depth}] "
                             f"(0 = encoder output, {depth} = last decoder layer)")
        return hooks

    def validate(self) -> None:
        """Raise a ValueError naming the first inconsistent setting."""
        backbone = self.resolved_backbone()
        backbone.validate()
        if self.head not in ("linear", "dpt"):
            raise ValueError(f"Flow4RConfig.head must be 'linear' or 'dpt', got {self.head!r}")
        if (self.head == "dpt" or self.factored_flow) and backbone.patch_size != DPT_UPSAMPLING:
            raise ValueError(f"the DPT heads (head='dpt' or factored_flow=True) upsample tokens 16×, so they need "
                             f"patch_size 16, got {backbone.patch_size}; use head='linear' without factored_flow")
        self.resolved_hooks()
        if not 0.0 <= self.pose_weight_floor < 1.0:
            raise ValueError(f"Flow4RConfig.pose_weight_floor must be in [0, 1), got {self.pose_weight_floor}")

    def to_dict(self) -> dict:
        """JSON-ready settings (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, settings: dict) -> "Flow4RConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error naming the valid ones."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ValueError(f"unknown Flow4RConfig settings {unknown}; valid settings are {sorted(names)}")
        settings = dict(settings)
        if isinstance(settings.get("backbone_config"), dict):
            settings["backbone_config"] = CroCoBackboneConfig(**settings["backbone_config"])
        for name in ("dpt_hooks", "dpt_layer_dims"):
            if isinstance(settings.get(name), list):
                settings[name] = tuple(settings[name])
        return cls(**settings)


def points_from_exp_depth(raw: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
    """DUSt3R's ``exp`` depth mode: keep the direction of ``raw``, map its norm ``r`` to ``expm1(r)``."""
    norm = raw.norm(dim=-1, keepdim=True)
    return raw / norm.clamp(min=1e-8) * torch.expm1(norm)


def confidence_from_logits(raw: Float[Tensor, "*batch"]) -> Float[Tensor, "*batch"]:
    """``C = 1 + exp(x)`` ∈ (1, ∞)."""
    return 1.0 + raw.exp()


def pose_weight_from_logits(
    logits: Float[Tensor, "B H W"], valid: Optional[Bool[Tensor, "B H W"]] = None, floor: float = 0.0
) -> Float[Tensor, "B H W"]:
    """``W = (1 − floor)·softmax(logits) + floor/N`` over the (valid) pixels of each image; sums to 1 per image.

    Invalid pixels get −∞ before the softmax (logsumexp-stable) and exactly 0 weight; N counts valid pixels.
    """
    batch = logits.shape[0]
    flat = logits.reshape(batch, -1)
    if valid is None:
        weights = flat.softmax(dim=-1)
        uniform = torch.full_like(weights, 1.0 / flat.shape[-1])
    else:
        mask = valid.reshape(batch, -1)
        if not bool(mask.any(dim=-1).all()):
            raise ValueError("pose weights need at least one valid pixel per image; an image's validity mask is "
                             "all False")
        weights = flat.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        uniform = mask.to(weights.dtype) / mask.sum(dim=-1, keepdim=True).to(weights.dtype)
    if floor > 0:
        weights = (1.0 - floor) * weights + floor * uniform
    return weights.reshape(logits.shape)


class Flow4R(CroCoBackbone):
    """Two-view Flow4R network; ``forward(image1, image2)`` → :class:`PairPrediction` for both directions."""

    def __init__(self, config: Flow4RConfig) -> None:
        config.validate()
        super().__init__(config.resolved_backbone())
        self.config = config
        backbone = self.backbone_config
        hooks = config.resolved_hooks()
        dim_tokens = [backbone.enc_embed_dim if hook == 0 else backbone.dec_embed_dim for hook in hooks]
        dpt_sizes = dict(layer_dims=config.dpt_layer_dims, feature_dim=config.dpt_feature_dim,
                         last_dim=config.dpt_last_dim)
        if config.head == "linear":
            self.downstream_head = LinearHead(backbone.dec_embed_dim, FLOW4R_CHANNELS, backbone.patch_size)
        else:
            self.downstream_head = DPTHead(dim_tokens, hooks, FLOW4R_CHANNELS, **dpt_sizes)
        self.flow_head = FactoredFlowHead(dim_tokens, hooks, **dpt_sizes) if config.factored_flow else None

    def view_prediction(
        self, raw: Float[Tensor, "B 8 H W"], valid: Optional[Bool[Tensor, "B H W"]] = None
    ) -> ViewPrediction:
        """Post-process the head's raw channels of one view."""
        raw = raw.permute(0, 2, 3, 1)
        return ViewPrediction(
            points=points_from_exp_depth(raw[..., 0:3]),
            points_other=points_from_exp_depth(raw[..., 3:6]),
            pose_weight=pose_weight_from_logits(raw[..., 6], valid, self.config.pose_weight_floor),
            confidence=confidence_from_logits(raw[..., 7]),
        )

    def forward(
        self,
        image1: Float[Tensor, "B 3 H W"],
        image2: Float[Tensor, "B 3 H W"],
        valid1: Optional[Bool[Tensor, "B H W"]] = None,
        valid2: Optional[Bool[Tensor, "B H W"]] = None,
    ) -> PairPrediction:
        """``S(I1, I2)`` and ``S(I2, I1)`` for images in [−1, 1]; ``valid*`` restrict the pose-weight softmax."""
        pair = self.pair_tokens(image1, image2)
        batch = image1.shape[0]
        with torch.autocast(device_type=image1.device.type, enabled=False):
            both = [torch.cat((t1, t2)).float() for t1, t2 in zip(pair.tokens1, pair.tokens2)]
            raw = self.downstream_head(both, pair.grid_size)
            correspondence1 = correspondence2 = None
            if self.flow_head is not None:
                other = [torch.cat((layer[batch:], layer[:batch])) for layer in both]  # view j for each view i
                correspondences = self.flow_head(both, other, pair.grid_size)
                correspondence1, correspondence2 = correspondences[:batch], correspondences[batch:]
            return PairPrediction(
                view1=self.view_prediction(raw[:batch], valid1),
                view2=self.view_prediction(raw[batch:], valid2),
                correspondence1=correspondence1,
                correspondence2=correspondence2,
            )
