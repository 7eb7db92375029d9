"""FLAG-4D networks (IDN, GMN) and losses: shapes, gradient routing, invariances and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from fourd_ns.geometry.rotations import quat_to_rotmat
from fourd_ns.deformation.flag4d_gmn import GlobalMotionNetwork
from fourd_ns.deformation.flag4d_idn import InstantaneousDeformationNetwork, deformation_to_vector
from fourd_ns.deformation.flag4d_losses import (
    depth_loss,
    knn_graph,
    local_rigidity_loss,
    mutual_learning_loss,
    mutual_learning_terms,
    smooth_opacity_update,
)

N, W, C, R, D = 6, 4, 8, 16, 16


def tiny_idn(zero_init_heads: bool = False) -> InstantaneousDeformationNetwork:
    """Random output heads by default: the gradient-routing tests need networks whose every layer is on the path."""
    return InstantaneousDeformationNetwork(
        window_size=W, representation_dim=R, depth=3, width=16, skips=(1,), position_frequencies=2, time_frequencies=2,
        zero_init_heads=zero_init_heads,
    )  # fmt: skip


def tiny_gmn(**kwargs) -> GlobalMotionNetwork:
    options = dict(
        flow_channels=C, representation_dim=R, model_dim=D, num_heads=2, pooled_grid=(2, 3), local_window=3,
        refinement_width=16, refinement_depth=2, position_frequencies=2, time_frequencies=2, zero_init_heads=False,
    )  # fmt: skip
    options.update(kwargs)
    return GlobalMotionNetwork(**options)


def canonical(num: int = N):
    torch.manual_seed(0)
    means = torch.randn(num, 3)
    quats = torch.nn.functional.normalize(torch.randn(num, 4), dim=-1)
    scales = torch.rand(num, 3) * 0.1
    return means, quats, scales


def run_both(idn, gmn, h: int = 5, w: int = 7, time_noise: float = 0.0, isolated: bool = False):
    means, quats, scales = canonical()
    times = torch.full((N, 1), 0.3)
    idn_out = idn(means, times, window_step=0.1)
    past, future = torch.randn(C, h, w), torch.randn(C, h, w)
    projections = torch.rand(N, 2) * 2 - 1
    gmn_out = gmn(
        means, quats, scales, idn_out.representation, deformation_to_vector(idn_out.forecast), past, future, 0.3,
        projections=projections, time_noise=time_noise, with_isolated_prediction=isolated,
    )  # fmt: skip
    return idn_out, gmn_out


def test_idn_window_shapes_and_forecast_is_first_window_element() -> None:
    idn = tiny_idn()
    means, _, _ = canonical()
    times = torch.rand(N, 1)
    out = idn(means, times, window_step=0.05)
    assert out.window.shape == (N, W, 10)
    assert out.representation.shape == (N, R)
    assert out.forecast.d_means.shape == (N, 3) and out.forecast.d_quats.shape == (N, 4)
    assert out.forecast.d_scales.shape == (N, 3)
    assert torch.equal(deformation_to_vector(out.forecast), out.window[:, 0])
    # the forecast is IDN_core at t; window element k is IDN_core at t + k·Δ
    direct = deformation_to_vector(idn.core(means, times))
    assert torch.allclose(direct, out.window[:, 0], atol=1e-6)
    later = deformation_to_vector(idn.core(means, times + 2 * 0.05))
    assert torch.allclose(later, out.window[:, 2], atol=1e-6)
    # δθ_rep is the GRU's last hidden state over the window
    _, hidden = idn.trajectory_gru(out.window)
    assert torch.allclose(hidden[0], out.representation)


def test_gmn_output_shapes_and_gradients_reach_both_networks() -> None:
    idn, gmn = tiny_idn(), tiny_gmn()
    _, gmn_out = run_both(idn, gmn, time_noise=0.01)
    deformation = gmn_out.deformation
    assert deformation.d_means.shape == (N, 3) and deformation.d_quats.shape == (N, 4)
    assert deformation.d_scales.shape == (N, 3)
    render_loss = deformation_to_vector(deformation).square().sum()  # stands in for the rendering loss
    render_loss.backward()
    for name, module in [("idn core", idn.core), ("idn gru", idn.trajectory_gru), ("gmn", gmn)]:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
    # every GMN stage is on the gradient path
    for stage in [gmn.temporal_fusion, gmn.alignment, gmn.refinement, gmn.canonical_embedding]:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in stage.parameters())


def test_attention_key_length_is_bounded_by_config_not_by_flow_map_size() -> None:
    idn = tiny_idn()
    for pooled_grid, local_window, expected in [((2, 3), 3, 15), ((2, 3), 0, 6), (None, 2, 4)]:
        gmn = tiny_gmn(pooled_grid=pooled_grid, local_window=local_window)
        assert gmn.max_tokens_per_gaussian == expected
        for h, w in [(4, 4), (9, 13)]:
            _, out = run_both(idn, gmn, h=h, w=w)
            assert out.attention_weights.shape == (N, 2, expected)
            assert torch.allclose(out.attention_weights.sum(-1), torch.ones(N, 2), atol=1e-5)


def test_local_window_requires_projections() -> None:
    gmn = tiny_gmn()
    means, quats, scales = canonical()
    with pytest.raises(ValueError, match="projections"):
        gmn(means, quats, scales, torch.zeros(N, R), torch.zeros(N, 10), torch.zeros(C, 4, 4), torch.zeros(C, 4, 4),
            0.5)  # fmt: skip


def test_local_tokens_sample_the_cell_under_the_projection() -> None:
    gmn = tiny_gmn(pooled_grid=None, local_window=1)
    feature_map = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    # centre of cell (row 1, col 2) of a 3×4 map in align_corners=False coordinates
    projection = torch.tensor([[(2 + 0.5) / 4 * 2 - 1, (1 + 0.5) / 3 * 2 - 1]])
    tokens = gmn.alignment._local_tokens(feature_map, projection)
    assert tokens.shape == (1, 1, 2)
    assert torch.allclose(tokens[0, 0], feature_map[:, 1, 2])


# ---------------------------------------------------------------- losses


def _grads_nonzero(module: torch.nn.Module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_mutual_loss_routes_each_term_to_one_network_only() -> None:
    idn, gmn = tiny_idn(), tiny_gmn()
    visible = torch.tensor([True, False, True, True, False, True])
    for term_index, trained, frozen in [(0, gmn, idn), (1, idn, gmn)]:
        idn.zero_grad(set_to_none=True)
        gmn.zero_grad(set_to_none=True)
        idn_out, gmn_out = run_both(idn, gmn, time_noise=0.01, isolated=True)
        # the isolated prediction has the values of the attached one (shared time noise and motion map)
        assert torch.allclose(
            deformation_to_vector(gmn_out.isolated_deformation), deformation_to_vector(gmn_out.deformation), atol=1e-6
        )
        terms = mutual_learning_terms(
            deformation_to_vector(idn_out.forecast), deformation_to_vector(gmn_out.isolated_deformation), visible
        )
        terms[term_index].backward()
        assert _grads_nonzero(trained)
        assert not _grads_nonzero(frozen)
    # the attached prediction (used for rendering) would leak term 1 into the IDN through the GMN's conditioning
    idn.zero_grad(set_to_none=True)
    idn_out, gmn_out = run_both(idn, gmn)
    gmn_term, _ = mutual_learning_terms(
        deformation_to_vector(idn_out.forecast), deformation_to_vector(gmn_out.deformation), visible
    )
    gmn_term.backward()
    assert _grads_nonzero(idn)
    # the full loss is the weighted sum of both terms
    idn_out, gmn_out = run_both(idn, gmn)
    a, b = deformation_to_vector(idn_out.forecast), deformation_to_vector(gmn_out.deformation)
    gmn_term, idn_term = mutual_learning_terms(a, b, visible)
    assert torch.allclose(mutual_learning_loss(a, b, visible, weight=0.5), 0.5 * (gmn_term + idn_term))


def test_mutual_loss_only_counts_visible_gaussians() -> None:
    idn_pred = torch.randn(5, 10, requires_grad=True)
    gmn_pred = torch.randn(5, 10, requires_grad=True)
    visible = torch.tensor([True, False, True, False, False])
    loss = mutual_learning_loss(idn_pred, gmn_pred, visible)
    expected = 2 * (idn_pred[visible] - gmn_pred[visible]).square().sum(-1).mean()
    assert torch.allclose(loss, expected)
    loss.backward()
    assert torch.all(idn_pred.grad[~visible] == 0) and torch.all(gmn_pred.grad[~visible] == 0)
    assert idn_pred.grad[visible].abs().sum() > 0 and gmn_pred.grad[visible].abs().sum() > 0
    none_visible = mutual_learning_loss(idn_pred, gmn_pred, torch.zeros(5, dtype=torch.bool))
    assert none_visible.item() == 0.0


def _random_rotation(generator: torch.Generator) -> tuple:
    quat = torch.nn.functional.normalize(torch.randn(4, generator=generator), dim=0)
    return quat, quat_to_rotmat(quat)


def _quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
         aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw],
        dim=-1,
    )  # fmt: skip


def test_rigidity_loss_is_zero_for_rigid_motion_and_positive_otherwise() -> None:
    generator = torch.Generator().manual_seed(1)
    points = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    quats = torch.nn.functional.normalize(torch.randn(40, 4, generator=generator, dtype=torch.float64), dim=-1)
    indices, weights = knn_graph(points, num_neighbours=5, distance_falloff=0.5)
    quat, rotation = _random_rotation(generator)
    quat, rotation = quat.double(), rotation.double()
    translation = torch.randn(3, generator=generator, dtype=torch.float64)
    moved = points @ rotation.T + translation
    moved_quats = _quat_multiply(quat.expand(40, 4), quats)  # R_{i,t} = R · R_{i,t−1}
    rigid = local_rigidity_loss(points, moved, quats, moved_quats, indices, weights)
    assert rigid.abs().item() <= 1e-6
    bent = moved.clone()
    bent[:, 0] = bent[:, 0] * 1.5  # anisotropic stretch: not a rigid motion
    assert local_rigidity_loss(points, bent, quats, moved_quats, indices, weights).item() > 1e-3


def test_knn_weights_follow_the_documented_formula() -> None:
    points = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.3, 0.0], [1.0, 1.0, 1.0]])
    indices, weights = knn_graph(points, num_neighbours=2, distance_falloff=20.0, chunk_size=3)
    assert indices[0].tolist() == [1, 2]
    assert torch.allclose(weights[0], torch.exp(-20.0 * torch.tensor([0.01, 0.09])))
    assert indices[1].tolist() == [0, 2]
    assert torch.allclose(weights[1], torch.exp(-20.0 * torch.tensor([0.01, 0.1])))
    # hand-computed Eq. 10–11: identity rotations, neighbour 1 of point 0 moves by +0.2 in x
    identity = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(4, 4)
    moved = points.clone()
    moved[1, 0] += 0.2
    loss = local_rigidity_loss(points, moved, identity, identity, indices, weights)
    # offsets change by 0.2 for pairs (0→1), (1→0), (2→1 if neighbour), ...
    manual = 0.0
    for i in range(4):
        for slot in range(2):
            j = indices[i, slot]
            manual += weights[i, slot] * torch.linalg.norm((points[j] - points[i]) - (moved[j] - moved[i]))
    assert torch.allclose(loss, manual / 8)


def test_depth_loss_is_scale_and_shift_invariant() -> None:
    torch.manual_seed(0)
    depth = torch.rand(6, 5, 1) * 3 + 1
    prior = torch.rand(6, 5, 1)
    loss = depth_loss(depth, prior)
    assert loss.item() > 0
    assert torch.allclose(depth_loss(depth, 4.0 * prior + 2.5), loss, atol=1e-6)
    assert depth_loss(2.0 * prior + 7.0, prior).item() <= 1e-6
    # hand-computed: rendered [1, 2, 3] → [0, .5, 1]; prior [0, 1, 1] → L1 mean = (0 + .5 + 0) / 3
    assert torch.allclose(depth_loss(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 1.0, 1.0]), weight=2.0),
                          torch.tensor(2 * 0.5 / 3))  # fmt: skip
    mask = torch.ones(6, 5, 1, dtype=torch.bool)
    mask[0] = False
    masked_depth = depth.clone()
    masked_depth[0] = 100.0  # outside the mask: ignored by min/max and by the mean
    assert torch.allclose(depth_loss(masked_depth, prior, mask), depth_loss(depth[1:], prior[1:]), atol=1e-6)


def test_smooth_opacity_update_matches_eq8() -> None:
    logits = torch.tensor([[0.0], [-10.0], [math.log(0.9 / 0.1)]])
    updated = smooth_opacity_update(logits, decay=0.001, min_opacity=0.01, max_opacity=1.0)
    expected = torch.tensor([[math.log(0.499 / 0.501)], [math.log(0.01 / 0.99)], [math.log(0.899 / 0.101)]])
    assert torch.allclose(updated, expected, atol=1e-5)
    capped = smooth_opacity_update(torch.tensor([[5.0]]), decay=0.0, min_opacity=0.01, max_opacity=0.5)
    assert torch.allclose(capped, torch.tensor([[0.0]]), atol=1e-6)
    assert torch.isfinite(smooth_opacity_update(torch.tensor([[30.0]]), decay=0.0)).all()


def grid_sample_reference(feature_map: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``grid_sample`` (bilinear, border, align_corners=False) at ``[N, K, 2]`` points, as ``[N, K, C]``."""
    return torch.nn.functional.grid_sample(
        feature_map[None], points[None], mode="bilinear", padding_mode="border", align_corners=False
    )[0].permute(1, 2, 0)


