"""G3R against per-scene optimisation on the real PandaSet clip: quality on held-out frames against reconstruction
time, and the speed-up at equal PSNR (the paper's headline: about 24× over 3DGS at equal PSNR).

Run from the repository root, after training weights (``fourd-train-g3r``, see docs/benchmarks.md)::

    python -m benchmarks.g3r_pandaset --weights outputs/g3r-synth --budgets 100 300 1000

Every row trains through nerfstudio's own CLI exactly as the printed ``ns-train`` command would, on the front camera
of ``../shared/data/pandaset/002`` (frames 00-23, every-other split: even frames reconstruct, odd frames evaluate),
and is evaluated like ``ns-eval`` (PSNR, SSIM, LPIPS when its weights are present, LiDAR depth RMSE / AbsRel on the
held-out frames). Rows:

- ``g3r`` (T = 24), ``g3r-turbo`` (T = 12), g3r + fine-tuning, and inference-time ablations with the same weights
  (one step; constant γ), plus ablations whose weights were trained differently (``--retrained NAME=WEIGHTS``: no
  latent, no target-view supervision);
- per-scene baselines from the same LiDAR seeds (``pandaset-data``'s coloured LiDAR of the training frames, the
  same point budget as g3r's background): static 3DGS (deform4d with its deformation never switched on) and deform4d
  with the LiDAR depth loss, at each of ``--budgets`` iterations.

Reconstruction time is the training loop's wall clock plus, for g3r, seeding the scene (both methods read the log
and its LiDAR before that, untimed). For each baseline the time it needs to reach g3r's PSNR is interpolated
linearly between the budgets that bracket it, and divided by g3r's time; "not reached" when no budget gets there.
Rows go to ``outputs/benchmarks/<section>.json`` as they finish (``--resume`` keeps them), the table to the
``<section>`` part of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Dict, List, Optional

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import torch  # noqa: E402

from benchmarks.report import machine_description, write_section  # noqa: E402
from benchmarks.train_eval import ROOT, commands_and_notes, train_and_evaluate, train_args  # noqa: E402

DEFAULT_LOG = ROOT.parent / "shared" / "data" / "pandaset" / "002"


def dataparser_args(options: argparse.Namespace) -> List[str]:
    return [
        "pandaset-data", "--cameras", "front", "--downscale-factor", str(options.downscale),
        "--num-frames", "24", "--split-mode", "every-other",
        "--max-seed-points", str(options.points), "--seed-voxel-size", str(options.voxel),
    ]  # fmt: skip


def g3r_rows(options: argparse.Namespace) -> Dict[str, tuple]:
    """name -> (method, extra flags) of the g3r rows."""
    common = ["--pipeline.model.weights", str(options.weights), "--pipeline.max-background-points", str(options.points),
              "--pipeline.seeding-voxel-metres", str(options.voxel)]  # fmt: skip
    return {
        "g3r (T=24)": ("g3r", common),
        "g3r turbo (T=12)": ("g3r-turbo", common),
        f"g3r turbo + {options.finetune} fine-tuning": (
            "g3r-turbo", [*common, "--pipeline.model.finetune-steps", str(options.finetune),
                          "--pipeline.model.lidar-depth-loss-weight", "0.5"]),
        "ablation: one step (same weights)": ("g3r", [*common, "--pipeline.model.num-steps", "1"]),
        "ablation: constant γ (same weights)": ("g3r", [*common, "--pipeline.model.step-schedule", "constant"]),
        **({"ablation: untrained network (T=24)": (
            "g3r", ["--pipeline.model.weights", str(options.untrained_weights), *common[2:]])}
           if options.untrained_weights is not None else {}),
        **{f"ablation: {name} (retrained)": ("g3r", ["--pipeline.model.weights", path, *common[2:]])
           for name, path in (entry.split("=", 1) for entry in options.retrained)},
    }


BASELINES = {
    "static 3DGS": ["--pipeline.model.static-warmup-steps", "1000000000"],
    "deform4d + LiDAR depth 0.5": ["--pipeline.model.zero-init-heads", "True",
                                   "--pipeline.model.lidar-depth-loss-weight", "0.5"],
}


def row_args(options: argparse.Namespace, name: str) -> List[str]:
    slug = options.section + "-" + "".join(c if c.isalnum() else "-" for c in name).strip("-")
    if name in g3r_rows(options):
        method, extra = g3r_rows(options)[name]
        return train_args(method, options.data, options.output_dir, 1, options.device, slug, extra,
                          dataparser_args(options), schedule=False)
    variant, budget = name.rsplit(" @ ", 1)
    return train_args("deform4d", options.data, options.output_dir, int(budget), options.device, slug,
                      BASELINES[variant], dataparser_args(options))


def ensure_untrained_weights(trained: Path, folder: Path) -> None:
    """The untrained control: a network of the trained checkpoint's architecture (torch seed 0) with its
    reconstruction settings, written once in the checkpoint format."""
    import shutil

    from fourd_ns.learning import write_model_folder
    from fourd_ns.networks.g3r_net import G3RLearnedOptimizer
    from fourd_ns.networks.g3r_weights import RECONSTRUCTION_SETTINGS, load_g3r_weights, locate_g3r_weights

    if folder.exists():
        return
    source, _ = locate_g3r_weights(trained)
    config = load_g3r_weights(trained).network.config
    torch.manual_seed(0)
    checkpoint = folder / "checkpoints" / "step-0000000"
    write_model_folder(checkpoint, G3RLearnedOptimizer(config), config.to_dict())
    shutil.copy(source / RECONSTRUCTION_SETTINGS, checkpoint / RECONSTRUCTION_SETTINGS)


def reconstruction_seconds(row: dict) -> float:
    return row["train_seconds"] + row.get("method_setup_seconds", 0.0)


def time_to_reach(rows: List[dict], target_psnr: float) -> Optional[float]:
    """Interpolated time at which a baseline (rows of increasing budget) first reaches ``target_psnr``."""
    previous = (0.0, float("-inf"))
    for row in sorted(rows, key=reconstruction_seconds):
        seconds, psnr = reconstruction_seconds(row), row["psnr"]
        if psnr >= target_psnr:
            if previous[1] == float("-inf"):
                return seconds
            fraction = (target_psnr - previous[1]) / (psnr - previous[1])
            return previous[0] + fraction * (seconds - previous[0])
        previous = (seconds, psnr)
    return None


def table(rows: List[dict]) -> List[str]:
    header = ["row", "iterations", "PSNR", "SSIM", "LPIPS", "LiDAR depth RMSE (m)", "LiDAR AbsRel", "Gaussians",
              "reconstruction time (s)"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        metrics = row["metrics"]
        lpips = "n/a" if row.get("lpips") is None else f"{row['lpips']:.4f}"
        cells = [row["row"], str(row["iterations"]), f"{row['psnr']:.2f}", f"{row['ssim']:.4f}", lpips,
                 f"{metrics.get('lidar_depth_rmse_m', float('nan')):.2f}",
                 f"{metrics.get('lidar_depth_absrel', float('nan')):.3f}", str(row["gaussians"]),
                 f"{reconstruction_seconds(row):.1f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def speedups(rows: List[dict]) -> List[str]:
    by_name = {row["row"]: row for row in rows}
    lines = ["| g3r row | its PSNR | its time (s) | baseline | baseline time to that PSNR (s) | speed-up |",
             "|---|---|---|---|---|---|"]
    for g3r_name in ("g3r (T=24)", "g3r turbo (T=12)"):
        if g3r_name not in by_name:
            continue
        g3r = by_name[g3r_name]
        for variant in BASELINES:
            runs = [row for row in rows if row["row"].startswith(variant + " @ ")]
            if not runs:
                continue
            reach = time_to_reach(runs, g3r["psnr"])
            longest = max(reconstruction_seconds(r) for r in runs)
            reach_text = f"{reach:.1f}" if reach is not None else f"not reached in {longest:.0f}"
            ratio = f"{reach / reconstruction_seconds(g3r):.2f}×" if reach is not None else "—"
            lines.append(f"| {g3r_name} | {g3r['psnr']:.2f} | {reconstruction_seconds(g3r):.1f} | {variant} | "
                         f"{reach_text} | {ratio} |")
    return lines


def data_description(options: argparse.Namespace) -> str:
    if options.data.resolve() == DEFAULT_LOG.resolve():
        return "PandaSet sequence 002, frames 00–23 (`../shared/data/pandaset/002`)"
    return f"the log `{os.path.relpath(options.data, ROOT)}` (frames 00–23)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_LOG)
    parser.add_argument("--weights", type=Path, default=ROOT / "outputs" / "g3r-synth")
    parser.add_argument("--untrained-weights", type=Path, default=None,
                        help="folder of an untrained network of --weights' architecture (written if missing): the "
                        "row shows what training added")
    parser.add_argument("--retrained", nargs="*", default=[], metavar="NAME=WEIGHTS",
                        help="ablation rows with weights trained differently, e.g. 'no latent=outputs/g3r-synth-nolatent'")
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--rows", nargs="*", default=None, help="run only these rows (names as in the table)")
    parser.add_argument("--downscale", type=int, default=8)
    parser.add_argument("--points", type=int, default=30000, help="background / seed point budget of every row")
    parser.add_argument("--voxel", type=float, default=0.15, help="LiDAR thinning voxel (m) of every row")
    parser.add_argument("--finetune", type=int, default=200)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "outputs" / "benchmarks")
    parser.add_argument("--section", default="g3r-pandaset")
    parser.add_argument("--resume", action="store_true", help="keep rows already in the JSON file")
    parser.add_argument("--notes", default="", help="markdown appended under the tables (observations)")
    parser.add_argument("--weights-command", default="", help="the fourd-train-g3r command that made --weights")
    parser.add_argument("--report-only", action="store_true", help="write the tables from the JSON file")
    options = parser.parse_args()
    if not (options.data / "camera").is_dir():
        raise SystemExit(f"No PandaSet log at {options.data} (expected camera/, lidar/, annotations/); pass --data.")

    if options.untrained_weights is not None and not options.report_only:
        ensure_untrained_weights(options.weights, options.untrained_weights)
    results = options.output_dir / f"{options.section}.json"
    rows = json.loads(results.read_text()) if (options.resume or options.report_only) and results.exists() else []
    names = list(g3r_rows(options)) + [f"{v} @ {b}" for v in BASELINES for b in options.budgets]
    if options.rows:
        names = [name for name in names if name in options.rows]
    if not options.report_only:
        done = {row["row"] for row in rows}
        for name in names:
            if name in done:
                continue
            rows.append({"row": name, **train_and_evaluate(row_args(options, name))})
            results.parent.mkdir(parents=True, exist_ok=True)
            results.write_text(json.dumps(rows, indent=2))

    lines = [
        f"## g3r on {'the real PandaSet clip' if options.data.resolve() == DEFAULT_LOG.resolve() else 'a held-out log'}"
        f" ({options.device.upper()})",
        "",
        f"Command: `python -m benchmarks.g3r_pandaset --section {options.section} --data "
        f"{os.path.relpath(options.data, ROOT)} --weights {os.path.relpath(options.weights, ROOT)} "
        + (f"--untrained-weights {os.path.relpath(options.untrained_weights, ROOT)} " if options.untrained_weights else "")
        + ("--retrained " + " ".join(f"'{entry}'" for entry in options.retrained) + " " if options.retrained else "")
        + "--budgets "
        f"{' '.join(map(str, options.budgets))} --points {options.points} --voxel {options.voxel} --finetune "
        f"{options.finetune} --downscale {options.downscale} --device {options.device}`  ",
        f"Weights: `{options.weights_command or os.path.relpath(options.weights, ROOT)}`  ",
        f"Machine: {machine_description()}  ",
        f"Data: {data_description(options)}, front camera at "
        f"1/{options.downscale} resolution; every-other split (12 even frames reconstruct, 12 odd frames evaluate); "
        f"every row starts from the LiDAR of the reconstruction frames (voxel {options.voxel} m, {options.points} "
        "points). Reconstruction time: training loop + g3r's seeding. Final state, no best-of selection.",
        "",
        *table(rows),
        "",
        "Time for each per-scene baseline to reach g3r's PSNR (interpolated between budgets), over g3r's time:",
        "",
        *speedups(rows),
        *commands_and_notes(rows, options.notes),
    ]
    print(write_section(options.section, "\n".join(lines)))


if __name__ == "__main__":
    main()
