"""Tests of G3R's core on tiny inputs: gradient lifting against autograd, the step schedule, G3R-Net (zero start,
translation invariance, shared / separate networks, config round trip), one reconstruction step, LiDAR seeding and
camera views of a tiny PandaSet-layout log (``tests/pandaset_fixture.py``), and the scene collection's draws."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

import pandaset_fixture as pf
from fourd_ns.dataparsers.pandaset_dataparser import PandaSetDataParserConfig
from fourd_ns.datasets.driving_log_views import DrivingLogViews, interleaved_split, read_log_views
from fourd_ns.datasets.scene_collection import SceneCollection, SceneCollectionConfig, expand_log_folders
from fourd_ns.networks.g3r_net import PART_KINDS, TINY_NETWORK, G3RLearnedOptimizer, G3RNetworkConfig
from fourd_ns.reconstruction.g3r_reconstruction import (
    G3RReconstruction,
    G3RStepConfig,
    channel_step_scale,
    flatness_loss,
)
from fourd_ns.reconstruction.g3r_scene import G3RSeedingConfig, seed_g3r_scene
from fourd_ns.reconstruction.gradient_lifting import lift_gradients, normalise_gradient
from fourd_ns.reconstruction.step_schedule import step_encoding, step_size
from fourd_ns.reconstruction.views import CameraView, cameras_from_views, views_from_cameras
from fourd_ns.scene.driving_scene import DrivingScene
from fourd_ns.scene.far_field import FarFieldConfig
from fourd_ns.scene.lidar_seeding import LidarSeedingConfig
from fourd_ns.scene.neural_gaussians import EXPLICIT_CHANNELS, LATENT, POSITION

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PARSER = PandaSetDataParserConfig(cameras=("front",), downscale_factor=1, max_seed_points=1)
SEEDING = G3RSeedingConfig(
    lidar=LidarSeedingConfig(voxel_size=0.15, max_background_points=400, max_points_per_actor=60,
                             min_points_per_actor=20),
    far=FarFieldConfig(num_latitudes=4, num_longitudes=16),
)  # fmt: skip
LATENT_DIM = TINY_NETWORK["latent_dim"]
CHANNELS = EXPLICIT_CHANNELS + LATENT_DIM


def tiny_network(seed: int = 0, **overrides) -> G3RLearnedOptimizer:
    torch.manual_seed(seed)
    return G3RLearnedOptimizer(G3RNetworkConfig(**{**TINY_NETWORK, **overrides}))


def randomise_heads(network: G3RLearnedOptimizer, seed: int = 1, std: float = 0.3) -> G3RLearnedOptimizer:
    """Give every head a non-zero last layer, so that Δ depends on the inputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for net in network.nets.values():
            for parameter in net.head[-1].parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return network


@pytest.fixture(scope="module")
def log_root(tmp_path_factory) -> Path:
    return pf.write_pandaset_log(tmp_path_factory.mktemp("g3r") / "001", num_frames=6).root


@pytest.fixture(scope="module")
def log(log_root) -> DrivingLogViews:
    """The 6-frame fixture log, front camera at 64 × 36, read as views."""
    return read_log_views(log_root, PARSER)


@pytest.fixture(scope="module")
def seeded(log):
    """(sources = even frames, targets = odd frames, scene seeded from the sources)."""
    sources_frames, target_frames = interleaved_split(log.frames())
    sources, targets = log.views_of_frames(sources_frames), log.views_of_frames(target_frames)
    scene = seed_g3r_scene(log.driving, sources, SEEDING, LATENT_DIM, torch.Generator().manual_seed(0))
    return sources, targets, scene


def reconstruction(network: G3RLearnedOptimizer, log: DrivingLogViews, **step_options) -> G3RReconstruction:
    return G3RReconstruction(network, G3RStepConfig(**{"num_steps": 4, **step_options}),
                             log.driving.metres_per_unit)  # fmt: skip


