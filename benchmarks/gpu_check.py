"""The prepared check of the CUDA path: one command to run first whenever a GPU machine is lent (issue 16).

Run from the repository root (``docs/gpu_check.md`` gives the exact device command and the wheels it needs)::

    python -m benchmarks.gpu_check --device cuda --out OUT      # on the GPU machine
    python -m benchmarks.gpu_check --device cpu --preset tiny --out OUT   # the CPU dry run of CI
    python -m benchmarks.gpu_check --report OUT/gpu_check.json  # its section into docs/benchmarks.md

Parts, in this order, each isolated (an exception is recorded with its traceback and the next part runs):

- ``gsplat_build``: gsplat's JIT build of its CUDA extension, timed on its own so no later timing includes it.
- ``parity``: gsplat's CUDA ``rasterization`` against our tile rasterizer (``rasterize(..., backend="torch")``) on
  the same random scenes and CUDA tensors: images, alphas, depths, gradients to every input, and the ``info`` fields
  that ``DefaultStrategy`` reads (``means2d`` and its gradient, ``radii``, ``width`` / ``height`` / ``n_cameras``).
- ``densification``: one ``DefaultStrategy`` refinement driven by gsplat's own ``info``, beside the same step driven
  by ours.
- ``training``: every registered fourd_ns method trained on a small synthetic scene through ``ns-train``'s own path
  (the quickstart schedule compressed to a few hundred iterations), evaluated on the test camera: PSNR, it/s.
- ``speed``: forward+backward of the full ``rasterize`` (SH degree 3) at the three sizes of
  ``benchmarks/rasterizer.py``: gsplat on CUDA, our rasterizer on CUDA, our rasterizer on the CPU.
- ``sparse``: forward+backward of ``SparseResUNet`` per sparse-convolution backend (pure torch; spconv when a CUDA
  build is installed), and the two backends' outputs compared with the same weights.

Every part reads one deadline (``--budget-s``): what would start after it is recorded as skipped, so the command ends
inside the device tool's limit. ``gpu_check.json`` and ``gpu_check.md`` (the ``gpu-check`` section of
``docs/benchmarks.md``) are rewritten after every part, so a run stopped at its time limit keeps what finished.
On the CPU the gsplat parts are skipped with a message and the rest runs at the ``tiny`` sizes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

SECTION = "gpu-check"
PART_NAMES = ("gsplat_build", "parity", "densification", "training", "speed", "sparse")

# Parity tolerances on ‖ours − gsplat‖ / ‖gsplat‖ (float64 norms of float32 results; NaN never passes).
# gsplat's kernels use fast-math exp and another summation order; beyond rounding, a Gaussian that sits exactly at a
# threshold (alpha 1/255, the transmittance stop, a radius rounded up to the next pixel, which moves its tile
# footprint) can be composited at a pixel by one rasterizer and not by the other. That changes a few pixels by up to
# ~1e-2 and moves gradients more than images, hence the looser gradient bound.
PROJECTION_REL_TOL = 1e-4
"""``info`` means2d, depths, conics, opacities: pure projection arithmetic."""
FORWARD_REL_TOL = 1e-3
"""Rendered image, alpha and depth."""
GRADIENT_REL_TOL = 1e-2
"""Gradients to every input and to ``info["means2d"]`` (and its ``absgrad``)."""
RADII_MISMATCH_TOL = 1e-3
"""Largest fraction of (camera, Gaussian) radii that may differ, each by at most one pixel."""
ED_MIN_ALPHA = 0.05
"""Expected depth (depth / alpha) is compared only where gsplat's alpha reaches this; below it the division
amplifies rounding without bound."""


@dataclass(frozen=True)
class ParityCase:
    """One random scene rendered by both rasterizers."""

    name: str
    gaussians: int
    width: int
    height: int
    cameras: int
    sh_degree: Optional[int]
    """3: degree-3 SH colours; None: plain RGB features."""
    render_mode: str
    """``RGB+D`` or ``RGB+ED``: parity compares the depth channel too."""
    rasterize_mode: str
    backgrounds: bool
    absgrad: bool


@dataclass(frozen=True)
class Preset:
    """Sizes of one run: ``full`` for the GPU machine, ``tiny`` for the CPU dry run."""

    parity_cases: Tuple[ParityCase, ...]
    densify_gaussians: int
    speed_sizes: Tuple[Tuple[int, int, int], ...]
    """(width, height, Gaussians) per row."""
    gsplat_repeats: int
    torch_repeats: int
    scene_frames: int
    scene_width: int
    scene_height: int
    iterations: int
    min_psnr: float
    """Test-view PSNR below which a training counts as broken (a sanity bound, not a quality target)."""
    sparse_points: int
    sparse_tiny: bool
    """The two-level test network instead of the default SparseResUNet widths."""


def _parity_cases(gaussians: int, width: int, height: int) -> Tuple[ParityCase, ...]:
    return (
        ParityCase("sh3, 2 cameras, background, RGB+D", gaussians, width, height, 2, 3, "RGB+D", "classic", True,
                   False),
        ParityCase("rgb, antialiased, absgrad, RGB+ED", gaussians, width, height, 1, None, "RGB+ED", "antialiased",
                   False, True),
    )  # fmt: skip


PRESETS: Dict[str, Preset] = {
    "full": Preset(
        parity_cases=_parity_cases(4000, 128, 96), densify_gaussians=2000,
        speed_sizes=((64, 64, 1_000), (128, 128, 10_000), (320, 180, 50_000)),  # benchmarks/rasterizer.py SIZES
        gsplat_repeats=20, torch_repeats=5, scene_frames=24, scene_width=160, scene_height=90, iterations=300,
        min_psnr=15.0,
        sparse_points=200_000, sparse_tiny=False,
    ),
    "tiny": Preset(
        parity_cases=_parity_cases(150, 32, 24), densify_gaussians=100, speed_sizes=((32, 24, 200),),
        gsplat_repeats=2, torch_repeats=1, scene_frames=8, scene_width=64, scene_height=36, iterations=2, min_psnr=0.0,
        sparse_points=2_000, sparse_tiny=True,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class TrainingCase:
    """How the training part runs one method: the synthetic scene it trains on."""

    scene: str
    """``nerfies``: a ``fourd-synth`` bell read by ``nerfies-data``; ``driving``: a ``fourd-synth-driving`` log
    (preset ``small``) read by ``pandaset-data``."""
    learned_optimizer: bool = False
    """g3r-style: no deformation schedule; the run is 12 learned steps with an untrained tiny learned optimizer
    (its gradient skip path descends; `g3r_weights`) and then fine-tuning for the rest of the iterations."""


TRAINING_CASES: Dict[str, TrainingCase] = {
    "deform4d": TrainingCase("nerfies"),
    "flag4d": TrainingCase("nerfies"),
    "g3r": TrainingCase("driving", learned_optimizer=True),
    "flux4d": TrainingCase("driving"),
}
"""Methods the training part expects, in order. Registered fourd_ns methods missing here train on the ``nerfies``
scene; listed methods that are not registered are reported as skipped."""


TRAINING_MIN_SECONDS = 60.0
"""Budget left below which no further method starts training (set-up, a few hundred iterations and evaluation)."""


class Skip(Exception):
    """A part (or one of its steps) that cannot run here; the message says why."""


@dataclass
class Context:
    """What every part reads: the device under test, sizes, scratch folder and the run's deadline."""

    device: str
    preset: Preset
    work_dir: Path
    deadline: float
    methods: Optional[List[str]] = None
    """Methods the training part trains; None: those of ``TRAINING_CASES`` and every other registered one."""
    gsplat_cuda: bool = False
    """Whether gsplat's CUDA extension is built and loaded (set by the ``gsplat_build`` part)."""

    def time_left(self) -> float:
        return self.deadline - time.perf_counter()

    def require_time(self, seconds: float, what: str) -> None:
        if self.time_left() < seconds:
            left = max(self.time_left(), 0.0)
            raise Skip(f"time budget spent ({left:.0f} s left, {what} needs about {seconds:.0f} s)")

    def require_gsplat(self) -> None:
        if self.device != "cuda":
            raise Skip("gsplat's CUDA kernels need --device cuda (this is the CPU dry run)")
        if not self.gsplat_cuda:
            raise Skip("gsplat's CUDA extension did not build or load (see the gsplat_build part)")


