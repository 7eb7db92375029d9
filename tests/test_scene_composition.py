"""Tests of rigid actors and driving-scene composition: hand-computed box poses, pose interpolation, absent and empty
actors, scenes without actors, functional state replacement and gradients to every part; and the far-field grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fourd_ns.geometry.rotations import quat_to_rotmat
from fourd_ns.scene.driving_scene import DrivingScene, actor_part_name
from fourd_ns.scene.far_field import FLUX4D_HEMISPHERE, FarFieldConfig, far_field_gaussians
from fourd_ns.scene.gaussian_params import GaussianParams
from fourd_ns.scene.neural_gaussians import LATENT, NeuralGaussianDecoder, activate, initial_state
from fourd_ns.scene.rigid_actors import actor_pose_at, transform_gaussians
from fourd_ns.sensors.actor_tracks import ActorTrack
from nerfstudio.cameras.cameras import Cameras, CameraType

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RZ90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
RX90 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def _pose(rotation: np.ndarray, translation) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, translation
    return pose


def _rz(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _track(track_id: str, times, poses) -> ActorTrack:
    k = len(times)
    return ActorTrack(
        track_id=track_id,
        label="Car",
        frame_indices=np.arange(k, dtype=np.int64),
        times=np.asarray(times, dtype=np.float32),
        poses=np.asarray(poses, dtype=np.float32),
        size_wlh=np.array([2.0, 4.0, 1.5], dtype=np.float32),
        stationary=False,
        deformable=False,
    )


def _state(n: int, seed: int, latent_dim: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return initial_state(torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g), torch.full((n, 3), 0.2),
                         latent_dim=latent_dim, generator=g)  # fmt: skip


def _decode_plain(kind, state):
    return activate(state[:, :14])


def test_rigid_transform_matches_hand_computed_pose():
    # A box rotated 90° about z and moved to (5, 2, 1); a Gaussian at box (1, 0, 0) rotated 90° about x in the box.
    quat_x90 = torch.tensor([[math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0]])
    local = GaussianParams(
        means=torch.tensor([[1.0, 0.0, 0.0]]), quats=quat_x90, scales=torch.tensor([[0.1, 0.2, 0.3]]),
        opacities=torch.tensor([0.5]), colors=torch.tensor([[0.1, 0.2, 0.3]]),
    )  # fmt: skip
    world = transform_gaussians(local, torch.from_numpy(_pose(RZ90, [5.0, 2.0, 1.0])).float())
    torch.testing.assert_close(world.means, torch.tensor([[5.0, 3.0, 1.0]]))
    hand = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # Rz90 @ Rx90 written out
    torch.testing.assert_close(quat_to_rotmat(world.quats)[0], hand, atol=1e-6, rtol=0.0)
    torch.testing.assert_close(world.quats.norm(dim=-1), torch.ones(1))
    torch.testing.assert_close(world.scales, local.scales)
    torch.testing.assert_close(world.colors, local.colors)


def test_rigid_transform_rotates_covariances():
    g = torch.Generator().manual_seed(0)
    quats = torch.randn(6, 4, generator=g)
    local = GaussianParams(
        torch.randn(6, 3, generator=g), quats / quats.norm(dim=-1, keepdim=True), torch.rand(6, 3, generator=g) + 0.1,
        torch.rand(6, generator=g), torch.rand(6, 3, generator=g),
    )  # fmt: skip
    pose = torch.from_numpy(_pose(_rz(0.7) @ RX90, [1.0, -2.0, 0.5])).float()
    world = transform_gaussians(local, pose)

    def covariance(p: GaussianParams) -> torch.Tensor:
        rotation = quat_to_rotmat(p.quats)
        return rotation @ torch.diag_embed(p.scales**2) @ rotation.transpose(-1, -2)

    rotation = pose[:3, :3]
    torch.testing.assert_close(covariance(world), rotation @ covariance(local) @ rotation.T, atol=1e-5, rtol=0.0)


def test_pose_interpolation_at_midpoints_and_outside_the_range():
    track = _track("a", [0.2, 0.6], [_pose(np.eye(3), [0.0, 0.0, 0.0]), _pose(RZ90, [2.0, 4.0, 0.0])])
    middle = actor_pose_at(track, 0.4)
    torch.testing.assert_close(middle[:3, :3], torch.from_numpy(_rz(math.pi / 4)).float(), atol=1e-6, rtol=0.0)
    torch.testing.assert_close(middle[:3, 3], torch.tensor([1.0, 2.0, 0.0]))
    quarter = actor_pose_at(track, 0.3)
    torch.testing.assert_close(quarter[:3, :3], torch.from_numpy(_rz(math.pi / 8)).float(), atol=1e-6, rtol=0.0)
    torch.testing.assert_close(actor_pose_at(track, 0.6), torch.from_numpy(track.poses[1]))
    torch.testing.assert_close(actor_pose_at(track, float(track.times[0])), torch.from_numpy(track.poses[0]))
    assert actor_pose_at(track, 0.1) is None and actor_pose_at(track, 0.7) is None
    torch.testing.assert_close(actor_pose_at(track, 0.1, hold_time=0.15), torch.from_numpy(track.poses[0]))
    torch.testing.assert_close(actor_pose_at(track, 0.7, hold_time=0.15), torch.from_numpy(track.poses[1]))
    assert actor_pose_at(track, 0.9, hold_time=0.15) is None
    single = _track("b", [0.5], [_pose(RZ90, [1.0, 1.0, 1.0])])
    torch.testing.assert_close(actor_pose_at(single, 0.5), torch.from_numpy(single.poses[0]))
    assert actor_pose_at(single, 0.51) is None


def test_scene_at_composes_parts_and_leaves_absent_actors_out():
    present = _track("present", [0.0, 1.0], [_pose(np.eye(3), [10.0, 0.0, 0.0]), _pose(RZ90, [20.0, 0.0, 0.0])])
    absent = _track("absent", [0.7, 0.9], [_pose(np.eye(3), [0.0, 5.0, 0.0])] * 2)
    empty = _track("empty", [0.0, 1.0], [_pose(np.eye(3), [0.0, 0.0, 0.0])] * 2)
    background, actor, far = _state(5, 0), _state(3, 1), _state(4, 2)
    scene = DrivingScene.from_parts(
        background, [(present, actor), (absent, _state(2, 3)), (empty, _state(0, 4))], far
    )
    assert list(scene.states) == ["background", "actor/present", "actor/absent", "actor/empty", "far"]
    assert scene.kinds["actor/absent"] == "actor" and scene.names_of("far") == ["far"]
    assert scene.num_gaussians == 14
    at_half = scene.scene_at(0.5, _decode_plain)
    assert at_half.num == 5 + 3 + 4
    parts = scene.parts_at(0.5, _decode_plain)
    assert list(parts) == ["background", "actor/present", "far"]
    torch.testing.assert_close(at_half.means[:5], background[:, :3])
    torch.testing.assert_close(at_half.means[-4:], far[:, :3])
    pose = actor_pose_at(present, 0.5)
    torch.testing.assert_close(at_half.means[5:8], actor[:, :3] @ pose[:3, :3].T + pose[:3, 3])
    assert scene.scene_at(0.8, _decode_plain).num == 5 + 3 + 2 + 4


def test_scene_without_actors_and_empty_scene():
    scene = DrivingScene.from_parts(_state(4, 0))
    assert scene.scene_at(0.3, _decode_plain).num == 4 and scene.tracks == {}
    nothing = DrivingScene.from_parts(_state(0, 0))
    composed = nothing.scene_at(0.3, _decode_plain)
    assert composed.num == 0 and composed.means.shape == (0, 3)


def test_with_states_is_functional_and_checks_names_and_channels():
    track = _track("car", [0.0, 1.0], [_pose(np.eye(3), [0.0, 0.0, 0.0])] * 2)
    scene = DrivingScene.from_parts(_state(3, 0), [(track, _state(2, 1))], _state(2, 2))
    replacement = _state(3, 5)
    updated = scene.with_states({"background": replacement})
    assert updated.states["background"] is replacement
    assert scene.states["background"] is not replacement
    assert updated.states["far"] is scene.states["far"] and updated.tracks == scene.tracks
    with pytest.raises(KeyError, match="unknown parts"):
        scene.with_states({"actor/bus": replacement})
    with pytest.raises(ValueError, match="channels"):
        scene.with_states({"far": torch.zeros(2, 7)})
    with pytest.raises(ValueError, match="twice"):
        DrivingScene.from_parts(_state(1, 0), [(track, _state(1, 1)), (track, _state(1, 2))])


def test_gradients_flow_from_scene_at_to_every_part():
    track = _track("car", [0.0, 1.0], [_pose(np.eye(3), [3.0, 0.0, 0.0]), _pose(RZ90, [5.0, 1.0, 0.0])])
    states = {"background": _state(4, 0, 8), "actor": _state(3, 1, 8), "far": _state(5, 2, 8)}
    leaves = {name: state.clone().requires_grad_(True) for name, state in states.items()}
    decoders = {kind: NeuralGaussianDecoder(latent_dim=8) for kind in ("background", "actor", "far")}
    scene = DrivingScene.from_parts(leaves["background"], [(track, leaves["actor"])], leaves["far"])
    # A learned-optimizer-like functional update keeps the graph back to the leaves.
    stepped = scene.with_states({name: state + 0.01 for name, state in scene.states.items()})
    composed = stepped.scene_at(0.5, lambda kind, state: decoders[kind](state))
    loss = sum(getattr(composed, f).pow(2).sum() for f in ("means", "quats", "scales", "opacities", "colors"))
    loss.backward()
    for name, leaf in leaves.items():
        assert leaf.grad is not None and bool(torch.all(leaf.grad[:, :14].abs().sum(dim=0) > 0)), name
        assert leaf.grad[:, LATENT].abs().sum() > 0, name
    for kind, decoder in decoders.items():
        assert decoder.linear.weight.grad.abs().sum() > 0, kind
    assert leaves["actor"].grad is not None and scene.states[actor_part_name("car")] is leaves["actor"]


def test_far_field_grid_counts_radius_and_band():
    config = FarFieldConfig(num_latitudes=6, num_longitudes=16)
    centre = torch.tensor([1.0, -2.0, 0.5])
    far = far_field_gaussians(config, centre, scene_extent=3.0)
    assert far.num == 6 * 16
    offsets = far.means - centre
    radius = offsets.norm(dim=-1)
    torch.testing.assert_close(radius, torch.full((96,), 12.0))  # 4 × the extent
    latitude = torch.rad2deg(torch.asin(offsets[:, 2] / radius))
    assert latitude.min() > -15.0 and latitude.max() < 30.0
    grid = latitude.reshape(6, 16)
    assert bool(torch.all(grid[:-1, 0] > grid[1:, 0]))  # row-major, highest latitude first
    torch.testing.assert_close(grid, grid[:, :1].expand(6, 16))
    # Discs tangent to the sphere: the rotation's third axis points outward and is the thin one.
    rotation = quat_to_rotmat(far.quats)
    torch.testing.assert_close(rotation[:, :, 2], offsets / radius[:, None], atol=1e-5, rtol=0.0)
    assert bool(torch.all(far.scales[:, 2] < far.scales[:, :2].min(dim=-1).values))
    # Neighbouring centres along a row are about 2 tangential standard deviations apart (overlap 0.5).
    step = (far.means[1] - far.means[0]).norm()
    torch.testing.assert_close(far.scales[0, 0], 0.5 * step, rtol=1e-2, atol=0.0)
    torch.testing.assert_close(far.colors, torch.full((96, 3), 0.5))
    torch.testing.assert_close(far.opacities, torch.full((96,), 0.7))
    assert far_field_gaussians(FarFieldConfig(num_latitudes=2, num_longitudes=3, radius=50.0), centre, 1.0).means.sub(
        centre).norm(dim=-1).allclose(torch.full((6,), 50.0))  # fmt: skip


def test_far_field_hemisphere_and_colours_from_an_image():
    centre = torch.zeros(3)
    hemisphere = far_field_gaussians(FLUX4D_HEMISPHERE, centre, scene_extent=2.0)
    assert hemisphere.num == 64 * 256 and bool(torch.all(hemisphere.means[:, 2] > 0))
    # A camera at the centre looking along +x (OpenGL axes: x_cam = -y, y_cam = +z, z_cam = -x).
    camera = Cameras(
        camera_to_worlds=torch.tensor([[[0.0, 0.0, -1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]]),
        fx=8.0, fy=8.0, cx=8.0, cy=6.0, width=16, height=12, camera_type=CameraType.PERSPECTIVE,
    )  # fmt: skip
    image = torch.zeros(12, 16, 3)
    image[..., 0] = 1.0
    far = far_field_gaussians(FarFieldConfig(num_latitudes=8, num_longitudes=32), centre, 2.0, camera, [image])
    x, y, z = far.means.unbind(dim=-1)
    ahead = (x > 0) & (y.abs() < x) & (z.abs() < 0.6 * x)  # inside the 90° x 73° field of view
    behind = x < 0
    assert ahead.any() and behind.any()
    torch.testing.assert_close(far.colors[ahead], torch.tensor([[1.0, 0.0, 0.0]]).expand(int(ahead.sum()), 3))
    torch.testing.assert_close(far.colors[behind], torch.full((int(behind.sum()), 3), 0.5))
