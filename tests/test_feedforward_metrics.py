"""Similarity alignment and the evaluation metrics (APD3D/EPE, ATE/RPE, pair pose error, flow EPE) against
hand-computed values."""

from __future__ import annotations

import math

import pytest
import roma
import torch

from fourd_ns.geometry.similarity import (
    align_camera_poses,
    apply_sim3,
    apply_sim3_to_c2w,
    sim3_matrix,
    umeyama_sim3,
)
from fourd_ns.metrics.camera_pose import (
    absolute_trajectory_error,
    pair_pose_error,
    relative_pose_error,
    rotation_angle_degrees,
)
from fourd_ns.metrics.optical_flow import flow_epe
from fourd_ns.metrics.tracking import (
    align_median_scale,
    align_sim3,
    apd3d,
    dynamic_tracks,
    end_point_error,
    evaluate_tracks,
)


def rotation_about(axis: list[float], degrees: float) -> torch.Tensor:
    axis_tensor = torch.tensor(axis, dtype=torch.float64)
    return roma.rotvec_to_rotmat(axis_tensor / axis_tensor.norm() * math.radians(degrees))


def known_sim3() -> torch.Tensor:
    return sim3_matrix(
        torch.tensor(2.5, dtype=torch.float64),
        rotation_about([1, 2, 3], 40),
        torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64),
    )


def c2w(rotation: torch.Tensor, centre: list[float]) -> torch.Tensor:
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = rotation
    pose[:3, 3] = torch.tensor(centre, dtype=torch.float64)
    return pose


# ---------------------------------------------------------------- similarity


def test_umeyama_recovers_a_known_similarity_and_ignores_zero_weights() -> None:
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(20, 3, generator=generator, dtype=torch.float64)
    target = apply_sim3(known_sim3(), source)
    target[15:] += 5.0  # outliers that only zero weights can remove
    weights = torch.ones(20, dtype=torch.float64)
    weights[15:] = 0.0
    scale, rotation, translation = umeyama_sim3(source, target, weights)
    assert torch.allclose(sim3_matrix(scale, rotation, translation), known_sim3(), atol=1e-12)
    scale, rotation, _ = umeyama_sim3(source.float(), target.float(), weights.float(), with_scale=False)
    assert scale.dtype == torch.float32 and scale.item() == 1.0
    assert torch.allclose(rotation.double(), rotation_about([1, 2, 3], 40), atol=1e-5)


def test_umeyama_never_returns_a_reflection() -> None:
    generator = torch.Generator().manual_seed(1)
    source = torch.randn(30, 3, generator=generator, dtype=torch.float64)
    mirrored = source * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    scale, rotation, translation = umeyama_sim3(source, mirrored, with_scale=False)
    assert torch.det(rotation).item() == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(rotation @ rotation.T, torch.eye(3, dtype=torch.float64), atol=1e-12)

    def cost(r: torch.Tensor) -> float:
        return float(((source @ r.T + translation - mirrored) ** 2).sum())

    best = cost(rotation)
    for axis in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]):
        for step in (-2.0, 2.0):
            assert cost(rotation_about(axis, step) @ rotation) > best


def test_align_camera_poses_on_a_general_trajectory() -> None:
    generator = torch.Generator().manual_seed(2)
    reference = torch.stack(
        [c2w(roma.rotvec_to_rotmat(0.3 * torch.randn(3, generator=generator, dtype=torch.float64)), centre)
         for centre in ([0, 0, 0], [1, 0, 0.2], [1, 1, 0], [0, 1.5, 1], [-0.5, 0.5, 0.5])]
    )  # fmt: skip
    predicted = apply_sim3_to_c2w(torch.linalg.inv(known_sim3()), reference)
    sim3, aligned = align_camera_poses(predicted, reference)
    assert torch.allclose(sim3, known_sim3(), atol=1e-10)
    assert torch.allclose(aligned, reference, atol=1e-10)
    assert torch.allclose(
        aligned[:, :3, :3] @ aligned[:, :3, :3].transpose(1, 2),
        torch.eye(3, dtype=torch.float64).expand(5, 3, 3),
        atol=1e-12,
    )


