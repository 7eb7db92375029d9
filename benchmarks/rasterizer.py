"""Forward+backward timing of the CPU tile rasterizer against the dense reference (and gsplat when CUDA exists).

Run from the repository root::

    python -m benchmarks.rasterizer

Writes the ``rasterizer`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import math
import statistics
import time
from typing import Callable, Dict, Tuple

import torch

from benchmarks.report import machine_description, write_section
from fourd_ns.gaussians.dense_reference import dense_rasterize_to_pixels
from fourd_ns.gaussians.projection import project_gaussians
from fourd_ns.gaussians.rasterize import rasterize
from fourd_ns.gaussians.tile_rasterizer import rasterize_to_pixels
from fourd_ns.geometry.pinhole import unproject_pixels

SIZES = [(64, 64, 1_000), (128, 128, 10_000), (320, 180, 50_000)]
DENSE_ROW_BLOCK_ELEMENTS = 1 << 24
"""Pixels x Gaussians per checkpointed row block of the dense baseline (keeps it within a few GB)."""
DENSE_MAX_PAIRS = 1 << 28
"""Beyond this many pixel-Gaussian pairs the dense baseline is skipped: without blocking its autograd buffers
(about 40 bytes per pair) exceed this machine's memory, and with blocking one run takes minutes."""


def make_scene(n: int, width: int, height: int, seed: int = 0, device: str = "cpu") -> Dict[str, torch.Tensor]:
    """Gaussians spread over the view frustum at depths 2-10 with pixel footprints (1 sigma) of 0.5-5 px,
    log-uniform, mildly anisotropic, opacities 0.05-0.95, degree-3 SH colours."""
    g = torch.Generator().manual_seed(seed)
    focal = 0.9 * width
    depth = 2.0 + 8.0 * torch.rand(n, generator=g)
    u = (torch.rand(n, generator=g) * 1.1 - 0.05) * width
    v = (torch.rand(n, generator=g) * 1.1 - 0.05) * height
    means = unproject_pixels(torch.stack([u, v], -1), depth, focal, focal, width / 2, height / 2)
    sigma_px = torch.exp(math.log(0.5) + math.log(10.0) * torch.rand(n, generator=g))
    scales = (sigma_px * depth / focal)[:, None] * torch.exp(0.3 * torch.randn(n, 3, generator=g))
    scene = {
        "means": means,
        "quats": torch.randn(n, 4, generator=g),
        "scales": scales,
        "opacities": 0.05 + 0.9 * torch.rand(n, generator=g),
        "colors": 0.3 * torch.randn(n, 16, 3, generator=g),
        "viewmats": torch.eye(4)[None],
        "Ks": torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])[None],
    }
    return {k: v.to(device) for k, v in scene.items()}


