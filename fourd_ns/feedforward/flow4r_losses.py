"""Flow4R's training losses (paper §3.3, Eq. 10–17) and the Flow3r factored-flow loss, for one batch of pairs.

Every term is applied to both views of a pair symmetrically: view 1 is supervised with ``S(I1, I2)`` against
``targets1``, view 2 with ``S(I2, I1)`` against ``targets2``, and each term is the sum of its two per-view values
(as DUSt3R's ``ConfLoss`` sums its two views; Flow4R's shared decoder makes the two directions the same problem).

**Normalisation (which factor for which map, and why).** Flow4R follows DUSt3R's ``avg_dis`` mode: predictions and
ground truth are divided *separately* by their mean Euclidean norm. One factor per pair and per side:

- prediction: ``s = Σ ||P|| / |M_P|`` over the GT-valid pixels ``M_P`` of *both* views' own point maps P (P1 in
  camera 1, P2 in camera 2); ground truth: ``s̄`` likewise from P̄1, P̄2;
- P1, P2, P_vt1, P_vt2 are all divided by ``s``; P̄, P̄_vt and the translation of T̄ (so ``P̄_v = T̄·P̄``) by ``s̄``.
  P_vt shares the factor of the P of its pair because P_vt1 lives in camera 2 in the same metric units as P2, and
  the rigid relation ``P_vt ≈ T·P`` of Eq. 2 survives only a common scale. P_vt does not take part in the mean:
  it has no ground truth where M_F is empty, and the scale of the static geometry should not depend on motion.
- The factor keeps its gradient (as in DUSt3R) for the direct terms; Eq. 13 detaches P and P_vt entirely.
- A pair with no valid depth pixel in either view has no defined scale: its 3D terms (Eq. 10, 11, 13, 14) and its
  2D motion term are masked out (see below), and ``s``/``s̄`` are set to 1 there only to keep the arithmetic finite.

**Reductions.** Each "masked mean" is over all masked pixels of the batch for that view (DUSt3R flattens valid
pixels across the batch), so large-mask pairs weigh more; an empty mask contributes exactly 0 (values are selected
with ``torch.where``, never multiplied by a zero mask). Ground truth outside its mask may hold NaN or inf (no depth,
no track); it is zeroed before use so that nothing non-finite reaches a gradient.

**2D motion (Eq. 12).** ``p_vt`` is the projection of P_vt with the GT intrinsics of the *other* view (P_vt1 is in
camera 2). A predicted point at or behind the camera plane has no projection, and one just in front of it projects
arbitrarily far (an untrained network puts half its points behind the camera, and their 2D errors would dwarf every
other term): pixels whose predicted P_vt has depth ≤ ``min_depth`` are left out of Eq. 12 and are pulled in front
of the camera by the 3D terms (Eq. 11 and 14 cover every pair Eq. 12 applies to). Projection is scale-invariant, so
the normalised P_vt projects to the same pixel as the raw one; thresholding the normalised map makes ``min_depth`` a
fraction of the scene's mean distance instead of a metric length. The paper does not state the unit of the L2
error. In pixels the term
grows with resolution (stage 2 at 512 px would weigh it 2.3× more than stage 1 at 224 px under the same λ3), so the
default ``flow_unit="normalised"`` measures the error in normalised image coordinates — the pixel-centre span
mapped to [−1, 1] per axis, i.e. Δu·2/(W−1), Δv·2/(H−1) (Flow3r's NDC, and ``grid_sample``'s
``align_corners=True``); at 224 px a 5-pixel error is 0.045, comparable to a 5 % point error. ``flow_unit="pixels"``
gives the literal reading. The intrinsics are trusted only for pairs with geometry: unlabeled video pairs (no depth,
flow pseudo-labels) carry placeholder intrinsics, so their flow supervises only the correspondence head.

**Pose weight (Eq. 13).** ``T̂ = solve_pose(sg(P), sg(P_vt), W)`` over *all* pixels of the view, as at inference
(W is a softmax over the whole image and must learn to ignore sky or unsupervised pixels by itself);
``P_v = T̂·sg(P)`` and ``P̄_v = T̄·P̄``. Only W receives gradients. ``use_pose_weight_floor`` mixes W with a uniform
distribution inside this solve only (``(1 − ε)·W + ε/HW``, notes §14.3) to keep the Procrustes problem well posed
when the softmax collapses onto a few pixels; it is off by default as the paper does not use it (Flow4R's output
already carries a small floor, ``Flow4RConfig.pose_weight_floor``; this one acts on the training solve only).

**Rigid motion (Eq. 14–15).** ``w = sg(W)·HW`` on dynamic pairs (``PairBatch.dynamic``) and 1 on static ones,
multiplying only the confidence-weighted error (``−α log C`` is not weighted, as written in Eq. 14).

**Factored flow (Flow3r head).** ``PairPrediction.correspondence1/2`` are supervised with the generalised
Charbonnier (Barron's general robust loss) ``ρ(x) = |α−2|/α · (((x/c)²/|α−2| + 1)^{α/2} − 1)`` of the per-pixel
L2 error x, with α = 0.5 and c = 0.24 as in Flow3r (which takes them from UFM). Flow3r measures x in its NDC
(pixel centres spanning [−1, 1] per axis), so x here is in the same normalised image coordinates as above — c = 0.24
is about 27 px at 224 px width; it would be meaningless in pixels. The mask is ``flow_valid`` and the weight 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from fourd_ns.feedforward.flow4r_geometry import invert_pose, normalise_pair_scale, solve_pose, transform_points
from fourd_ns.feedforward.pair_types import PairBatch, PairPrediction, ViewPrediction, ViewTargets
from fourd_ns.geometry.pinhole import project_camera_points, unpack_intrinsics

TERM_NAMES = ("point", "motion_3d", "motion_2d", "pose_weight", "rigid_motion", "correspondence")
"""Keys of the per-term dictionary returned by `flow4r_loss` (unweighted, summed over both views)."""


@dataclass
class Flow4RLossConfig:
    """Weights and constants of the Flow4R loss (paper values by default)."""

    lambda_point: float = 1.0
    """λ1: point position loss L_P (Eq. 10)."""
    lambda_motion_3d: float = 0.5
    """λ2: 3D motion loss L_F on P_vt where scene flow / 3D tracks are known (Eq. 11)."""
    lambda_motion_2d: float = 0.3
    """λ3: 2D motion loss L_f on the projection of P_vt where optical flow / 2D tracks are known (Eq. 12)."""
    lambda_pose_weight: float = 0.5
    """λ4: pose weight loss L_W, the only term that trains W (Eq. 13)."""
    lambda_rigid_motion: float = 0.5
    """λ5: rigid motion loss L_Fv on P_vt against the camera-induced motion T̄·P̄ (Eq. 14–15)."""
    confidence_alpha: float = 0.2
    """α of the confidence regulariser −α·log C in Eq. 10, 11 and 14."""
    flow_unit: Literal["normalised", "pixels"] = "normalised"
    """Unit of the 2D motion error: normalised image coordinates (pixel centres span [−1, 1] per axis) or pixels."""
    min_depth: float = 0.02
    """Eq. 12 ignores pixels whose predicted P_vt is not this far in front of the camera (in units of the pair's mean
    point distance); the 3D terms bring them forward."""
    use_pose_weight_floor: bool = False
    """Mix W with a uniform distribution inside the Eq. 13 pose solve (stabilises a collapsed softmax)."""
    pose_weight_floor: float = 0.01
    """ε of the floor: the solve uses (1 − ε)·W + ε/HW."""
    correspondence_weight: float = 0.1
    """Weight of the Flow3r factored-flow (correspondence) loss; used only when the model predicts correspondences."""
    charbonnier_alpha: float = 0.5
    """Shape α of the generalised Charbonnier on the correspondence error."""
    charbonnier_scale: float = 0.24
    """Scale c of the generalised Charbonnier, in normalised image coordinates."""


def masked_mean(values: Float[Tensor, "*shape"], mask: Bool[Tensor, "*shape"]) -> Float[Tensor, ""]:
    """Mean of ``values`` over ``mask``; exactly 0 (with zero, finite gradients) when the mask is empty."""
    selected = torch.where(mask, values, torch.zeros_like(values))
    return selected.sum() / mask.sum().clamp(min=1)


def only_where(mask: Bool[Tensor, "*shape"], values: Float[Tensor, "*shape C"]) -> Float[Tensor, "*shape C"]:
    """Ground truth with its unsupervised pixels zeroed, so NaN/inf stored there cannot reach a gradient (a masked
    NaN error still backpropagates 0·NaN = NaN through the norm)."""
    return torch.where(mask[..., None], values, torch.zeros_like(values))


def confidence_weighted_error(
    error: Float[Tensor, "*shape"],
    confidence: Float[Tensor, "*shape"],
    alpha: float,
    weight: Optional[Float[Tensor, "*shape"]] = None,
) -> Float[Tensor, "*shape"]:
    """DUSt3R's confidence-aware pixel loss ``w·C·ℓ − α·log C`` (the summand of Eq. 10, 11 and 14).

    For a fixed error ℓ it is minimised at ``C = α / ℓ`` (or at the bound C → 1 when ℓ ≥ α), so C learns an
    inverse error.
    """
    weighted = confidence * error if weight is None else weight * confidence * error
    return weighted - alpha * torch.log(confidence)


def generalised_charbonnier(x: Float[Tensor, "*shape"], alpha: float, scale: float) -> Float[Tensor, "*shape"]:
    """Barron's general robust loss ``|α−2|/α · (((x/c)²/|α−2| + 1)^{α/2} − 1)`` (α ∉ {0, 2}).

    ≈ ½(x/c)² for |x| ≪ c; grows like |x|^α for |x| ≫ c.
    """
    if alpha in (0.0, 2.0):
        raise ValueError(f"charbonnier_alpha={alpha}: the closed form is undefined at 0 and 2; pick e.g. 0.5 or 1")
    denominator = abs(alpha - 2.0)
    return denominator / alpha * (((x / scale) ** 2 / denominator + 1.0) ** (alpha / 2.0) - 1.0)


def pair_scale(
    points_a: Float[Tensor, "B H W 3"],
    points_b: Float[Tensor, "B H W 3"],
    valid_a: Bool[Tensor, "B H W"],
    valid_b: Bool[Tensor, "B H W"],
) -> tuple[Float[Tensor, "B"], Bool[Tensor, "B"]]:
    """DUSt3R's ``avg_dis`` factor per pair (`normalise_pair_scale`), and whether the pair has any valid point.

    Pairs without a valid point get factor 1 instead of the clamp 1e-8, so their (masked-out) terms stay finite.
    """
    _, _, factor = normalise_pair_scale(points_a, points_b, valid_a, valid_b)
    has_scale = valid_a.flatten(1).any(1) | valid_b.flatten(1).any(1)
    return torch.where(has_scale, factor, torch.ones_like(factor)), has_scale


def project(
    points: Float[Tensor, "B H W 3"], intrinsics: Float[Tensor, "B 3 3"], min_depth: float
) -> Float[Tensor, "B H W 2"]:
    """Pixel coordinates (u, v) of camera-space points through pinhole intrinsics K (fx and fy may differ; z clamped
    at ``min_depth``). Ground-truth intrinsics need not be square-pixel, unlike `project_points`' single focal."""
    fx, fy, cx, cy = unpack_intrinsics(intrinsics, point_dims=2)
    return project_camera_points(points, fx, fy, cx, cy, min_depth=min_depth, depth_guard="clamp").pixels