@pytest.mark.parametrize("frames", [1, 2, 4])
def test_align_camera_poses_falls_back_to_the_first_camera_on_degenerate_trajectories(frames: int) -> None:
    # a straight-line trajectory (or fewer than three cameras): the rotation about the line is undetermined
    reference = torch.stack([c2w(rotation_about([0, 1, 0], 10 * i), [0.5 * i, 0.0, 1.0]) for i in range(frames)])
    predicted = apply_sim3_to_c2w(torch.linalg.inv(known_sim3()), reference)
    sim3, aligned = align_camera_poses(predicted, reference)
    assert torch.allclose(aligned, reference, atol=1e-10)
    if frames == 1:  # a single camera has no trajectory length: scale 1, rotation from its pose
        assert torch.allclose(sim3[:3, :3], rotation_about([1, 2, 3], 40), atol=1e-12)
    else:
        assert torch.allclose(sim3, known_sim3(), atol=1e-10)


def test_align_camera_poses_fallback_takes_the_scale_from_trajectory_lengths() -> None:
    reference = torch.stack([c2w(torch.eye(3, dtype=torch.float64), [float(i), 0.0, 0.0]) for i in range(3)])
    predicted = reference.clone()
    predicted[:, :3, 3] = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.5, 0.0, 0.0]], dtype=torch.float64)
    sim3, _ = align_camera_poses(predicted, reference)  # collinear: lengths 2 vs 0.5
    assert torch.allclose(sim3[:3, :3], 4.0 * torch.eye(3, dtype=torch.float64))
    assert torch.allclose(sim3[:3, 3], torch.zeros(3, dtype=torch.float64))


# ---------------------------------------------------------------- tracking


def test_apd3d_and_epe_on_hand_computed_distances() -> None:
    gt = torch.zeros(5, 3)
    pred = torch.tensor([[0.05, 0, 0], [0, 0.2, 0], [0, 0, 0.4], [0.8, 0, 0], [0, 2.0, 0]])
    # within 0.1 / 0.3 / 0.5 / 1.0: 1, 2, 3, 4 of 5 points
    assert apd3d(pred, gt).item() == pytest.approx((1 + 2 + 3 + 4) / 20)
    assert end_point_error(pred, gt).item() == pytest.approx((0.05 + 0.2 + 0.4 + 0.8 + 2.0) / 5)
    valid = torch.tensor([True, True, True, True, False])
    assert apd3d(pred, gt, valid).item() == pytest.approx((1 + 2 + 3 + 4) / 16)
    assert end_point_error(pred, gt, valid).item() == pytest.approx((0.05 + 0.2 + 0.4 + 0.8) / 4)
    assert apd3d(pred, gt, thresholds=(0.5,)).item() == pytest.approx(3 / 5)
    assert math.isnan(apd3d(pred, gt, torch.zeros(5, dtype=torch.bool)).item())


def test_median_scale_alignment_is_robust_to_one_outlier() -> None:
    gt = torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]])
    pred = gt / 4.0
    pred[2] = torch.tensor([0.0, 0.0, 100.0])  # median norms: gt 2, pred 0.5
    aligned, scale = align_median_scale(pred, gt)
    assert scale.item() == pytest.approx(4.0)
    assert torch.allclose(aligned[:2], gt[:2])
    # an even count takes the mean of the two middle values: gt (1 + 3) / 2, pred (0.25 + 100) / 2
    _, masked_scale = align_median_scale(pred, gt, torch.tensor([True, False, True]))
    assert masked_scale.item() == pytest.approx(2.0 / 50.125)


