"""The flag4d-ablation benchmark's bookkeeping: the depth column of rows measured before ``--depth``, the seed summary
per (scene, variant, depth) with dynamic PSNR, and repository-relative commands. No training."""

from __future__ import annotations

from benchmarks.flag4d_ablation import native_depth, seed_summary
from benchmarks.train_eval import ROOT, repository_relative, results_table


def _row(variant: str, depth: str, seed: int, psnr: float, ssim: float, dynamic=None) -> dict:
    metrics = {"psnr": psnr, "ssim": ssim}
    if dynamic is not None:
        metrics["dynamic_psnr"] = dynamic
    return {"scene": "bell", "variant": variant, "depth": depth, "seed": seed, "psnr": psnr, "ssim": ssim,
            "lpips": None, "dynamic_psnr": dynamic, "iterations": 20, "gaussians": 10, "train_seconds": 1.0,
            "iterations_per_second": 20.0, "metrics": metrics}  # fmt: skip


def test_rows_from_before_the_depth_option_have_their_methods_default() -> None:
    assert native_depth("flag4d") == "on" and native_depth("flag4d w/o IDN") == "on"
    assert native_depth("flag4d, network LR 8e-4") == "on"
    assert native_depth("deform4d") == "off" and native_depth("deform4d, zero-init heads") == "off"


def test_seed_summary_groups_by_depth_and_reports_dynamic_psnr() -> None:
    rows = [
        _row("deform4d", "on", 42, 20.0, 0.50, dynamic=15.0),
        _row("deform4d", "on", 43, 22.0, 0.70, dynamic=18.0),
        _row("deform4d", "on", 44, 24.0, 0.60, dynamic=16.5),
        _row("deform4d", "off", 42, 19.0, 0.40),  # one seed only: not summarised
        _row("flag4d", "on", 42, 21.0, 0.80, dynamic=None),  # measured before dynamic PSNR existed
        _row("flag4d", "on", 43, 23.0, 0.90, dynamic=17.0),
    ]
    lines = seed_summary(rows)
    table = [line for line in lines if line.startswith("| bell")]
    assert table == [
        "| bell | deform4d | on | 42, 43, 44 | 22.00 | 20.00–24.00 | 16.50 | 15.00–18.00 | 0.6000 | 0.5000–0.7000 |",
        "| bell | flag4d | on | 42, 43 | 22.00 | 21.00–23.00 | n/a | n/a | 0.8500 | 0.8000–0.9000 |",
    ]


def test_results_table_marks_unmeasured_metrics() -> None:
    rows = [_row("deform4d", "off", 42, 19.0, 0.4, dynamic=14.25), _row("flag4d", "on", 42, 21.0, 0.8)]
    lines = results_table(rows, ["scene", "variant", "depth", "seed"], [("dynamic PSNR", "dynamic_psnr", ".2f")])
    assert lines[0].startswith("| scene | variant | depth | seed | iterations | PSNR | SSIM | LPIPS | dynamic PSNR |")
    assert lines[2].split(" | ")[8] == "14.25" and lines[3].split(" | ")[8] == "n/a"


def test_commands_name_paths_relative_to_the_repository() -> None:
    assert repository_relative(str(ROOT / "data" / "synth" / "bell")) == "data/synth/bell"
    assert repository_relative(str(ROOT.parent / "shared" / "data" / "x")) == "../shared/data/x"
    assert repository_relative("--pipeline.model.depth-weight") == "--pipeline.model.depth-weight"
    assert repository_relative("outputs/benchmarks") == "outputs/benchmarks"