# ------------------------------------------------------------------------------------------------ gradient lifting
def test_lifting_equals_autograd_of_the_summed_loss_and_ignores_view_order(log, seeded):
    sources, _, scene = seeded
    network = tiny_network()
    rec = reconstruction(network, log)
    states = scene.states

    def view_loss(leaves, index):
        return rec.source_loss(scene, leaves, sources[index])

    grads, total = lift_gradients(states, view_loss, range(len(sources)))
    assert all(parameter.grad is None for parameter in network.parameters())  # stop-gradient inputs only

    leaves = {name: state.detach().requires_grad_(True) for name, state in states.items()}
    summed = sum(rec.source_loss(scene, leaves, view) for view in sources)
    expected = torch.autograd.grad(summed, list(leaves.values()), allow_unused=True)
    assert total == pytest.approx(float(summed.detach()), rel=1e-6)
    for (name, grad), reference in zip(grads.items(), expected):
        reference = torch.zeros_like(grad) if reference is None else reference
        scale = float(reference.abs().max()) or 1.0
        assert torch.allclose(grad, reference, rtol=1e-4, atol=1e-6 * scale), name
    assert float(grads["background"].abs().max()) > 0
    assert float(grads["background"][:, LATENT].abs().max()) > 0  # the latent renders through the decoder

    for order in (list(reversed(range(len(sources)))), [1, 2, 0]):
        permuted, permuted_total = lift_gradients(states, view_loss, order)
        assert permuted_total == pytest.approx(total, rel=1e-6)
        for name, grad in grads.items():
            scale = float(grad.abs().max()) or 1.0
            assert torch.allclose(permuted[name], grad, rtol=1e-5, atol=1e-6 * scale), (order, name)


def test_lifting_counts_a_view_that_sees_nothing_in_the_loss_only(log):
    view = log.views[0]
    empty = {"background": torch.zeros(0, CHANNELS)}
    scene = DrivingScene.from_parts(empty["background"])
    rec = reconstruction(tiny_network(), log)
    grads, total = lift_gradients(empty, lambda leaves, i: rec.source_loss(scene, leaves, view), [0])
    assert grads["background"].shape == (0, CHANNELS)
    assert total == pytest.approx(float(view.image.square().mean()), rel=1e-6)  # black render against the image


def test_normalise_gradient_per_channel():
    generator = torch.Generator().manual_seed(0)
    grad = torch.randn(50, 6, generator=generator) * torch.tensor([1e-6, 1.0, 1e3, 0.0, 5.0, -2.0])
    grad[:, 3] = 0.0
    normalised = normalise_gradient(grad)
    peak = normalised.abs().amax(dim=0)
    assert torch.allclose(peak[[0, 1, 2, 4, 5]], torch.ones(5))
    assert torch.equal(normalised[:, 3], torch.zeros(50))  # a zero channel stays zero, no NaN
    assert torch.equal(torch.sign(normalised), torch.sign(grad))
    for channel in (0, 2, 5):  # each channel is a positive multiple of the gradient's, whatever its magnitude
        assert torch.allclose(normalised[:, channel], grad[:, channel] / grad[:, channel].abs().max(), rtol=1e-6)
    assert normalise_gradient(torch.zeros(0, 6)).shape == (0, 6)


# ------------------------------------------------------------------------------------------------ step schedule
def test_cosine_step_size_starts_at_one_and_decreases():
    for total in (24, 12, 5):
        gammas = [step_size(t, total) for t in range(total)]
        assert gammas[0] == pytest.approx(1.0)
        assert all(b < a for a, b in zip(gammas, gammas[1:])), total
        assert 0 < gammas[-1] < 0.2
    assert step_size(0, 1) == pytest.approx(1.0)
    for t in range(12):  # a function of t / T: turbo visits the full schedule at half the resolution
        assert step_size(t, 12) == pytest.approx(step_size(2 * t, 24))
    assert [step_size(t, 7, "constant", 0.3) for t in range(7)] == [0.3] * 7
    with pytest.raises(ValueError, match="outside"):
        step_size(24, 24)
    with pytest.raises(ValueError, match="Unknown step schedule"):
        step_size(0, 24, "linear")  # type: ignore[arg-type]


def test_step_encoding():
    codes = torch.stack([step_encoding(t, 24, 16) for t in range(24)])
    assert codes.shape == (24, 16) and codes.dtype == torch.float32
    assert torch.allclose(codes[0], torch.cat([torch.zeros(8), torch.ones(8)]))
    assert torch.allclose(codes[:, :8].square() + codes[:, 8:].square(), torch.ones(24, 8), atol=1e-6)
    assert torch.unique(codes, dim=0).shape[0] == 24  # every step is told apart
    with pytest.raises(ValueError, match="even"):
        step_encoding(0, 24, 15)


# ------------------------------------------------------------------------------------------------ G3R-Net
def random_part(count: int = 200, seed: int = 0, extent: float = 4.0):
    generator = torch.Generator().manual_seed(seed)
    state = torch.randn(count, CHANNELS, generator=generator)
    state[:, POSITION] = torch.rand(count, 3, generator=generator) * extent
    gradient = normalise_gradient(torch.randn(count, CHANNELS, generator=generator))
    return state, gradient


