"""Flow4R losses (Eq. 10–15) and the Flow3r correspondence loss on tiny hand-built tensors.

Expected values are written out by hand from the equations (with the DUSt3R avg_dis normalisation done on paper),
and the pose used by Eq. 13 is checked against roma's weighted Procrustes as an independent reference.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import roma
import torch

from fourd_ns.feedforward.flow4r_losses import (
    TERM_NAMES,
    Flow4RLossConfig,
    confidence_weighted_error,
    flow4r_loss,
    generalised_charbonnier,
)
from fourd_ns.feedforward.pair_types import PairBatch, PairPrediction, ViewPrediction, ViewTargets

ALPHA = 0.2
UNIT_POINTS = torch.tensor([[0.0, 0.0, 1.0], [0.6, 0.0, 0.8], [0.0, 0.6, 0.8], [0.48, 0.36, 0.8]])
"""Four non-coplanar points of norm 1 (a 2×2 image), so avg_dis factors are read off directly."""


def _targets(points, points_other=None, valid=None, motion_valid=None, flow_target=None, flow_valid=None):
    batch, height, width, _ = points.shape
    false = torch.zeros(batch, height, width, dtype=torch.bool)
    return ViewTargets(
        points=points,
        points_other=points.clone() if points_other is None else points_other,
        valid=torch.ones_like(false) if valid is None else valid,
        motion_valid=false.clone() if motion_valid is None else motion_valid,
        flow_target=torch.zeros(batch, height, width, 2) if flow_target is None else flow_target,
        flow_valid=false.clone() if flow_valid is None else flow_valid,
    )


def _view(points, points_other=None, pose_weight=None, confidence=None) -> ViewPrediction:
    batch, height, width, _ = points.shape
    uniform = torch.full((batch, height, width), 1.0 / (height * width))
    return ViewPrediction(
        points=points,
        points_other=points.clone() if points_other is None else points_other,
        pose_weight=uniform if pose_weight is None else pose_weight,
        confidence=torch.ones(batch, height, width) if confidence is None else confidence,
    )


def _batch(targets1, targets2, pose_1to2=None, dynamic=False, intrinsics1=None, intrinsics2=None) -> PairBatch:
    batch, height, width, _ = targets1.points.shape
    eye = torch.eye(3).expand(batch, 3, 3).clone()
    return PairBatch(
        image1=torch.zeros(batch, 3, height, width),
        image2=torch.zeros(batch, 3, height, width),
        intrinsics1=eye if intrinsics1 is None else intrinsics1,
        intrinsics2=eye.clone() if intrinsics2 is None else intrinsics2,
        pose_1to2=torch.eye(4).expand(batch, 4, 4).clone() if pose_1to2 is None else pose_1to2,
        dynamic=torch.full((batch,), dynamic, dtype=torch.bool),
        targets1=targets1,
        targets2=targets2,
    )


def _column(*depths: float) -> torch.Tensor:
    """A [1, 1, N, 3] map of points on the optical axis at the given depths."""
    return torch.tensor([[0.0, 0.0, depth] for depth in depths]).reshape(1, 1, len(depths), 3)


def _rigid(rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    pose = torch.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = translation
    return pose


def test_point_and_motion_losses_match_hand_computation():
    # GT: view 1 at depths 1, 3; view 2 at 2, 2 → avg_dis 2. Prediction: 2, 2 and 4, 4 → avg_dis 3.
    targets1 = _targets(_column(1, 3), points_other=_column(2, 2), motion_valid=torch.tensor([[[True, False]]]))
    targets2 = _targets(_column(2, 2))
    view1 = _view(_column(2, 2), points_other=torch.tensor([[[[0.3, 0.0, 3.0], [5.0, 5.0, 5.0]]]]),
                  confidence=torch.tensor([[[2.0, 3.0]]]))
    view2 = _view(_column(4, 4), confidence=torch.tensor([[[1.5, 1.25]]]))
    _, terms = flow4r_loss(PairPrediction(view1, view2), _batch(targets1, targets2), Flow4RLossConfig())

    # Normalised: prediction 2/3, 2/3 | 4/3, 4/3; GT 1/2, 3/2 | 1, 1 → errors 1/6, 5/6 | 1/3, 1/3.
    view1_point = (2 / 6 - ALPHA * math.log(2) + 3 * 5 / 6 - ALPHA * math.log(3)) / 2
    view2_point = (1.5 / 3 - ALPHA * math.log(1.5) + 1.25 / 3 - ALPHA * math.log(1.25)) / 2
    assert terms["point"].item() == pytest.approx(view1_point + view2_point, rel=1e-6)
    # Eq. 11 on the single M_F pixel: P_vt (0.3, 0, 3)/3 = (0.1, 0, 1) vs P̄_vt (0, 0, 2)/2 → error 0.1, C = 2.
    assert terms["motion_3d"].item() == pytest.approx(2 * 0.1 - ALPHA * math.log(2), rel=1e-6)


def test_point_loss_is_scale_invariant_and_symmetric_in_scale():
    generator = torch.Generator().manual_seed(0)
    gt1 = torch.randn(2, 3, 4, 3, generator=generator) + torch.tensor([0.0, 0.0, 4.0])
    gt2 = torch.randn(2, 3, 4, 3, generator=generator) + torch.tensor([0.0, 0.0, 4.0])
    pred1 = gt1 + 0.3 * torch.randn(2, 3, 4, 3, generator=generator)
    pred2 = gt2 + 0.3 * torch.randn(2, 3, 4, 3, generator=generator)
    other1 = pred2 + 0.1 * torch.randn(2, 3, 4, 3, generator=generator)
    other2 = pred1 + 0.1 * torch.randn(2, 3, 4, 3, generator=generator)
    confidence = 1.0 + torch.rand(2, 3, 4, generator=generator)
    weights = torch.softmax(torch.randn(2, 12, generator=generator), dim=-1).reshape(2, 3, 4)
    motion = torch.rand(2, 3, 4, generator=generator) > 0.5
    flow = torch.rand(2, 3, 4, 2, generator=generator) * 4
    intrinsics = torch.tensor([[5.0, 0.0, 2.0], [0.0, 5.0, 1.5], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    pose = _rigid(roma.rotvec_to_rotmat(torch.tensor([0.1, -0.2, 0.05])), torch.tensor([0.5, 0.1, -0.2]))

    def terms_for(pred_factor: float, gt_factor: float):
        scaled_pose = pose.clone()
        scaled_pose[:3, 3] *= gt_factor
        targets = [
            _targets(gt * gt_factor, points_other=other * gt_factor, motion_valid=motion, flow_target=flow,
                     flow_valid=motion)
            for gt, other in ((gt1, gt2), (gt2, gt1))
        ]
        batch = _batch(*targets, pose_1to2=scaled_pose.expand(2, 4, 4), dynamic=True, intrinsics1=intrinsics,
                       intrinsics2=intrinsics)
        prediction = PairPrediction(
            _view(pred1 * pred_factor, other1 * pred_factor, weights, confidence),
            _view(pred2 * pred_factor, other2 * pred_factor, weights, confidence),
        )
        return flow4r_loss(prediction, batch, Flow4RLossConfig())[1]

    reference = terms_for(1.0, 1.0)
    scaled = terms_for(3.0, 5.0)
    for name in TERM_NAMES:
        assert scaled[name].item() == pytest.approx(reference[name].item(), rel=1e-5, abs=1e-6), name
    assert reference["point"].item() > 0.1  # a real error, not a trivially invariant zero


def test_motion_2d_projects_with_the_other_views_intrinsics():
    height, width = 3, 5
    points = torch.tensor([0.0, 0.0, 1.0]).expand(1, height, width, 3).clone()
    points_other = points.clone()
    points_other[0, 0, 0] = torch.tensor([0.1, 0.2, 1.0])
    flow_target = torch.zeros(1, height, width, 2)
    flow_target[0, 0, 0] = torch.tensor([0.5, 1.5])
    flow_valid = torch.zeros(1, height, width, dtype=torch.bool)
    flow_valid[0, 0, 0] = True
    intrinsics1 = torch.tensor([[[100.0, 0.0, 9.0], [0.0, 100.0, 9.0], [0.0, 0.0, 1.0]]])
    intrinsics2 = torch.tensor([[[10.0, 0.0, 2.5], [0.0, 20.0, 1.5], [0.0, 0.0, 1.0]]])
    batch = _batch(
        _targets(points, flow_target=flow_target, flow_valid=flow_valid), _targets(points.clone()),
        intrinsics1=intrinsics1, intrinsics2=intrinsics2,
    )
    prediction = PairPrediction(_view(points.clone(), points_other), _view(points.clone()))
    # K2 maps (0.1, 0.2, 1) to (10·0.1 + 2.5, 20·0.2 + 1.5) = (3.5, 5.5): Δ = (3, 4) pixels.
    pixels = flow4r_loss(prediction, batch, Flow4RLossConfig(flow_unit="pixels"))[1]["motion_2d"]
    assert pixels.item() == pytest.approx(5.0, rel=1e-6)
    # Normalised: Δu·2/(W−1) = 1.5, Δv·2/(H−1) = 4.
    normalised = flow4r_loss(prediction, batch, Flow4RLossConfig())[1]["motion_2d"]
    assert normalised.item() == pytest.approx(math.sqrt(1.5**2 + 4.0**2), rel=1e-6)


def test_motion_2d_leaves_points_behind_the_camera_to_the_3d_terms():
    points = torch.tensor([0.0, 0.0, 1.0]).expand(1, 1, 3, 3).clone()
    points_other = points.clone()
    points_other[0, 0, 1] = torch.tensor([0.5, 0.0, -0.5])  # behind camera 2
    points_other[0, 0, 2] = torch.tensor([0.1, 0.0, 0.01])  # in front, but closer than min_depth = 0.02
    flow_target = torch.zeros(1, 1, 3, 2)  # K = I projects the first pixel's P_vt (0, 0, 1) exactly onto (0, 0)
    everywhere = torch.ones(1, 1, 3, dtype=torch.bool)
    targets = _targets(points, flow_target=flow_target, flow_valid=everywhere)
    prediction = PairPrediction(_view(points.clone(), points_other), _view(points.clone()))
    _, terms = flow4r_loss(prediction, _batch(targets, _targets(points.clone())), Flow4RLossConfig())
    assert terms["motion_2d"].item() == 0.0  # only the first pixel counts, and it is exact
    assert terms["rigid_motion"].item() > 0.5  # the 3D terms still see the two misplaced points


def test_motion_2d_ignores_pairs_without_geometry_but_correspondence_does_not():
    points = torch.tensor([0.0, 0.0, 1.0]).expand(2, 2, 2, 3).clone()
    flow_target = torch.full((2, 2, 2, 2), 1.0)
    valid = torch.tensor([True, False])[:, None, None].expand(2, 2, 2).clone()  # pair 1 has no depth
    everywhere = torch.ones(2, 2, 2, dtype=torch.bool)
    targets = _targets(points, valid=valid, flow_target=flow_target, flow_valid=everywhere)
    intrinsics = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    batch = _batch(targets, replace(targets), intrinsics1=intrinsics, intrinsics2=intrinsics)
    correspondence = torch.full((2, 2, 2, 2), 1.0)
    correspondence[1] += torch.tensor([0.3, 0.4])  # 0.5 px → (0.3, 0.4)·2/(2−1) = 1.0 normalised on pair 1 only
    prediction = PairPrediction(_view(points), _view(points.clone()), correspondence, correspondence.clone())
    _, terms = flow4r_loss(prediction, batch, Flow4RLossConfig())
    # P_vt = (0, 0, 1) projects exactly onto the target (1, 1): pair 0 has zero error, pair 1 is excluded.
    assert terms["motion_2d"].item() == pytest.approx(0.0, abs=1e-7)
    # Correspondence counts all 8 pixels of each view, half of them with normalised error 1.0.
    expected = 2 * 0.5 * generalised_charbonnier(torch.tensor(1.0), 0.5, 0.24).item()
    assert terms["correspondence"].item() == pytest.approx(expected, rel=1e-6)


def _translation_case(dynamic: bool, weights=None, confidence=None):
    """Prediction with P_vt = P + t (t of length 0.5 after normalisation) against a static GT (T̄ = I)."""
    unit = UNIT_POINTS.reshape(1, 2, 2, 3)
    shift = torch.tensor([0.3, 0.0, 0.4])
    views = [_view(2 * unit, 2 * (unit + shift), weights, confidence) for _ in range(2)]
    targets = [_targets(5 * unit) for _ in range(2)]
    return PairPrediction(*views), _batch(*targets, dynamic=dynamic)


def test_pose_weight_and_rigid_motion_losses_match_hand_computation():
    prediction, batch = _translation_case(dynamic=False)
    _, terms = flow4r_loss(prediction, batch, Flow4RLossConfig())
    # Solving P_vt ≈ T·P gives the pure translation t, so P_v − P̄_v = t at every pixel: 0.5 per view.
    assert terms["pose_weight"].item() == pytest.approx(1.0, rel=1e-5)
    # Static pair, C = 1: Eq. 14 is the mean of ||P_vt − P̄_v|| = 0.5 per view.
    assert terms["rigid_motion"].item() == pytest.approx(1.0, rel=1e-5)

    weights = torch.tensor([[[0.1, 0.2], [0.3, 0.4]]])
    confidence = torch.tensor([[[1.0, 2.0], [1.0, 2.0]]])
    prediction, batch = _translation_case(dynamic=True, weights=weights, confidence=confidence)
    _, terms = flow4r_loss(prediction, batch, Flow4RLossConfig())
    # w = W·HW = (0.4, 0.8, 1.2, 1.6); summands w·C·0.5 − α log C.
    per_view = (0.4 * 0.5 + 0.8 * 2 * 0.5 + 1.2 * 0.5 + 1.6 * 2 * 0.5 - 2 * ALPHA * math.log(2)) / 4
    assert terms["rigid_motion"].item() == pytest.approx(2 * per_view, rel=1e-5)
    assert terms["pose_weight"].item() == pytest.approx(1.0, rel=1e-5)  # any W recovers a pure translation


def _outlier_case():
    """Random scene with a known pose; a few P_vt pixels are corrupted so the solved pose depends on W."""
    generator = torch.Generator().manual_seed(3)
    rotation = roma.rotvec_to_rotmat(torch.tensor([0.05, 0.2, -0.1]))
    pose = _rigid(rotation, torch.tensor([0.4, -0.1, 0.2]))
    gt = torch.randn(1, 3, 3, 3, generator=generator) + torch.tensor([0.0, 0.0, 3.0])
    moved = gt @ rotation.T + pose[:3, 3]
    corrupted = moved.clone()
    corrupted[0, 0, :2] += torch.tensor([1.0, -0.5, 0.3])
    leaves = dict(
        points=gt.clone().requires_grad_(True),
        points_other=corrupted.requires_grad_(True),
        pose_weight=torch.softmax(torch.randn(1, 9, generator=generator), -1).reshape(1, 3, 3).requires_grad_(True),
        confidence=(1.0 + torch.rand(1, 3, 3, generator=generator)).requires_grad_(True),
    )
    view1 = ViewPrediction(**leaves)
    view2 = _view(moved.clone(), gt.clone())  # exact: P_vt2 = T̄⁻¹·P2
    batch = _batch(_targets(gt), _targets(moved.clone()), pose_1to2=pose[None], dynamic=True)
    return PairPrediction(view1, view2), batch, leaves


def test_pose_weight_loss_trains_only_the_pose_weight():
    prediction, batch, leaves = _outlier_case()
    _, terms = flow4r_loss(prediction, batch, Flow4RLossConfig())
    terms["pose_weight"].backward()
    assert leaves["pose_weight"].grad is not None
    assert torch.isfinite(leaves["pose_weight"].grad).all() and leaves["pose_weight"].grad.abs().max() > 1e-4
    for name in ("points", "points_other", "confidence"):
        assert leaves[name].grad is None, name


def test_pose_weight_loss_uses_the_weighted_procrustes_pose():
    prediction, batch, _ = _outlier_case()
    _, terms = flow4r_loss(prediction, batch, Flow4RLossConfig())
    view, targets = prediction.view1, batch.targets1
    # Independent reference: normalise by hand, solve with roma, compare P_v with T̄·P̄ (both views share factors).
    pred_scale = torch.cat([view.points.detach(), prediction.view2.points]).norm(dim=-1).mean()
    gt_scale = torch.cat([targets.points, batch.targets2.points]).norm(dim=-1).mean()
    points = (view.points.detach() / pred_scale).reshape(-1, 3)
    rotation, translation = roma.rigid_points_registration(
        points, (view.points_other.detach() / pred_scale).reshape(-1, 3), weights=view.pose_weight.detach().reshape(-1)
    )
    solved = points @ rotation.T + translation
    gt_pose = batch.pose_1to2[0]
    gt_moved = (targets.points.reshape(-1, 3) @ gt_pose[:3, :3].T + gt_pose[:3, 3]) / gt_scale
    expected_view1 = (solved - gt_moved).norm(dim=-1).mean()
    # View 2 is exact (P_vt2 = T̄⁻¹·P2) and contributes 0.
    assert terms["pose_weight"].item() == pytest.approx(expected_view1.item(), rel=1e-4)
    assert expected_view1.item() > 1e-3


def test_rigid_motion_loss_gives_no_gradient_to_the_pose_weight():
    prediction, batch, leaves = _outlier_case()
    _, terms = flow4r_loss(prediction, batch, Flow4RLossConfig())
    terms["rigid_motion"].backward()
    assert leaves["pose_weight"].grad is None
    assert leaves["points_other"].grad is not None and leaves["points_other"].grad.abs().max() > 0
    assert leaves["confidence"].grad is not None and leaves["confidence"].grad.abs().max() > 0


def test_perfect_prediction_with_unit_confidence_gives_zero_loss():
    generator = torch.Generator().manual_seed(1)
    height, width = 3, 4
    rotation = roma.rotvec_to_rotmat(torch.tensor([0.1, -0.05, 0.2]))
    pose = _rigid(rotation, torch.tensor([0.3, 0.2, -0.1]))
    inverse = torch.linalg.inv(pose)
    intrinsics = torch.tensor([[[4.0, 0.0, 2.0], [0.0, 4.0, 1.5], [0.0, 0.0, 1.0]]])
    gt1 = torch.randn(1, height, width, 3, generator=generator) * 0.3 + torch.tensor([0.0, 0.0, 3.0])
    gt2 = torch.randn(1, height, width, 3, generator=generator) * 0.3 + torch.tensor([0.0, 0.0, 3.0])
    other1 = gt1 @ pose[:3, :3].T + pose[:3, 3]  # static scene: P̄_vt = T̄·P̄
    other2 = gt2 @ inverse[:3, :3].T + inverse[:3, 3]

    def pixels(points):
        return (points[..., :2] / points[..., 2:]) * 4.0 + torch.tensor([2.0, 1.5])

    everywhere = torch.ones(1, height, width, dtype=torch.bool)
    targets1 = _targets(gt1, other1, motion_valid=everywhere, flow_target=pixels(other1), flow_valid=everywhere)
    targets2 = _targets(gt2, other2, motion_valid=everywhere, flow_target=pixels(other2), flow_valid=everywhere)
    batch = _batch(targets1, targets2, pose_1to2=pose[None], dynamic=True, intrinsics1=intrinsics,
                   intrinsics2=intrinsics)
    prediction = PairPrediction(
        _view(7 * gt1, 7 * other1), _view(7 * gt2, 7 * other2), pixels(other1), pixels(other2)
    )
    total, terms = flow4r_loss(prediction, batch, Flow4RLossConfig())
    for name in TERM_NAMES:
        assert terms[name].item() == pytest.approx(0.0, abs=2e-5), name
    assert total.item() == pytest.approx(0.0, abs=5e-5)


def test_confidence_term_is_minimised_at_alpha_over_error():
    error = torch.tensor(0.05)
    optimum = torch.tensor(ALPHA / 0.05, requires_grad=True)  # C* = α/ℓ = 4
    value = confidence_weighted_error(error, optimum, ALPHA)
    value.backward()
    assert optimum.grad.item() == pytest.approx(0.0, abs=1e-6)
    assert value.item() == pytest.approx(ALPHA - ALPHA * math.log(ALPHA / 0.05), rel=1e-6)
    for other in (2.0, 8.0):
        assert confidence_weighted_error(error, torch.tensor(other), ALPHA).item() > value.item()


def test_empty_masks_give_zero_without_nan():
    points = (torch.randn(2, 2, 3, 3) + torch.tensor([0.0, 0.0, 3.0])).requires_grad_(True)
    false = torch.zeros(2, 2, 3, dtype=torch.bool)
    targets = _targets(points.detach().clone(), valid=false, motion_valid=false, flow_valid=false)
    correspondence = torch.zeros(2, 2, 3, 2, requires_grad=True)
    prediction = PairPrediction(_view(points), _view(points * 2), correspondence, correspondence * 1)
    total, terms = flow4r_loss(prediction, _batch(targets, replace(targets), dynamic=True), Flow4RLossConfig())
    for name in TERM_NAMES:
        assert terms[name].item() == 0.0, name
    total.backward()
    assert torch.isfinite(points.grad).all() and torch.isfinite(correspondence.grad).all()


def test_non_finite_ground_truth_outside_the_masks_is_ignored():
    generator = torch.Generator().manual_seed(5)
    gt = torch.randn(1, 2, 3, 3, generator=generator) + torch.tensor([0.0, 0.0, 3.0])
    mask = torch.tensor([[[True, False, True], [True, True, False]]])
    flow = torch.rand(1, 2, 3, 2, generator=generator) * 3
    intrinsics = torch.tensor([[[3.0, 0.0, 1.5], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0]]])
    points = (gt + 0.2 * torch.randn(1, 2, 3, 3, generator=generator)).requires_grad_(True)
    correspondence = flow.clone().requires_grad_(True)

    def loss_with(fill: float):
        holes = torch.where(mask[..., None], gt, torch.full_like(gt, fill))
        flow_holes = torch.where(mask[..., None], flow, torch.full_like(flow, fill))
        targets = _targets(holes, holes.clone(), mask, mask, flow_holes, mask)
        batch = _batch(targets, replace(targets), dynamic=True, intrinsics1=intrinsics, intrinsics2=intrinsics)
        prediction = PairPrediction(_view(points, points * 1.1), _view(points * 1, points * 0.9), correspondence,
                                    correspondence * 1)
        return flow4r_loss(prediction, batch, Flow4RLossConfig())[0]

    reference = loss_with(0.0)
    with_nan = loss_with(float("nan"))
    assert with_nan.item() == pytest.approx(reference.item(), rel=1e-6)
    with_nan.backward()
    assert torch.isfinite(points.grad).all() and torch.isfinite(correspondence.grad).all()


def test_generalised_charbonnier_closed_forms():
    scale = 0.24
    # (x/c)²/1.5 + 1 = 4  →  ρ = (1.5/0.5)·(4^{1/4} − 1) = 3(√2 − 1).
    x = torch.tensor(scale * math.sqrt(4.5))
    assert generalised_charbonnier(x, 0.5, scale).item() == pytest.approx(3 * (math.sqrt(2) - 1), rel=1e-6)
    small = torch.tensor(1e-3, dtype=torch.float64)  # float64: the closed form cancels catastrophically
    assert generalised_charbonnier(small, 0.5, scale).item() == pytest.approx(0.5 * (1e-3 / scale) ** 2, rel=1e-3)
    assert generalised_charbonnier(torch.tensor(0.0), 0.5, scale).item() == 0.0
    with pytest.raises(ValueError, match="charbonnier_alpha"):
        generalised_charbonnier(x, 2.0, scale)


def test_missing_targets_name_the_fix():
    points = torch.ones(1, 2, 2, 3)
    batch = replace(_batch(_targets(points), _targets(points)), targets1=None, targets2=None)
    with pytest.raises(ValueError, match="flow pseudo-labels"):
        flow4r_loss(PairPrediction(_view(points), _view(points)), batch, Flow4RLossConfig())
