"""The CPU tile rasterizer against an independent dense brute-force rasterizer, and the ``info`` contract with
gsplat's ``DefaultStrategy``.

The reference below is deliberately naive: gsplat's pure-torch projection and SH (``gsplat.cuda._torch_impl``),
then every Gaussian evaluated at every pixel, depth-sorted, with gsplat's compositing rules and plain autograd.
It applies gsplat's tile culling as a per-pixel mask (a Gaussian only reaches the tiles of its
``means2d +- radius`` square), because gsplat skips those pixels even where alpha would pass 1/255.
"""

from __future__ import annotations

import math

import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics

from fourd_ns.gaussians.rasterize import rasterize


def reference_rasterization(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree=None, backgrounds=None,
    render_mode="RGB", rasterize_mode="classic", tile_size=16, eps2d=0.3,
):  # fmt: skip
    n_cameras = viewmats.shape[0]
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False, triu=False)
    radii, means2d, depths, conics, comp = _fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d=eps2d, calc_compensations=rasterize_mode == "antialiased"
    )
    opacities = opacities.repeat(n_cameras, 1)
    if comp is not None:
        opacities = opacities * comp
    if sh_degree is not None:
        dirs = means[None] - torch.inverse(viewmats)[:, None, :3, 3]
        colors = torch.clamp_min(_spherical_harmonics(sh_degree, dirs, colors.expand(n_cameras, -1, -1, -1)) + 0.5, 0)
    elif colors.dim() == 2:
        colors = colors.expand(n_cameras, -1, -1)
    if render_mode in ("RGB+D", "RGB+ED"):
        colors = torch.cat([colors, depths[..., None]], -1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, torch.zeros(n_cameras, 1)], -1)
    elif render_mode in ("D", "ED"):
        colors = depths[..., None]
        backgrounds = None if backgrounds is None else torch.zeros(n_cameras, 1)

    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    renders, alphas = [], []
    for cam in range(n_cameras):
        ids = torch.nonzero(radii[cam] > 0).squeeze(1)
        ids = ids[torch.argsort(depths[cam, ids])]
        mean, conic, opac, r = means2d[cam, ids], conics[cam, ids], opacities[cam, ids], radii[cam, ids].float()
        dx = mean[:, 0] - xs[..., None]  # [H, W, n]
        dy = mean[:, 1] - ys[..., None]
        sigma = 0.5 * (conic[:, 0] * dx**2 + conic[:, 2] * dy**2) + conic[:, 1] * dx * dy
        alpha = torch.clamp(opac * torch.exp(-sigma), max=0.999)
        tile_x, tile_y = torch.floor(xs / tile_size)[..., None], torch.floor(ys / tile_size)[..., None]
        in_tiles = (
            (tile_x >= torch.floor((mean[:, 0] - r).detach() / tile_size))
            & (tile_x < torch.ceil((mean[:, 0] + r).detach() / tile_size))
            & (tile_y >= torch.floor((mean[:, 1] - r).detach() / tile_size))
            & (tile_y < torch.ceil((mean[:, 1] + r).detach() / tile_size))
        )
        alpha = torch.where(in_tiles & (sigma >= 0) & (alpha >= 1 / 255), alpha, torch.zeros_like(alpha))
        transmittance = torch.cumprod(1 - alpha, -1)
        alpha = torch.where(transmittance > 1e-4, alpha, torch.zeros_like(alpha))
        transmittance = torch.cumprod(1 - alpha, -1)
        before = torch.cat([torch.ones_like(transmittance[..., :1]), transmittance[..., :-1]], -1)
        render = torch.einsum("hwn,nd->hwd", alpha * before, colors[cam, ids])
        final = transmittance[..., -1:]
        if backgrounds is not None:
            render = render + final * backgrounds[cam]
        renders.append(render)
        alphas.append(1 - final)
    render, alpha = torch.stack(renders), torch.stack(alphas)
    if render_mode in ("ED", "RGB+ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / alpha.clamp(min=1e-10)], -1)
    return render, alpha


def random_scene(n: int, width: int, height: int, n_cameras: int, seed: int, feature: str):
    """Gaussians in front of the cameras, footprints from sub-pixel to ~15 px, some off-screen or behind."""
    g = torch.Generator().manual_seed(seed)
    focal = 0.9 * width
    depth = 1.0 + 4.0 * torch.rand(n, generator=g)
    uv = (torch.rand(n, 2, generator=g) * 1.3 - 0.15) * torch.tensor([width, height])
    means = torch.cat([(uv - torch.tensor([width, height]) / 2) * depth[:, None] / focal, depth[:, None]], -1)
    means[:3, 2] = -1.0  # behind the camera: culled
    sigma_px = torch.exp(math.log(0.3) + math.log(20.0) * torch.rand(n, generator=g))
    scales = (sigma_px * depth / focal)[:, None] * torch.exp(0.4 * torch.randn(n, 3, generator=g))
    viewmats = torch.eye(4).repeat(n_cameras, 1, 1)
    if n_cameras > 1:
        angle = 0.1
        viewmats[1, :3, :3] = torch.tensor(
            [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
        )
        viewmats[1, :3, 3] = torch.tensor([0.2, -0.1, 0.1])
    Ks = torch.tensor([[focal, 0, width / 2 + 1.3], [0, focal * 1.1, height / 2 - 0.7], [0, 0, 1.0]])
    colors = {
        "rgb": lambda: torch.rand(n, 3, generator=g),
        "features5": lambda: torch.randn(n_cameras, n, 5, generator=g),
        "sh3": lambda: 0.4 * torch.randn(n, 16, 3, generator=g),
    }[feature]()
    opacities = 0.05 + 0.94 * torch.rand(n, generator=g)
    opacities[3:30] = 0.9995  # alpha clamps at 0.999 near these centres, which passes no gradient
    return dict(
        means=means,
        quats=torch.randn(n, 4, generator=g),
        scales=scales,
        opacities=opacities,
        colors=colors,
        viewmats=viewmats,
        Ks=Ks.repeat(n_cameras, 1, 1),
    )


GRAD_KEYS = ("means", "quats", "scales", "opacities", "colors")

CASES = [
    # (width, height, N, cameras, feature, render_mode, rasterize_mode, background, tile_size)
    (37, 29, 150, 1, "rgb", "RGB", "classic", False, 16),
    (64, 48, 400, 2, "rgb", "RGB", "antialiased", True, 16),
    (50, 34, 300, 2, "features5", "RGB", "classic", True, 8),
    (45, 40, 300, 2, "sh3", "RGB+ED", "classic", True, 16),
    (40, 24, 250, 1, "sh3", "RGB+D", "antialiased", False, 8),
    (33, 47, 250, 2, "rgb", "D", "classic", True, 16),
    (48, 32, 250, 1, "rgb", "ED", "antialiased", False, 16),
]


@pytest.mark.parametrize("width,height,n,n_cameras,feature,render_mode,rasterize_mode,background,tile_size", CASES)
def test_tile_rasterizer_matches_dense_reference(
    width, height, n, n_cameras, feature, render_mode, rasterize_mode, background, tile_size
):
    scene = random_scene(n, width, height, n_cameras, seed=n + width, feature=feature)
    channels = 3 if feature != "features5" else 5
    bg = torch.rand(n_cameras, channels, generator=torch.Generator().manual_seed(2)) if background else None
    _assert_matches_reference(
        scene, bg, width=width, height=height, sh_degree=3 if feature == "sh3" else None, render_mode=render_mode,
        rasterize_mode=rasterize_mode, tile_size=tile_size,
    )  # fmt: skip


def test_transmittance_stop_and_alpha_clamp_match_reference():
    """Opaque Gaussians stacked along the view axis: pixels hit the T <= 1e-4 stop and the 0.999 alpha clamp."""
    scene = random_scene(60, 32, 32, 1, seed=4, feature="rgb")
    g = torch.Generator().manual_seed(5)
    scene["means"][:, :2] = 0.15 * torch.randn(60, 2, generator=g)
    scene["scales"] = torch.full((60, 3), 0.15) * torch.exp(0.3 * torch.randn(60, 3, generator=g))
    scene["opacities"][::2] = 0.9995
    alpha = _assert_matches_reference(scene, None, width=32, height=32)
    assert (alpha > 1 - 2e-4).float().mean() > 0.01


def _assert_matches_reference(scene, bg, **kwargs) -> torch.Tensor:
    """Render with our backend and the dense reference; compare images, alphas and input gradients."""

    def run(fn, **extra):
        leaves = {k: v.clone().requires_grad_(k in GRAD_KEYS) for k, v in scene.items()}
        bg_leaf = None if bg is None else bg.clone().requires_grad_()
        render, alpha = fn(**leaves, backgrounds=bg_leaf, **kwargs, **extra)[:2]
        weights = torch.randn(render.shape, generator=torch.Generator().manual_seed(1))
        loss = (render * weights).sum() + (alpha * torch.linspace(-1, 1, alpha.numel()).view(alpha.shape)).sum()
        loss.backward()
        grads = {k: leaves[k].grad for k in GRAD_KEYS}
        if bg_leaf is not None:
            grads["backgrounds"] = bg_leaf.grad
        return render.detach(), alpha.detach(), grads

    render, alpha, grads = run(rasterize, backend="torch")
    ref_render, ref_alpha, ref_grads = run(reference_rasterization)

    assert render.shape == ref_render.shape
    assert (ref_alpha > 0.5).float().mean() > 0.05, "scene should cover part of the image"
    assert (render - ref_render).abs().max() <= 1e-4
    assert (alpha - ref_alpha).abs().max() <= 1e-4
    for key, ref in ref_grads.items():
        if ref is None:  # input unused in this render mode (colours / background in depth-only modes)
            assert grads[key] is None or not grads[key].any(), key
            continue
        scale = ref.abs().max().item()
        assert scale > 0, key
        torch.testing.assert_close(grads[key], ref, rtol=1e-3, atol=1e-4 * scale, msg=lambda m: f"{key}: {m}")
    return ref_alpha


def test_info_contract_and_culling():
    scene = random_scene(200, 40, 30, 2, seed=3, feature="rgb")
    scene["means"].requires_grad_()
    render, alpha, info = rasterize(**scene, width=40, height=30)
    assert render.shape == (2, 30, 40, 3) and alpha.shape == (2, 30, 40, 1)
    assert info["radii"].shape == (2, 200) and info["radii"].dtype == torch.int32
    assert info["means2d"].shape == (2, 200, 2) and info["conics"].shape == (2, 200, 3)
    assert info["depths"].shape == (2, 200) and info["opacities"].shape == (2, 200)
    assert info["gaussian_ids"] is None and info["camera_ids"] is None
    assert (info["width"], info["height"], info["n_cameras"]) == (40, 30, 2)
    assert (info["radii"][:, :3] == 0).all(), "Gaussians behind the camera are culled"
    info["means2d"].retain_grad()
    render.sum().backward()
    assert info["means2d"].grad is not None and info["means2d"].grad.abs().sum() > 0


def test_empty_and_packed_errors():
    scene = random_scene(10, 20, 20, 1, seed=0, feature="rgb")
    scene["means"][:, 2] = -5.0  # all behind the camera
    render, alpha, info = rasterize(**scene, width=20, height=20, backgrounds=torch.ones(1, 3))
    assert torch.equal(render, torch.ones(1, 20, 20, 3)) and torch.equal(alpha, torch.zeros(1, 20, 20, 1))
    with pytest.raises(ValueError, match="packed"):
        rasterize(**scene, width=20, height=20, packed=True)


def test_absgrad_matches_signed_grad_bound():
    scene = random_scene(150, 32, 32, 1, seed=5, feature="rgb")
    scene["means"].requires_grad_()
    render, _, info = rasterize(**scene, width=32, height=32, absgrad=True)
    info["means2d"].retain_grad()
    (render * torch.randn(render.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    grad, absgrad = info["means2d"].grad, info["means2d"].absgrad
    assert absgrad.shape == grad.shape
    assert (absgrad >= grad.abs() - 1e-5).all() and (absgrad > grad.abs() + 1e-3).any()


@pytest.mark.parametrize("absgrad", [False, True])
def test_default_strategy_densifies_with_our_info(absgrad: bool):
    from gsplat.strategy import DefaultStrategy

    torch.manual_seed(0)
    scene = random_scene(120, 32, 24, 1, seed=7, feature="sh3")
    params = torch.nn.ParameterDict(
        {
            "means": scene["means"],
            "quats": scene["quats"],
            "scales": torch.log(scene["scales"]),
            "opacities": torch.logit(scene["opacities"]),
            "sh": scene["colors"],
        }
    )
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    strategy = DefaultStrategy(
        refine_start_iter=0, refine_every=1, grow_grad2d=1e-9, grow_scale3d=0.05, reset_every=10_000,
        absgrad=absgrad, verbose=False,
    )  # fmt: skip
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=1.0)
    target = torch.rand(1, 24, 32, 3)
    counts = [params["means"].shape[0]]
    for step in range(1, 4):
        render, _, info = rasterize(
            params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
            params["sh"], scene["viewmats"], scene["Ks"], 32, 24, sh_degree=3, absgrad=absgrad,
        )  # fmt: skip
        strategy.step_pre_backward(params, optimizers, state, step, info)
        (render - target).abs().mean().backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
        counts.append(params["means"].shape[0])
        assert all(p.shape[0] == counts[-1] for p in params.values())
    assert counts[-1] != counts[0], counts


def test_block_size_and_chunking_do_not_change_the_result():
    from fourd_ns.gaussians.projection import project_gaussians
    from fourd_ns.gaussians.tile_rasterizer import rasterize_to_pixels

    scene = random_scene(300, 45, 37, 2, seed=11, feature="features5")
    radii, means2d, depths, conics, _ = project_gaussians(
        scene["means"], scene["quats"], scene["scales"], scene["viewmats"], scene["Ks"], 45, 37
    )
    opacities = scene["opacities"].repeat(2, 1)
    outputs = [
        rasterize_to_pixels(
            means2d, conics, scene["colors"], opacities, radii, depths, 45, 37, block_size=block, chunk_elements=chunk
        )[:2]
        for block, chunk in [(16, 1 << 20), (8, 1 << 20), (4, 1 << 20), (8, 1 << 12)]
    ]
    for render, alpha in outputs[1:]:
        torch.testing.assert_close(render, outputs[0][0], rtol=0, atol=1e-5)
        torch.testing.assert_close(alpha, outputs[0][1], rtol=0, atol=1e-5)