def image_coordinate_scale(height: int, width: int, unit: Literal["normalised", "pixels"], like: Tensor) -> Tensor:
    """Per-axis factor [2] turning a pixel displacement (Δu, Δv) into ``unit``."""
    if unit == "pixels":
        return torch.ones(2, dtype=like.dtype, device=like.device)
    return torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=like.dtype, device=like.device)


def view_losses(
    prediction: ViewPrediction,
    targets: ViewTargets,
    other_intrinsics: Float[Tensor, "B 3 3"],
    pose_to_other: Float[Tensor, "B 4 4"],
    dynamic: Bool[Tensor, "B"],
    pred_scale: Float[Tensor, "B"],
    gt_scale: Float[Tensor, "B"],
    has_scale: Bool[Tensor, "B"],
    config: Flow4RLossConfig,
) -> dict[str, Float[Tensor, ""]]:
    """The five Flow4R terms (Eq. 10–14, unweighted) for one view of each pair.

    ``pose_to_other`` is T̄ with X_other = T̄·X_this; ``pred_scale`` / ``gt_scale`` are the pair's ``avg_dis``
    factors (see the module docstring for which map uses which).
    """
    _, height, width = prediction.confidence.shape
    per_pair = has_scale[:, None, None]
    valid = targets.valid & per_pair
    motion_valid = targets.motion_valid & per_pair
    flow_valid = targets.flow_valid & per_pair
    alpha = config.confidence_alpha
    confidence = prediction.confidence

    points = prediction.points / pred_scale[:, None, None, None]
    points_other = prediction.points_other / pred_scale[:, None, None, None]
    gt_points = only_where(targets.valid, targets.points) / gt_scale[:, None, None, None]
    gt_points_other = only_where(targets.motion_valid, targets.points_other) / gt_scale[:, None, None, None]
    gt_pose = pose_to_other.clone()
    gt_pose[:, :3, 3] = gt_pose[:, :3, 3] / gt_scale[:, None]
    gt_points_moved = transform_points(gt_pose, gt_points)  # P̄_v = T̄·P̄

    point_error = (points - gt_points).norm(dim=-1)
    point = masked_mean(confidence_weighted_error(point_error, confidence, alpha), valid)

    motion_error = (points_other - gt_points_other).norm(dim=-1)
    motion_3d = masked_mean(confidence_weighted_error(motion_error, confidence, alpha), motion_valid)

    pixel_error = project(points_other, other_intrinsics, config.min_depth) - only_where(
        targets.flow_valid, targets.flow_target
    )
    scale_2d = image_coordinate_scale(height, width, config.flow_unit, pixel_error)
    in_front = points_other[..., 2].detach() > config.min_depth
    motion_2d = masked_mean((pixel_error * scale_2d).norm(dim=-1), flow_valid & in_front)

    solve_weights = prediction.pose_weight
    if config.use_pose_weight_floor:
        epsilon = config.pose_weight_floor
        solve_weights = (1.0 - epsilon) * solve_weights + epsilon / (height * width)
    fixed_points = points.detach()
    solved_pose = solve_pose(fixed_points, points_other.detach(), solve_weights)
    pose_error = (transform_points(solved_pose, fixed_points) - gt_points_moved).norm(dim=-1)
    pose_weight = masked_mean(pose_error, valid)

    rigid_weight = torch.where(
        dynamic[:, None, None],
        prediction.pose_weight.detach() * (height * width),
        torch.ones_like(prediction.pose_weight),
    )
    rigid_error = (points_other - gt_points_moved).norm(dim=-1)
    rigid_motion = masked_mean(confidence_weighted_error(rigid_error, confidence, alpha, rigid_weight), valid)

    return dict(
        point=point, motion_3d=motion_3d, motion_2d=motion_2d, pose_weight=pose_weight, rigid_motion=rigid_motion
    )


