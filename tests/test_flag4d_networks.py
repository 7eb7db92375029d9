"""FLAG-4D networks (IDN, GMN) and losses: shapes, gradient routing, invariances and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from fourd_ns.deformation.flag4d_gmn import GlobalMotionNetwork
from fourd_ns.deformation.flag4d_idn import InstantaneousDeformationNetwork, deformation_to_vector

N, W, C, R, D = 6, 4, 8, 16, 16


def tiny_idn() -> InstantaneousDeformationNetwork:
    return InstantaneousDeformationNetwork(
        window_size=W, representation_dim=R, depth=3, width=16, skips=(1,), position_frequencies=2, time_frequencies=2
    )


def tiny_gmn(**kwargs) -> GlobalMotionNetwork:
    options = dict(
        flow_channels=C, representation_dim=R, model_dim=D, num_heads=2, pooled_grid=(2, 3), local_window=3,
        refinement_width=16, refinement_depth=2, position_frequencies=2, time_frequencies=2,
    )  # fmt: skip
    options.update(kwargs)
    return GlobalMotionNetwork(**options)


def canonical(num: int = N):
    torch.manual_seed(0)
    means = torch.randn(num, 3)
    quats = torch.nn.functional.normalize(torch.randn(num, 4), dim=-1)
    scales = torch.rand(num, 3) * 0.1
    return means, quats, scales


def run_both(idn, gmn, h: int = 5, w: int = 7, time_noise_std: float = 0.0):
    means, quats, scales = canonical()
    times = torch.full((N, 1), 0.3)
    idn_out = idn(means, times, window_step=0.1)
    past, future = torch.randn(C, h, w), torch.randn(C, h, w)
    projections = torch.rand(N, 2) * 2 - 1
    gmn_out = gmn(
        means, quats, scales, idn_out.representation, deformation_to_vector(idn_out.forecast), past, future, 0.3,
        projections=projections, time_noise_std=time_noise_std,
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
    _, gmn_out = run_both(idn, gmn, time_noise_std=0.01)
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
