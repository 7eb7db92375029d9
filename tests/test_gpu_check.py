"""The prepared GPU check (``benchmarks/gpu_check.py``) on the CPU: the dry run CI runs so the script cannot rot.

The dry run must report every part (the gsplat parts skipped with a message that says why), train the methods, time
our rasterizer on the CPU, write its JSON and markdown section, and land that section in a benchmarks file. The
parity and densification code that only meets gsplat on a GPU is run here against our own rasterizer, so its
comparisons and bookkeeping are exercised too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from benchmarks import gpu_check


def test_cpu_dry_run_reports_every_part(tiny_scene: Path, tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    (work / "scenes").mkdir(parents=True)
    # conftest's tiny scene is the tiny preset's (bell, 8 frames, 64x36), generated once per session
    (work / "scenes" / gpu_check.scene_folder("nerfies", gpu_check.PRESETS["tiny"])).symlink_to(tiny_scene)
    gpu_check.main(["--device", "cpu", "--preset", "tiny", "--out", str(out), "--work-dir", str(work),
                    "--methods", "deform4d", "flag4d", "g3r"])  # fmt: skip

    results = json.loads((out / "gpu_check.json").read_text())
    parts = results["parts"]
    assert list(parts) == list(gpu_check.PART_NAMES)
    assert results["device"]["device"] == "cpu" and results["device"]["versions"]["gsplat"]
    assert not [name for name, part in parts.items() if part["status"] == "error"], parts
    for name in ("gsplat_build", "parity"):
        assert parts[name]["status"] == "skipped" and "--device cuda" in parts[name]["message"]

    densification = parts["densification"]
    assert "--device cuda" in densification["skipped"]["gsplat"] and densification["passed"]
    assert densification["torch"]["gaussians_after"] != densification["torch"]["gaussians_before"]

    training = parts["training"]["methods"]
    assert list(training) == ["deform4d", "flag4d", "g3r"]
    for method, row in training.items():
        assert row["status"] == "ok" and math.isfinite(row["psnr"]) and row["iterations"] == 2, (method, row)
        scene = "WORK/scenes/driving-small-seed0" if method == "g3r" else "WORK/scenes/nerfies-bell-8x64x36"
        assert "--machine.device-type cpu" in row["command"] and scene in row["command"], row["command"]

    (row,) = parts["speed"]["rows"]
    assert row["ours_cpu_ms"] > 0 and row["gsplat_cuda_ms"] is None and row["ours_cuda_ms"] is None
    assert "--device cuda" in parts["speed"]["skipped"]["gsplat_cuda_ms"]
    assert parts["sparse"]["status"] in ("ok", "skipped")
    if parts["sparse"]["status"] == "ok":
        assert parts["sparse"]["backends"]["torch"]["forward_backward_ms"] > 0
        assert "spconv" in parts["sparse"]["skipped"]

    section = (out / "gpu_check.md").read_text()
    assert section.startswith("## GPU check (CUDA path)") and "CPU only (dry run)" in section
    for heading in ("| gsplat_build | skipped", "### One DefaultStrategy refinement", "### Training",
                    "### Rasterizer speed"):
        assert heading in section

    benchmarks_md = gpu_check.report(out / "gpu_check.json", tmp_path / "benchmarks.md")
    text = benchmarks_md.read_text()
    assert "<!-- begin:gpu-check -->\n## GPU check (CUDA path)" in text and "<!-- end:gpu-check -->" in text


def test_parity_of_our_rasterizer_with_itself_passes_every_check() -> None:
    """The comparison that runs against gsplat on a GPU, with our rasterizer on both sides: every quantity is
    present, identical, and passes."""
    for seed, case in enumerate(gpu_check.PRESETS["tiny"].parity_cases):
        result = gpu_check.parity_case(case, "cpu", reference="torch", seed=seed)
        checks = result["checks"]
        expected = {"image", "alpha", "depth", "info.means2d", "info.radii", "grad.info.means2d", "grad.means",
                    "grad.quats", "grad.scales", "grad.opacities", "grad.colors", "grad.viewmats",
                    "info.sizes"}  # fmt: skip
        assert expected <= set(checks), sorted(checks)
        assert ("grad.backgrounds" in checks) == case.backgrounds and ("absgrad.info.means2d" in checks) == case.absgrad
        assert result["passed"], checks
        assert all(c.get("rel_l2", 0.0) == 0.0 and c.get("mismatch_fraction", 0.0) == 0.0 for c in checks.values())
    section = "\n".join(gpu_check._parity_markdown({"cases": [result], "tolerances": gpu_check._tolerances()}))
    assert "| `grad.means` | 0.0e+00 (0.0e+00) |" in section and "FAIL" not in section


def test_comparisons_fail_on_nan_shape_and_tolerance() -> None:
    reference = torch.linspace(1.0, 2.0, 10)
    assert gpu_check.compare_tensors(reference.clone(), reference, 0.0)["ok"]
    off = reference * 1.01
    check = gpu_check.compare_tensors(off, reference, 1e-3)
    assert not check["ok"] and math.isclose(check["rel_l2"], 0.01, rel_tol=1e-5)
    assert gpu_check.compare_tensors(off, reference, 2e-2)["ok"]
    nan = reference.clone()
    nan[3] = float("nan")
    assert not gpu_check.compare_tensors(nan, reference, 1.0)["ok"]
    assert not gpu_check.compare_tensors(reference[:5], reference, 1.0)["ok"]

    radii = torch.full((2, 1000), 3, dtype=torch.int32)
    one_off = radii.clone()
    one_off[0, 0] = 4
    assert gpu_check.compare_radii(one_off, radii)["ok"]  # 1 of 2000 pairs, by one pixel
    two_px = radii.clone()
    two_px[0, 0] = 5
    assert not gpu_check.compare_radii(two_px, radii)["ok"]
    many = radii.clone()
    many[0, :10] = 4
    assert not gpu_check.compare_radii(many, radii)["ok"]


def test_markdown_of_a_cuda_run() -> None:
    """The section as a GPU run writes it (the branches the dry run cannot reach): device line, parity table,
    gsplat's densification beside ours, the speed ratio, spconv against torch, a failed part's last traceback line."""
    case = gpu_check.PRESETS["tiny"].parity_cases[0]
    parity = gpu_check.parity_case(case, "cpu", reference="torch")
    check = {"rel_l2": 2e-4, "max_abs": 1e-3, "tolerance": 1e-3, "ok": True}
    results = {
        "command": "python -m benchmarks.gpu_check --device cuda --out OUT", "preset": "full", "budget_s": 420,
        "elapsed_s": 300,
        "device": {"device": "cuda", "gpu": "NVIDIA H200", "compute_capability": "9.0", "gpu_memory_gib": 139.8,
                   "driver": "580.0", "nvcc": "Build cuda_13.0", "torch": "2.11.0", "torch_cuda": "13.0",
                   "versions": {"gsplat": "1.4.0", "spconv": None}, "python": "3.12.3", "cpu_count": 16,
                   "machine": "x"},
        "parts": {
            "gsplat_build": {"status": "ok", "seconds": 150, "seconds_to_build_or_load": 149.5, "extension": "so"},
            "parity": {"status": "ok", "seconds": 3, "cases": [parity], "skipped": {"case 2": "time budget spent"},
                       "tolerances": gpu_check._tolerances(), "passed": True},
            "densification": {"status": "ok", "seconds": 1, "passed": True, "skipped": {},
                              "gsplat": {"gaussians_before": 100, "gaussians_after": 150, "grow_grad2d": 1e-3},
                              "torch": {"gaussians_before": 100, "gaussians_after": 151, "grow_grad2d": 1e-3},
                              "accumulated_after_step1": {"grad2d": check,
                                                          "count": {"mismatch_fraction": 0.0, "ok": True}}},
            "training": {"status": "error", "seconds": 2, "traceback": "Traceback ...\nRuntimeError: CUDA error"},
            "speed": {"status": "ok", "seconds": 20, "skipped": {}, "cpu_threads": 16,
                      "repeats": {"gsplat": 20, "torch": 5},
                      "rows": [{"image": "64x64", "gaussians": 1000, "gsplat_cuda_ms": 1.5, "ours_cuda_ms": 30.0,
                                "ours_cpu_ms": 20.0}]},
            "sparse": {"status": "ok", "seconds": 5, "voxels": 10, "points": 10, "network": "default", "skipped": {},
                       "backends": {"torch": {"forward_backward_ms": 12.0},
                                    "spconv": {"forward_backward_ms": 3.0, "vs_torch": check}}},
        },
    }  # fmt: skip
    section = gpu_check.render_markdown(results)
    assert "Device: NVIDIA H200 (compute 9.0, 139.8 GiB), driver 580.0" in section
    assert "| training | error | 2 | `RuntimeError: CUDA error` |" in section and "### Training" not in section
    assert "| `image` | 0.0e+00 (0.0e+00) |" in section and "- case 2: skipped (time budget spent)" in section
    assert "- gsplat's `info`: 100 → 150 Gaussians" in section
    assert "accumulated `grad2d` (ours vs gsplat): rel L2 2.0e-04" in section
    assert "| 64x64 | 1,000 | 1.50 | 30.0 | 20 | 20.0x |" in section
    assert "- spconv: 3.0 ms, output vs torch: rel L2 2.0e-04" in section