def correspondence_loss(
    correspondence: Float[Tensor, "B H W 2"], targets: ViewTargets, config: Flow4RLossConfig
) -> Float[Tensor, ""]:
    """Flow3r's factored-flow loss for one view: generalised Charbonnier of the normalised-coordinate L2 error."""
    _, height, width, _ = correspondence.shape
    scale = image_coordinate_scale(height, width, "normalised", correspondence)
    error = ((correspondence - only_where(targets.flow_valid, targets.flow_target)) * scale).norm(dim=-1)
    robust = generalised_charbonnier(error, config.charbonnier_alpha, config.charbonnier_scale)
    return masked_mean(robust, targets.flow_valid)


def flow4r_loss(
    prediction: PairPrediction, batch: PairBatch, config: Flow4RLossConfig
) -> tuple[Float[Tensor, ""], dict[str, Float[Tensor, ""]]]:
    """Eq. 16–17 (plus the Flow3r correspondence term) for a batch of pairs, both directions.

    Returns ``(total, terms)`` where ``terms`` maps each name of `TERM_NAMES` to its unweighted value summed over the
    two views (still attached to the graph). Unlabeled batches (``targets1 is None``) need a correspondence head.
    """
    if batch.targets1 is None or batch.targets2 is None:
        raise ValueError(
            "flow4r_loss: the batch has no ground truth (targets1/targets2 are None); unlabeled video pairs must carry "
            "ViewTargets with flow pseudo-labels (flow_target/flow_valid) and all-False depth masks"
        )
    view1, view2 = prediction.view1, prediction.view2
    targets1, targets2 = batch.targets1, batch.targets2
    pred_scale, has_scale = pair_scale(view1.points, view2.points, targets1.valid, targets2.valid)
    gt_scale, _ = pair_scale(targets1.points, targets2.points, targets1.valid, targets2.valid)
    pose_2to1 = invert_pose(batch.pose_1to2)

    shared = dict(dynamic=batch.dynamic, pred_scale=pred_scale, gt_scale=gt_scale, has_scale=has_scale, config=config)
    terms1 = view_losses(view1, targets1, batch.intrinsics2, batch.pose_1to2, **shared)
    terms2 = view_losses(view2, targets2, batch.intrinsics1, pose_2to1, **shared)
    terms = {name: terms1[name] + terms2[name] for name in terms1}

    if prediction.correspondence1 is not None and prediction.correspondence2 is not None:
        terms["correspondence"] = correspondence_loss(
            prediction.correspondence1, targets1, config
        ) + correspondence_loss(prediction.correspondence2, targets2, config)
    else:
        terms["correspondence"] = torch.zeros((), dtype=view1.points.dtype, device=view1.points.device)

    weights = dict(
        point=config.lambda_point,
        motion_3d=config.lambda_motion_3d,
        motion_2d=config.lambda_motion_2d,
        pose_weight=config.lambda_pose_weight,
        rigid_motion=config.lambda_rigid_motion,
        correspondence=config.correspondence_weight,
    )
    total = sum(weights[name] * terms[name] for name in TERM_NAMES)
    return total, terms
