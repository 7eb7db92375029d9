"""Camera-pose metrics: ATE and RPE of trajectories (the evo definitions used by MonST3R / CUT3R evaluations,
re-implemented from the formulas) and the rotation / translation errors of a relative pose between two views.

- **ATE**: the predicted camera centres are mapped onto the ground truth by the Umeyama Sim(3) fitted on the
  centres (scale corrected, as monocular predictions have no metric scale); ATE is the RMSE of the remaining
  position errors.
- **RPE** (delta = 1 frame): after the same Sim(3) alignment, E_i = (Q_i⁻¹ Q_{i+1})⁻¹ (P_i⁻¹ P_{i+1}) for consecutive
  frames (Q ground truth, P prediction, camera-to-world); translation RPE is the RMSE of ‖trans(E_i)‖, rotation RPE
  the RMSE of angle(E_i) in degrees.
- **Pair pose error** for a relative pose T (X_b = T·X_a): the rotation error angle(R_predᵀ R_gt); the angle between
  the translation directions (scale-free); and the translation error after rescaling the prediction's translation
  to the ground truth's length, ‖t_pred·‖t_gt‖/‖t_pred‖ − t_gt‖ = 2‖t_gt‖·sin(angle/2) — a two-view prediction has
  no scale of its own, so only its direction can be scored; this expresses the direction error in ground-truth
  units. Both translation terms are NaN when either translation is shorter than ``min_translation`` (no direction).

Rotation angles use atan2(‖axis‖, cos) rather than arccos, which loses all precision near 0° and 180°.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from fourd_ns.geometry.similarity import apply_sim3_to_c2w, sim3_matrix, umeyama_sim3


def rotation_angle_degrees(rotation: Float[Tensor, "*batch 3 3"]) -> Float[Tensor, "*batch"]:
    """Angle in degrees of rotation matrices: atan2(½‖vee(R − Rᵀ)‖, ½(tr R − 1))."""
    skew = rotation - rotation.transpose(-1, -2)
    sine = 0.5 * torch.stack([skew[..., 2, 1], skew[..., 0, 2], skew[..., 1, 0]], dim=-1).norm(dim=-1)
    cosine = 0.5 * (rotation.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0)
    return torch.rad2deg(torch.atan2(sine, cosine))


def _check_trajectories(pred_c2w: Tensor, gt_c2w: Tensor, minimum: int) -> None:
    if pred_c2w.shape != gt_c2w.shape or pred_c2w.ndim != 3 or pred_c2w.shape[-2:] != (4, 4):
        raise ValueError(
            f"need two [T, 4, 4] camera-to-world stacks, got {tuple(pred_c2w.shape)} and {tuple(gt_c2w.shape)}"
        )
    if pred_c2w.shape[0] < minimum:
        raise ValueError(f"need at least {minimum} poses, got {pred_c2w.shape[0]}")


def _sim3_aligned(pred_c2w: Tensor, gt_c2w: Tensor) -> Tensor:
    sim3 = sim3_matrix(*umeyama_sim3(pred_c2w[:, :3, 3].double(), gt_c2w[:, :3, 3].double()))
    return apply_sim3_to_c2w(sim3, pred_c2w.double())


def absolute_trajectory_error(pred_c2w: Float[Tensor, "T 4 4"], gt_c2w: Float[Tensor, "T 4 4"]) -> float:
    """RMSE of camera-centre errors after Sim(3) alignment of the predicted centres to the ground truth."""
    _check_trajectories(pred_c2w, gt_c2w, minimum=2)
    aligned = _sim3_aligned(pred_c2w, gt_c2w)
    error = (aligned[:, :3, 3] - gt_c2w[:, :3, 3].double()).norm(dim=-1)
    return math.sqrt(float(error.square().mean()))


def relative_pose_error(pred_c2w: Float[Tensor, "T 4 4"], gt_c2w: Float[Tensor, "T 4 4"]) -> tuple[float, float]:
    """(translation RMSE, rotation RMSE in degrees) of consecutive-frame relative poses after Sim(3) alignment."""
    _check_trajectories(pred_c2w, gt_c2w, minimum=2)
    pred = _sim3_aligned(pred_c2w, gt_c2w)
    gt = gt_c2w.double()
    pred_step = torch.linalg.inv(pred[:-1]) @ pred[1:]
    gt_step = torch.linalg.inv(gt[:-1]) @ gt[1:]
    error = torch.linalg.inv(gt_step) @ pred_step
    translation = error[:, :3, 3].norm(dim=-1)
    rotation = rotation_angle_degrees(error[:, :3, :3])
    return math.sqrt(float(translation.square().mean())), math.sqrt(float(rotation.square().mean()))


def pair_pose_error(
    pred_T: Float[Tensor, "*batch 4 4"], gt_T: Float[Tensor, "*batch 4 4"], min_translation: float = 1e-9
) -> tuple[Float[Tensor, "*batch"], Float[Tensor, "*batch"], Float[Tensor, "*batch"]]:
    """(rotation error °, translation direction angle °, translation error at the ground truth's length)."""
    rotation_error = rotation_angle_degrees(pred_T[..., :3, :3].transpose(-1, -2) @ gt_T[..., :3, :3])
    t_pred, t_gt = pred_T[..., :3, 3], gt_T[..., :3, 3]
    norm_pred, norm_gt = t_pred.norm(dim=-1), t_gt.norm(dim=-1)
    direction = torch.rad2deg(torch.atan2(torch.linalg.cross(t_pred, t_gt).norm(dim=-1), (t_pred * t_gt).sum(-1)))
    rescaled = t_pred * (norm_gt / norm_pred.clamp_min(min_translation))[..., None]
    translation_error = (rescaled - t_gt).norm(dim=-1)
    undefined = (norm_pred < min_translation) | (norm_gt < min_translation)
    nan = torch.full_like(direction, float("nan"))
    return rotation_error, torch.where(undefined, nan, direction), torch.where(undefined, nan, translation_error)