def configure_cuda_build(build_dir: Path, jobs: int, arch: str) -> Dict[str, str]:
    """Environment for gsplat's JIT build, set before anything imports ``torch.utils.cpp_extension`` (which reads
    ``CUDA_HOME`` once) or gsplat's backend (which reads ``MAX_JOBS``). Values already set are kept.

    Without ``CUDA_HOME`` / ``CUDA_PATH`` torch takes the parent of ``which nvcc`` as the toolkit; a wrapper script in
    ``/usr/local/bin`` (as on this project's development machines) makes that ``/usr/local``, which has no CUDA
    headers, so ``CUDA_HOME`` is set to the first candidate holding ``include/cuda_runtime.h``, and its ``bin`` goes
    on PATH when gsplat's ``nvcc`` probe would find none."""
    os.environ.setdefault("MAX_JOBS", str(jobs))
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", arch)
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(build_dir))
    if "CUDA_HOME" not in os.environ and "CUDA_PATH" not in os.environ:
        nvcc = shutil.which("nvcc")
        candidates = [Path(os.path.realpath(nvcc)).parents[1]] if nvcc else []
        candidates += sorted(Path("/usr/local").glob("cuda*"))
        for root in candidates:
            if (root / "include" / "cuda_runtime.h").exists():
                os.environ["CUDA_HOME"] = str(root)
                break
    if "CUDA_HOME" in os.environ and shutil.which("nvcc") is None:
        os.environ["PATH"] = f"{Path(os.environ['CUDA_HOME']) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return {k: os.environ.get(k, "") for k in ("MAX_JOBS", "TORCH_CUDA_ARCH_LIST", "TORCH_EXTENSIONS_DIR", "CUDA_HOME")}