def test_sim3_alignment_recovers_a_known_similarity() -> None:
    generator = torch.Generator().manual_seed(3)
    gt = torch.randn(4, 6, 3, generator=generator, dtype=torch.float64)
    pred = apply_sim3(torch.linalg.inv(known_sim3()), gt)
    valid = torch.ones(4, 6, dtype=torch.bool)
    valid[0, 0] = False
    pred[0, 0] = 1e3  # an invalid point must not enter the fit
    aligned, sim3 = align_sim3(pred, gt, valid)
    assert torch.allclose(sim3, known_sim3(), atol=1e-10)
    assert torch.allclose(aligned[valid], gt[valid], atol=1e-10)


def make_tracks() -> tuple[torch.Tensor, torch.Tensor]:
    """Three frames of three tracks: static, creeping (path 0.008 < 0.01), moving (0.5 per frame)."""
    gt = torch.zeros(3, 3, 3, dtype=torch.float64)
    for t in range(3):
        gt[t, 0] = torch.tensor([1.0, 0.0, 2.0])
        gt[t, 1] = torch.tensor([0.0, 1.0 + 0.004 * t, 2.0])
        gt[t, 2] = torch.tensor([0.5 * t, 0.0, 5.0])
    pred = gt / 2.0
    pred[2, 2] = (gt[2, 2] + torch.tensor([0.0, 0.4, 0.0], dtype=torch.float64)) / 2.0
    return pred, gt


def test_dynamic_tracks_use_the_path_length_over_valid_steps() -> None:
    _, gt = make_tracks()
    assert dynamic_tracks(gt, torch.ones(3, 3, dtype=torch.bool)).tolist() == [False, False, True]
    only_first = torch.tensor([[True] * 3, [False] * 3, [False] * 3])
    assert dynamic_tracks(gt, only_first).tolist() == [False, False, False]


def test_evaluate_tracks_with_global_scale_alignment() -> None:
    pred, gt = make_tracks()
    metrics = evaluate_tracks(pred, gt)  # median norms 2·(pred): scale exactly 2, one point 0.4 off
    assert metrics.apd3d == pytest.approx((8 / 9 + 8 / 9 + 1 + 1) / 4)
    assert metrics.epe == pytest.approx(0.4 / 9)
    assert metrics.num_dynamic == 1
    assert metrics.apd3d_dynamic == pytest.approx((2 / 3 + 2 / 3 + 1 + 1) / 4)
    assert metrics.epe_dynamic == pytest.approx(0.4 / 3)
    valid = torch.ones(3, 3, dtype=torch.bool)
    valid[2, 2] = False
    clean = evaluate_tracks(pred, gt, valid)
    assert (clean.apd3d, clean.epe, clean.apd3d_dynamic, clean.epe_dynamic) == pytest.approx((1.0, 0.0, 1.0, 0.0))


def test_evaluate_tracks_with_sim3_alignment_and_without_dynamic_points() -> None:
    generator = torch.Generator().manual_seed(4)
    gt = torch.randn(1, 8, 3, generator=generator, dtype=torch.float64).expand(3, 8, 3).clone()  # nothing moves
    pred = apply_sim3(torch.linalg.inv(known_sim3()), gt)
    metrics = evaluate_tracks(pred, gt, alignment="sim3")
    assert metrics.apd3d == pytest.approx(1.0)
    assert metrics.epe == pytest.approx(0.0, abs=1e-10)
    assert metrics.num_dynamic == 0
    assert math.isnan(metrics.apd3d_dynamic) and math.isnan(metrics.epe_dynamic)
    assert evaluate_tracks(pred, gt, alignment="global").apd3d < 1.0
    with pytest.raises(ValueError, match="alignment"):
        evaluate_tracks(pred, gt, alignment="per_traj")


# ---------------------------------------------------------------- camera pose


def test_rotation_angle_is_accurate_near_zero_and_half_turn() -> None:
    angles = torch.tensor([1e-7, 30.0, 179.9999, 180.0], dtype=torch.float64)
    rotations = torch.stack([rotation_about([1, -2, 0.5], float(a)) for a in angles])
    assert torch.allclose(rotation_angle_degrees(rotations), angles, rtol=1e-6, atol=1e-9)


