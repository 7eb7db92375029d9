"""Initializers: the seed of a Gaussian model from dataset points, random sampling or a feed-forward network.

Closed-form references: a hand-written OpenGL projection for camera visibility, a synthetic anchored reconstruction
built from known cameras and a known similarity (the initializer must undo it), linear motion for velocities, and
direct pixel indexing for lifted correspondences. End-to-end: tiny randomly initialised Flow4R checkpoints written
with ``save_pretrained`` to a temporary folder, a 4-frame Nerfies-format scene, the real pipeline, trainer and
``eval_setup``.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import tyro
import yaml

from nerfies_fixture import write_nerfies_scene
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.utils.eval_utils import eval_setup

from fourd_ns.feedforward.flow4r import Flow4R, Flow4RConfig
from fourd_ns.feedforward.pair_types import SequenceReconstruction
from fourd_ns.feedforward.pretrained import save_pretrained
from fourd_ns.feedforward.sequence_inference import NetworkResize
from fourd_ns.geometry.camera_conventions import switch_c2w_camera_axes, viewmat_from_nerfstudio_c2w
from fourd_ns.geometry.similarity import apply_sim3, sim3_matrix
from fourd_ns.initializers import (
    DatasetPointsInitializerConfig,
    Flow3rInitializerConfig,
    Flow4RInitializerConfig,
    InitializerInputs,
    InitializerResult,
    RandomInitializerConfig,
    load_or_compute_initialization,
)
from fourd_ns.initializers.cache import cache_file, initialization_cache_key, load_initialization
from fourd_ns.initializers.feedforward import (
    LiftedCorrespondences,
    consistent_correspondences,
    lift_correspondences,
    select_confident_pixels,
    track_velocities,
    weights_identity,
)
from fourd_ns.initializers.random_points import visible_in_any_camera
from fourd_ns.method_configs.deform4d import deform4d
from fourd_ns.method_configs.flag4d import flag4d
from fourd_ns.pipelines.flow_guided_pipeline import FlowGuidedPipelineConfig
from fourd_ns.pipelines.initialized_pipeline import InitializedPipeline, InitializedPipelineConfig

WIDTH, HEIGHT = 32, 24


# ---------------------------------------------------------------------------------------------------------- helpers


def look_at_c2w(position: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """OpenGL camera-to-world [3, 4] (x right, y up, looking along −z) at ``position`` looking at ``target``."""
    forward = (target - position) / (target - position).norm()
    right = torch.linalg.cross(forward, torch.tensor([0.0, 0.0, 1.0], dtype=position.dtype))
    right = right / right.norm()
    up = torch.linalg.cross(right, forward)
    return torch.cat([torch.stack([right, up, -forward], dim=1), position[:, None]], dim=1)


def orbit_cameras(count: int = 4, radius: float = 3.0) -> Cameras:
    """Cameras on a rising arc around the origin, looking at it (non-collinear centres)."""
    c2w = []
    for index in range(count):
        angle = 0.5 * index
        position = torch.tensor([radius * math.cos(angle), radius * math.sin(angle), 0.3 + 0.2 * index])
        c2w.append(look_at_c2w(position, torch.zeros(3)))
    return Cameras(
        camera_to_worlds=torch.stack(c2w),
        fx=torch.full((count, 1), 60.0),
        fy=torch.full((count, 1), 66.0),
        cx=torch.full((count, 1), WIDTH / 2 + 0.5),
        cy=torch.full((count, 1), HEIGHT / 2 - 0.5),
        width=torch.full((count, 1), WIDTH),
        height=torch.full((count, 1), HEIGHT),
        times=torch.linspace(0, 1, count)[:, None],
    )


def opengl_visible(points: torch.Tensor, cameras: Cameras) -> torch.Tensor:
    """Reference visibility, written directly in OpenGL camera axes: in front (−z > 0) and inside the image."""
    visible = torch.zeros(points.shape[0], dtype=torch.bool)
    for index in range(cameras.shape[0]):
        c2w = cameras.camera_to_worlds[index]
        local = (points - c2w[:, 3]) @ c2w[:, :3]  # Rᵀ (p − c)
        depth = -local[:, 2]
        u = cameras.cx[index] + cameras.fx[index] * local[:, 0] / depth
        v = cameras.cy[index] - cameras.fy[index] * local[:, 1] / depth
        visible |= (depth > 0) & (u >= 0) & (u < WIDTH) & (v >= 0) & (v < HEIGHT)
    return visible


def make_inputs(frames: int = 4, seed: int = 0, cameras: bool = True, points: int = 30) -> InitializerInputs:
    generator = torch.Generator().manual_seed(seed)
    return InitializerInputs(
        images=[torch.randint(0, 256, (HEIGHT, WIDTH, 3), generator=generator, dtype=torch.uint8) for _ in range(frames)],
        times=torch.linspace(0.0, 1.0, frames),
        scene_box=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]),
        source="synthetic|train",
        cameras=orbit_cameras(frames) if cameras else None,
        dataset_points=torch.rand(points, 3, generator=generator) - 0.5,
        dataset_colors=torch.randint(0, 256, (points, 3), generator=generator, dtype=torch.uint8),
    )


def test_inputs_must_be_a_video_in_time_order() -> None:
    inputs = make_inputs()
    with pytest.raises(ValueError, match="increase strictly"):
        InitializerInputs(images=inputs.images, times=torch.tensor([0.0, 0.5, 0.5, 1.0]), scene_box=inputs.scene_box,
                          source="x")
    with pytest.raises(ValueError, match="one camera per frame"):
        InitializerInputs(images=inputs.images, times=inputs.times, scene_box=inputs.scene_box, source="x",
                          cameras=orbit_cameras(3))
    mixed = make_inputs()
    mixed.images[0] = torch.zeros(HEIGHT + 1, WIDTH, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="mixes image sizes"):
        mixed.video()
    assert torch.equal(inputs.video()[2].permute(1, 2, 0), inputs.images[2].float() / 255.0)


# ---------------------------------------------------------------------------------------------------------- geometry


def test_switch_c2w_camera_axes_is_an_involution_matching_the_view_matrix() -> None:
    c2w_gl = orbit_cameras(3).camera_to_worlds
    c2w_cv = switch_c2w_camera_axes(c2w_gl)
    assert torch.equal(switch_c2w_camera_axes(c2w_cv), c2w_gl)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(3, 1, 4)
    # the OpenCV camera-to-world pose is the inverse of gsplat's (independently computed) world-to-camera matrix
    inverse = torch.linalg.inv(torch.cat([c2w_cv, bottom], dim=1))
    torch.testing.assert_close(inverse, viewmat_from_nerfstudio_c2w(c2w_gl), atol=1e-5, rtol=0)
    # OpenCV cameras look along +z: the scene centre (origin) has positive depth in every camera
    assert bool((inverse[:, 2, 3] > 0).all())


# ---------------------------------------------------------------------------------------------------------- dataset-points, random


def test_dataset_points_returns_the_dataparser_points() -> None:
    inputs = make_inputs()
    result = DatasetPointsInitializerConfig().setup().initialize(inputs)
    assert torch.equal(result.points, inputs.dataset_points) and torch.equal(result.colors, inputs.dataset_colors)
    assert result.velocities is None and result.point_times is None and result.camera_to_worlds is None


def test_dataset_points_without_points_names_the_alternatives() -> None:
    inputs = make_inputs()
    inputs.dataset_points = inputs.dataset_colors = None
    with pytest.raises(ValueError, match="no seed points") as error:
        DatasetPointsInitializerConfig().setup().initialize(inputs)
    assert "pipeline.initializer:random" in str(error.value) and "pipeline.initializer:flow4r" in str(error.value)


def test_random_points_in_the_scene_box_are_seeded_and_inside() -> None:
    inputs = make_inputs(cameras=False)
    config = RandomInitializerConfig(num_points=500, region="scene-box", seed=3)
    first, again = config.setup().initialize(inputs), config.setup().initialize(inputs)
    other = RandomInitializerConfig(num_points=500, region="scene-box", seed=4).setup().initialize(inputs)
    assert first.points.shape == (500, 3) and first.colors.shape == (500, 3) and first.colors.dtype == torch.uint8
    assert torch.equal(first.points, again.points) and torch.equal(first.colors, again.colors)
    assert not torch.equal(first.points, other.points)
    assert bool((first.points >= -1).all() and (first.points <= 1).all())
    # uniform: every octant of the box is populated roughly equally (500/8 ≈ 62 each)
    octants = ((first.points > 0).long() * torch.tensor([1, 2, 4])).sum(-1).bincount(minlength=8)
    assert int(octants.min()) > 30


def test_random_points_in_the_camera_frusta_are_all_seen_by_a_camera() -> None:
    inputs = make_inputs()
    box = RandomInitializerConfig(num_points=2000, region="scene-box").setup().initialize(inputs)
    frusta = RandomInitializerConfig(num_points=2000, region="camera-frusta").setup().initialize(inputs)
    reference_box = opengl_visible(box.points, inputs.cameras)
    assert torch.equal(visible_in_any_camera(box.points, inputs.cameras), reference_box)
    assert 0.05 < float(reference_box.float().mean()) < 0.95  # the region test is not trivially all/none
    assert frusta.points.shape == (2000, 3) and bool(opengl_visible(frusta.points, inputs.cameras).all())


def test_random_points_with_an_unseen_scene_box_is_an_error() -> None:
    inputs = make_inputs()
    inputs.scene_box = torch.tensor([[50.0, 50.0, 50.0], [51.0, 51.0, 51.0]])  # behind every camera's view
    with pytest.raises(ValueError, match="region scene-box"):
        RandomInitializerConfig(num_points=10).setup().initialize(inputs)


# ---------------------------------------------------------------------------------------------------------- cache


class CountingRandomConfig(RandomInitializerConfig):
    """Counts calls of ``initialize`` (the cache must not call it on a hit)."""

    calls = 0

    def setup(self, **kwargs):
        initializer = super().setup(**kwargs)
        original = initializer.initialize

        def counted(*args, **kw):
            CountingRandomConfig.calls += 1
            return original(*args, **kw)

        initializer.initialize = counted
        return initializer


def test_cache_reuses_and_invalidates(tmp_path: Path) -> None:
    CountingRandomConfig.calls = 0
    inputs = make_inputs()
    config = CountingRandomConfig(num_points=50)
    first = load_or_compute_initialization(config.setup(), inputs, tmp_path)
    second = load_or_compute_initialization(config.setup(), inputs, tmp_path)
    assert CountingRandomConfig.calls == 1 and len(list(tmp_path.glob("initialization_random_*.npz"))) == 1
    assert torch.equal(first.points, second.points) and torch.equal(first.colors, second.colors)

    changed_config = load_or_compute_initialization(CountingRandomConfig(num_points=60).setup(), inputs, tmp_path)
    assert CountingRandomConfig.calls == 2 and changed_config.num_points == 60

    changed_images = make_inputs()
    changed_images.images[1] = changed_images.images[1].clone()
    changed_images.images[1][0, 0, 0] ^= 1
    load_or_compute_initialization(config.setup(), changed_images, tmp_path)
    assert CountingRandomConfig.calls == 3

    changed_cameras = make_inputs()
    changed_cameras.cameras.camera_to_worlds[2, 0, 3] += 1e-3
    load_or_compute_initialization(config.setup(), changed_cameras, tmp_path)
    assert CountingRandomConfig.calls == 4

    changed_times = make_inputs()
    changed_times.times = torch.tensor([0.0, 0.2, 0.6, 1.0])
    load_or_compute_initialization(config.setup(), changed_times, tmp_path)
    assert CountingRandomConfig.calls == 5 and len(list(tmp_path.glob("*.npz"))) == 5

    # float frames are keyed by the uint8 pixels the initializer sees: same pixels, same key
    float_frames = make_inputs()
    float_frames.images = [image.float() / 255.0 for image in float_frames.images]
    assert initialization_cache_key(config.setup(), float_frames) == initialization_cache_key(config.setup(), inputs)


def test_cache_ignores_a_file_of_another_key(tmp_path: Path) -> None:
    inputs = make_inputs()
    initializer = RandomInitializerConfig(num_points=20).setup()
    key = initialization_cache_key(initializer, inputs)
    path = cache_file(tmp_path, initializer, key)
    load_or_compute_initialization(initializer, inputs, tmp_path)
    assert load_initialization(path, key) is not None
    assert load_initialization(path, "0" * 64) is None


def test_cache_round_trips_every_optional_field(tmp_path: Path) -> None:
    from fourd_ns.initializers.cache import save_initialization

    result = InitializerResult(
        points=torch.randn(5, 3),
        colors=torch.randint(0, 256, (5, 3), dtype=torch.uint8),
        point_times=torch.rand(5),
        velocities=torch.randn(5, 3),
        camera_to_worlds=torch.randn(2, 3, 4),
        intrinsics=torch.randn(2, 3, 3),
    )
    save_initialization(result, tmp_path / "x.npz", "k")
    loaded = load_initialization(tmp_path / "x.npz", "k")
    for name in ("points", "colors", "point_times", "velocities", "camera_to_worlds", "intrinsics"):
        assert torch.equal(getattr(loaded, name), getattr(result, name)), name


# ---------------------------------------------------------------------------------------------------------- feed-forward pieces


def test_select_confident_pixels_matches_the_quantile() -> None:
    generator = torch.Generator().manual_seed(0)
    confidence = 1 + torch.rand(3, 4, 5, generator=generator) * 10
    finite = torch.ones(3, 4, 5, dtype=torch.bool)
    finite[0, 0, 0] = False
    chosen, threshold = select_confident_pixels(confidence, finite, 0.5, 1000, torch.Generator().manual_seed(1))
    reference = torch.quantile(confidence.reshape(-1)[finite.reshape(-1)], 0.5, interpolation="lower")
    assert threshold == pytest.approx(float(reference))
    expected = torch.nonzero(finite.reshape(-1) & (confidence.reshape(-1) >= reference)).squeeze(1)
    assert torch.equal(chosen, expected)
    subset, _ = select_confident_pixels(confidence, finite, 0.5, 7, torch.Generator().manual_seed(1))
    assert subset.shape == (7,) and bool(torch.isin(subset, expected).all()) and bool((subset.diff() > 0).all())


def test_track_velocities_are_exact_for_linear_and_quadratic_motion() -> None:
    times = torch.tensor([0.0, 0.1, 0.35, 0.5, 1.0], dtype=torch.float64)
    velocity = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], dtype=torch.float64)
    start = torch.randn(2, 3, dtype=torch.float64)
    linear = start + times[:, None, None] * velocity
    torch.testing.assert_close(track_velocities(linear, times), velocity.expand(5, 2, 3))
    acceleration = torch.tensor([[2.0, 0.0, -4.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    quadratic = linear + 0.5 * times[:, None, None] ** 2 * acceleration
    exact = velocity + times[:, None, None] * acceleration
    # second-order central differences are exact for quadratics in the interior
    torch.testing.assert_close(track_velocities(quadratic, times)[1:-1], exact[1:-1])


def test_lift_correspondences_matches_pixel_indexing() -> None:
    points = torch.randn(2, 3, 4, 3)
    vs, us = torch.meshgrid(torch.arange(3) + 0.5, torch.arange(4) + 0.5, indexing="ij")
    identity = torch.stack([us, vs], dim=-1).expand(2, 3, 4, 2)
    lifted, inside = lift_correspondences(points, identity)
    torch.testing.assert_close(lifted, points)
    assert bool(inside.all())
    shifted = identity + torch.tensor([1.0, 0.0])  # one pixel to the right
    lifted, inside = lift_correspondences(points, shifted)
    torch.testing.assert_close(lifted[:, :, :3], points[:, :, 1:])
    assert bool(inside[:, :, :3].all()) and not bool(inside[:, :, 3].any())
    halfway = identity + torch.tensor([0.5, 0.0])  # bilinear between two pixel centres
    lifted, _ = lift_correspondences(points, halfway)
    torch.testing.assert_close(lifted[:, :, :3], 0.5 * (points[:, :, :3] + points[:, :, 1:]))


def test_weights_identity_changes_with_the_file(tmp_path: Path) -> None:
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"1234")
    before = weights_identity(str(weights))
    (weights / "model.safetensors").write_bytes(b"123456")
    assert weights_identity(str(weights)) != before
    assert weights_identity("owner/model") == {"hub_id": "owner/model"}


def synthetic_reconstruction(frames: int = 4, height: int = 3, width: int = 4):
    """An anchored reconstruction of known world geometry: cameras ``orbit_cameras``, a similarity ``world_to_anchor``
    (anchor camera frame scaled by 2.5), anchor pixels moving linearly with per-pixel velocities."""
    cameras = orbit_cameras(frames)
    generator = torch.Generator().manual_seed(5)
    start = torch.rand(height * width, 3, generator=generator, dtype=torch.float64) - 0.5
    velocity = torch.randn(height * width, 3, generator=generator, dtype=torch.float64)
    times = torch.linspace(0.0, 1.0, frames, dtype=torch.float64)
    world_tracks = start + times[:, None, None] * velocity  # [T, M, 3]

    c2w_cv = switch_c2w_camera_axes(cameras.camera_to_worlds.double())
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(frames, 1, 4)
    c2w_cv = torch.cat([c2w_cv, bottom], dim=1)
    network_scale = 2.5
    world_to_anchor = sim3_matrix(torch.tensor(network_scale, dtype=torch.float64), c2w_cv[0, :3, :3].T,
                                  -network_scale * c2w_cv[0, :3, :3].T @ c2w_cv[0, :3, 3])
    camera_to_anchor = c2w_cv.clone()
    camera_to_anchor[:, :3, :3] = c2w_cv[0, :3, :3].T @ c2w_cv[:, :3, :3]
    camera_to_anchor[:, :3, 3] = apply_sim3(world_to_anchor, c2w_cv[:, :3, 3])
    anchor_tracks = apply_sim3(world_to_anchor, world_tracks).reshape(frames, height, width, 3)
    intrinsics = cameras.get_intrinsics_matrices()
    confidence = 1 + torch.rand(frames, height, width, generator=generator)
    confidence[0] += 10  # the anchor's self-pair: all its tracks pass the threshold and carry velocities
    reconstruction = SequenceReconstruction(
        anchor=0,
        camera_to_anchor=camera_to_anchor.float(),
        intrinsics=intrinsics,
        points=anchor_tracks.float(),  # every frame sees the anchor's (moving) points
        confidence=confidence,
        tracks=anchor_tracks.float(),
        colors=torch.rand(frames, height, width, 3, generator=generator),
        image_size=(height, width),
    )
    resize = NetworkResize((HEIGHT, WIDTH), (HEIGHT, WIDTH), (0, 0), (HEIGHT, WIDTH))
    return cameras, reconstruction, resize, world_tracks, velocity


def test_feedforward_seeds_are_aligned_to_the_dataset_world() -> None:
    cameras, reconstruction, resize, world_tracks, velocity = synthetic_reconstruction()
    inputs = make_inputs(frames=4)
    inputs.cameras = cameras
    initializer = Flow4RInitializerConfig(
        weights="unused", num_points=20, confidence_quantile=0.25, world_alignment="trajectory"
    ).setup()
    result = initializer.seed_from(reconstruction, reconstruction.tracks, resize, inputs)

    assert result.num_points == 20 and result.point_times.shape == (20,)
    # cameras come back as the dataset's own (the Sim(3) undoes the anchor frame and the network scale)
    torch.testing.assert_close(result.camera_to_worlds, cameras.camera_to_worlds, atol=1e-4, rtol=0)
    torch.testing.assert_close(result.intrinsics, cameras.get_intrinsics_matrices())
    # each seed is a world point at its frame's time, with that point's velocity
    frame_of = torch.round(result.point_times * 3).long()
    for point, frame, v in zip(result.points.double(), frame_of, result.velocities.double()):
        distance, index = (world_tracks[frame] - point).norm(dim=-1).min(dim=0)
        assert float(distance) < 1e-4
        torch.testing.assert_close(v, velocity[index], atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("alignment", ["auto", "anchor-depth"])
def test_anchor_depth_alignment_recovers_the_dataset_world(alignment: str) -> None:
    cameras, reconstruction, resize, world_tracks, _ = synthetic_reconstruction()
    inputs = make_inputs(frames=4)
    inputs.cameras = cameras
    inputs.dataset_points = world_tracks[0].float()  # the anchor's surface points, as an SfM cloud would give them
    initializer = Flow4RInitializerConfig(weights="unused", num_points=50, world_alignment=alignment).setup()
    result = initializer.seed_from(reconstruction, reconstruction.tracks, resize, inputs)
    # the scale comes from depths only, yet the whole trajectory and every seed land where they belong
    torch.testing.assert_close(result.camera_to_worlds, cameras.camera_to_worlds, atol=2e-2, rtol=0)
    frame_of = torch.round(result.point_times * 3).long()
    for point, frame in zip(result.points.double(), frame_of):
        assert float((world_tracks[frame] - point).norm(dim=-1).min()) < 2e-2


def test_anchor_depth_alignment_needs_points_in_view() -> None:
    cameras, reconstruction, resize, _, _ = synthetic_reconstruction()
    inputs = make_inputs(frames=4)
    inputs.cameras = cameras
    inputs.dataset_points = torch.full((5, 3), 1e3)  # far outside every view
    initializer = Flow4RInitializerConfig(weights="unused", world_alignment="anchor-depth").setup()
    with pytest.raises(ValueError, match="in view of the anchor camera"):
        initializer.seed_from(reconstruction, reconstruction.tracks, resize, inputs)
    fallback = Flow4RInitializerConfig(weights="unused", num_points=20, world_alignment="auto").setup()
    result = fallback.seed_from(reconstruction, reconstruction.tracks, resize, inputs)  # falls back to trajectory
    torch.testing.assert_close(result.camera_to_worlds, cameras.camera_to_worlds, atol=1e-4, rtol=0)


def occluded_reconstruction():
    """synthetic_reconstruction, with an occluder in front of the anchor's points in columns 0-1 of frames 1-3 (the
    point maps there show it at half the depth), and identity 2D correspondences lifted into every frame."""
    cameras, reconstruction, resize, world_tracks, velocity = synthetic_reconstruction()
    reconstruction.points = reconstruction.points.clone()
    reconstruction.points[1:, :, :2] *= 0.5  # anchor-camera coordinates: same pixel ray, half the depth
    height, width = reconstruction.image_size
    vs, us = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    identity = torch.stack([us, vs], dim=-1).expand(4, height, width, 2)
    lifted, inside = lift_correspondences(reconstruction.points, identity)
    consistent = consistent_correspondences(lifted, inside, reconstruction.tracks, anchor=0, threshold=0.05)
    return cameras, reconstruction, resize, world_tracks, velocity, LiftedCorrespondences(lifted, consistent)


def test_consistency_check_rejects_occluded_correspondences() -> None:
    *_, correspondences = occluded_reconstruction()
    consistent = correspondences.consistent
    assert not bool(consistent[0].any())  # the anchor's own correspondences add nothing
    assert not bool(consistent[1:, :, :2].any())  # lifted onto the occluder: disagrees with the 3D track
    assert bool(consistent[1:, :, 2:].all())


def test_flow3r_seeds_add_consistent_correspondences_that_flow4r_lacks() -> None:
    cameras, reconstruction, resize, world_tracks, velocity, correspondences = occluded_reconstruction()
    inputs = make_inputs(frames=4)
    inputs.cameras = cameras
    common = dict(weights="unused", num_points=24, confidence_quantile=0.0, world_alignment="trajectory")
    flow4r = Flow4RInitializerConfig(**common).setup().seed_from(reconstruction, reconstruction.tracks, resize, inputs)
    flow3r = Flow3rInitializerConfig(**common, correspondence_share=0.5).setup().seed_from(
        reconstruction, reconstruction.tracks, resize, inputs, correspondences)
    assert flow3r.num_points == flow4r.num_points == 24
    lifted = slice(12, 24)  # the correspondence share comes after the point-map seeds
    frame_of = torch.round(flow3r.point_times * 3).long()
    assert bool((frame_of[lifted] > 0).all())
    for point, frame, v in zip(flow3r.points[lifted].double(), frame_of[lifted], flow3r.velocities[lifted].double()):
        distance, index = (world_tracks[frame] - point).norm(dim=-1).min(dim=0)
        assert float(distance) < 1e-4  # a true surface point of the anchor, never the occluder
        assert int(index) % 4 >= 2
        torch.testing.assert_close(v, velocity[index], atol=1e-3, rtol=1e-4)  # its own track's velocity
    same = torch.cdist(flow3r.points.double(), flow4r.points.double()).min(dim=1).values < 1e-6
    assert not bool(same.all()), "flow3r seeded exactly the flow4r points"
    # a share of 0 seeds exactly like flow4r
    plain = Flow3rInitializerConfig(**common, correspondence_share=0.0).setup().seed_from(
        reconstruction, reconstruction.tracks, resize, inputs, correspondences)
    torch.testing.assert_close(plain.points, flow4r.points)


def test_feedforward_without_cameras_keeps_the_anchor_frame() -> None:
    _, reconstruction, resize, _, _ = synthetic_reconstruction()
    inputs = make_inputs(frames=4, cameras=False)
    initializer = Flow4RInitializerConfig(weights="unused", num_points=1000, confidence_quantile=0.0).setup()
    result = initializer.seed_from(reconstruction, reconstruction.tracks, resize, inputs)
    torch.testing.assert_close(result.points, reconstruction.points.reshape(-1, 3))
    torch.testing.assert_close(result.camera_to_worlds, switch_c2w_camera_axes(reconstruction.camera_to_anchor[:, :3]))


# ---------------------------------------------------------------------------------------------------------- pipeline


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nerfies_scene(tmp_path_factory.mktemp("init_scene") / "scene", num_frames=4, width=WIDTH,
                               height=HEIGHT, num_points=40)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    return {
        "flow4r": save_pretrained(Flow4R(Flow4RConfig.tiny()), folder / "flow4r"),
        "flow3r": save_pretrained(Flow4R(Flow4RConfig.tiny(factored_flow=True)), folder / "flow3r"),
    }


def pipeline_config(scene: Path, initializer, run_dir) -> InitializedPipelineConfig:
    config = copy.deepcopy(deform4d.config.pipeline)
    config.datamanager.data = scene
    config.datamanager.dataparser.data = scene
    config.model.mlp_width, config.model.mlp_depth, config.model.mlp_skips = 16, 3, (1,)
    config.initializer = initializer
    config.run_dir = run_dir
    return config


def test_default_pipeline_seeds_the_dataset_points_as_before(scene: Path, tmp_path: Path) -> None:
    pipeline = pipeline_config(scene, DatasetPointsInitializerConfig(), tmp_path).setup(device="cpu")
    metadata = pipeline.datamanager.train_dataparser_outputs.metadata
    torch.testing.assert_close(pipeline.model.means.detach(), metadata["points3D_xyz"])
    assert len(list(tmp_path.glob("initialization_dataset-points_*.npz"))) == 1


@pytest.mark.parametrize("name", ["flow4r", "flow3r"])
def test_feedforward_pipeline_end_to_end(name: str, scene: Path, tiny_weights: dict, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config_type = Flow4RInitializerConfig if name == "flow4r" else Flow3rInitializerConfig
    initializer = config_type(weights=str(tiny_weights[name]), num_points=100, long_side=64, batch_size=2)
    pipeline = pipeline_config(scene, initializer, tmp_path).setup(device="cpu")
    result = pipeline.initialization
    assert result.num_points == 100 and bool(torch.isfinite(result.points).all())
    assert bool(torch.isfinite(result.velocities).all()) and result.velocities.shape == (100, 3)
    video_times = pipeline.datamanager.train_dataset.cameras.times.reshape(-1)
    assert set(result.point_times.tolist()) <= set(video_times.tolist())
    # the model starts from exactly these points and colours
    torch.testing.assert_close(pipeline.model.means.detach(), result.points)
    # predicted cameras stay rigid poses after the Sim(3) (random weights: no accuracy to assert)
    rotations = result.camera_to_worlds[:, :, :3]
    torch.testing.assert_close(rotations.transpose(1, 2) @ rotations, torch.eye(3).expand(4, 3, 3), atol=1e-4, rtol=0)
    assert len(list(tmp_path.glob(f"initialization_{name}_*.npz"))) == 1

    # a second run with the same inputs loads the cache instead of running the network
    def no_network(*args, **kwargs):
        raise AssertionError("the network ran although the result was cached")

    monkeypatch.setattr("fourd_ns.initializers.feedforward.reconstruct_sequence", no_network)
    again = pipeline_config(scene, copy.deepcopy(initializer), tmp_path).setup(device="cpu")
    torch.testing.assert_close(again.initialization.points, result.points)


def test_flow3r_needs_a_factored_flow_checkpoint(tiny_weights: dict) -> None:
    initializer = Flow3rInitializerConfig(weights=str(tiny_weights["flow4r"])).setup()
    with pytest.raises(ValueError, match="no factored-flow head"):
        initializer.load_model()


def test_feedforward_refuses_untrained_heads(tiny_weights: dict, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "headless"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_weights["flow4r"] / "config.json").read_text())
    state = load_file(str(tiny_weights["flow4r"] / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("downstream_head.")}, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match="does not hold a trained Flow4R"):
        Flow4RInitializerConfig(weights=str(folder)).setup().load_model()


def test_missing_weights_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="could not find"):
        Flow4RInitializerConfig(weights=str(tmp_path / "nothing")).setup().load_model()


def test_cli_selects_an_initializer_subcommand() -> None:
    for method in (deform4d, flag4d):
        parsed = tyro.cli(
            tyro.conf.SuppressFixed[tyro.conf.FlagConversionOff[type(method.config)]],
            default=method.config,
            args=["pipeline.initializer:flow4r", "--pipeline.initializer.weights", "owner/flow4r",
                  "--pipeline.initializer.num-points", "77", "nerfies-data", "--data", "/data/scene"],
        )
        assert isinstance(parsed.pipeline.initializer, Flow4RInitializerConfig)
        assert parsed.pipeline.initializer.weights == "owner/flow4r" and parsed.pipeline.initializer.num_points == 77
        assert str(parsed.pipeline.datamanager.dataparser.data) == "/data/scene"
        default = tyro.cli(tyro.conf.SuppressFixed[tyro.conf.FlagConversionOff[type(method.config)]],
                           default=method.config, args=[])
        assert isinstance(default.pipeline.initializer, DatasetPointsInitializerConfig)


def test_configs_saved_before_the_initializer_still_load() -> None:
    old = copy.deepcopy(flag4d.config)
    del old.pipeline.__dict__["initializer"], old.pipeline.__dict__["run_dir"]  # what an older config.yml holds
    text = yaml.dump(old)
    assert "initializer" not in text
    loaded = yaml.load(text, Loader=yaml.Loader)
    assert isinstance(loaded.pipeline, FlowGuidedPipelineConfig)
    assert isinstance(loaded.pipeline.initializer, DatasetPointsInitializerConfig) and loaded.pipeline.run_dir is None


def test_ns_train_with_flow4r_then_eval_skips_the_initializer(scene: Path, tiny_weights: dict, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The command a user types; the run folder gets the cache (the trainer handed it over), ns-eval's pipeline set-up
    takes the Gaussians from the checkpoint and never runs the initializer."""
    command = [
        str(Path(sys.executable).parent / "ns-train"), "deform4d", "--data", str(scene),
        "--machine.device-type", "cpu", "--vis", "tensorboard", "--viewer.quit-on-train-completion", "True",
        "--max-num-iterations", "2", "--steps-per-save", "2", "--output-dir", str(tmp_path), "--timestamp", "run",
        "--pipeline.model.mlp-width", "32", "--pipeline.model.mlp-depth", "3", "--pipeline.model.mlp-skips", "1",
        "pipeline.initializer:flow4r", "--pipeline.initializer.weights", str(tiny_weights["flow4r"]),
        "--pipeline.initializer.long-side", "64", "--pipeline.initializer.num-points", "60",
        "nerfies-data", "--downscale-factor", "1",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=dict(os.environ, TORCHDYNAMO_DISABLE="1"), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = tmp_path / scene.name / "deform4d" / "run"
    cached = list(run_dir.glob("initialization_flow4r_*.npz"))
    assert len(cached) == 1 and np.load(cached[0])["points"].shape == (60, 3)

    def refuse(*args, **kwargs):
        raise AssertionError("ns-eval ran the initializer")

    monkeypatch.setattr("fourd_ns.pipelines.initialized_pipeline.load_or_compute_initialization", refuse)
    config, pipeline, checkpoint, step = eval_setup(run_dir / "config.yml", test_mode="test")
    assert isinstance(config.pipeline.initializer, Flow4RInitializerConfig)
    assert isinstance(pipeline, InitializedPipeline) and pipeline.initialization is None and step == 1
    state = torch.load(checkpoint, map_location="cpu")["pipeline"]
    torch.testing.assert_close(pipeline.model.means.detach(), state["_model.gauss_params.means"])