def test_gathered_bilinear_sampling_matches_grid_sample_values_and_gradients() -> None:
    from fourd_ns.deformation.flag4d_gmn import bilinear_window_sample

    generator = torch.Generator().manual_seed(3)
    feature_map = torch.randn(5, 7, 9, generator=generator, requires_grad=True)
    # inside, on cell centres, on the edges and far outside (border padding clamps)
    points = torch.rand(11, 4, 2, generator=generator) * 3.0 - 1.5
    points[0, 0] = torch.tensor([-1.0, -1.0])
    points[0, 1] = torch.tensor([1.0, 1.0])
    points[0, 2] = torch.tensor([(2 + 0.5) / 9 * 2 - 1, (3 + 0.5) / 7 * 2 - 1])
    ours = bilinear_window_sample(feature_map, points.reshape(-1, 2), window=1).reshape(11, 4, 5)
    reference = grid_sample_reference(feature_map, points)
    assert ours.shape == (11, 4, 5)
    assert torch.allclose(ours, reference, atol=1e-5)
    weights = torch.randn(11, 4, 5, generator=generator)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), feature_map)
    (grad_reference,) = torch.autograd.grad((reference * weights).sum(), feature_map)
    assert torch.allclose(grad_ours, grad_reference, atol=1e-5)