def test_untrained_networks_start_from_no_update_or_a_normalised_descent_step(log, seeded):
    sources, _, scene = seeded
    state, gradient = random_part()
    plain = tiny_network(gradient_gain=0.0)  # the paper's network: zero-initialised head, no gradient path
    code = step_encoding(0, 4, plain.config.step_encoding_channels)
    assert not any(name.endswith("gradient_gain") for name, _ in plain.named_parameters())
    for kind in PART_KINDS:
        assert torch.equal(plain.update(kind, state, gradient, 0.5, code), torch.zeros_like(state)), kind
    updated, report = reconstruction(plain, log).step(scene, scene.states, sources, 0)
    assert report.gamma == 1.0 and report.source_loss > 0
    for name, value in scene.states.items():
        assert torch.equal(updated[name], value), name  # the untrained optimizer leaves the scene as seeded

    default = tiny_network()  # with the gradient skip path: Δ = tanh(−gain · ĝ) before any training
    gain = default.config.gradient_gain
    assert gain > 0
    with torch.no_grad():
        for kind in PART_KINDS:
            expected = torch.tanh(-gain * gradient)
            assert torch.allclose(default.update(kind, state, gradient, 0.5, code), expected, atol=1e-6), kind
        states, reports = reconstruction(default, log).run(scene, sources)
        final = reconstruction(default, log).lift(scene, states, sources)[1]
    assert final < 0.8 * reports[0].source_loss  # four descent steps on the cosine schedule lower the loss


@pytest.mark.parametrize("kind", ["background", "actor"])
def test_network_inputs_and_update_are_invariant_to_whole_voxel_shifts(kind):
    network = randomise_heads(tiny_network())
    voxel = 0.5
    state, gradient = random_part()
    code = step_encoding(1, 4, network.config.step_encoding_channels)
    with torch.no_grad():
        inputs = network.network_inputs(kind, state, gradient, voxel)
        delta = network.update(kind, state, gradient, voxel, code)
        assert float(delta.abs().max()) > 0.05
        # one voxel (not a multiple of the U-Net's coarsest stride), a few voxels, and a large shift
        for shift in ([voxel, 0.0, 0.0], [3 * voxel, -voxel, 2 * voxel], [40 * voxel, 8 * voxel, -12 * voxel]):
            moved = state.clone()
            moved[:, POSITION] += torch.tensor(shift)
            assert torch.allclose(network.network_inputs(kind, moved, gradient, voxel), inputs, atol=1e-5), shift
            assert torch.allclose(network.update(kind, moved, gradient, voxel, code), delta, atol=1e-5), shift
        # … while a different gradient changes the update: the test above is not vacuous
        other = network.update(kind, state, gradient.flip(0), voxel, code)
        assert float((other - delta).abs().max()) > 0.05


def test_separate_and_shared_networks():
    separate = randomise_heads(tiny_network())
    assert sorted(separate.nets) == sorted(PART_KINDS)
    shapes = {kind: [p.shape for p in net.parameters()] for kind, net in separate.nets.items()}
    assert shapes["background"] == shapes["actor"] == shapes["far"]  # identical architecture …
    state, gradient = random_part()
    code = step_encoding(0, 4, separate.config.step_encoding_channels)
    with torch.no_grad():
        deltas = {kind: separate.update(kind, state, gradient, 0.5, code) for kind in PART_KINDS}
        assert not torch.allclose(deltas["background"], deltas["actor"])  # … separate weights
        separate.nets["actor"].head[-1].bias.add_(1.0)
        assert torch.equal(separate.update("background", state, gradient, 0.5, code), deltas["background"])

    shared = randomise_heads(tiny_network(networks="shared"))
    assert list(shared.nets) == ["shared"]
    inputs = shared.network_inputs("actor", state, gradient, 0.5)
    assert inputs.shape == (200, 2 * CHANNELS + len(PART_KINDS))
    assert torch.equal(inputs[:, -3:], torch.tensor([0.0, 1.0, 0.0]).expand(200, 3))  # the part one-hot
    with torch.no_grad():
        background = shared.update("background", state, gradient, 0.5, code)
        actor = shared.update("actor", state, gradient, 0.5, code)
    assert not torch.allclose(background, actor)  # the part embedding reaches the update
    assert sum(p.numel() for p in shared.parameters()) < sum(p.numel() for p in separate.parameters())
    with pytest.raises(ValueError, match="Unknown part kind"):
        shared.update("sky", state, gradient, 0.5, code)
    with pytest.raises(ValueError, match="separate' or 'shared"):
        tiny_network(networks="both")


