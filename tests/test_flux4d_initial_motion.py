"""flux4d's ``--pipeline.initial-motion initializer``: velocities transferred from an initializer's points (hand
values) and the single-camera training video it runs on (the end-to-end tests are in test_flux4d_method.py)."""

from __future__ import annotations

import pytest
import torch

from fourd_ns.reconstruction.initial_motion import transfer_velocities

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_transfer_takes_the_nearest_point_of_the_nearest_frame_within_the_radius() -> None:
    source_points = torch.tensor([[0.0, 0, 0], [10.0, 0, 0], [0.0, 0, 0], [10.0, 0, 0]])
    source_times = torch.tensor([0.0, 0.0, 1.0, 1.0])
    source_velocities = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0], [4.0, 0, 0]])
    positions = torch.tensor([[0.5, 0, 0], [9.0, 0, 0], [0.2, 0, 0], [5.0, 0, 0], [10.0, 0.5, 0]])
    times = torch.tensor([0.1, 0.2, 0.8, 0.9, 0.6])  # nearest frames: 0, 0, 1, 1, 1
    moved = transfer_velocities(positions, times, source_points, source_times, source_velocities, max_distance=1.5)
    expected = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0], [0.0, 0, 0], [4.0, 0, 0]])  # 4th: 5 units away
    torch.testing.assert_close(moved.velocities, expected)
    assert moved.matched == 4
    with pytest.raises(ValueError, match="radius"):
        transfer_velocities(positions, times, source_points, source_times, source_velocities, max_distance=0.0)


def test_single_camera_video_never_mixes_cameras() -> None:
    from fourd_ns.datasets.training_video import select_training_video

    times = [0.0, 0.01, 0.5, 0.51, 1.0]  # two driving cameras firing at slightly different times
    cameras = [0, 1, 0, 1, 0]
    mixed = select_training_video(times, cameras)
    assert mixed.dataset_indices == [0, 1, 2, 3, 4]  # the default fills the chosen camera's gaps from others
    single = select_training_video(times, cameras, single_camera=True)
    assert single.camera_id == 0 and single.dataset_indices == [0, 2, 4]
    assert single.times.tolist() == [0.0, 0.5, 1.0]