def _version(distribution: str) -> Optional[str]:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _command_output(argv: Sequence[str]) -> Optional[str]:
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def device_info(device: str) -> dict:
    """The machine: GPU name and memory, driver, CUDA, torch, gsplat, nerfstudio and the rest of the stack."""
    from benchmarks.report import machine_description

    info = {
        "device": device,
        "machine": machine_description(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "versions": {name: _version(name) for name in ("gsplat", "nerfstudio", "fourd_ns", "numpy", "spconv")},
    }
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        nvcc = _command_output(["nvcc", "--version"])
        info.update(
            gpu=torch.cuda.get_device_name(0),
            compute_capability=".".join(map(str, torch.cuda.get_device_capability(0))),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            driver=_command_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
            nvcc=nvcc.splitlines()[-1] if nvcc else None,
        )
    return info


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_ms(fn: Callable[[], None], device: str, repeats: int, warmup: int) -> float:
    """Median wall time of ``fn`` in ms, the device synchronised before and after each run, after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(times)


# --- gsplat build -----------------------------------------------------------------------------------------------


def part_gsplat_build(ctx: Context) -> dict:
    """Import gsplat's CUDA backend, which JIT-compiles the extension on first use (or loads the cached build)."""
    if ctx.device != "cuda":
        raise Skip("gsplat builds its CUDA extension only for --device cuda (this is the CPU dry run)")
    if not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but torch sees no CUDA device")
    # What the build needs besides nvcc, recorded so that a failed build can be read off the JSON.
    python_h = Path(sysconfig.get_paths()["include"]) / "Python.h"
    toolchain = {"nvcc": shutil.which("nvcc"), "c++": shutil.which(os.environ.get("CXX", "c++")),
                 "ninja": shutil.which("ninja"), "Python.h": str(python_h) if python_h.exists() else None}  # fmt: skip
    print(f"[gpu_check] gsplat JIT build toolchain: {toolchain}", flush=True)
    start = time.perf_counter()
    from gsplat.cuda._backend import _C

    seconds = time.perf_counter() - start
    if _C is None:
        raise RuntimeError(f"gsplat's CUDA extension is unavailable (gsplat found no nvcc); toolchain: {toolchain}")
    ctx.gsplat_cuda = True
    return {"seconds_to_build_or_load": seconds, "extension": getattr(_C, "__file__", str(_C)), "toolchain": toolchain}


# --- rasterizer parity ------------------------------------------------------------------------------------------


def parity_inputs(case: ParityCase, device: str, seed: int) -> Dict[str, torch.Tensor]:
    """The benchmark's random scene (``benchmarks.rasterizer.make_scene``) with ``case.cameras`` cameras (each further
    one turned 4° about y and shifted), RGB or SH-3 colours and optional backgrounds."""
    from benchmarks.rasterizer import make_scene

    scene = make_scene(case.gaussians, case.width, case.height, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    viewmats = []
    for cam in range(case.cameras):
        angle = math.radians(4.0 * cam)
        view = torch.eye(4)
        cos, sin = math.cos(angle), math.sin(angle)
        view[0, 0], view[0, 2], view[2, 0], view[2, 2] = cos, sin, -sin, cos
        view[0, 3] = -0.1 * cam
        viewmats.append(view)
    scene["viewmats"] = torch.stack(viewmats)
    scene["Ks"] = scene["Ks"].expand(case.cameras, -1, -1).clone()
    if case.sh_degree is None:
        scene["colors"] = torch.rand(case.gaussians, 3, generator=g)
    if case.backgrounds:
        scene["backgrounds"] = torch.rand(case.cameras, 3, generator=g)
    return {k: v.to(device) for k, v in scene.items()}


DIFFERENTIABLE_INPUTS = ("means", "quats", "scales", "opacities", "colors", "viewmats", "backgrounds")


def render_for_parity(case: ParityCase, inputs: Dict[str, torch.Tensor], backend: str, seed: int) -> dict:
    """Render ``inputs`` with ``backend``, back-propagate one fixed random linear loss of image, alpha and (accumulated)
    depth, and return every tensor that parity compares (detached)."""
    from fourd_ns.gaussians.rasterize import rasterize

    leaves = {k: v.detach().clone().requires_grad_(k in DIFFERENTIABLE_INPUTS) for k, v in inputs.items()}
    render, alpha, info = rasterize(
        **leaves, width=case.width, height=case.height, sh_degree=case.sh_degree, render_mode=case.render_mode,
        rasterize_mode=case.rasterize_mode, absgrad=case.absgrad, backend=backend,
    )  # fmt: skip
    info["means2d"].retain_grad()
    g = torch.Generator().manual_seed(seed + 2)
    weights = torch.randn(render.shape, generator=g).to(render.device)
    alpha_weights = torch.randn(alpha.shape, generator=g).to(alpha.device)
    if case.render_mode.endswith("+ED"):
        weights[..., -1] = 0.0  # depth / alpha: unbounded where alpha is small, so left out of the loss
    else:
        weights[..., -1] *= 0.1  # accumulated depth reaches 10; keep its share of the loss near the colours'
    ((render * weights).sum() + (alpha * alpha_weights).sum()).backward()
    out = {
        "image": render[..., :3], "alpha": alpha, "depth": render[..., 3],
        "info.means2d": info["means2d"], "info.depths": info["depths"], "info.conics": info["conics"],
        "info.opacities": info["opacities"], "info.radii": info["radii"], "grad.info.means2d": info["means2d"].grad,
        **{f"grad.{k}": v.grad for k, v in leaves.items() if v.requires_grad},
        "info.sizes": {k: int(info[k]) for k in ("width", "height", "n_cameras", "tile_size")},
    }  # fmt: skip
    if case.absgrad:
        out["absgrad.info.means2d"] = info["means2d"].absgrad
    return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in out.items()}


def compare_tensors(ours: torch.Tensor, reference: torch.Tensor, tolerance: float, mask=None) -> dict:
    """Relative L2 error and largest absolute difference, in float64; fails on NaN/inf or a shape mismatch."""
    if ours.shape != reference.shape:
        return {"ok": False, "error": f"shape {tuple(ours.shape)} vs {tuple(reference.shape)}"}
    a, b = ours.double(), reference.double()
    if mask is not None:
        a, b = a[mask], b[mask]
    finite = bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())
    diff = a - b
    rel = float(diff.norm() / b.norm()) if float(b.norm()) > 0 else float(diff.norm())
    max_abs = float(diff.abs().max()) if diff.numel() else 0.0
    return {"rel_l2": rel, "max_abs": max_abs, "tolerance": tolerance, "ok": finite and rel <= tolerance}


def compare_radii(ours: torch.Tensor, reference: torch.Tensor) -> dict:
    if ours.shape != reference.shape:
        return {"ok": False, "error": f"shape {tuple(ours.shape)} vs {tuple(reference.shape)}"}
    differ = ours != reference
    fraction = float(differ.float().mean())
    largest = int((ours.long() - reference.long()).abs().max()) if ours.numel() else 0
    culled = float(((ours > 0) != (reference > 0)).float().mean())
    ok = fraction <= RADII_MISMATCH_TOL and largest <= 1
    return {"mismatch_fraction": fraction, "max_diff_px": largest, "culling_mismatch_fraction": culled,
            "tolerance": RADII_MISMATCH_TOL, "ok": ok}  # fmt: skip


