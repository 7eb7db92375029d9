"""Flow4R's derived geometry (Eq. 1–9) against closed-form references and known synthetic scenes."""

from __future__ import annotations

import math

import pytest
import roma
import torch

from fourd_ns.feedforward.flow4r_geometry import (
    estimate_focal,
    image_centre,
    invert_pose,
    nonrigid_flow,
    normalise_pair_scale,
    optical_flow,
    pinhole_intrinsics,
    pixel_grid,
    project_points,
    rigid_flow,
    scene_flow,
    solve_pose,
    track_points,
    transform_points,
    unproject_depth,
)


def kabsch_reference(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, with_scale: bool = False):
    """Independent float64 weighted Kabsch/Umeyama: (s, R, t) minimising Σ w ‖s R x + t − y‖² for [N, 3] inputs."""
    x, y, w = x.double(), y.double(), w.double() / w.double().sum()
    x_mean, y_mean = (w[:, None] * x).sum(0), (w[:, None] * y).sum(0)
    xc, yc = x - x_mean, y - y_mean
    covariance = sum(w[i] * torch.outer(yc[i], xc[i]) for i in range(x.shape[0]))
    u, sigma, vt = torch.linalg.svd(covariance)
    d = torch.tensor([1.0, 1.0, float(torch.sign(torch.det(u) * torch.det(vt)))], dtype=torch.float64)
    rotation = u @ torch.diag(d) @ vt
    scale = (sigma * d).sum() / (w * (xc**2).sum(-1)).sum() if with_scale else torch.tensor(1.0, dtype=torch.float64)
    return scale, rotation, y_mean - scale * rotation @ x_mean


