"""The one pinhole projection (``fourd_ns.geometry.pinhole``) against values computed by hand."""

from __future__ import annotations

import pytest
import torch

from fourd_ns.geometry.pinhole import project_camera_points, unpack_intrinsics, unproject_pixels


def test_projection_of_hand_computed_points() -> None:
    # fx=100, fy=200, cx=32, cy=24: (1, 2, 4) → (100·1/4 + 32, 200·2/4 + 24) = (57, 124); (−2, 1, 2) → (−68, 124).
    points = torch.tensor([[1.0, 2.0, 4.0], [-2.0, 1.0, 2.0]])
    projection = project_camera_points(points, 100.0, 200.0, 32.0, 24.0)
    assert torch.equal(projection.pixels, torch.tensor([[57.0, 124.0], [-68.0, 124.0]]))
    assert torch.equal(projection.depth, torch.tensor([4.0, 2.0]))
    assert projection.in_front.tolist() == [True, True]


def test_optical_axis_lands_on_the_principal_point() -> None:
    projection = project_camera_points(torch.tensor([[0.0, 0.0, 7.0]]), 50.0, 50.0, 16.5, 8.5)
    assert projection.pixels.tolist() == [[16.5, 8.5]]


def test_clamp_guard_gives_points_behind_the_camera_the_pixels_of_a_point_at_min_depth() -> None:
    # z = −1 and z = 0 are divided by min_depth = 0.5: (1, 1) → (10·1/0.5, 10·1/0.5) = (20, 20).
    points = torch.tensor([[1.0, 1.0, -1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 0.5], [1.0, 1.0, 2.0]])
    projection = project_camera_points(points, 10.0, 10.0, 0.0, 0.0, min_depth=0.5, depth_guard="clamp")
    assert projection.pixels.tolist() == [[20.0, 20.0], [20.0, 20.0], [20.0, 20.0], [5.0, 5.0]]
    assert projection.depth.tolist() == [-1.0, 0.0, 0.5, 2.0]
    assert projection.in_front.tolist() == [False, False, False, True]


def test_nonzero_guard_keeps_the_mirrored_projection_behind_the_camera() -> None:
    # z = −2 keeps its sign: 10·1/(−2) = −5; |z| = 0.25 ≤ 0.5 is divided by +0.5: 10·1/0.5 = 20.
    points = torch.tensor([[1.0, 1.0, -2.0], [1.0, 1.0, -0.25], [1.0, 1.0, 0.25]])
    projection = project_camera_points(points, 10.0, 10.0, 1.0, 2.0, min_depth=0.5, depth_guard="nonzero")
    assert projection.pixels.tolist() == [[-4.0, -3.0], [21.0, 22.0], [21.0, 22.0]]
    assert projection.in_front.tolist() == [False, False, False]


def test_nonzero_guard_with_zero_min_depth_is_the_plain_formula() -> None:
    points = torch.tensor([[1.0, -1.0, -4.0], [3.0, 0.0, 0.0]])
    projection = project_camera_points(points, 8.0, 8.0, 0.0, 0.0, depth_guard="nonzero")
    assert projection.pixels[0].tolist() == [-2.0, 2.0]
    assert projection.pixels[1, 0] == float("inf")


def test_unknown_depth_guard_is_refused() -> None:
    with pytest.raises(ValueError, match="depth_guard"):
        project_camera_points(torch.ones(1, 3), 1.0, 1.0, 0.0, 0.0, depth_guard="abs")  # type: ignore[arg-type]


def test_unprojection_of_hand_computed_pixels() -> None:
    # (57, 124) at depth 4 with fx=100, fy=200, cx=32, cy=24 → 4·((57−32)/100, (124−24)/200, 1) = (1, 2, 4).
    pixels = torch.tensor([[57.0, 124.0], [32.0, 24.0]])
    points = unproject_pixels(pixels, torch.tensor([4.0, 3.0]), 100.0, 200.0, 32.0, 24.0)
    assert points.tolist() == [[1.0, 2.0, 4.0], [0.0, 0.0, 3.0]]
    rays = unproject_pixels(pixels, 1.0, 100.0, 200.0, 32.0, 24.0)
    assert rays.tolist() == [[0.25, 0.5, 1.0], [0.0, 0.0, 1.0]]


def test_unprojection_inverts_projection() -> None:
    points = torch.tensor([[0.3, -0.7, 2.5], [-1.2, 0.4, 9.0]], dtype=torch.float64)
    projection = project_camera_points(points, 510.0, 490.0, 320.5, 240.5)
    back = unproject_pixels(projection.pixels, projection.depth, 510.0, 490.0, 320.5, 240.5)
    torch.testing.assert_close(back, points)


def test_unpacked_intrinsics_broadcast_over_point_maps() -> None:
    # Two cameras, each with a 1 × 2 point map: camera b's pixels use camera b's intrinsics.
    intrinsics = torch.tensor([[[10.0, 0.0, 1.0], [0.0, 20.0, 2.0], [0.0, 0.0, 1.0]],
                               [[30.0, 0.0, 3.0], [0.0, 40.0, 4.0], [0.0, 0.0, 1.0]]])
    points = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]).expand(2, 1, 2, 3)
    fx, fy, cx, cy = unpack_intrinsics(intrinsics, point_dims=2)
    assert fx.shape == (2, 1, 1)
    pixels = project_camera_points(points, fx, fy, cx, cy).pixels
    assert pixels.tolist() == [[[[11.0, 22.0], [11.0, 22.0]]], [[[33.0, 44.0], [33.0, 44.0]]]]
    assert [float(v) for v in unpack_intrinsics(intrinsics[0])] == [10.0, 20.0, 1.0, 2.0]