def parity_case(case: ParityCase, device: str, reference: str = "gsplat", seed: int = 0) -> dict:
    """Every compared quantity of ``case``: our torch rasterizer against ``reference`` on ``device`` tensors.

    Per-(camera, Gaussian) ``info`` tensors are compared where both rasterizers keep the Gaussian (radius > 0): gsplat
    allocates them uninitialised and never writes the culled entries."""
    inputs = parity_inputs(case, device, seed)
    ref = render_for_parity(case, inputs, reference, seed)
    ours = render_for_parity(case, inputs, "torch", seed)
    kept = (ref["info.radii"] > 0) & (ours["info.radii"] > 0)
    checks = {}
    for key, value in ref.items():
        if key == "info.radii":
            checks[key] = compare_radii(ours[key], value)
        elif key == "info.sizes":
            checks[key] = {"ours": ours[key], "reference": value, "ok": ours[key] == value}
        elif key == "depth" and case.render_mode.endswith("+ED"):
            mask = ref["alpha"][..., 0] >= ED_MIN_ALPHA
            checks[key] = compare_tensors(ours[key], value, FORWARD_REL_TOL, mask=mask)
        elif value is None or ours.get(key) is None:
            present = f"reference {value is not None}, ours {ours.get(key) is not None}"
            checks[key] = {"ok": False, "error": f"missing: {present}"}
        else:
            tolerance = (GRADIENT_REL_TOL if key.startswith(("grad.", "absgrad.")) else
                         PROJECTION_REL_TOL if key.startswith("info.") else FORWARD_REL_TOL)  # fmt: skip
            per_gaussian = key.endswith("info.means2d") or key.startswith("info.")
            checks[key] = compare_tensors(ours[key], value, tolerance, mask=kept if per_gaussian else None)
    return {"case": asdict(case), "reference": reference, "checks": checks,
            "passed": all(c["ok"] for c in checks.values())}  # fmt: skip


def part_parity(ctx: Context) -> dict:
    ctx.require_gsplat()
    cases, skipped = [], {}
    for index, case in enumerate(ctx.preset.parity_cases):
        try:
            ctx.require_time(10, "a parity case")
            cases.append(parity_case(case, ctx.device, "gsplat", seed=index))
        except Skip as reason:
            skipped[case.name] = str(reason)
    passed = bool(cases) and all(c["passed"] for c in cases)
    return {"tolerances": _tolerances(), "cases": cases, "skipped": skipped, "passed": passed}


def _tolerances() -> dict:
    return {"projection_rel_l2": PROJECTION_REL_TOL, "forward_rel_l2": FORWARD_REL_TOL,
            "gradient_rel_l2": GRADIENT_REL_TOL, "radii_mismatch_fraction": RADII_MISMATCH_TOL,
            "expected_depth_min_alpha": ED_MIN_ALPHA}  # fmt: skip


# --- densification ----------------------------------------------------------------------------------------------


def densify_once(backend: str, device: str, gaussians: int, grow_grad2d: Optional[float] = None,
                 seed: int = 0) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """Two steps of gsplat's ``DefaultStrategy`` on a random scene, driven by ``backend``'s ``info``: step 1 only
    accumulates the screen-space statistics, step 2 refines (duplicate, split, prune). The growth threshold is
    ``grow_grad2d``, or when None the median averaged gradient of step 1, so that the count after refinement depends
    on the gradients' values rather than on a threshold every Gaussian passes. Returns a summary and the statistics
    accumulated by step 1 (``grad2d``, ``count``, ``radii``, on the CPU)."""
    from gsplat.strategy import DefaultStrategy

    from fourd_ns.gaussians.rasterize import rasterize

    case = ParityCase("densify", gaussians, 64, 48, 1, 3, "RGB", "classic", False, False)
    scene = parity_inputs(case, device, seed)
    params = torch.nn.ParameterDict({
        "means": scene["means"], "quats": scene["quats"], "scales": torch.log(scene["scales"]),
        "opacities": torch.logit(scene["opacities"]), "sh": scene["colors"],
    })  # fmt: skip
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=2, reset_every=10**6, refine_scale2d_stop_iter=10**6,
                               verbose=False)  # fmt: skip
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=1.0)
    target = torch.rand(1, case.height, case.width, 3, generator=torch.Generator().manual_seed(seed)).to(device)
    before = len(params["means"])
    accumulated: Dict[str, torch.Tensor] = {}
    for step in (1, 2):
        render, _, info = rasterize(
            params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
            params["sh"], scene["viewmats"], scene["Ks"], case.width, case.height, sh_degree=3, backend=backend,
        )  # fmt: skip
        strategy.step_pre_backward(params, optimizers, state, step, info)
        (render - target).abs().mean().backward()
        if step == 2:
            accumulated = {k: state[k].detach().cpu().clone() for k in ("grad2d", "count", "radii")}
            visible = state["count"] > 0
            threshold = float((state["grad2d"][visible] / state["count"][visible]).median())
            strategy.grow_grad2d = threshold if grow_grad2d is None else grow_grad2d
        for optimizer in optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
    lengths = {k: len(p) for k, p in params.items()}
    adam = {k: len(opt.state[opt.param_groups[0]["params"][0]]["exp_avg"]) for k, opt in optimizers.items()}
    if len({*lengths.values(), *adam.values()}) != 1:
        raise RuntimeError(f"parameters and optimizer states disagree after refinement: {lengths}, {adam}")
    summary = {"gaussians_before": before, "gaussians_after": lengths["means"], "grow_grad2d": strategy.grow_grad2d}
    return summary, accumulated


def mismatch_fraction(ours: torch.Tensor, reference: torch.Tensor, tolerance: float) -> dict:
    """Fraction of elements that differ at all (for counts and radii, which should agree exactly)."""
    if ours.shape != reference.shape:
        return {"ok": False, "error": f"shape {tuple(ours.shape)} vs {tuple(reference.shape)}"}
    fraction = float((ours != reference).float().mean()) if ours.numel() else 0.0
    return {"mismatch_fraction": fraction, "tolerance": tolerance, "ok": fraction <= tolerance}


