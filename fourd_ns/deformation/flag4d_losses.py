"""FLAG-4D's losses and opacity regulariser: mutual learning (Eq. 7), smooth opacity (Eq. 8), depth (Eq. 9) and
local rigidity (Eq. 10–11). Pure functions; every weight and constant is an argument.

Choices where the paper is silent:

- **Mutual learning.** ``δθ`` is the 10-channel ``[Δx, Δq, Δs]`` vector of each network; the squared L2 norm is
  summed over those channels and averaged over the visible Gaussians (``N_vis``); no visible Gaussian gives 0.
- **Depth.** Eq. 9 normalises the rendered depth to [0, 1] and compares it with a "normalised" prior; the prior is
  min–max normalised here as well, which makes the loss invariant to any ``a·prior + b`` with ``a > 0``. A prior in
  disparity (inverse depth, MiDaS-like) must be converted by the caller. An optional mask restricts min, max and the
  mean to valid pixels; ``eps`` guards a constant map.
- **Rigidity.** The kNN graph is built on the canonical positions (``knn_graph``, k = 20 and weights
  ``w_ij = exp(−λ d_ij²)`` with λ = 2000, Dynamic3DGaussians' choice, ``shared/notes/methods.md`` §2.3); λ depends
  on the scene scale and is an argument (``None``: 1 / median neighbour distance², scale-free). ``R_{i,t}`` is the rotation of Gaussian i at time t from its (normalised,
  wxyz) quaternion. Eq. 11 divides the weighted sum by ``k·|G|``.
- **Smooth opacity.** Eq. 8 literally: ``o' = clamp(σ(α) − δ_o, o_min, o_max)``, ``α' = logit(o')``. Note that it
  *raises* Gaussians below ``o_min`` to ``o_min``; ``logit`` is taken with ``eps`` so ``o_max = 1`` stays finite.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from fourd_ns.geometry.rotations import quat_to_rotmat


def mutual_learning_terms(
    idn_deformation: Float[Tensor, "N P"],
    gmn_deformation: Float[Tensor, "N P"],
    visible: Bool[Tensor, "N"],
) -> Tuple[Float[Tensor, ""], Float[Tensor, ""]]:
    """The two terms of Eq. 7, each averaged over the visible Gaussians.

    Returns ``(gmn_term, idn_term)``: ``gmn_term = mean_vis ||sg(δθ^IDN) − δθ^GMN||²`` trains only the GMN,
    ``idn_term = mean_vis ||δθ^IDN − sg(δθ^GMN)||²`` trains only the IDN — provided ``gmn_deformation`` is the
    GMN's ``isolated_deformation`` (computed from detached IDN inputs); the attached prediction would let the first
    term reach the IDN through the GMN's conditioning.
    """
    idn_visible = idn_deformation[visible]
    gmn_visible = gmn_deformation[visible]
    count = max(int(idn_visible.shape[0]), 1)
    gmn_term = (idn_visible.detach() - gmn_visible).square().sum() / count
    idn_term = (idn_visible - gmn_visible.detach()).square().sum() / count
    return gmn_term, idn_term


def mutual_learning_loss(
    idn_deformation: Float[Tensor, "N P"],
    gmn_deformation: Float[Tensor, "N P"],
    visible: Bool[Tensor, "N"],
    weight: float = 1.0,
) -> Float[Tensor, ""]:
    """Eq. 7: ``L_mutual = 1/N_vis Σ_{i∈vis} (||sg(δθ^IDN_i) − δθ^GMN_i||² + ||δθ^IDN_i − sg(δθ^GMN_i)||²)``."""
    gmn_term, idn_term = mutual_learning_terms(idn_deformation, gmn_deformation, visible)
    return weight * (gmn_term + idn_term)


def smooth_opacity_update(
    opacity_logits: Float[Tensor, "N 1"],
    decay: float = 0.001,
    min_opacity: float = 0.01,
    max_opacity: float = 1.0,
    eps: float = 1e-6,
) -> Float[Tensor, "N 1"]:
    """Eq. 8, applied after each densification step: ``α' = logit(clamp(σ(α) − δ_o, o_min, o_max))``.

    Returns new logits (no gradient); the caller copies them into the opacity parameter.
    """
    with torch.no_grad():
        opacities = torch.clamp(torch.sigmoid(opacity_logits) - decay, min_opacity, max_opacity)
        return torch.logit(opacities, eps=eps)


def _min_max_normalise(values: Tensor, mask: Tensor, eps: float) -> Tensor:
    selected = values[mask]
    low, high = selected.min(), selected.max()
    return (values - low) / (high - low).clamp_min(eps)


def depth_loss(
    rendered_depth: Float[Tensor, "H W 1"],
    depth_prior: Float[Tensor, "H W 1"],
    mask: Optional[Bool[Tensor, "H W 1"]] = None,
    weight: float = 1.0,
    eps: float = 1e-8,
) -> Float[Tensor, ""]:
    """Eq. 9: ``1/|P| Σ_p |(D(p) − min D)/(max D − min D) − D_gt(p)|`` with ``D_gt`` the min–max normalised prior.

    Any matching shapes work (``[H, W]`` or ``[H, W, 1]``); ``mask`` selects the pixels ``P`` (default: all).
    """
    if mask is None:
        mask = torch.ones_like(rendered_depth, dtype=torch.bool)
    if not mask.any():
        return rendered_depth.sum() * 0.0
    rendered = _min_max_normalise(rendered_depth, mask, eps)
    prior = _min_max_normalise(depth_prior.detach(), mask, eps)
    return weight * (rendered - prior)[mask].abs().mean()


def knn_graph(
    canonical_means: Float[Tensor, "N 3"],
    num_neighbours: int = 20,
    distance_falloff: Optional[float] = 2000.0,
    chunk_size: int = 1024,
) -> Tuple[Int[Tensor, "N k"], Float[Tensor, "N k"]]:
    """k nearest canonical neighbours (self excluded) and weights ``w_ij = exp(−λ ||μ_i − μ_j||²)``.

    ``distance_falloff=None`` picks λ = 1 / median(neighbour squared distance), so a typical neighbour weighs e^−1
    whatever the scene's units (the fixed 2000 of Dynamic3DGaussians assumes metric, centimetre-spaced points).
    Computed in row chunks so memory is ``chunk_size · N``; call it once per densification, not per step.
    """
    num = canonical_means.shape[0]
    k = min(num_neighbours, num - 1)
    means = canonical_means.detach()
    indices, sq_distances = [], []
    for start in range(0, num, chunk_size):
        rows = means[start : start + chunk_size]
        d2 = torch.cdist(rows, means).square()
        d2[torch.arange(rows.shape[0]), torch.arange(start, start + rows.shape[0])] = float("inf")
        values, idx = torch.topk(d2, k, dim=1, largest=False)
        indices.append(idx)
        sq_distances.append(values)
    sq = torch.cat(sq_distances)
    if distance_falloff is None:
        distance_falloff = 1.0 / float(sq.median().clamp_min(1e-12))
    return torch.cat(indices), torch.exp(-distance_falloff * sq)


def local_rigidity_loss(
    means_previous: Float[Tensor, "N 3"],
    means_current: Float[Tensor, "N 3"],
    quats_previous: Float[Tensor, "N 4"],
    quats_current: Float[Tensor, "N 4"],
    neighbour_indices: Int[Tensor, "N k"],
    neighbour_weights: Float[Tensor, "N k"],
    weight: float = 1.0,
    anchors: Optional[Int[Tensor, "S"]] = None,
) -> Float[Tensor, ""]:
    """Eq. 10–11: ``1/(k|G|) Σ_i Σ_{j∈knn(i)} w_ij ||(μ_{j,t−1} − μ_{i,t−1}) − R_{i,t−1} R_{i,t}^{-1} (μ_{j,t} − μ_{i,t})||``.

    ``R_{i,t}^{-1} = R_{i,t}^T``; quaternions are wxyz. ``anchors`` restricts the outer sum to those Gaussians i (the
    mean over a uniform random subset is an unbiased estimate of Eq. 11); only the rows of the anchors and of their
    neighbours are read.
    """
    if anchors is None:
        anchors = torch.arange(neighbour_indices.shape[0], device=neighbour_indices.device)
    neighbours = neighbour_indices[anchors]  # [S, k]
    count, k = neighbours.shape
    offsets_previous = means_previous[neighbours] - means_previous[anchors][:, None, :]  # [S, k, 3]
    offsets_current = means_current[neighbours] - means_current[anchors][:, None, :]
    relative = quat_to_rotmat(quats_previous[anchors]) @ quat_to_rotmat(quats_current[anchors]).transpose(-1, -2)
    predicted_previous = torch.einsum("nab,nkb->nka", relative, offsets_current)
    residual = torch.linalg.norm(offsets_previous - predicted_previous, dim=-1)  # [S, k]
    return weight * (neighbour_weights[anchors] * residual).sum() / max(k * count, 1)