def test_isolated_prediction_for_a_subset_matches_the_attached_rows() -> None:
    idn, gmn = tiny_idn(), tiny_gmn()
    means, quats, scales = canonical()
    times = torch.full((N, 1), 0.3)
    idn_out = idn(means, times, window_step=0.1)
    past, future = torch.randn(C, 5, 7), torch.randn(C, 5, 7)
    subset = torch.tensor([4, 1])
    out = gmn(
        means, quats, scales, idn_out.representation, deformation_to_vector(idn_out.forecast), past, future, 0.3,
        projections=torch.rand(N, 2) * 2 - 1, with_isolated_prediction=True, isolated_indices=subset,
    )  # fmt: skip
    assert torch.equal(out.isolated_indices, subset)
    attached = deformation_to_vector(out.deformation)
    isolated = deformation_to_vector(out.isolated_deformation)
    assert attached.shape == (N, 10) and isolated.shape == (2, 10)
    assert torch.allclose(isolated, attached[subset], atol=1e-6)
    # the isolated rows carry no gradient into the IDN
    idn.zero_grad(set_to_none=True)
    isolated.square().sum().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in idn.parameters())


def test_rigidity_over_anchors_is_the_mean_over_those_anchors() -> None:
    generator = torch.Generator().manual_seed(5)
    points = torch.randn(30, 3, generator=generator)
    bent = points + 0.1 * torch.randn(30, 3, generator=generator)
    quats = torch.nn.functional.normalize(torch.randn(30, 4, generator=generator), dim=-1)
    quats_now = torch.nn.functional.normalize(torch.randn(30, 4, generator=generator), dim=-1)
    indices, weights = knn_graph(points, num_neighbours=4, distance_falloff=None)
    every = local_rigidity_loss(points, bent, quats, quats_now, indices, weights)
    assert torch.allclose(every, local_rigidity_loss(points, bent, quats, quats_now, indices, weights, anchors=torch.arange(30)))
    anchors = torch.tensor([3, 17, 8])
    per_anchor = torch.stack(
        [local_rigidity_loss(points, bent, quats, quats_now, indices, weights, anchors=a[None]) for a in anchors]
    )
    subset = local_rigidity_loss(points, bent, quats, quats_now, indices, weights, anchors=anchors)
    assert torch.allclose(subset, per_anchor.mean())
    all_anchors = torch.stack(
        [local_rigidity_loss(points, bent, quats, quats_now, indices, weights, anchors=torch.tensor([i])) for i in range(30)]
    )
    assert torch.allclose(every, all_anchors.mean())