def test_empty_parts_get_empty_updates(log, seeded):
    sources, _, scene = seeded
    network = randomise_heads(tiny_network())
    code = step_encoding(0, 4, network.config.step_encoding_channels)
    for kind in PART_KINDS:
        empty = torch.zeros(0, CHANNELS)
        assert network.update(kind, empty, empty, 0.5, code).shape == (0, CHANNELS)
    actor = scene.names_of("actor")[0]
    states = dict(scene.states)
    states[actor] = torch.zeros(0, CHANNELS)
    updated, _ = reconstruction(network, log).step(scene.with_states(states), states, sources, 0)
    assert updated[actor].shape == (0, CHANNELS)
    assert not torch.equal(updated["background"], states["background"])


def test_batched_parts_equal_separate_calls_without_shared_norm_statistics():
    """Actors batched into one U-Net call (laid apart in voxel space) get the updates of separate calls when no
    statistics are shared (norm "none"); with group norm they share the statistics, nothing else."""
    network = randomise_heads(tiny_network(norm="none"))
    code = step_encoding(1, 4, network.config.step_encoding_channels)
    parts = [random_part(count, seed) for count, seed in ((50, 1), (0, 2), (120, 3), (1, 4))]
    batched = network.update_parts("actor", [s for s, _ in parts], [g for _, g in parts], 0.5, code)
    for (state, gradient), delta in zip(parts, batched):
        alone = network.update("actor", state, gradient, 0.5, code)
        assert delta.shape == state.shape and torch.allclose(delta, alone, atol=1e-5)


def test_network_config_round_trip_and_unknown_keys():
    config = G3RNetworkConfig(**TINY_NETWORK, networks="shared", norm="none")
    stored = json.loads(json.dumps(config.to_dict()))
    assert stored["encoder_channels"] == [8, 16]
    assert G3RNetworkConfig.from_dict(stored) == config
    assert G3RNetworkConfig.from_dict({}) == G3RNetworkConfig()
    assert config.state_channels == EXPLICIT_CHANNELS + TINY_NETWORK["latent_dim"]
    with pytest.raises(ValueError, match=r"Unknown G3R network settings \['hidden_size'\]"):
        G3RNetworkConfig.from_dict({**stored, "hidden_size": 3})


# ------------------------------------------------------------------------------------------------ reconstruction
def test_one_step_is_bounded_by_gamma_times_step_scale(log, seeded):
    sources, _, scene = seeded
    network = randomise_heads(tiny_network())
    rec = reconstruction(network, log)
    step = 1
    with torch.no_grad():
        updated, report = rec.step(scene, scene.states, sources, step)
    assert report.gamma == pytest.approx(step_size(step, 4)) and report.gamma < 1
    moved = 0
    for name, state in scene.states.items():
        kind = scene.kinds[name]
        bound = report.gamma * channel_step_scale(rec.config, CHANNELS, rec.voxel_size(kind, state), state.device)
        change = (updated[name] - state).abs()
        assert bool((change <= bound * (1 + 1e-5) + 1e-7).all()), name
        moved += int((change > 1e-3 * bound).any(dim=1).sum())
    assert moved > 0.5 * scene.num_gaussians  # a bound that nothing comes near would say nothing
    # voxel sizes: metres for background / actors, a fraction of the radius for the far field
    assert rec.voxel_size("background", scene.states["background"]) == pytest.approx(
        0.5 / log.driving.metres_per_unit)
    with pytest.raises(ValueError, match="Unknown part kind"):
        rec.voxel_size("sky", scene.states["background"])


