"""Tests of `GaussianParams` and G3R's neural Gaussians: activations and their inverse, the decoder's near-identity
start, the latent-free (plain 3DGS) path, and initial states."""

from __future__ import annotations

import pytest
import torch

from fourd_ns.scene.gaussian_params import GaussianParams
from fourd_ns.scene.neural_gaussians import (
    COLOR,
    EXPLICIT,
    LATENT,
    LOG_SCALE,
    OPACITY,
    POSITION,
    QUAT,
    NeuralGaussianDecoder,
    activate,
    deactivate,
    initial_state,
    state_channels,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _params(n: int, seed: int = 0) -> GaussianParams:
    g = torch.Generator().manual_seed(seed)
    quats = torch.randn(n, 4, generator=g)
    return GaussianParams(
        means=torch.randn(n, 3, generator=g) * 10.0,
        quats=quats / quats.norm(dim=-1, keepdim=True),
        scales=torch.rand(n, 3, generator=g) + 0.05,
        opacities=torch.rand(n, generator=g) * 0.9 + 0.05,
        colors=torch.rand(n, 3, generator=g) * 0.9 + 0.05,
    )


def _assert_params_close(a: GaussianParams, b: GaussianParams, atol: float) -> None:
    for name in ("means", "quats", "scales", "opacities", "colors"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=atol, rtol=0.0, msg=name)


def test_gaussian_params_cat_select_to():
    a, b = _params(3, seed=1), _params(2, seed=2)
    both = GaussianParams.cat([a, b])
    assert both.num == 5
    torch.testing.assert_close(both.means[3:], b.means)
    picked = both.select(torch.tensor([True, False, False, True, False]))
    torch.testing.assert_close(picked.colors, torch.stack([a.colors[0], b.colors[0]]))
    torch.testing.assert_close(both.select(torch.tensor([4])).scales, b.scales[1:])
    assert both.to(torch.float64).means.dtype == torch.float64
    assert GaussianParams.cat([GaussianParams.empty(), a]).num == 3
    with pytest.raises(ValueError, match="mismatched"):
        GaussianParams(a.means, a.quats[:2], a.scales, a.opacities, a.colors)


def test_channel_layout():
    assert state_channels(32) == 46 and state_channels(0) == 14
    slices = [POSITION, LOG_SCALE, QUAT, COLOR, OPACITY]
    assert [s.stop - s.start for s in slices] == [3, 3, 4, 3, 1]
    assert [s.start for s in slices] == [0, 3, 6, 10, 13] and EXPLICIT == slice(0, 14) and LATENT.start == 14


def test_activation_round_trip():
    params = _params(7)
    explicit = deactivate(params)
    assert explicit.shape == (7, 14)
    _assert_params_close(activate(explicit), params, atol=1e-5)
    # Unnormalised quaternions activate to unit ones with the same rotation.
    scaled = explicit.clone()
    scaled[:, QUAT] *= 3.0
    torch.testing.assert_close(activate(scaled).quats, params.quats, atol=1e-6, rtol=0.0)


def test_decoder_starts_near_identity_and_the_latent_gets_gradients():
    torch.manual_seed(0)
    params = _params(16)
    state = initial_state(params.means, params.colors, params.scales, params.opacities, params.quats,
                          latent_dim=32, generator=torch.Generator().manual_seed(3))  # fmt: skip
    decoder = NeuralGaussianDecoder(latent_dim=32)
    # The residual is tanh(W_latent · latent): small, and independent of the explicit channels' magnitude
    # (these means are tens of units from the origin).
    residual = decoder.explicit(state) - state[:, EXPLICIT]
    torch.testing.assert_close(residual, torch.tanh(state[:, LATENT] @ decoder.linear.weight[:, LATENT].T))
    assert residual.abs().max() < 0.05
    _assert_params_close(decoder(state), params, atol=0.05)
    state.requires_grad_(True)
    decoder(state).colors.sum().backward()
    assert state.grad[:, LATENT].abs().sum() > 0
    assert decoder.linear.weight.shape == (14, 46)


def test_decoder_without_latent_is_the_activation_only():
    decoder = NeuralGaussianDecoder(latent_dim=0)
    assert sum(p.numel() for p in decoder.parameters()) == 0
    params = _params(5)
    _assert_params_close(decoder(deactivate(params)), params, atol=1e-5)
    with pytest.raises(ValueError, match="14 channels"):
        decoder(torch.zeros(5, 46))


def test_initial_state_defaults_and_determinism():
    positions = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    colors = torch.tensor([[0.5, 0.0, 1.0], [0.2, 0.4, 0.6]])
    scales = torch.full((2, 3), 0.3)
    state = initial_state(positions, colors, scales, latent_dim=8, generator=torch.Generator().manual_seed(1))
    again = initial_state(positions, colors, scales, latent_dim=8, generator=torch.Generator().manual_seed(1))
    assert state.shape == (2, 22)
    torch.testing.assert_close(state, again)
    decoded = activate(state[:, EXPLICIT])
    torch.testing.assert_close(decoded.means, positions)
    torch.testing.assert_close(decoded.quats, torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2))
    torch.testing.assert_close(decoded.opacities, torch.full((2,), 0.7))
    torch.testing.assert_close(decoded.scales, scales)
    torch.testing.assert_close(decoded.colors, colors, atol=2e-4, rtol=0.0)  # 0 and 1 are clamped before the logit
    assert 0.0 < state[:, LATENT].std() < 1.0
