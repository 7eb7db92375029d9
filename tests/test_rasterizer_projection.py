"""Projection and SH of the torch backend against gsplat's pure-torch reference (``gsplat.cuda._torch_impl``)."""

from __future__ import annotations

import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics

from fourd_ns.gaussians.projection import project_gaussians, quat_scale_to_covar
from fourd_ns.gaussians.spherical_harmonics import spherical_harmonics


def _cameras(n_cameras: int, width: int, height: int):
    g = torch.Generator().manual_seed(1)
    viewmats = torch.eye(4).repeat(n_cameras, 1, 1)
    viewmats[:, :3, 3] = 0.3 * torch.randn(n_cameras, 3, generator=g)
    Ks = torch.tensor([[0.8 * width, 0.0, 0.45 * width], [0.0, 0.9 * width, 0.55 * height], [0.0, 0.0, 1.0]])
    return viewmats, Ks.repeat(n_cameras, 1, 1)


def _gaussians(n: int):
    g = torch.Generator().manual_seed(0)
    means = torch.randn(n, 3, generator=g) * torch.tensor([3.0, 2.0, 2.0]) + torch.tensor([0.0, 0.0, 3.0])
    means[0, 2] = 0.005  # in front of the camera but closer than near_plane
    means[1] = torch.tensor([40.0, 0.0, 1.0])  # far outside the field of view: x/z clamping
    return means, torch.randn(n, 4, generator=g) * 2, torch.exp(torch.randn(n, 3, generator=g) - 2.5)


def test_covariance_matches_gsplat():
    _, quats, scales = _gaussians(64)
    ref, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False, triu=False)
    torch.testing.assert_close(quat_scale_to_covar(quats, scales), ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("antialiased", [False, True])
def test_projection_matches_gsplat(antialiased: bool):
    width, height = 64, 48
    means, quats, scales = _gaussians(500)
    viewmats, Ks = _cameras(2, width, height)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False, triu=False)
    ref = _fully_fused_projection(means, covars, viewmats, Ks, width, height, calc_compensations=antialiased)
    ours = project_gaussians(means, quats, scales, viewmats, Ks, width, height, calc_compensations=antialiased)

    radii, ref_radii = ours[0], ref[0]
    assert radii.dtype == torch.int32 and radii.shape == (2, 500)
    # Radii are ceil()ed, so a last-bit difference in the covariance can move one by a pixel.
    assert (radii != ref_radii).float().mean() < 0.005
    assert (radii - ref_radii).abs().max() <= 1
    assert 0.2 < (radii > 0).float().mean() < 0.95, "the scene should contain both visible and culled Gaussians"
    assert (radii[:, 0] == 0).all()
    valid = (radii > 0) & (ref_radii > 0)
    for name, mine, theirs in zip(("means2d", "depths", "conics"), ours[1:4], ref[1:4]):
        torch.testing.assert_close(mine[valid], theirs[valid], rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")
    if antialiased:
        torch.testing.assert_close(ours[4][valid], ref[4][valid], rtol=1e-4, atol=1e-6)
    else:
        assert ours[4] is None


def test_radius_clip_culls_small_gaussians():
    means, quats, scales = _gaussians(200)
    viewmats, Ks = _cameras(1, 64, 48)
    radii = project_gaussians(means, quats, scales, viewmats, Ks, 64, 48)[0]
    clipped = project_gaussians(means, quats, scales, viewmats, Ks, 64, 48, radius_clip=3.0)[0]
    assert torch.equal(clipped, torch.where(radii > 3, radii, torch.zeros_like(radii)))


@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4])
def test_spherical_harmonics_match_gsplat(degree: int):
    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(2, 100, 3, generator=g) * 3.0
    coeffs = torch.randn(2, 100, 25, 3, generator=g)
    torch.testing.assert_close(
        spherical_harmonics(degree, dirs, coeffs), _spherical_harmonics(degree, dirs, coeffs), rtol=1e-5, atol=1e-5
    )