def test_step_carries_gradients_to_the_network_and_run_works_without(log, seeded):
    sources, _, scene = seeded
    network = randomise_heads(tiny_network())
    rec = reconstruction(network, log)
    with torch.enable_grad():
        updated, _ = rec.step(scene, scene.states, sources, 0)
    assert all(state.requires_grad for state in updated.values())
    sum(state.square().sum() for state in updated.values()).backward()
    for kind, net in network.nets.items():
        assert net.head[-1].weight.grad is not None and float(net.head[-1].weight.grad.abs().sum()) > 0, kind
        assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in net.unet.parameters()), kind
    assert all(p.grad is None for p in network.decoder.parameters())  # the update does not decode
    network.zero_grad(set_to_none=True)

    seen: List[Dict[str, torch.Tensor]] = []
    states, reports = rec.run(scene, sources, on_step=lambda s, r: seen.append(s))
    assert [r.step for r in reports] == [0, 1, 2, 3] and len(seen) == 4
    assert [r.gamma for r in reports] == pytest.approx([step_size(t, 4) for t in range(4)])
    assert not any(state.requires_grad for state in states.values())
    assert all(p.grad is None for p in network.parameters())
    assert all(torch.equal(states[name], seen[-1][name]) for name in states)
    # each report's loss is that of the state its step started from
    assert reports[1].source_loss == pytest.approx(rec.lift(scene, seen[0], sources)[1], rel=1e-5)
    assert reports[0].source_loss != pytest.approx(reports[1].source_loss)


def test_flatness_loss():
    state = torch.zeros(2, CHANNELS)
    state[0, 3:6] = torch.log(torch.tensor([0.5, 0.2, 0.03]))
    state[1, 3:6] = torch.log(torch.tensor([0.005, 1.0, 1.0]))
    assert float(flatness_loss(state, 0.01)) == pytest.approx((0.03 - 0.01 + 0.0) / 2, rel=1e-5)
    assert float(flatness_loss(torch.zeros(0, CHANNELS), 0.01)) == 0.0


# ------------------------------------------------------------------------------------------------ views, seeding
def test_views_of_a_log_have_lidar_depth_and_sweeps(log):
    lidar = log.driving.lidar
    assert log.frames() == list(range(6)) and len(log.views) == 6
    for view in log.views:
        assert view.image.shape == (pf.HEIGHT, pf.WIDTH, 3) and float(view.image.max()) <= 1.0
        assert view.lidar_depth is not None and view.lidar_depth.shape == (pf.HEIGHT, pf.WIDTH)
        assert int((view.lidar_depth > 0).sum()) > 20
        assert view.lidar_sweep >= 0 and int(lidar.frame_indices[view.lidar_sweep]) == view.frame_index
        assert 0.0 <= view.time <= 1.0
    assert [v.time for v in log.views] == sorted(v.time for v in log.views)
    assert [v.frame_index for v in log.views_of_frames([4, 1])] == [1, 4]


def test_views_and_cameras_round_trip(log):
    views = log.views[:3]
    cameras = cameras_from_views(views)
    again = views_from_cameras(cameras, [v.image for v in views], [v.frame_index for v in views],
                               lidar_depths=[v.lidar_depth[..., None] for v in views],
                               lidar_sweeps=[v.lidar_sweep for v in views])  # fmt: skip
    for a, b in zip(views, again):
        assert torch.allclose(a.camera_to_world, b.camera_to_world) and torch.allclose(a.intrinsics, b.intrinsics)
        assert a.time == pytest.approx(b.time) and torch.equal(a.lidar_depth, b.lidar_depth)
        assert (a.frame_index, a.lidar_sweep, a.width, a.height) == (b.frame_index, b.lidar_sweep, b.width, b.height)
    with pytest.raises(ValueError, match="is \\(18, 64\\) but its camera is 36x64"):
        views_from_cameras(cameras, [v.image[::2] for v in views], [0, 1, 2])
    with pytest.raises(ValueError, match="3 cameras but 2 images"):
        views_from_cameras(cameras, [v.image for v in views[:2]], [0, 1])
    with pytest.raises(ValueError, match="at least one view"):
        cameras_from_views([])