def random_pose(generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    rotation = roma.rotvec_to_rotmat(0.6 * torch.randn(3, generator=generator, dtype=torch.float64))
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = rotation
    pose[:3, 3] = torch.randn(3, generator=generator, dtype=torch.float64)
    return pose.to(dtype)


def random_points(generator: torch.Generator, shape=(1, 8, 8), dtype=torch.float32) -> torch.Tensor:
    points = torch.randn(*shape, 3, generator=generator, dtype=torch.float64)
    points[..., 2] = points[..., 2].abs() + 2.0
    return points.to(dtype)


def test_pixel_grid_uses_pixel_centres() -> None:
    grid = pixel_grid(2, 3)
    assert grid.shape == (2, 3, 2)
    assert torch.equal(grid[0, 0], torch.tensor([0.5, 0.5]))
    assert torch.equal(grid[1, 2], torch.tensor([2.5, 1.5]))
    assert torch.equal(image_centre(2, 4, 6), torch.tensor([[3.0, 2.0], [3.0, 2.0]]))


def test_solve_pose_ignores_down_weighted_moving_points() -> None:
    generator = torch.Generator().manual_seed(0)
    pose = random_pose(generator)
    points = random_points(generator)
    points_other = transform_points(pose[None], points)
    moving = torch.rand(1, 8, 8, generator=generator) < 0.3
    assert 0.2 < moving.float().mean() < 0.4
    points_other = points_other + moving[..., None] * torch.randn(1, 8, 8, 3, generator=generator)
    weights = torch.softmax(torch.where(moving, -10.0, 0.0).reshape(1, -1), dim=-1).reshape(1, 8, 8)
    solved = solve_pose(points, points_other, weights)
    assert solved.dtype == torch.float32
    assert torch.allclose(solved[0, :3, :3], pose[:3, :3], atol=1e-4)
    assert torch.allclose(solved[0, :3, 3], pose[:3, 3], atol=1e-4)
    assert torch.equal(solved[0, 3], torch.tensor([0.0, 0.0, 0.0, 1.0]))


def test_solve_pose_gives_invalid_pixels_zero_weight_even_when_they_are_nan() -> None:
    generator = torch.Generator().manual_seed(1)
    pose = random_pose(generator)
    points = random_points(generator)
    points_other = transform_points(pose[None], points)
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    valid[0, :3] = False
    points = torch.where(valid[..., None], points, float("nan"))
    points_other = torch.where(valid[..., None], points_other, 1e6)
    weights = torch.full((1, 8, 8), 1.0)
    weights[0, :3] = 1e3  # large weights on invalid pixels must not matter
    solved = solve_pose(points.requires_grad_(), points_other, weights, valid)
    assert torch.allclose(solved[0], pose, atol=1e-5)
    solved.sum().backward()
    assert torch.isfinite(points.grad).all()


def test_solve_pose_falls_back_to_uniform_weights_when_all_weights_vanish() -> None:
    generator = torch.Generator().manual_seed(2)
    points = random_points(generator, (2, 4, 4), torch.float64)
    points_other = points + 0.1 * torch.randn(2, 4, 4, 3, generator=generator, dtype=torch.float64)
    uniform = solve_pose(points, points_other, torch.ones(2, 4, 4, dtype=torch.float64))
    vanished = solve_pose(points, points_other, torch.zeros(2, 4, 4, dtype=torch.float64))
    assert torch.allclose(vanished, uniform, atol=1e-12)
    nothing_valid = solve_pose(points, points_other, torch.ones(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.bool))
    assert torch.isfinite(nothing_valid).all()


@pytest.mark.parametrize("with_scale", [False, True])
def test_solve_pose_matches_float64_kabsch_reference(with_scale: bool) -> None:
    generator = torch.Generator().manual_seed(3)
    points = random_points(generator, (3, 5, 4), torch.float64)
    points_other = 1.7 * transform_points(random_pose(generator, torch.float64)[None].expand(3, 4, 4), points)
    points_other = points_other + 0.3 * torch.randn(points.shape, generator=generator, dtype=torch.float64)
    weights = torch.rand(3, 5, 4, generator=generator, dtype=torch.float64)
    result = solve_pose(points, points_other, weights, with_scale=with_scale)
    pose, scale = result if with_scale else (result, None)
    for b in range(3):
        s, rotation, translation = kabsch_reference(
            points[b].reshape(-1, 3), points_other[b].reshape(-1, 3), weights[b].reshape(-1), with_scale
        )
        assert torch.allclose(pose[b, :3, :3], s * rotation, atol=1e-10)
        assert torch.allclose(pose[b, :3, 3], translation, atol=1e-10)
        if with_scale:
            assert torch.allclose(scale[b], s, atol=1e-10)
            assert abs(float(s) - 1.7) < 0.2
        rigid = roma.rigid_points_registration(
            points[b].reshape(-1, 3), points_other[b].reshape(-1, 3), weights[b].reshape(-1), compute_scaling=with_scale
        )
        assert torch.allclose(rotation, rigid[0], atol=1e-10)


def test_solve_pose_gradcheck_in_double() -> None:
    generator = torch.Generator().manual_seed(4)
    points = random_points(generator, (1, 2, 3), torch.float64).requires_grad_()
    points_other = (
        transform_points(random_pose(generator, torch.float64)[None], points.detach()) + 0.1
    ).requires_grad_()
    weights = torch.rand(1, 2, 3, generator=generator, dtype=torch.float64).add(0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, q, w: solve_pose(p, q, w), (points, points_other, weights))
    assert torch.autograd.gradcheck(
        lambda p, q, w: solve_pose(p, q, w, with_scale=True)[0], (points, points_other, weights)
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_solve_pose_collinear_support_has_finite_gradients(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(5)
    along = torch.linspace(-1.0, 1.0, 6, dtype=dtype)
    points = torch.tensor([0.0, 0.0, 3.0], dtype=dtype) + along[:, None] * torch.tensor([1.0, 2.0, 0.5], dtype=dtype)
    points = points.reshape(1, 2, 3, 3).requires_grad_()
    points_other = transform_points(random_pose(generator, dtype)[None], points.detach()).requires_grad_()
    logits = torch.zeros(1, 2, 3, dtype=dtype, requires_grad=True)
    weights = torch.softmax(logits.reshape(1, -1), -1).reshape(1, 2, 3)
    pose, scale = solve_pose(points, points_other, weights, with_scale=True)
    (pose.square().sum() + scale.sum()).backward()
    assert torch.isfinite(pose).all()
    for tensor in (points, points_other, logits):
        assert torch.isfinite(tensor.grad).all()
    # a single pixel carrying all the weight is as degenerate as it gets
    peaked = torch.zeros(1, 2, 3, dtype=dtype)
    peaked[0, 0, 0] = 1.0
    single = solve_pose(points.detach().requires_grad_(), points_other.detach(), peaked)
    assert torch.isfinite(single).all()


def test_solve_pose_with_scale_recovers_a_similarity_and_inverts() -> None:
    generator = torch.Generator().manual_seed(6)
    pose = random_pose(generator, torch.float64)
    similarity = pose.clone()
    similarity[:3, :3] *= 2.5
    points = random_points(generator, (1, 4, 4), torch.float64)
    solved, scale = solve_pose(points, transform_points(similarity[None], points), torch.ones(1, 4, 4), with_scale=True)
    assert torch.allclose(solved[0], similarity, atol=1e-10)
    assert torch.allclose(scale, torch.tensor([2.5], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(invert_pose(solved)[0] @ similarity, torch.eye(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(invert_pose(pose[None])[0], torch.linalg.inv(pose), atol=1e-12)


def test_flow_decomposition_sums_to_the_scene_flow_and_tracks_static_points() -> None:
    generator = torch.Generator().manual_seed(7)
    pose = random_pose(generator, torch.float64)[None]
    points = random_points(generator, (1, 6, 6), torch.float64)
    moving = torch.zeros(1, 6, 6, dtype=torch.bool)
    moving[0, 2:4, 2:5] = True
    object_motion = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    points_other = transform_points(pose, points) + moving[..., None] * object_motion
    flow = scene_flow(points, points_other)
    assert torch.allclose(points + flow, points_other)
    camera_part, object_part = rigid_flow(pose, points), nonrigid_flow(pose, points, points_other)
    assert torch.allclose(camera_part + object_part, flow, atol=1e-12)
    assert torch.allclose(object_part, moving[..., None] * object_motion, atol=1e-12)
    tracks = track_points(pose, points_other)
    assert torch.allclose(tracks[~moving], points[~moving], atol=1e-12)
    # a moving point is displaced by its object motion seen from this view's camera, Rᵀ·F_t
    assert torch.allclose(tracks[moving] - points[moving], (pose[0, :3, :3].T @ object_motion).expand(6, 3), atol=1e-12)


def test_unprojected_points_reproject_onto_pixel_centres_and_give_back_the_focal() -> None:
    generator = torch.Generator().manual_seed(8)
    focal, height, width = 37.5, 12, 16
    intrinsics = pinhole_intrinsics(torch.tensor([focal]), image_centre(1, height, width))
    depth = 1.0 + 3.0 * torch.rand(1, height, width, generator=generator)
    points = unproject_depth(depth, intrinsics)
    assert torch.allclose(points[..., 2], depth)
    pixels = project_points(points, torch.tensor([focal]), image_centre(1, height, width))
    assert torch.allclose(pixels[0], pixel_grid(height, width), atol=1e-4)
    for method in ("least_squares", "weiszfeld"):
        assert estimate_focal(points, method=method).item() == pytest.approx(focal, rel=1e-5)
    # an off-centre principal point must be given explicitly
    shifted = image_centre(1, height, width) + torch.tensor([[1.5, -2.0]])
    off_centre = unproject_depth(depth, pinhole_intrinsics(torch.tensor([focal]), shifted))
    assert estimate_focal(off_centre, principal_point=shifted).item() == pytest.approx(focal, rel=1e-5)


def test_robust_focal_resists_outliers_and_invalid_points_are_ignored() -> None:
    generator = torch.Generator().manual_seed(9)
    focal, height, width = 30.0, 16, 16
    intrinsics = pinhole_intrinsics(torch.tensor([focal]), image_centre(1, height, width))
    points = unproject_depth(2.0 + torch.rand(1, height, width, generator=generator), intrinsics).double()
    outliers = torch.rand(1, height, width, generator=generator) < 0.1
    corrupted = points.clone()
    corrupted[..., :2] = torch.where(outliers[..., None], 2.0 * corrupted[..., :2], corrupted[..., :2])
    least_squares = estimate_focal(corrupted).item()
    robust = estimate_focal(corrupted, method="weiszfeld", iterations=20).item()
    assert abs(least_squares - focal) > 1.0
    assert abs(robust - focal) < 1e-3 * focal
    assert estimate_focal(corrupted, valid=~outliers).item() == pytest.approx(focal, rel=1e-6)
    assert estimate_focal(corrupted, weights=(~outliers).double()).item() == pytest.approx(focal, rel=1e-6)
    behind_or_on_the_camera = points.clone()
    behind_or_on_the_camera[outliers] = torch.tensor([50.0, 50.0, -1.0], dtype=torch.float64)
    behind_or_on_the_camera[0, 0, 0] = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    assert estimate_focal(behind_or_on_the_camera).item() == pytest.approx(focal, rel=1e-6)
    with pytest.raises(ValueError, match="weiszfeld"):
        estimate_focal(points, method="median")


def test_projected_optical_flow_equals_ground_truth_flow_of_a_rigid_scene() -> None:
    generator = torch.Generator().manual_seed(10)
    height, width = 10, 14
    f1, f2 = 20.0, 24.0
    c1, c2 = torch.tensor([7.0, 5.0]), torch.tensor([6.5, 5.5])
    pose = random_pose(generator)
    pose[:3, :3] = roma.rotvec_to_rotmat(torch.tensor([0.02, -0.05, 0.03]))
    pose[:3, 3] = torch.tensor([0.1, -0.05, 0.2])
    depth = 3.0 + torch.rand(height, width, generator=generator)
    # ground truth, written out pixel by pixel with explicit matrices
    k1 = torch.tensor([[f1, 0.0, c1[0]], [0.0, f1, c1[1]], [0.0, 0.0, 1.0]], dtype=torch.float64)
    k2 = torch.tensor([[f2, 0.0, c2[0]], [0.0, f2, c2[1]], [0.0, 0.0, 1.0]], dtype=torch.float64)
    expected = torch.zeros(height, width, 2, dtype=torch.float64)
    for row in range(height):
        for column in range(width):
            pixel = torch.tensor([column + 0.5, row + 0.5, 1.0], dtype=torch.float64)
            camera1 = depth[row, column].double() * torch.linalg.solve(k1, pixel)
            camera2 = pose[:3, :3].double() @ camera1 + pose[:3, 3].double()
            image2 = k2 @ camera2
            expected[row, column] = image2[:2] / image2[2] - pixel[:2]
    points = unproject_depth(depth[None], k1[None].float())
    flow = optical_flow(
        points, transform_points(pose[None], points), torch.tensor([f1]), c1[None], torch.tensor([f2]), c2[None]
    )
    assert torch.allclose(flow[0].double(), expected, atol=2e-4)
    assert flow.abs().max() > 1.0  # the motion is not trivially small


def test_normalise_pair_scale_uses_the_mean_valid_norm_of_both_views() -> None:
    points_a = torch.tensor([[[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]]])  # norms 5, 1
    points_b = torch.tensor([[[[0.0, 0.0, 6.0], [100.0, 0.0, 0.0]]]])  # norms 6, (invalid) 100
    valid_a = torch.tensor([[[True, True]]])
    valid_b = torch.tensor([[[True, False]]])
    normalised_a, normalised_b, factor = normalise_pair_scale(points_a, points_b, valid_a, valid_b)
    assert factor.tolist() == [4.0]
    assert torch.equal(normalised_a, points_a / 4.0)
    assert torch.equal(normalised_b, points_b / 4.0)
    with_nan = points_b.clone()
    with_nan[0, 0, 1] = float("nan")
    with_nan.requires_grad_()
    _, _, factor = normalise_pair_scale(points_a, with_nan, valid_a, valid_b)
    factor.sum().backward()
    assert factor.tolist() == [4.0] and torch.isfinite(with_nan.grad).all()
    _, _, empty = normalise_pair_scale(points_a, points_b, ~valid_a, torch.zeros_like(valid_b))
    assert empty.tolist() == [pytest.approx(1e-8)]
    assert math.isfinite(empty.item())
