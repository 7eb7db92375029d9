"""Dynamic-region masks (image footprints of moving actors' boxes) and PSNR over a mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fourd_ns.metrics.dynamic_regions import (
    box_mask,
    convex_hull_2d,
    dynamic_mask,
    masked_psnr,
    moving_tracks,
)
from fourd_ns.sensors.actor_tracks import ActorTrack

WIDTH, HEIGHT = 16, 8
FX = FY = 10.0
CX, CY = 8.0, 6.0
INTRINSICS = torch.tensor([[FX, 0.0, CX], [0.0, FY, CY], [0.0, 0.0, 1.0]])
IDENTITY_CAMERA = torch.cat([torch.eye(3), torch.zeros(3, 1)], dim=1)
"""At the origin looking along world -z (OpenGL), image up = world +y."""


def rotation_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def track(
    centres, size_wlh, yaw: float = 0.0, stationary: bool = False, frames=None, track_id: str = "car"
) -> ActorTrack:
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    poses = np.tile(np.eye(4), (len(centres), 1, 1))
    poses[:, :3, :3] = rotation_z(yaw)
    poses[:, :3, 3] = centres
    frames = np.arange(len(centres)) if frames is None else np.asarray(frames)
    return ActorTrack(
        track_id=track_id,
        label="Car",
        frame_indices=frames.astype(np.int64),
        times=np.linspace(0.0, 1.0, len(centres)).astype(np.float32),
        poses=poses.astype(np.float32),
        size_wlh=np.asarray(size_wlh, dtype=np.float32),
        stationary=stationary,
        deformable=False,
    )


# A thin box facing the camera: x in [1, 3] (length 2), y in [0.5, 1.5] (width 1), z in [-5.01, -5.0].
FACE_ON = track([(2.0, 1.0, -5.005)], size_wlh=(1.0, 2.0, 0.01))


def test_face_on_box_covers_the_hand_computed_rectangle():
    # Front face at depth 5: u = 10 x / 5 + 8 in [10, 14], v = 10 (-y) / 5 + 6 in [3, 5] (OpenCV y = -world y).
    # Pixel centres (j + 0.5, i + 0.5) inside: columns 10..13, rows 3..4. The back face (depth 5.01) projects
    # within 0.01 px of the front one, far from any pixel centre.
    mask = box_mask(FACE_ON, 0, IDENTITY_CAMERA, INTRINSICS, WIDTH, HEIGHT)
    expected = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    expected[3:5, 10:14] = True
    assert mask.shape == (HEIGHT, WIDTH) and mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_box_behind_the_camera_or_not_annotated_gives_an_empty_mask():
    behind = track([(2.0, 1.0, 5.005)], size_wlh=(1.0, 2.0, 0.01))
    assert not box_mask(behind, 0, IDENTITY_CAMERA, INTRINSICS, WIDTH, HEIGHT).any()
    assert not box_mask(FACE_ON, 7, IDENTITY_CAMERA, INTRINSICS, WIDTH, HEIGHT).any()


def ray_cast_mask(box: ActorTrack, camera_to_world: torch.Tensor, near: float = 1e-3) -> torch.Tensor:
    """Reference: pixel centres whose ray meets the box at camera depth >= near (slab test in the box frame)."""
    c2w = camera_to_world.double().numpy()
    j, i = np.meshgrid(np.arange(WIDTH) + 0.5, np.arange(HEIGHT) + 0.5)
    # OpenGL camera ray with unit depth: x = (u - cx) / fx, y = -(v - cy) / fy, z = -1; the ray parameter is depth.
    rays = np.stack([(j - CX) / FX, -(i - CY) / FY, -np.ones_like(j)], axis=-1).reshape(-1, 3) @ c2w[:3, :3].T
    pose = box.poses[0].astype(np.float64)
    origin = (c2w[:3, 3] - pose[:3, 3]) @ pose[:3, :3]
    direction = rays @ pose[:3, :3]
    half = np.array([box.size_wlh[1], box.size_wlh[0], box.size_wlh[2]]) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - origin) / direction, (half - origin) / direction
    enter = np.maximum(np.minimum(t1, t2).max(axis=1), near)
    leave = np.maximum(t1, t2).min(axis=1)
    return torch.from_numpy((enter <= leave).reshape(HEIGHT, WIDTH))


# Camera at (0, 0, 1) looking along world +x: camera right = world -y, up = world +z, back (+z) = world -x.
FORWARD_X_CAMERA = torch.tensor([[0.0, 0.0, -1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0]])


@pytest.mark.parametrize(
    "box, camera",
    [
        (track([(1.5, 0.0, -1.0)], size_wlh=(1.0, 1.0, 6.0)), IDENTITY_CAMERA),  # z in [-4, 2]: through the camera
        (track([(6.0, -0.7, 0.6)], size_wlh=(1.8, 4.3, 1.5), yaw=0.5), FORWARD_X_CAMERA),  # a car ahead
        (track([(1.0, -1.2, 0.8)], size_wlh=(1.8, 4.3, 1.5), yaw=0.3), FORWARD_X_CAMERA),  # beside and behind
    ],
)
def test_mask_equals_ray_casting_also_for_boxes_cut_by_the_near_plane(box, camera):
    mask = box_mask(box, 0, camera, INTRINSICS, WIDTH, HEIGHT)
    reference = ray_cast_mask(box, camera)
    assert reference.any() and not reference.all()
    assert torch.equal(mask, reference)


def test_convex_hull_of_a_square_with_interior_and_collinear_points():
    points = np.array([[0, 0], [2, 0], [2, 2], [0, 2], [1, 1], [1, 0], [0, 0]], dtype=np.float64)
    hull = convex_hull_2d(points)
    assert hull.tolist() == [[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]]  # counter-clockwise, no (1, 0)
    assert len(convex_hull_2d(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]))) < 3  # no area


def test_moving_tracks_uses_the_largest_displacement_and_the_stationary_flag():
    out_and_back = track([(0, 0, 0), (2, 0, 0), (0, 0, 0)], (1, 1, 1), track_id="out-and-back")
    parked = track([(0, 0, 0), (3, 0, 0)], (1, 1, 1), stationary=True, track_id="parked")
    jitter = track([(0, 0, 0), (0.03, 0.04, 0)], (1, 1, 1), track_id="jitter")  # moves 0.05
    single = track([(5, 5, 0)], (1, 1, 1), track_id="single")
    tracks = [out_and_back, parked, jitter, single]
    assert [t.track_id for t in moving_tracks(tracks, 1.0)] == ["out-and-back"]
    assert [t.track_id for t in moving_tracks(tracks, 0.04)] == ["out-and-back", "jitter"]
    assert moving_tracks(tracks, 2.5) == []
    with pytest.raises(ValueError, match="min_displacement"):
        moving_tracks(tracks, -1.0)


def test_dynamic_mask_is_the_union_over_moving_tracks_only():
    # The face-on box moves 0.5 along x between frames 0 and 1; a parked box sits elsewhere in the view.
    moving = track([(2.0, 1.0, -5.005), (2.5, 1.0, -5.005)], (1.0, 2.0, 0.01), track_id="moving")
    parked = track([(-2.0, -0.5, -5.005), (-2.0, -0.5, -5.005)], (1.0, 2.0, 0.01), stationary=True)
    mask = dynamic_mask([moving, parked], 0, IDENTITY_CAMERA, INTRINSICS, WIDTH, HEIGHT, min_displacement=0.1)
    expected = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    expected[3:5, 10:14] = True
    assert torch.equal(mask, expected)
    assert box_mask(parked, 0, IDENTITY_CAMERA, INTRINSICS, WIDTH, HEIGHT).sum() == 8  # visible, but not moving
    # In frame 1 the moving box covers u in [11, 15]: columns 11..14.
    later = dynamic_mask([moving, parked], 1, IDENTITY_CAMERA, INTRINSICS, WIDTH, HEIGHT, min_displacement=0.1)
    assert torch.nonzero(later.any(dim=0)).squeeze(1).tolist() == [11, 12, 13, 14]
    none = dynamic_mask([moving, parked], 0, IDENTITY_CAMERA, INTRINSICS, WIDTH, HEIGHT, min_displacement=1.0)
    assert not none.any()


def test_masked_psnr_of_a_hand_computed_example():
    truth = torch.zeros(2, 2, 3)
    predicted = torch.zeros(2, 2, 3)
    predicted[0, 0] = 0.1  # squared error 0.01 on each channel
    predicted[1, 0] = 1.0  # outside the mask
    predicted[1, 1, 0] = 0.2  # squared error 0.04 on one channel
    mask = torch.tensor([[True, True], [False, True]])
    # MSE over 3 pixels x 3 channels = (3 * 0.01 + 0.04) / 9.
    assert masked_psnr(predicted, truth, mask) == pytest.approx(10.0 * math.log10(9.0 / 0.07))
    assert masked_psnr(predicted, truth, mask) == pytest.approx(21.0914, abs=1e-4)
    assert math.isnan(masked_psnr(predicted, truth, torch.zeros(2, 2, dtype=torch.bool)))
    assert masked_psnr(truth, truth, mask) == math.inf
    with pytest.raises(ValueError, match="mask"):
        masked_psnr(predicted, truth, torch.ones(3, 2, dtype=torch.bool))