def part_densification(ctx: Context) -> dict:
    """gsplat's refinement driven by gsplat's own ``info`` and, on the same device and threshold, by ours; the
    statistics DefaultStrategy accumulated from each are compared."""
    summaries, states, skipped = {}, {}, {}
    try:
        ctx.require_gsplat()
        summaries["gsplat"], states["gsplat"] = densify_once("gsplat", ctx.device, ctx.preset.densify_gaussians)
    except Skip as reason:
        skipped["gsplat"] = str(reason)
    threshold = summaries["gsplat"]["grow_grad2d"] if "gsplat" in summaries else None
    summaries["torch"], states["torch"] = densify_once("torch", ctx.device, ctx.preset.densify_gaussians, threshold)
    result: dict = {**summaries, "skipped": skipped}
    if "gsplat" in states:
        ours, ref = states["torch"], states["gsplat"]
        result["accumulated_after_step1"] = {
            "grad2d": compare_tensors(ours["grad2d"], ref["grad2d"], GRADIENT_REL_TOL),
            "count": mismatch_fraction(ours["count"], ref["count"], RADII_MISMATCH_TOL),
            "radii": mismatch_fraction(ours["radii"], ref["radii"], RADII_MISMATCH_TOL),
        }
    refined = summaries.get("gsplat", summaries["torch"])
    checks = result.get("accumulated_after_step1", {}).values()
    result["passed"] = refined["gaussians_after"] != refined["gaussians_before"] and all(c["ok"] for c in checks)
    return result


# --- training ---------------------------------------------------------------------------------------------------


def registered_methods() -> List[str]:
    """fourd_ns's methods among the installed ``nerfstudio.method_configs`` entry points (what ns-train lists)."""
    return sorted(e.name for e in importlib.metadata.entry_points(group="nerfstudio.method_configs")
                  if e.value.startswith("fourd_ns."))  # fmt: skip


