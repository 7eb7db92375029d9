"""Similarity transforms Sim(3): the closed-form Umeyama fit and the alignment of camera trajectories.

A similarity is stored as a 4×4 matrix ``[[s·R, t], [0, 1]]`` so that points map with one matrix product
(``apply_sim3``) and similarities compose by matrix multiplication. Camera-to-world poses are not points: their
rotation block must stay a rotation, so ``apply_sim3_to_c2w`` rotates the camera axes by R and moves the centre by
the full similarity (``s·R·c + t``).

Design choices:

- The fit runs in float64 whatever the input dtype (the 3×3 SVD of a float32 covariance loses digits exactly where
  alignment metrics need them) and returns the input dtype. This module is for evaluation and initialisation, not
  for back-propagation; the differentiable pose solver of Flow4R lives in ``fourd_ns.feedforward.flow4r_geometry``
  and uses roma's damped Procrustes instead.
- Reflections are excluded (det R = +1) with Umeyama's sign correction ``S = diag(1, 1, sign det(U Vᵀ))``; the
  scale uses the same correction (``s = tr(D S) / σ²_source``).
- Camera trajectories are aligned on camera centres, the way ATE is defined. A straight-line or too-short trajectory
  leaves the rotation about the line undetermined (the SVD would return an arbitrary one), so ``align_camera_poses``
  then falls back to the first camera: rotation and position from the first camera's pose, scale from the ratio of
  trajectory lengths (1 when the predicted trajectory does not move).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

_EPS = 1e-12


def umeyama_sim3(
    source: Float[Tensor, "N 3"],
    target: Float[Tensor, "N 3"],
    weights: Float[Tensor, "N"] | None = None,
    with_scale: bool = True,
) -> tuple[Float[Tensor, ""], Float[Tensor, "3 3"], Float[Tensor, "3"]]:
    """The (s, R, t) minimising Σ w_i ‖s·R·source_i + t − target_i‖² (Umeyama 1991), with det R = +1.

    ``weights`` need not be normalised (zero weights drop points). With ``with_scale=False`` the scale is 1 (a
    rigid Kabsch fit). Degenerate inputs stay finite: a source without spread gets scale 1.
    """
    if source.shape != target.shape or source.ndim != 2 or source.shape[-1] != 3:
        raise ValueError(
            f"umeyama_sim3 needs two [N, 3] point sets of equal shape, got {source.shape} and {target.shape}"
        )
    dtype = source.dtype
    x, y = source.double(), target.double()
    w = torch.ones(x.shape[0], dtype=torch.float64, device=x.device) if weights is None else weights.double()
    w = w / w.sum().clamp_min(_EPS)
    x_mean, y_mean = w @ x, w @ y
    xc, yc = x - x_mean, y - y_mean
    covariance = (w[:, None] * yc).T @ xc  # Σ w (y − ȳ)(x − x̄)ᵀ
    u, sigma, vh = torch.linalg.svd(covariance)
    sign = torch.ones(3, dtype=torch.float64, device=x.device)
    sign[2] = torch.sign(torch.det(u @ vh))
    rotation = u @ torch.diag(sign) @ vh
    if with_scale:
        variance = (w * (xc * xc).sum(-1)).sum()
        scale = (sigma * sign).sum() / variance if variance > _EPS else x.new_ones(())
    else:
        scale = x.new_ones(())
    translation = y_mean - scale * rotation @ x_mean
    return scale.to(dtype), rotation.to(dtype), translation.to(dtype)


def sim3_matrix(
    scale: Float[Tensor, ""], rotation: Float[Tensor, "3 3"], translation: Float[Tensor, "3"]
) -> Float[Tensor, "4 4"]:
    """The 4×4 matrix ``[[s·R, t], [0, 1]]`` of a similarity."""
    matrix = torch.eye(4, dtype=rotation.dtype, device=rotation.device)
    matrix[:3, :3] = scale * rotation
    matrix[:3, 3] = translation
    return matrix


def apply_sim3(sim3: Float[Tensor, "4 4"], points: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
    """Map points by a similarity (or any affine 4×4 transform): ``s·R·x + t``."""
    return points @ sim3[:3, :3].T + sim3[:3, 3]


def sim3_scale(sim3: Float[Tensor, "4 4"]) -> Float[Tensor, ""]:
    """The scale s of ``[[s·R, t], [0, 1]]`` (the cube root of the determinant of its linear part)."""
    return torch.linalg.det(sim3[:3, :3]).abs().pow(1.0 / 3.0)


def apply_sim3_to_c2w(sim3: Float[Tensor, "4 4"], c2w: Float[Tensor, "*batch 4 4"]) -> Float[Tensor, "*batch 4 4"]:
    """Camera-to-world poses moved by a similarity: axes rotated by R, centres mapped to ``s·R·c + t``.

    The result is again a rigid camera-to-world pose (its rotation block stays orthonormal).
    """
    scale = sim3_scale(sim3)
    rotation = sim3[:3, :3] / scale
    moved = c2w.clone()
    moved[..., :3, :3] = rotation @ c2w[..., :3, :3]
    moved[..., :3, 3] = apply_sim3(sim3, c2w[..., :3, 3])
    return moved


def _centres_are_degenerate(centres: Float[Tensor, "T 3"], relative_tolerance: float) -> bool:
    """Fewer than 3 centres, or centres that (nearly) lie on a line or a point: the fit's rotation is not unique."""
    if centres.shape[0] < 3:
        return True
    centred = centres.double() - centres.double().mean(0)
    singular = torch.linalg.svdvals(centred)
    return bool(singular[0] <= _EPS or singular[1] <= relative_tolerance * singular[0])