def median_ms(fn: Callable[[], None], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(times)


def projected(scene: Dict[str, torch.Tensor], width: int, height: int) -> Tuple[torch.Tensor, ...]:
    """Leaf 2D inputs (means2d, conics, colours, opacities) so both rasterizers are timed on compositing alone."""
    with torch.no_grad():
        radii, means2d, depths, conics, _ = project_gaussians(
            scene["means"], scene["quats"], scene["scales"], scene["viewmats"], scene["Ks"], width, height
        )
    colors = torch.rand(1, means2d.shape[1], 3, generator=torch.Generator().manual_seed(1))
    leaves = [t.clone().requires_grad_() for t in (means2d, conics, colors, scene["opacities"][None])]
    return (*leaves, radii, depths)


def time_composite(rasterizer, inputs, width: int, height: int, repeats: int, **kwargs) -> float:
    def step() -> None:
        render, alpha = rasterizer(*inputs, width, height, **kwargs)[:2]
        (render.sum() + alpha.sum()).backward()

    return median_ms(step, repeats)


def time_full(scene: Dict[str, torch.Tensor], width: int, height: int, repeats: int) -> float:
    """Projection + SH + compositing through ``rasterize`` with gradients to every Gaussian parameter."""
    leaves = {k: (v.clone().requires_grad_() if k not in ("viewmats", "Ks") else v) for k, v in scene.items()}

    def step() -> None:
        render, alpha, _ = rasterize(**leaves, width=width, height=height, sh_degree=3)
        (render.sum() + alpha.sum()).backward()

    return median_ms(step, repeats)


def cpu_table(repeats: int, block_size: int) -> str:
    rows = [
        "| image | Gaussians | intersections | tile fwd+bwd (ms) | dense fwd+bwd (ms) | speed-up "
        "| full `rasterize` SH-3 fwd+bwd (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for width, height, n in SIZES:
        scene = make_scene(n, width, height)
        inputs = projected(scene, width, height)
        n_isect = rasterize_to_pixels(*inputs, width, height, block_size=block_size)[2].n_intersections
        tile_ms = time_composite(rasterize_to_pixels, inputs, width, height, repeats, block_size=block_size)
        pairs = width * height * n
        if pairs <= DENSE_MAX_PAIRS:
            block = max(1, DENSE_ROW_BLOCK_ELEMENTS // (width * n))
            dense_ms = time_composite(
                dense_rasterize_to_pixels, inputs, width, height, max(1, repeats // 2), rows_per_block=block
            )
            dense, speedup = f"{dense_ms:.0f}", f"{dense_ms / tile_ms:.1f}x"
        else:
            dense = f"skipped ({pairs / 1e9:.1f}e9 pixel-Gaussian pairs, ~{40 * pairs / 2**30:.0f} GiB unblocked)"
            speedup = "-"
        full_ms = time_full(scene, width, height, repeats)
        rows.append(f"| {width}x{height} | {n:,} | {n_isect:,} | {tile_ms:.0f} | {dense} | {speedup} | {full_ms:.0f} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


def cuda_table(repeats: int) -> str:
    """gsplat (CUDA) vs our torch backend on the same scenes through ``rasterize``: parity and speed."""
    rows = [
        "| image | Gaussians | max abs diff RGB | gsplat fwd+bwd (ms) | torch backend fwd+bwd (ms, CPU) |",
        "|---|---|---|---|---|",
    ]
    for width, height, n in SIZES:
        outs = {}
        for device in ("cuda", "cpu"):
            scene = make_scene(n, width, height, device=device)
            scene["colors"].requires_grad_()

            def step(scene=scene) -> torch.Tensor:
                render, alpha, _ = rasterize(**scene, width=width, height=height, sh_degree=3)
                (render.sum() + alpha.sum()).backward()
                return render.detach()

            outs[device] = (step().cpu(), median_ms(step, repeats))
        diff = (outs["cuda"][0] - outs["cpu"][0]).abs().max().item()
        rows.append(f"| {width}x{height} | {n:,} | {diff:.2e} | {outs['cuda'][1]:.1f} | {outs['cpu'][1]:.0f} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--block-size", type=int, default=8, help="compositing block of the tile rasterizer")
    args = parser.parse_args()

    table = cpu_table(args.repeats, args.block_size)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    sections = [
        "## Rasterizer (CPU tile backend)",
        "",
        "Command: `python -m benchmarks.rasterizer`",
        "",
        f"Machine: {machine_description()}",
        "",
        "Forward+backward of compositing only (projected 2D Gaussians as leaf inputs, RGB, one camera), median of "
        f"{args.repeats} runs after a warm-up (dense: half as many); gsplat tile size 16, compositing blocks of "
        f"{args.block_size} px, chunks of 2^20 padded elements (about 40 MB of live buffers). Scene: Gaussians uniformly over the "
        "frustum at depth 2-10, 1-sigma footprints 0.5-5 px log-uniform, opacity 0.05-0.95. Dense = every Gaussian "
        "at every pixel with plain autograd (`fourd_ns/gaussians/dense_reference.py`), in checkpointed row blocks "
        "so it fits in memory (checkpointing repeats its forward in the backward). The last column is the whole "
        "CPU path (projection, SH degree 3, compositing) with gradients to all Gaussian parameters. The machine's cores may be shared with other jobs; load average (1/5/15 min) at the "
        f"end of the run: {load}.",
        "",
        table,
    ]
    if torch.cuda.is_available():
        sections += ["", "### gsplat (CUDA) vs torch backend, full `rasterize` with SH degree 3", "", cuda_table(args.repeats)]
    write_section("rasterizer", "\n".join(sections))


if __name__ == "__main__":
    main()