def compressed_schedule(iterations: int) -> List[str]:
    """The quickstart's proportions at ``iterations``: 1500 iterations with 500 static warm-up steps and
    densification from step 500 every 100 become a third static, densification from a third on, every tenth step
    (the quickstart's own 500/100 would leave a few hundred iterations with no deformation and no densification)."""
    third, tenth = max(iterations // 3, 1), max(iterations // 10, 1)
    return ["--pipeline.model.static-warmup-steps", str(third), "--pipeline.model.warmup-length", str(third),
            "--pipeline.model.refine-every", str(tenth)]  # fmt: skip


def scene_folder(kind: str, preset: Preset) -> str:
    """Folder name of a training scene under ``WORK/scenes``, keyed by what it is generated from."""
    if kind == "nerfies":
        return f"nerfies-bell-{preset.scene_frames}x{preset.scene_width}x{preset.scene_height}"
    return f"{kind}-small-seed0"


def training_scene(kind: str, ctx: Context) -> Tuple[Path, Tuple[str, ...]]:
    """The scene of ``kind`` (generated once per work folder) and the dataparser arguments for it."""
    p = ctx.preset
    folder = ctx.work_dir / "scenes" / scene_folder(kind, p)
    if kind == "nerfies":
        if not (folder / "dataset.json").exists():
            from fourd_ns.synthetic.generate import generate_scene

            generate_scene("bell", folder, num_frames=p.scene_frames, width=p.scene_width, height=p.scene_height)
        return folder, ("nerfies-data", "--downscale-factor", "1")
    if kind == "driving":
        if not folder.exists():
            from fourd_ns.synthetic.driving import generate_driving_scene

            generate_driving_scene(folder, 0, "small")
        return folder, ("pandaset-data",)
    raise ValueError(f"unknown training scene {kind!r}; add it to training_scene()")


def g3r_weights(ctx: Context) -> Path:
    """An untrained tiny G3R learned optimizer in the checkpoint format (no trained weights travel to the GPU)."""
    from fourd_ns.learning import write_model_folder
    from fourd_ns.networks.g3r_net import TINY_NETWORK, G3RLearnedOptimizer, G3RNetworkConfig

    folder = ctx.work_dir / "g3r-untrained"
    if not (folder / "model.safetensors").exists():
        torch.manual_seed(0)
        config = G3RNetworkConfig(**TINY_NETWORK)
        write_model_folder(folder, G3RLearnedOptimizer(config), config.to_dict())
    return folder


def train_method(method: str, case: TrainingCase, ctx: Context) -> dict:
    """``ns-train <method>`` in-process (``benchmarks.train_eval``) on ``ctx.device``, then its test-camera metrics."""
    from benchmarks.train_eval import train_and_evaluate, train_args

    scene, dataparser = training_scene(case.scene, ctx)
    iterations = ctx.preset.iterations
    if case.learned_optimizer:
        steps = min(12, iterations)
        extra = ["--pipeline.model.weights", str(g3r_weights(ctx)), "--pipeline.model.num-steps", str(steps),
                 "--pipeline.model.finetune-steps", str(iterations - steps)]  # fmt: skip
        args = train_args(method, scene, ctx.work_dir / "runs", iterations, ctx.device, method, extra=extra,
                          dataparser=dataparser, schedule=False)  # fmt: skip
    else:
        args = train_args(method, scene, ctx.work_dir / "runs", iterations, ctx.device, method,
                          extra=compressed_schedule(iterations), dataparser=dataparser)  # fmt: skip
    if ctx.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    row = train_and_evaluate(args)
    row["command"] = row["command"].replace(str(ctx.work_dir), "WORK")
    if ctx.device == "cuda":
        row["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.empty_cache()
    row["passed"] = math.isfinite(row["psnr"]) and row["psnr"] > ctx.preset.min_psnr
    return row


def part_training(ctx: Context) -> dict:
    shutil.rmtree(ctx.work_dir / "runs", ignore_errors=True)  # evaluation loads a run folder's latest checkpoint
    registered = registered_methods()
    methods = ctx.methods or [*TRAINING_CASES, *(m for m in registered if m not in TRAINING_CASES)]
    results = {}
    for method in methods:
        if method not in registered:
            results[method] = {"status": "skipped", "message": "not registered (no nerfstudio.method_configs entry)"}
            continue
        start = time.perf_counter()
        try:
            ctx.require_time(TRAINING_MIN_SECONDS, f"training {method}")
            case = TRAINING_CASES.get(method, TrainingCase("nerfies"))
            results[method] = {"status": "ok", **train_method(method, case, ctx)}
        except Skip as reason:
            results[method] = {"status": "skipped", "message": str(reason)}
        except Exception:  # one method's failure must not hide the next one's result
            results[method] = {"status": "error", "traceback": traceback.format_exc()}
        results[method]["seconds"] = round(time.perf_counter() - start, 1)
    ran = [r for r in results.values() if r["status"] != "skipped"]
    schedule = "quickstart + " + " ".join(compressed_schedule(ctx.preset.iterations))
    passed = bool(ran) and all(r["status"] == "ok" and r["passed"] for r in ran)
    return {"iterations": ctx.preset.iterations, "schedule": schedule, "methods": results, "passed": passed}


# --- speed ------------------------------------------------------------------------------------------------------


def time_rasterize(width: int, height: int, gaussians: int, device: str, backend: str, repeats: int) -> float:
    """Median ms of one forward+backward of the full ``rasterize`` (projection, SH degree 3, compositing) with
    gradients to every Gaussian parameter, on the CPU benchmark's scene."""
    from benchmarks.rasterizer import make_scene
    from fourd_ns.gaussians.rasterize import rasterize

    scene = make_scene(gaussians, width, height, device=device)
    leaves = {k: (v if k in ("viewmats", "Ks") else v.requires_grad_()) for k, v in scene.items()}

    def step() -> None:
        render, alpha, _ = rasterize(**leaves, width=width, height=height, sh_degree=3, backend=backend)
        (render.sum() + alpha.sum()).backward()

    return median_ms(step, device, repeats, warmup=max(1, repeats // 5))


def part_speed(ctx: Context) -> dict:
    p = ctx.preset
    columns = [("gsplat_cuda_ms", "cuda", "gsplat", p.gsplat_repeats),
               ("ours_cuda_ms", "cuda", "torch", p.torch_repeats),
               ("ours_cpu_ms", "cpu", "torch", p.torch_repeats)]  # fmt: skip
    rows, skipped = [], {}
    for width, height, gaussians in p.speed_sizes:
        row: dict = {"image": f"{width}x{height}", "gaussians": gaussians}
        for key, device, backend, repeats in columns:
            try:
                if backend == "gsplat":
                    ctx.require_gsplat()
                elif device == "cuda" and ctx.device != "cuda":
                    raise Skip("our rasterizer on CUDA needs --device cuda")
                ctx.require_time(5, f"{key} at {row['image']}")
                row[key] = time_rasterize(width, height, gaussians, device, backend, repeats)
            except Skip as reason:
                row[key] = None
                skipped[key] = str(reason)
        rows.append(row)
    return {"rows": rows, "skipped": skipped, "cpu_threads": torch.get_num_threads(),
            "repeats": {"gsplat": p.gsplat_repeats, "torch": p.torch_repeats}}  # fmt: skip


# --- sparse convolutions ----------------------------------------------------------------------------------------


def part_sparse(ctx: Context) -> dict:
    """SparseResUNet forward+backward per backend on random points in a 80 m x 80 m x 8 m street volume (0.2 m
    voxels), and the largest output difference between backends with the same weights."""
    try:
        unet = importlib.import_module("fourd_ns.networks.sparse.unet")
        backends_module = importlib.import_module("fourd_ns.networks.sparse.backend")
        from fourd_ns.networks.sparse.sparse_tensor import SparseTensor
        from fourd_ns.networks.sparse.voxelize import voxelize
    except ModuleNotFoundError as missing:
        raise Skip(f"fourd_ns.networks.sparse is not importable in this tree ({missing})") from missing
    device = torch.device(ctx.device)
    g = torch.Generator().manual_seed(0)
    points = torch.rand(ctx.preset.sparse_points, 3, generator=g) * torch.tensor([80.0, 80.0, 8.0])
    voxels = voxelize(points.to(device), 0.2)
    features = torch.randn(voxels.num_voxels, 4, generator=g).to(device)
    make_config = unet.SparseUNetConfig.tiny if ctx.preset.sparse_tiny else unet.SparseUNetConfig
    backends = ["torch"]
    skipped = {}
    if ctx.device == "cuda" and backends_module.spconv_has_cuda():
        backends.append("spconv")
    else:
        skipped["spconv"] = ("spconv is not installed" if not backends_module.spconv_installed() else
                             "spconv's backward needs CUDA and a CUDA build of spconv")  # fmt: skip
    torch.manual_seed(0)
    networks = {name: unet.SparseResUNet(make_config(4, 16, backend=name)).to(device) for name in backends}
    for name in backends[1:]:
        networks[name].load_state_dict(networks["torch"].state_dict())
    results, outputs = {}, {}
    for name, network in networks.items():
        ctx.require_time(10, f"SparseResUNet with {name}")

        def step(network=network) -> torch.Tensor:
            x = SparseTensor(features.clone().requires_grad_(), voxels.coords)
            out = network(x).features
            out.square().mean().backward()
            return out.detach()

        outputs[name] = step()
        repeats = 5 if ctx.device == "cuda" else 1
        results[name] = {"forward_backward_ms": median_ms(step, ctx.device, repeats, warmup=1)}
    if "spconv" in outputs:
        results["spconv"]["vs_torch"] = compare_tensors(outputs["spconv"], outputs["torch"], FORWARD_REL_TOL)
    network = "tiny" if ctx.preset.sparse_tiny else "default"
    return {"voxels": voxels.num_voxels, "points": ctx.preset.sparse_points, "network": network,
            "backends": results, "skipped": skipped}  # fmt: skip


# --- running and reporting --------------------------------------------------------------------------------------

PARTS: Dict[str, Callable[[Context], dict]] = {
    "gsplat_build": part_gsplat_build, "parity": part_parity, "densification": part_densification,
    "training": part_training, "speed": part_speed, "sparse": part_sparse,
}  # fmt: skip


def run_part(name: str, ctx: Context) -> dict:
    """One part, isolated: its results, or the reason it was skipped, or the traceback of its failure."""
    print(f"[gpu_check] {name}: starting ({max(ctx.time_left(), 0):.0f} s of the budget left)", flush=True)
    start = time.perf_counter()
    try:
        record = {"status": "ok", **PARTS[name](ctx)}
    except Skip as reason:
        record = {"status": "skipped", "message": str(reason)}
    except Exception:  # the point of the check: record any failure and go on with the next part
        record = {"status": "error", "traceback": traceback.format_exc()}
        print(record["traceback"], file=sys.stderr, flush=True)
    record["seconds"] = round(time.perf_counter() - start, 1)
    print(f"[gpu_check] {name}: {_status(record)} in {record['seconds']:.0f} s", flush=True)
    return record


def _status(record: dict) -> str:
    if record["status"] != "ok" or "passed" not in record:
        return record["status"]
    return "ok, passed" if record["passed"] else "ok, FAILED checks"


def _fmt(value: Optional[float], spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _parity_markdown(part: dict) -> List[str]:
    cases = part["cases"]
    t = part["tolerances"]
    lines = [
        "### Rasterizer parity: our tile rasterizer vs gsplat, both on CUDA tensors", "",
        "Relative L2 error ‖ours − gsplat‖ / ‖gsplat‖ (largest absolute difference in brackets). Tolerances: "
        f"projection (`info` tensors) {t['projection_rel_l2']:g}, image / alpha / depth {t['forward_rel_l2']:g}, "
        f"gradients {t['gradient_rel_l2']:g}; radii may differ for a fraction {t['radii_mismatch_fraction']:g} of "
        f"(camera, Gaussian) pairs, by one pixel at most; expected depth is compared where alpha ≥ "
        f"{t['expected_depth_min_alpha']:g}. Cases: " + "; ".join(
            f"({i + 1}) {c['case']['name']}, {c['case']['gaussians']:,} Gaussians, "
            f"{c['case']['width']}x{c['case']['height']}" for i, c in enumerate(cases)) + ".", "",
        "| quantity | " + " | ".join(f"case {i + 1}" for i in range(len(cases))) + " |",
        "|---|" + "---|" * len(cases),
    ]  # fmt: skip
    keys = list(dict.fromkeys(k for c in cases for k in c["checks"]))
    for key in keys:
        cells = []
        for c in cases:
            check = c["checks"].get(key)
            if check is None:
                cells.append("-")
            elif "rel_l2" in check:
                cells.append(f"{check['rel_l2']:.1e} ({check['max_abs']:.1e})" + ("" if check["ok"] else " **FAIL**"))
            elif "mismatch_fraction" in check:
                cells.append(f"{check['mismatch_fraction']:.1e} differ, max {check['max_diff_px']} px"
                             + ("" if check["ok"] else " **FAIL**"))  # fmt: skip
            elif "ours" in check:
                cells.append("equal" if check["ok"] else f"**FAIL** {check['ours']} vs {check['reference']}")
            else:
                cells.append(f"**FAIL** {check.get('error', '')}")
        lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
    return lines + [f"- {name}: skipped ({reason})" for name, reason in part.get("skipped", {}).items()]


def _densification_markdown(part: dict) -> List[str]:
    lines = ["### One DefaultStrategy refinement", ""]
    for name, label in (("gsplat", "gsplat's `info`"), ("torch", "our `info`")):
        if name in part:
            run = part[name]
            lines.append(f"- {label}: {run['gaussians_before']:,} → {run['gaussians_after']:,} Gaussians "
                         f"(grow_grad2d {run['grow_grad2d']:.2e})")  # fmt: skip
        elif name in part.get("skipped", {}):
            lines.append(f"- {label}: skipped ({part['skipped'][name]})")
    for key, check in part.get("accumulated_after_step1", {}).items():
        value = f"rel L2 {check['rel_l2']:.1e}" if "rel_l2" in check else f"{check['mismatch_fraction']:.1e} differ"
        lines.append(f"- accumulated `{key}` (ours vs gsplat): {value}" + ("" if check["ok"] else " **FAIL**"))
    return lines


def _training_markdown(part: dict) -> List[str]:
    lines = [f"### Training ({part['iterations']} iterations; {part['schedule']})", "",
             "| method | status | PSNR | SSIM | Gaussians | train time (s) | it/s | peak GPU memory (GiB) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    commands = []
    for method, row in part["methods"].items():
        if row["status"] != "ok":
            reason = row.get("message") or row.get("traceback", "").strip().splitlines()[-1]
            lines.append(f"| {method} | {row['status']}: {reason} | | | | | | |")
            continue
        lines.append(f"| {method} | ok{'' if row['passed'] else ', **FAIL**'} | {row['psnr']:.2f} | {row['ssim']:.4f} "
                     f"| {row['gaussians']} | {row['train_seconds']:.0f} | {row['iterations_per_second']:.1f} "
                     f"| {_fmt(row.get('peak_gpu_memory_gib'), '.2f')} |")  # fmt: skip
        commands.append(f"- `{row['command']}`")
    return lines + (["", "Training commands (WORK = the check's scratch folder):", "", *commands] if commands else [])


def _speed_markdown(part: dict) -> List[str]:
    lines = [f"### Rasterizer speed, full `rasterize` (SH degree 3) forward+backward, median ms "
             f"(gsplat {part['repeats']['gsplat']} runs, ours {part['repeats']['torch']}, after warm-up; "
             f"CPU with {part['cpu_threads']} torch threads)", "",
             "| image | Gaussians | gsplat CUDA | ours CUDA | ours CPU | ours CUDA / gsplat |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for row in part["rows"]:
        ratio = (f"{row['ours_cuda_ms'] / row['gsplat_cuda_ms']:.1f}x"
                 if row.get("ours_cuda_ms") and row.get("gsplat_cuda_ms") else "-")  # fmt: skip
        lines.append(f"| {row['image']} | {row['gaussians']:,} | {_fmt(row['gsplat_cuda_ms'], '.2f')} "
                     f"| {_fmt(row['ours_cuda_ms'])} | {_fmt(row['ours_cpu_ms'], '.0f')} | {ratio} |")  # fmt: skip
    lines += [f"- {key}: skipped ({reason})" for key, reason in part.get("skipped", {}).items()]
    return lines


def _sparse_markdown(part: dict) -> List[str]:
    lines = [f"### SparseResUNet ({part['network']} widths) forward+backward, {part['voxels']:,} voxels from "
             f"{part['points']:,} points", ""]  # fmt: skip
    for name, run in part["backends"].items():
        extra = ""
        if "vs_torch" in run:
            vs = run["vs_torch"]
            extra = f", output vs torch: rel L2 {vs['rel_l2']:.1e}" + ("" if vs["ok"] else " **FAIL**")
        lines.append(f"- {name}: {run['forward_backward_ms']:.1f} ms{extra}")
    lines += [f"- {name}: skipped ({reason})" for name, reason in part.get("skipped", {}).items()]
    return lines


SECTION_WRITERS: Dict[str, Callable[[dict], List[str]]] = {
    "parity": _parity_markdown, "densification": _densification_markdown, "training": _training_markdown,
    "speed": _speed_markdown, "sparse": _sparse_markdown,
}  # fmt: skip


def render_markdown(results: dict) -> str:
    """The ``gpu-check`` section of docs/benchmarks.md for one run's JSON."""
    d = results["device"]
    if d["device"] == "cuda" and "gpu" not in d:
        where = "**no CUDA device visible to torch**"
    elif d["device"] == "cuda":
        where = (f"{d['gpu']} (compute {d['compute_capability']}, {d['gpu_memory_gib']} GiB), driver {d['driver']}, "
                 f"{d['nvcc']}")  # fmt: skip
    else:
        where = "CPU only (dry run)"
    versions = ", ".join(f"{k} {v}" for k, v in d["versions"].items() if v)
    commit = results.get("reported_commit")
    lines = [
        "## GPU check (CUDA path)", "",
        f"Command: `{results['command']}` (see `docs/gpu_check.md`)  ",
        f"Device: {where}; torch {d['torch']} (CUDA {d['torch_cuda']}), {versions}, Python {d['python']}, "
        f"{d['cpu_count']} CPU cores  ",
        f"Machine: {d['machine']}  ",
        f"Run: {results.get('elapsed_s', 0):.0f} s of a {results['budget_s']:.0f} s budget, preset "
        f"`{results['preset']}`" + (f"; reported at commit {commit}" if commit else ""),
        "", "| part | status | seconds | note |", "|---|---|---|---|",
    ]  # fmt: skip
    for name, part in results["parts"].items():
        note = part.get("message", "")
        if part["status"] == "error":
            note = "`" + part["traceback"].strip().splitlines()[-1].replace("|", "/") + "`"
        elif name == "gsplat_build" and part["status"] == "ok":
            note = f"extension built or loaded in {part['seconds_to_build_or_load']:.0f} s"
        lines.append(f"| {name} | {_status(part)} | {part['seconds']:.0f} | {note} |")
    for name, part in results["parts"].items():
        if part["status"] == "ok" and name in SECTION_WRITERS:
            lines += ["", *SECTION_WRITERS[name](part)]
    return "\n".join(lines) + "\n"


def write_outputs(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "gpu_check.md").write_text(render_markdown(results))


def run_check(args: argparse.Namespace, argv: Sequence[str]) -> dict:
    start = time.perf_counter()
    preset = PRESETS[args.preset]
    if args.iterations is not None:
        preset = replace(preset, iterations=args.iterations)
    build_env = configure_cuda_build(args.build_dir, args.jobs, args.cuda_arch) if args.device == "cuda" else {}
    ctx = Context(args.device, preset, args.work_dir, deadline=start + args.budget_s, methods=args.methods)
    results: dict = {
        "command": "python -m benchmarks.gpu_check " + " ".join(argv), "preset": args.preset, "budget_s": args.budget_s,
        "device": device_info(args.device), "build_env": build_env, "parts": {},
    }  # fmt: skip
    for name in args.parts:
        results["parts"][name] = run_part(name, ctx)
        results["elapsed_s"] = round(time.perf_counter() - start, 1)
        write_outputs(results, args.out)
    return results


def report(json_path: Path, benchmarks_md: Optional[Path] = None) -> Path:
    """Write the section of a finished run (its JSON, fetched from the device machine) into docs/benchmarks.md."""
    from benchmarks.report import BENCHMARKS_MD, write_section

    results = json.loads(json_path.read_text())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                            cwd=Path(__file__).resolve().parent).stdout.strip()  # fmt: skip
    results["reported_commit"] = commit or None
    return write_section(SECTION, render_markdown(results), benchmarks_md or BENCHMARKS_MD)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--out", type=Path, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="sizes (default: full on cuda, tiny on cpu)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="training iterations per method (default: the preset's)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="total time budget; later steps are skipped")
    parser.add_argument("--parts", nargs="+", choices=PART_NAMES, default=list(PART_NAMES))
    parser.add_argument("--methods", nargs="+", default=None,
                        help="methods to train (default: deform4d, flag4d, g3r, flux4d and any other registered one)")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "fourd_ns_gpu_check",
                        help="scratch: scenes and training runs (not under --out, whose files the device tool returns)")
    parser.add_argument("--build-dir", type=Path, default=Path("/tmp/fourd_ns_gsplat_build"),
                        help="TORCH_EXTENSIONS_DIR for gsplat's JIT build")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="MAX_JOBS of the JIT build")
    parser.add_argument("--cuda-arch", default="9.0", help="TORCH_CUDA_ARCH_LIST of the JIT build (H200: 9.0)")
    parser.add_argument("--report", type=Path, default=None,
                        help="write this run JSON's section into docs/benchmarks.md and exit")
    args = parser.parse_args(list(argv))
    if args.report is None and args.out is None:
        parser.error("--out is required (or --report FILE.json)")
    args.preset = args.preset or ("full" if args.device == "cuda" else "tiny")
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.report is not None:
        print(f"[gpu_check] wrote section {SECTION!r} of {report(args.report)}")
        return {}
    results = run_check(args, argv)
    print(f"[gpu_check] {args.out / 'gpu_check.json'}, {args.out / 'gpu_check.md'}; {results['elapsed_s']:.0f} s")
    for name, part in results["parts"].items():
        print(f"  {name:14s} {_status(part):18s} {part['seconds']:6.0f} s  {part.get('message', '')}")
    return results


if __name__ == "__main__":
    main()
