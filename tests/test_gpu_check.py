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
                    "--methods", "deform4d", "flag4d"])  # fmt: skip

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
    assert list(training) == ["deform4d", "flag4d"]
    for method, row in training.items():
        assert row["status"] == "ok" and math.isfinite(row["psnr"]) and row["iterations"] == 2, (method, row)
        assert "--machine.device-type cpu" in row["command"] and "WORK/scenes/nerfies-bell-8x64x36" in row["command"]

    (row,) = parts["speed"]["rows"]
    assert row["ours_cpu_ms"] > 0 and row["gsplat_cuda_ms"] is None and row["ours_cuda_ms"] is None
    assert "--device cuda" in parts["speed"]["skipped"]["gsplat_cuda_ms"]
    assert parts["sparse"]["status"] in ("ok", "skipped")
    if parts["sparse"]["status"] == "ok":
        assert parts["sparse"]["backends"]["torch"]["forward_backward_ms"] > 0 and "spconv" in parts["sparse"]["skipped"]

    section = (out / "gpu_check.md").read_text()
    assert section.startswith("## GPU check (CUDA path)") and "CPU only (dry run)" in section
    for heading in ("| gsplat_build | skipped", "### One DefaultStrategy refinement", "### Training", "### Rasterizer speed"):
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
                    "grad.quats", "grad.scales", "grad.opacities", "grad.colors", "grad.viewmats", "info.sizes"}  # fmt: skip
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