def test_ate_on_a_hand_computed_square() -> None:
    # GT centres on a square; the prediction lifts alternate corners by ±1. The best similarity is the identity
    # rotation with scale 2 / (2 + 1) = 2/3, leaving per-camera errors² of 2·(1/3)² + (2/3)² = 2/3.
    corners = [[1, 1, 0], [-1, 1, 0], [-1, -1, 0], [1, -1, 0]]
    lifts = [1.0, -1.0, 1.0, -1.0]
    gt = torch.stack([c2w(torch.eye(3, dtype=torch.float64), corner) for corner in corners])
    pred = torch.stack(
        [c2w(torch.eye(3, dtype=torch.float64), [x, y, lift]) for (x, y, _), lift in zip(corners, lifts)]
    )
    assert absolute_trajectory_error(pred, gt) == pytest.approx(math.sqrt(2 / 3), rel=1e-9)
    assert absolute_trajectory_error(apply_sim3_to_c2w(known_sim3(), gt), gt) == pytest.approx(0.0, abs=1e-9)


def test_rpe_on_a_hand_computed_rotation_error() -> None:
    # Identical centres (identity alignment); camera 2's orientation is off by 10° about its z axis. Step 0→1 is exact,
    # step 1→2 has a 10° rotation error, step 2→3 has 10° and a translation error 2·sin(5°)·‖(−1, 0)‖ (the step's
    # translation (−1, 0, 1) seen through the 10° error, whose z part is unaffected).
    centres = [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 1]]
    gt = torch.stack([c2w(torch.eye(3, dtype=torch.float64), centre) for centre in centres])
    pred = gt.clone()
    pred[2, :3, :3] = rotation_about([0, 0, 1], 10.0)
    translation_rmse, rotation_rmse = relative_pose_error(pred, gt)
    assert translation_rmse == pytest.approx(2 * math.sin(math.radians(5)) / math.sqrt(3), rel=1e-9)
    assert rotation_rmse == pytest.approx(math.sqrt(200 / 3), rel=1e-9)
    # a prediction that differs from the ground truth by a similarity has no relative error after alignment
    assert relative_pose_error(apply_sim3_to_c2w(known_sim3(), gt), gt) == pytest.approx((0.0, 0.0), abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        relative_pose_error(pred[:1], gt[:1])


def test_pair_pose_error_on_hand_computed_poses() -> None:
    gt = c2w(rotation_about([0, 1, 0], 20), [2.0, 0.0, 0.0])
    pred = c2w(
        rotation_about([0, 1, 0], 20) @ rotation_about([1, 1, 1], 7),
        [0.5 * math.cos(math.radians(30)), 0.5 * math.sin(math.radians(30)), 0.0],
    )
    rotation_error, direction, translation_error = pair_pose_error(pred[None], gt[None])
    assert rotation_error.item() == pytest.approx(7.0, rel=1e-9)
    assert direction.item() == pytest.approx(30.0, rel=1e-9)
    assert translation_error.item() == pytest.approx(2 * 2.0 * math.sin(math.radians(15)), rel=1e-9)
    still = c2w(torch.eye(3, dtype=torch.float64), [0.0, 0.0, 0.0])
    rotation_error, direction, translation_error = pair_pose_error(still, gt)
    assert rotation_error.item() == pytest.approx(20.0, rel=1e-9)
    assert math.isnan(direction.item()) and math.isnan(translation_error.item())


# ---------------------------------------------------------------- optical flow


def test_flow_epe_on_hand_computed_vectors() -> None:
    gt = torch.zeros(1, 2, 2, 2)
    pred = gt.clone()
    pred[0, 0, 0] = torch.tensor([3.0, 4.0])
    pred[0, 1, 1] = torch.tensor([0.0, -1.0])
    assert flow_epe(pred, gt).item() == pytest.approx((5.0 + 1.0) / 4)
    valid = torch.tensor([[[True, False], [False, False]]])
    assert flow_epe(pred, gt, valid).item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="flow_epe"):
        flow_epe(pred[..., :1], gt[..., :1])