@pytest.mark.parametrize("window", [1, 2, 3])
def test_window_sampling_from_one_patch_matches_per_point_sampling(window: int) -> None:
    from fourd_ns.deformation.flag4d_gmn import bilinear_window_sample

    generator = torch.Generator().manual_seed(window)
    feature_map = torch.randn(6, 5, 8, generator=generator, requires_grad=True)
    centers = torch.rand(40, 2, generator=generator) * 4.0 - 2.0  # inside, at the borders and far outside
    centers[0] = torch.tensor([-1.0, 1.0])
    # the window's points, one map cell apart (row-major, y outer), in [−1, 1] units of the 5×8 map
    steps = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    dy, dx = torch.meshgrid(steps * (2.0 / 5), steps * (2.0 / 8), indexing="ij")
    offsets = torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=-1)
    reference = grid_sample_reference(feature_map, centers[:, None, :] + offsets[None])
    ours = bilinear_window_sample(feature_map, centers, window)
    assert ours.shape == (40, window * window, 6)
    assert torch.allclose(ours, reference, atol=1e-5)
    weights = torch.randn(40, window * window, 6, generator=generator)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), feature_map)
    (grad_reference,) = torch.autograd.grad((reference * weights).sum(), feature_map)
    assert torch.allclose(grad_ours, grad_reference, atol=1e-4)