def _trajectory_length(centres: Float[Tensor, "T 3"]) -> Tensor:
    return (centres[1:] - centres[:-1]).double().norm(dim=-1).sum()


def align_camera_poses(
    pred_c2w: Float[Tensor, "T 4 4"], ref_c2w: Float[Tensor, "T 4 4"], degenerate_tolerance: float = 1e-3
) -> tuple[Float[Tensor, "4 4"], Float[Tensor, "T 4 4"]]:
    """The similarity that best maps predicted cameras onto reference cameras, and the predicted poses moved by it.

    Fits Umeyama Sim(3) on camera centres. When there are fewer than three cameras or either trajectory's centres
    are (nearly) collinear — the second singular value of the centred centres at most ``degenerate_tolerance``
    times the first — the rotation about the line is undetermined, so the first cameras are aligned instead:
    R = R_ref0 · R_pred0ᵀ, s = (reference trajectory length) / (predicted trajectory length) (1 when either does
    not move), and t puts the first predicted centre on the first reference centre.

    Returns (sim3 [4, 4], aligned_c2w [T, 4, 4]), both in the dtype of ``pred_c2w``.
    """
    if pred_c2w.shape != ref_c2w.shape or pred_c2w.shape[-2:] != (4, 4) or pred_c2w.ndim != 3:
        raise ValueError(
            f"align_camera_poses needs two [T, 4, 4] pose stacks, got {pred_c2w.shape} and {ref_c2w.shape}"
        )
    pred_centres, ref_centres = pred_c2w[:, :3, 3], ref_c2w[:, :3, 3]
    if _centres_are_degenerate(pred_centres, degenerate_tolerance) or _centres_are_degenerate(
        ref_centres, degenerate_tolerance
    ):
        rotation = ref_c2w[0, :3, :3].double() @ pred_c2w[0, :3, :3].double().T
        pred_length, ref_length = _trajectory_length(pred_centres), _trajectory_length(ref_centres)
        moving = pred_length > _EPS and ref_length > _EPS
        scale = ref_length / pred_length if moving else torch.ones((), dtype=torch.float64, device=pred_c2w.device)
        translation = ref_centres[0].double() - scale * rotation @ pred_centres[0].double()
        sim3 = sim3_matrix(scale, rotation, translation).to(pred_c2w.dtype)
    else:
        sim3 = sim3_matrix(*umeyama_sim3(pred_centres, ref_centres))
    return sim3, apply_sim3_to_c2w(sim3, pred_c2w)