def test_seeding_uses_only_the_source_frames(log, log_root, seeded):
    sources, targets, scene = seeded
    assert list(scene.kinds.values())[0] == "background" and scene.names_of("far") == ["far"]
    assert scene.names_of("actor") and all(state.shape[1] == CHANNELS for state in scene.states.values())
    assert scene.states["far"].shape[0] == 4 * 16

    lidar = log.driving.lidar

    def sweep_points(views: List[CameraView]) -> np.ndarray:
        return np.concatenate([lidar.points[lidar.sweep_slice(v.lidar_sweep)] for v in views])

    background = scene.states["background"][:, POSITION].double().numpy()
    from_sources, _ = cKDTree(sweep_points(sources)).query(background)
    from_targets, _ = cKDTree(sweep_points(targets)).query(background)
    assert float(from_sources.max()) < 1e-4  # every background Gaussian sits on a point of a source sweep …
    assert float(from_targets.min()) > 1e-3  # … and none on a point of a target sweep (fresh points per frame)

    target_seeded = seed_g3r_scene(log.driving, targets, SEEDING, LATENT_DIM, torch.Generator().manual_seed(0))
    assert not torch.equal(target_seeded.states["background"], scene.states["background"])
    without_far = seed_g3r_scene(log.driving, sources, G3RSeedingConfig(lidar=SEEDING.lidar, far_field=False),
                                 LATENT_DIM, torch.Generator().manual_seed(0))  # fmt: skip
    assert "far" not in without_far.states
    assert torch.equal(without_far.states["background"], scene.states["background"])  # same seed, same latents

    without_lidar = read_log_views(log_root, PandaSetDataParserConfig(cameras=("front",), load_lidar=False,
                                                                      max_seed_points=1))  # fmt: skip
    assert all(v.lidar_sweep == -1 and v.lidar_depth is None for v in without_lidar.views)
    with pytest.raises(ValueError, match="none of the 3 source views has a LiDAR sweep.*--load-lidar True"):
        seed_g3r_scene(without_lidar.driving, without_lidar.views[::2], SEEDING, LATENT_DIM)


# ------------------------------------------------------------------------------------------------ scene collection
@pytest.fixture(scope="module")
def logs_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("logs")
    for name, frames in (("a", 6), ("b", 8)):
        pf.write_pandaset_log(folder / name, num_frames=frames)
    (folder / "not-a-log").mkdir()
    return folder


def collection_config(**options) -> SceneCollectionConfig:
    return SceneCollectionConfig(**{"parser": PARSER, **options})


def test_draws_interleave_sources_and_targets_in_a_window(logs_folder):
    collection = SceneCollection(collection_config(logs=(logs_folder,), sources=3, targets=2))
    assert [p.name for p in collection.paths] == ["a", "b"]
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(30):
        draw = collection.draw(rng)
        frames = draw.log.frames()
        sources = [v.frame_index for v in draw.sources]
        targets = [v.frame_index for v in draw.targets]
        assert len(sources) == 3 and len(targets) == 2
        window = sorted(sources + targets)
        assert window == list(range(window[0], window[0] + 5)) and window[-1] <= frames[-1]  # consecutive
        assert sources == window[0::2] and targets == window[1::2]  # interleaved: source, target, source, …
        starts.add((draw.log.name, window[0]))
    assert len(starts) > 4  # both logs and several windows are drawn
    short = SceneCollection(collection_config(logs=(logs_folder / "a",), sources=10, targets=10))
    draw = short.draw(np.random.default_rng(0))  # the window shrinks to the clip
    assert [v.frame_index for v in draw.sources] == [0, 2, 4] and [v.frame_index for v in draw.targets] == [1, 3, 5]


def test_evaluation_logs_never_yield_odd_position_frames(logs_folder, tmp_path):
    # "b" is both inside the training folder and an evaluation log; it must be drawn once, restricted
    collection = SceneCollection(collection_config(logs=(logs_folder,), evaluation_logs=(logs_folder / "b",),
                                                   sources=2, targets=2))  # fmt: skip
    assert [p.name for p in collection.paths] == ["a", "b"]
    assert collection.usable_frames(1) == [0, 2, 4, 6] and collection.usable_frames(0) == list(range(6))
    rng = np.random.default_rng(1)
    drawn = set()
    for _ in range(40):
        draw = collection.draw(rng, index=1)
        frames = [v.frame_index for v in draw.sources + draw.targets]
        assert all(frame % 2 == 0 for frame in frames), frames
        drawn.update(frames)
    assert drawn == {0, 2, 4, 6}
    # an evaluation entry that is a folder of logs restricts every log in it
    folder = SceneCollection(collection_config(logs=(logs_folder / "a",), evaluation_logs=(logs_folder,)))
    assert [p.name for p in folder.paths] == ["a", "b"] and folder.restricted == {0, 1}
    assert folder.usable_frames(0) == [0, 2, 4]


def test_collection_errors(logs_folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="neither a driving log.*fourd-synth-driving"):
        SceneCollection(collection_config(logs=(empty,)))
    with pytest.raises(FileNotFoundError, match="missing"):
        expand_log_folders((tmp_path / "missing",))
    with pytest.raises(ValueError, match="collection is empty"):
        SceneCollection(collection_config())
    one = pf.write_pandaset_log(tmp_path / "one", num_frames=1).root
    with pytest.raises(ValueError, match="1 usable frame"):
        SceneCollection(collection_config(logs=(one,))).draw(np.random.default_rng(0))