def test_zero_initialised_heads_start_at_the_identity_and_still_learn() -> None:
    idn, gmn = tiny_idn(zero_init_heads=True), tiny_gmn(zero_init_heads=True)
    idn_out, gmn_out = run_both(idn, gmn)
    assert torch.equal(idn_out.window, torch.zeros_like(idn_out.window))
    final = deformation_to_vector(gmn_out.deformation)
    assert torch.equal(final, torch.zeros_like(final))
    (final - 1.0).square().sum().backward()  # a loss that wants motion reaches the heads
    assert gmn.refinement.head_means.weight.grad.abs().sum() > 0


def test_refining_the_forecast_starts_at_the_idn_and_adds_the_correction() -> None:
    idn = tiny_idn()  # random heads: a non-zero forecast
    replacing = tiny_gmn(zero_init_heads=True)
    refining = tiny_gmn(zero_init_heads=True, refine_forecast=True)
    refining.load_state_dict(replacing.state_dict())
    idn_out, replaced = run_both(idn, replacing)
    _, refined = run_both(idn, refining, isolated=True)
    forecast = deformation_to_vector(idn_out.forecast)
    assert float(forecast.abs().max()) > 0
    assert torch.equal(deformation_to_vector(replaced.deformation), torch.zeros_like(forecast))  # literal reading
    torch.testing.assert_close(deformation_to_vector(refined.deformation), forecast)  # starts as the IDN alone
    torch.testing.assert_close(deformation_to_vector(refined.isolated_deformation), forecast)
    # with trained (here: random) heads the result is the forecast plus what the replacing GMN outputs
    for gmn in (replacing, refining):
        torch.manual_seed(3)
        for head in (gmn.refinement.head_means, gmn.refinement.head_quats, gmn.refinement.head_scales):
            torch.nn.init.normal_(head.weight, std=0.1)
    _, replaced = run_both(idn, replacing)
    _, refined = run_both(idn, refining)
    torch.testing.assert_close(deformation_to_vector(refined.deformation),
                               forecast + deformation_to_vector(replaced.deformation))
