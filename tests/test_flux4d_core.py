"""Flux4D's pieces against hand-computed values: the motion model, the initial Gaussians of a clip, the velocity
prior and the re-weighting, the image-plane displacement, rendering at a future time, and the refinement's
gradient-to-base switch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pandaset_fixture as pf
from fourd_ns.dataparsers.pandaset_dataparser import PandaSetDataParserConfig
from fourd_ns.datasets.driving_log_views import interleaved_split, read_log_views
from fourd_ns.networks.flux4d_net import TINY_FLUX4D_NETWORK, Flux4DNetwork, Flux4DNetworkConfig, SceneUnits
from fourd_ns.reconstruction.flux4d_losses import (
    Flux4DLossConfig,
    image_plane_displacement,
    velocity_prior,
    view_loss,
)
from fourd_ns.reconstruction.flux4d_reconstruction import Flux4DReconstruction, Flux4DRefinementConfig
from fourd_ns.reconstruction.flux4d_scene import Flux4DSeedingConfig, seed_flux4d_scene
from fourd_ns.reconstruction.view_rendering import ViewRender, render_view
from fourd_ns.reconstruction.views import CameraView
from fourd_ns.scene.far_field import FarFieldConfig
from fourd_ns.scene.flux4d_gaussians import (
    Flux4DLayout,
    decode_at,
    displacement,
    flux4d_state,
    motion_in_metres_per_second,
    positions_at,
    velocities_at,
)
from fourd_ns.scene.gaussian_params import GaussianParams
from fourd_ns.scene.lidar_seeding import LidarSeedingConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PARSER = PandaSetDataParserConfig(cameras=("front",), downscale_factor=2, max_seed_points=1)


def one_gaussian_state(layout: Flux4DLayout, position, motion, time: float, scale: float = 0.05) -> torch.Tensor:
    params = GaussianParams(
        means=torch.tensor([position], dtype=torch.float32), quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
        scales=torch.full((1, 3), scale), opacities=torch.tensor([0.9]), colors=torch.tensor([[1.0, 1.0, 1.0]]),
    )  # fmt: skip
    return flux4d_state(params, torch.tensor([time]), layout, torch.tensor([motion], dtype=torch.float32))


# ------------------------------------------------------------------------------------------------ motion
def test_linear_and_polynomial_motion_against_hand_values() -> None:
    linear = Flux4DLayout(1)
    state = one_gaussian_state(linear, (1.0, 2.0, 3.0), (0.5, -1.0, 2.0), time=0.2)
    assert state.shape == (1, linear.channels) == (1, 18)
    # p(0.6) = p + v (0.6 - 0.2)
    assert torch.allclose(positions_at(state, 0.6, linear), torch.tensor([[1.2, 1.6, 3.8]]), atol=1e-6)
    assert torch.allclose(velocities_at(state, 0.9, linear), torch.tensor([[0.5, -1.0, 2.0]]))

    quadratic = Flux4DLayout(2)
    state = one_gaussian_state(quadratic, (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 2.0, 0.0, -4.0), time=0.5)
    # Δt = -0.5: p = v Δt + ½ a Δt² = (-0.5 + 0.25, 0, -0.5); v(t) = v + a Δt = (1 - 1, 0, 2)
    assert torch.allclose(positions_at(state, 0.0, quadratic), torch.tensor([[-0.25, 0.0, -0.5]]), atol=1e-6)
    assert torch.allclose(velocities_at(state, 0.0, quadratic), torch.tensor([[0.0, 0.0, 2.0]]), atol=1e-6)
    assert torch.allclose(displacement(torch.tensor([[1.0, 0, 0, 2.0, 0, 0]]), 2.0, 2), torch.tensor([[6.0, 0, 0]]))
    decoded = decode_at(state, 0.0, quadratic)
    assert torch.allclose(decoded.means, positions_at(state, 0.0, quadratic))
    assert torch.allclose(decoded.opacities, torch.tensor([0.9]), atol=1e-4)

    # 2 scene units per normalised time, 0.5 m per unit, 1.5 s per unit time: 2 · 0.5 / 1.5 m/s; a: / 1.5 again
    converted = motion_in_metres_per_second(torch.tensor([[2.0, 0, 0, 3.0, 0, 0]]), 0.5, 1.5)
    assert torch.allclose(converted, torch.tensor([[2 / 3, 0, 0, 1.5 / 2.25, 0, 0]]))
    with pytest.raises(ValueError, match="channels"):
        positions_at(torch.zeros(2, 20), 0.0, quadratic)


def test_velocity_prior_is_the_mean_speed_in_metres_per_second() -> None:
    layout = Flux4DLayout(1)
    states = torch.cat([one_gaussian_state(layout, (0, 0, 0), (3.0, 4.0, 0.0), 0.0),
                        one_gaussian_state(layout, (0, 0, 0), (0.0, 0.0, 0.0), 0.0)])  # fmt: skip
    # speeds 5 and 0 units per unit time; 2 m per unit, 0.5 s per unit time -> 20 and 0 m/s
    assert float(velocity_prior(states, layout, 2.0, 0.5)) == pytest.approx(10.0, rel=1e-6)
    prior = velocity_prior(states.requires_grad_(True), layout, 2.0, 0.5)
    prior.backward()
    assert torch.isfinite(states.grad).all()  # finite at v = 0, where every Gaussian starts


def pinhole_view(width: int = 40, height: int = 30, focal: float = 20.0, time: float = 0.0, image=None) -> CameraView:
    """A camera at the origin looking along world -z (nerfstudio/OpenGL axes: identity rotation)."""
    intrinsics = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    return CameraView(camera_to_world=torch.eye(4)[:3], intrinsics=intrinsics,
                      image=torch.zeros(height, width, 3) if image is None else image, time=time, frame_index=0)


def test_image_plane_displacement_and_reweighting_against_hand_values() -> None:
    view = pinhole_view()
    now = torch.tensor([[0.0, 0.0, -2.0], [1.0, 0.0, -2.0], [0.0, 0.0, 1.0]])
    later = torch.tensor([[0.5, 0.0, -2.0], [1.0, 0.2, -2.0], [0.0, 0.0, 2.0]])
    shift = image_plane_displacement(now, later, view)
    # u = f x / z_cv with z_cv = 2: Δu = 20 · 0.5 / 2 = 5 px; OpenGL +y is image up: Δv = -20 · 0.2 / 2 = -2 px
    assert torch.allclose(shift, torch.tensor([[5.0, 0.0], [0.0, -2.0], [0.0, 0.0]]), atol=1e-5)

    image = torch.full((4, 4, 3), 0.5)
    render = ViewRender(rgb=torch.full((4, 4, 3), 0.25), depth=torch.zeros(4, 4), alpha=torch.ones(4, 4),
                        features=torch.zeros(4, 4, 2))  # fmt: skip
    render.features[0, 0] = torch.tensor([3.0, 4.0])  # |v_r| = 5 px: weight 6
    render.features[1, 1] = torch.tensor([30.0, 40.0])  # clipped to 10 px: weight 11
    view = pinhole_view(4, 4, image=image)
    config = Flux4DLossConfig(ssim_weight=0.0, depth_weight=0.0)
    loss, parts = view_loss(render, view, config, 1.0)
    assert parts["l1"] == pytest.approx(0.25)
    assert float(loss) == pytest.approx(0.8 * 0.25 * (14 + 6 + 11) / 16)
    plain, _ = view_loss(render, view, Flux4DLossConfig(ssim_weight=0.0, depth_weight=0.0,
                                                        velocity_reweighting=False), 1.0)  # fmt: skip
    assert float(plain) == pytest.approx(0.8 * 0.25)

    depth_view = pinhole_view(4, 4, image=image)
    depth_view.lidar_depth = torch.zeros(4, 4)
    depth_view.lidar_depth[0, :] = 3.0  # four returns at 3 units; the render says 0 there -> 3 units = 6 m
    with_depth, parts = view_loss(render, depth_view, Flux4DLossConfig(ssim_weight=0.0, velocity_reweighting=False), 2.0)
    assert parts["depth_l1_m"] == pytest.approx(6.0)
    assert float(with_depth) == pytest.approx(0.8 * 0.25 + 0.01 * 6.0)


def test_a_gaussian_rendered_at_a_later_time_is_seen_where_its_velocity_took_it() -> None:
    layout = Flux4DLayout(1)
    # starts on the optical axis 4 units ahead, moves +1 unit along x per unit time
    state = one_gaussian_state(layout, (0.0, 0.0, -4.0), (1.0, 0.0, 0.0), time=0.0, scale=0.08)
    network = Flux4DNetwork(Flux4DNetworkConfig(motion_order=1, **TINY_FLUX4D_NETWORK))
    reconstruction = Flux4DReconstruction(network, Flux4DRefinementConfig(), SceneUnits(1.0, 1.0))
    columns = []
    for time in (0.0, 0.8):
        render = reconstruction.render({"background": state}, pinhole_view(time=time))
        weights = render.alpha.sum(dim=0)
        columns.append(float((weights * (torch.arange(40) + 0.5)).sum() / weights.sum()))
    # projected centre u = 20 + 20 · x / 4: 20 px at t = 0, 24 px at t = 0.8
    assert columns[0] == pytest.approx(20.0, abs=0.2) and columns[1] == pytest.approx(24.0, abs=0.2)
    render = reconstruction.render({"background": state}, pinhole_view(time=0.0), with_flow=True)
    centre = render.features[15, 20] / render.alpha[15, 20]
    # one frame (0.1 s at 1 s per unit time) moves x by 0.1: 20 · 0.1 / 4 = 0.5 px
    assert float(centre[0]) == pytest.approx(0.5, abs=1e-3) and abs(float(centre[1])) < 1e-4


# ------------------------------------------------------------------------------------------------ initial scene
@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("flux4d_core") / "log"
    pf.write_pandaset_log(root, num_frames=8)
    log = read_log_views(root, PARSER)
    inputs, between = interleaved_split(log.frames())
    return log, log.views_of_frames(inputs), log.views_of_frames(between)


def test_initial_gaussians_one_per_lidar_point_of_each_input_frame(clip) -> None:
    log, sources, _ = clip
    layout = Flux4DLayout(2)
    seeding = Flux4DSeedingConfig(
        lidar=LidarSeedingConfig(voxel_size=0.0, max_background_points=10**9, split_actors=False,
                                 scale_rule="mean-nearest", min_points_per_actor=0),
        far=FarFieldConfig(num_latitudes=3, num_longitudes=8, latitude_range_deg=(0.0, 90.0)),
    )  # fmt: skip
    scene = seed_flux4d_scene(log.driving, sources, seeding, layout, torch.Generator().manual_seed(0))
    lidar = log.driving.lidar
    sweeps = sorted({v.lidar_sweep for v in sources})
    expected = sum(lidar.sweep_slice(s).stop - lidar.sweep_slice(s).start for s in sweeps)
    background = scene.states["background"]
    assert background.shape == (expected, layout.channels)
    assert scene.states["far"].shape == (3 * 8, layout.channels)  # the sky budget
    assert float(background[:, layout.motion].abs().max()) == 0.0  # v = 0
    # capture times are the points' own times, all from input frames
    times = np.concatenate([lidar.point_times[lidar.sweep_slice(s)] for s in sweeps])
    assert np.allclose(np.sort(background[:, layout.time].numpy()), np.sort(times), atol=1e-6)
    decoded = decode_at(background, 0.0, layout)
    assert torch.allclose(decoded.opacities, torch.full_like(decoded.opacities, 0.5), atol=1e-4)
    assert torch.allclose(decoded.quats.norm(dim=-1), torch.ones(expected), atol=1e-5)
    assert float(decoded.quats[:, 1:].abs().sum()) > 0  # random rotations, not the identity

    # colours come from the image of the point's own frame: check the points of the first input sweep that
    # project into its image
    from fourd_ns.sensors.lidar_projection import project_points

    first = sweeps[0]
    points = torch.from_numpy(lidar.points[lidar.sweep_slice(first)]).float()
    view = next(v for v in sources if v.lidar_sweep == first)
    k = view.intrinsics
    hits, pixels, _ = project_points(points, view.camera_to_world, float(k[0, 0]), float(k[1, 1]), float(k[0, 2]),
                                     float(k[1, 2]), view.width, view.height)  # fmt: skip
    assert hits.numel() > 10
    # positions identify the points (no two LiDAR points of the fixture coincide)
    index = {tuple(np.round(p, 5)): i for i, p in enumerate(background[:, :3].numpy())}
    rows = torch.tensor([index[tuple(np.round(p, 5))] for p in points[hits].numpy()])
    colours = torch.sigmoid(background[rows, 10:13])
    assert torch.allclose(colours, view.image.reshape(-1, 3)[pixels], atol=2e-3)


def test_refinement_switch_decides_whether_the_base_network_learns_through_it(clip) -> None:
    log, sources, targets = clip
    layout = Flux4DLayout(1)
    seeding = Flux4DSeedingConfig(
        lidar=LidarSeedingConfig(voxel_size=0.0, max_background_points=300, split_actors=False,
                                 scale_rule="mean-nearest", min_points_per_actor=0),
        far_field=False,
    )  # fmt: skip
    scene = seed_flux4d_scene(log.driving, sources, seeding, layout, torch.Generator().manual_seed(0))
    units = SceneUnits(log.driving.metres_per_unit, log.driving.time_span)
    torch.manual_seed(0)
    network = Flux4DNetwork(Flux4DNetworkConfig(motion_order=1, **TINY_FLUX4D_NETWORK))
    with torch.no_grad():  # non-zero heads so every weight is on a gradient path
        network.predictor.head[-1].weight.normal_(0.0, 0.05)
        network.refiner.head[-1].weight.normal_(0.0, 0.05)
    grads = {}
    for to_base in (True, False):
        network.zero_grad(set_to_none=True)
        reconstruction = Flux4DReconstruction(network, Flux4DRefinementConfig(iterations=1, gradient_to_base=to_base),
                                              units)  # fmt: skip
        outputs, reports = reconstruction.run(scene, sources)
        assert len(outputs) == 2 and math.isfinite(reports[0].source_loss)
        render = render_view(reconstruction.gaussians_at(outputs[-1], targets[0].time), targets[0])
        ((render.rgb - targets[0].image) ** 2).mean().backward()
        grads[to_base] = network.predictor.head[-1].weight.grad
        assert network.refiner.head[-1].weight.grad is not None
        assert torch.equal(outputs[-1]["background"][:, -1], scene.states["background"][:, -1])  # times kept
    assert grads[True] is not None and float(grads[True].abs().sum()) > 0
    assert grads[False] is None  # detached: the base network gets nothing from the refined output


def test_the_predictor_ignores_whole_voxel_shifts_and_the_scene_unit(clip) -> None:
    log, sources, _ = clip
    layout = Flux4DLayout(2)
    seeding = Flux4DSeedingConfig(
        lidar=LidarSeedingConfig(voxel_size=0.0, max_background_points=300, split_actors=False,
                                 scale_rule="mean-nearest", min_points_per_actor=0),
        far_field=False,
    )  # fmt: skip
    state = seed_flux4d_scene(log.driving, sources, seeding, layout, torch.Generator().manual_seed(0)).states[
        "background"].double()
    torch.manual_seed(0)
    network = Flux4DNetwork(Flux4DNetworkConfig(**TINY_FLUX4D_NETWORK)).double()
    with torch.no_grad():
        network.predictor.head[-1].weight.normal_(0.0, 0.1)
    units = SceneUnits(0.5, 1.5)
    voxel = units.voxel(network.config.voxel_metres)
    predicted = network.predictor(state, units)
    shifted = state.clone()
    shifted[:, :3] += torch.tensor([3.0, -2.0, 5.0], dtype=torch.float64) * voxel
    moved = network.predictor(shifted, units)
    assert torch.allclose(moved[:, 3:], predicted[:, 3:], atol=1e-9)
    assert torch.allclose(moved[:, :3] - shifted[:, :3], predicted[:, :3] - state[:, :3], atol=1e-9)
    # the same scene in units twice as large: positions and scales halve, motion in m/s is unchanged
    halved = state.clone()
    halved[:, :3] /= 2.0
    halved[:, 3:6] -= math.log(2.0)
    coarse = network.predictor(halved, SceneUnits(1.0, 1.5))
    velocity = motion_in_metres_per_second(predicted[:, 14:20], 0.5, 1.5)
    assert torch.allclose(motion_in_metres_per_second(coarse[:, 14:20], 1.0, 1.5), velocity, atol=1e-9)
    assert torch.allclose(coarse[:, :3] * 2.0, predicted[:, :3], atol=1e-9)
