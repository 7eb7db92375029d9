"""Anchored-pair sequence inference with an oracle model that returns the exact property sets of a synthetic
dynamic scene, each pair at its own random scale; plus the resizing helpers and input errors."""

from __future__ import annotations

import pytest
import roma
import torch
from torch import nn

from fourd_ns.feedforward.flow4r_geometry import image_centre, pinhole_intrinsics, unproject_depth
from fourd_ns.feedforward.pair_types import PairPrediction, ViewPrediction
from fourd_ns.feedforward.sequence_inference import intrinsics_to_original, reconstruct_sequence, resize_for_network
from fourd_ns.geometry.similarity import umeyama_sim3

HEIGHT, WIDTH, FRAMES, FOCAL = 32, 48, 5, 40.0


def apply(pose: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    return points @ pose[:3, :3].T + pose[:3, 3]


class SyntheticScene:
    """Per frame: a tilted depth plane seen by a moving camera; pixels in a square patch belong to an object that
    translates in the world. Ground truth is written in world coordinates and mapped to each camera."""

    def __init__(self, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.c2w = torch.eye(4, dtype=torch.float64).repeat(FRAMES, 1, 1)
        for k in range(FRAMES):
            self.c2w[k, :3, :3] = roma.rotvec_to_rotmat(0.15 * torch.randn(3, generator=generator, dtype=torch.float64))
            self.c2w[k, :3, 3] = 0.4 * torch.randn(3, generator=generator, dtype=torch.float64)
        self.intrinsics = pinhole_intrinsics(
            torch.tensor([FOCAL], dtype=torch.float64), image_centre(1, HEIGHT, WIDTH, dtype=torch.float64)
        )
        v, u = torch.meshgrid(
            torch.linspace(0, 1, HEIGHT, dtype=torch.float64),
            torch.linspace(0, 1, WIDTH, dtype=torch.float64),
            indexing="ij",
        )
        coefficients = torch.rand(FRAMES, 3, generator=generator, dtype=torch.float64)
        depth = (
            2.0
            + coefficients[:, :1, None]
            + (coefficients[:, 1:2, None] - 0.5) * u
            + (coefficients[:, 2:, None] - 0.5) * v
        )
        self.points = unproject_depth(depth, self.intrinsics.expand(FRAMES, 3, 3))  # own camera, own time
        self.moving = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
        self.moving[8:20, 12:28] = True
        self.object_position = 0.3 * torch.randn(FRAMES, 3, generator=generator, dtype=torch.float64)
        self.pair_scale = 0.5 + 2.0 * torch.rand(FRAMES, generator=generator, dtype=torch.float64)
        self.images = torch.rand(FRAMES, 3, HEIGHT, WIDTH, generator=generator)
        self.images[:, 0, 0, 0] = torch.arange(FRAMES) / 10.0  # frame id for the oracle

    def world_to(self, k: int) -> torch.Tensor:
        return torch.linalg.inv(self.c2w[k])

    def view(self, this: int, other: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, P_vt) of frame `this`'s pixels with respect to frame `other`."""
        world = apply(self.c2w[this], self.points[this])
        world = world + self.moving[..., None] * (self.object_position[other] - self.object_position[this])
        return self.points[this], apply(self.world_to(other), world)

    def camera_to_anchor(self, anchor: int) -> torch.Tensor:
        return self.world_to(anchor) @ self.c2w


class OracleModel(nn.Module):
    """Returns the scene's exact property sets, pair k scaled by the scene's `pair_scale[k]`."""

    def __init__(self, scene: SyntheticScene, noise: float = 0.0) -> None:
        super().__init__()
        self.scene, self.noise, self.calls = scene, noise, []

    def frame_ids(self, images: torch.Tensor) -> list[int]:
        return [round(float((value + 1.0) / 2.0 * 10.0)) for value in images[:, 0, 0, 0]]

    def weights(self) -> torch.Tensor:
        weight = torch.where(self.scene.moving, 1e-9, 1.0)
        return (weight / weight.sum()).float()

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> PairPrediction:
        assert not self.training
        assert image1.min() >= -1.0 and image1.max() <= 1.0 and image1.min() < 0.0
        anchors, frames = self.frame_ids(image1), self.frame_ids(image2)
        self.calls.append(frames)
        views = {1: ([], [], []), 2: ([], [], [])}
        for anchor, frame in zip(anchors, frames):
            generator = torch.Generator().manual_seed(100 * anchor + frame)  # the same noise for the same pair
            scale = self.scene.pair_scale[frame]
            for index, (this, other) in ((1, (anchor, frame)), (2, (frame, anchor))):
                points, points_other = self.scene.view(this, other)
                points_other = points_other + self.noise * torch.randn(
                    points.shape, generator=generator, dtype=torch.float64
                )
                views[index][0].append(scale * points)
                views[index][1].append(scale * points_other)
                views[index][2].append(1.0 + points[..., 2])
        predictions = [
            ViewPrediction(
                points=torch.stack(p).float(),
                points_other=torch.stack(q).float(),
                pose_weight=self.weights().expand(len(frames), HEIGHT, WIDTH),
                confidence=torch.stack(c).float(),
            )
            for p, q, c in views.values()
        ]
        return PairPrediction(view1=predictions[0], view2=predictions[1])


@pytest.mark.parametrize("anchor, pose_from, progress", [(0, "both", True), (2, "frame", False), (3, "anchor", False)])
def test_oracle_reconstruction_recovers_poses_focal_points_and_tracks(
    anchor: int, pose_from: str, progress: bool
) -> None:
    scene = SyntheticScene()
    model = OracleModel(scene).train()
    result = reconstruct_sequence(
        model, scene.images, anchor=anchor, batch_size=2, progress=progress, pose_from=pose_from
    )
    assert model.training  # the caller's mode is restored
    assert model.calls == [[0, 1], [2, 3], [4]]
    global_scale = scene.pair_scale[0]  # the first pair (anchor, frame 0) sets the scale

    expected_pose = scene.camera_to_anchor(anchor)
    expected_pose[:, :3, 3] *= global_scale
    assert torch.equal(result.camera_to_anchor[anchor], torch.eye(4))
    assert torch.allclose(result.camera_to_anchor.double(), expected_pose, atol=2e-5)
    assert torch.allclose(result.intrinsics.double(), scene.intrinsics.expand(FRAMES, 3, 3), rtol=1e-5)

    points, tracks = [], []
    for k in range(FRAMES):
        points.append(apply(scene.camera_to_anchor(anchor)[k], scene.points[k]))
        _, anchor_at_k = scene.view(anchor, k)
        tracks.append(apply(scene.camera_to_anchor(anchor)[k], anchor_at_k))
    assert torch.allclose(result.points.double(), global_scale * torch.stack(points), atol=5e-5)
    assert torch.allclose(result.tracks.double(), global_scale * torch.stack(tracks), atol=5e-5)
    # the anchor's tracks at its own time are its points; the object's tracks move with the object
    assert torch.allclose(result.tracks[anchor], result.points[anchor])
    moved = result.tracks[4] - result.tracks[anchor]
    expected_motion = scene.world_to(anchor)[:3, :3] @ (scene.object_position[4] - scene.object_position[anchor])
    assert torch.allclose(
        moved[scene.moving].double(), global_scale * expected_motion.expand(int(scene.moving.sum()), 3), atol=5e-5
    )
    assert moved[~scene.moving].abs().max() < 5e-5

    assert torch.allclose(result.confidence.double(), 1.0 + scene.points[..., 2], atol=1e-5)
    assert torch.equal(result.colors, scene.images.permute(0, 2, 3, 1))
    assert result.image_size == (HEIGHT, WIDTH) and result.anchor == anchor


def reference_pose(
    sources: list[torch.Tensor], targets: list[torch.Tensor], weights: list[torch.Tensor]
) -> torch.Tensor:
    """Rigid weighted fit with the independent float64 Umeyama of fourd_ns.geometry."""
    _, rotation, translation = umeyama_sim3(
        torch.cat([s.reshape(-1, 3) for s in sources]).double(),
        torch.cat([t.reshape(-1, 3) for t in targets]).double(),
        torch.cat([w.reshape(-1) for w in weights]).double(),
        with_scale=False,
    )
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3], pose[:3, 3] = rotation, translation
    return pose


@pytest.mark.parametrize("pose_from", ["frame", "anchor", "both"])
def test_pose_choice_on_noisy_predictions_matches_the_documented_fit(pose_from: str) -> None:
    scene = SyntheticScene(seed=1)
    scene.pair_scale[:] = 1.0
    model = OracleModel(scene, noise=0.05).eval()
    result = reconstruct_sequence(model, scene.images, anchor=0, batch_size=FRAMES, progress=False, pose_from=pose_from)
    prediction = model(scene.images[:1].expand(FRAMES, -1, -1, -1) * 2 - 1, scene.images * 2 - 1)
    v1, v2 = prediction.view1, prediction.view2
    for k in range(1, FRAMES):
        if pose_from == "frame":
            expected = reference_pose([v2.points[k]], [v2.points_other[k]], [v2.pose_weight[k]])
        elif pose_from == "anchor":
            expected = torch.linalg.inv(reference_pose([v1.points[k]], [v1.points_other[k]], [v1.pose_weight[k]]))
        else:
            expected = reference_pose(
                [v2.points[k], v1.points_other[k]],
                [v2.points_other[k], v1.points[k]],
                [v2.pose_weight[k], v1.pose_weight[k]],
            )
        assert torch.allclose(result.camera_to_anchor[k].double(), expected, atol=1e-5)
        assert torch.allclose(result.points[k].double(), apply(expected, v2.points[k].double()), atol=1e-4)
        assert torch.allclose(result.tracks[k].double(), apply(expected, v1.points_other[k].double()), atol=1e-4)
        # the noise moves the fit measurably off the true pose, so the agreement above is not trivial
        assert not torch.allclose(expected, scene.camera_to_anchor(0)[k], atol=1e-4)


def test_bad_inputs_are_rejected_with_a_fix() -> None:
    scene = SyntheticScene()
    model = OracleModel(scene)
    with pytest.raises(ValueError, match="resize_for_network"):
        reconstruct_sequence(model, scene.images[:, :, :30], progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reconstruct_sequence(model, scene.images * 255, progress=False)
    with pytest.raises(ValueError, match="anchor=5"):
        reconstruct_sequence(model, scene.images, anchor=5, progress=False)
    with pytest.raises(ValueError, match="pose_from"):
        reconstruct_sequence(model, scene.images, pose_from="middle", progress=False)
    assert model.calls == []


@pytest.mark.parametrize("size, long_side", [((50, 70), 48), ((20, 30), 64)])
def test_resize_for_network_and_intrinsics_to_original_agree_on_pixel_positions(
    size: tuple[int, int], long_side: int
) -> None:
    height, width = size
    v, u = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    coordinates = torch.stack([u, v, torch.zeros_like(u)])[None].double()  # each pixel holds its own (u, v)
    resized, resize = resize_for_network(coordinates, long_side=long_side)
    net_height, net_width = resized.shape[-2:]
    assert net_height % 16 == 0 and net_width % 16 == 0 and resize.size == (net_height, net_width)
    assert max(resize.resized_size) == long_side
    intrinsics_net = torch.tensor([[[30.0, 0.0, 20.0], [0.0, 31.0, 12.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    to_original = intrinsics_to_original(intrinsics_net, resize)[0] @ torch.linalg.inv(intrinsics_net[0])
    v_net, u_net = torch.meshgrid(torch.arange(net_height) + 0.5, torch.arange(net_width) + 0.5, indexing="ij")
    homogeneous = torch.stack([u_net, v_net, torch.ones_like(u_net)], dim=-1).double()
    expected = (homogeneous @ to_original.T)[..., :2]
    interior = (slice(3, -3), slice(3, -3))  # the antialiasing filter is truncated at the borders
    error = resized[0, :2].permute(1, 2, 0)[interior] - expected[interior]
    # a sampled antialiasing kernel is not exactly linear-preserving (±0.02 px jitter, zero mean); a convention
    # slip (half a pixel, a crop offset) would be a systematic shift of ≥ 0.5 px
    assert error.abs().max() < 0.025
    assert error.mean(dim=(0, 1)).abs().max() < 1e-3
    with pytest.raises(ValueError, match="long_side"):
        resize_for_network(coordinates, long_side=8)
