"""FLAG-4D against deform4d and its three ablations (paper Table 3) on synthetic scenes, same iteration budget.

Run from the repository root::

    python -m benchmarks.flag4d_ablation --scenes bell press --iterations 1500

Every variant trains with the README quickstart schedule (``scripts/quickstart_schedule.args``: 500 static warm-up
iterations, 64×4 core MLP for both deform4d and the IDN; ``scripts/quickstart_flag4d.args`` for flag4d's GMN
widths) and the same seed; the flag4d variants differ only by the ablation switch. Results go to the ``flag4d-ablation`` section of docs/benchmarks.md (``--section`` to keep runs at
different budgets or on other devices apart) and, row by row as they finish, to
``outputs/benchmarks/<section>.json``, so an interrupted run keeps what it measured (``--resume`` skips rows done).
``--seeds 42 43`` repeats every run with each nerfstudio seed (``--machine.seed``); runs with the same seed on the same
machine give identical checkpoints, so the spread across seeds is the run-to-run variation of a result.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path
from typing import Dict, List, Tuple

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import torch  # noqa: E402

from benchmarks.report import machine_description, write_section  # noqa: E402
from benchmarks.train_eval import (  # noqa: E402
    ROOT,
    commands_and_notes,
    ensure_scene,
    results_table,
    train_and_evaluate,
    train_args,
)

VARIANTS = {
    "deform4d": ("deform4d", []),
    "flag4d": ("flag4d", []),
    "flag4d w/o IDN": ("flag4d", ["--pipeline.model.use-idn", "False"]),
    "flag4d w/o GMN": ("flag4d", ["--pipeline.model.use-gmn", "False"]),
    "flag4d w/o mutual learning": ("flag4d", ["--pipeline.model.mutual-learning", "False"]),
    # control: flag4d's networks start at zero offsets, Deformable-3DGS's MLP does not
    "deform4d, zero-init heads": ("deform4d", ["--pipeline.model.zero-init-heads", "True"]),
    # control: flag4d's networks at deform4d's deformation-MLP learning rate (8e-4 -> 1.6e-6) instead of the paper's 1e-4
    "flag4d, network LR 8e-4": (
        "flag4d",
        [
            *("--optimizers.idn.optimizer.lr", "8e-4", "--optimizers.idn.scheduler.lr-final", "1.6e-6"),
            *("--optimizers.gmn.optimizer.lr", "8e-4", "--optimizers.gmn.scheduler.lr-final", "1.6e-6"),
        ],
    ),
}


DEFAULT_SEED = 42  # nerfstudio's machine.seed


def seed_summary(rows: List[dict]) -> List[str]:
    """Markdown table of the (scene, variant) pairs run with more than one seed: mean, min and max PSNR / SSIM."""
    groups: Dict[Tuple[str, str], List[dict]] = {}
    for row in rows:
        groups.setdefault((row["scene"], row["variant"]), []).append(row)
    repeated = {key: group for key, group in groups.items() if len(group) > 1}
    if not repeated:
        return []
    lines = ["", "Variants run with several seeds:", "",
             "| scene | variant | seeds | PSNR mean | PSNR min–max | SSIM mean | SSIM min–max |", "|" + "---|" * 7]
    for (scene, variant), group in repeated.items():
        psnr, ssim = [row["psnr"] for row in group], [row["ssim"] for row in group]
        lines.append(f"| {scene} | {variant} | {', '.join(str(row['seed']) for row in group)} | "
                     f"{sum(psnr) / len(psnr):.2f} | {min(psnr):.2f}–{max(psnr):.2f} | {sum(ssim) / len(ssim):.4f} | "
                     f"{min(ssim):.4f}–{max(ssim):.4f} |")  # fmt: skip
    return lines


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", nargs="+", default=["bell", "press"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--seeds", nargs="+", type=int, default=[DEFAULT_SEED], help="one run per --machine.seed")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "outputs" / "benchmarks")
    parser.add_argument("--section", default="flag4d-ablation")
    parser.add_argument("--resume", action="store_true", help="keep rows already in the JSON file")
    parser.add_argument("--notes", default="", help="markdown appended under the table (observations)")
    parser.add_argument("--report-only", action="store_true", help="write the table from the JSON file, train nothing")
    options = parser.parse_args()

    results_path = options.output_dir / f"{options.section}.json"
    keep = options.resume or options.report_only
    rows = json.loads(results_path.read_text()) if keep and results_path.exists() else []
    for row in rows:
        row.setdefault("seed", DEFAULT_SEED)  # rows measured before seeds were a column all used the default
    done = {(row["scene"], row["variant"], row["seed"]) for row in rows}
    runs = [] if options.report_only else itertools.product(options.seeds, options.scenes, options.variants)
    for seed, scene_name, variant in runs:
        if (scene_name, variant, seed) in done:
            continue
        method, extra = VARIANTS[variant]
        name = f"{options.section}-{scene_name}-{slug(variant)}"
        if seed != DEFAULT_SEED:  # default-seed runs keep the names and commands they had before seeds were an option
            name, extra = f"{name}-seed{seed}", ["--machine.seed", str(seed), *extra]
        scene = ensure_scene(scene_name)
        args = train_args(method, scene, options.output_dir, options.iterations, options.device, name, extra)
        rows.append({"scene": scene_name, "variant": variant, "seed": seed, **train_and_evaluate(args)})
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(rows, indent=2))
        print(f"{scene_name} / {variant} / seed {seed}: PSNR {rows[-1]['psnr']:.2f}, SSIM {rows[-1]['ssim']:.4f}")

    # table order: scenes as given, variants as in VARIANTS, then seeds, whatever order the runs happened in
    scene_rank = {name: i for i, name in enumerate(options.scenes)}
    rows.sort(key=lambda row: (scene_rank.get(row["scene"], len(scene_rank)), list(VARIANTS).index(row["variant"]),
                               row["seed"]))  # fmt: skip
    lines = [
        f"## flag4d vs deform4d and the FLAG-4D ablations ({options.device.upper()}, {options.iterations} iterations)",
        "",
        f"Command: `python -m benchmarks.flag4d_ablation --scenes {' '.join(options.scenes)} "
        f"--iterations {options.iterations} --device {options.device}"
        + ("" if options.seeds == [DEFAULT_SEED] else f" --seeds {' '.join(map(str, options.seeds))}") + "`  ",
        f"Machine: {machine_description()}  ",
        "Scenes: `fourd-synth` presets at 320×180 (trained at `rgb/2x`, 160×90), 48 time steps; train = left camera, "
        "test = right camera (48 views), final checkpoint, nerfstudio seed in the seed column. Schedule: "
        "`scripts/quickstart_schedule.args` for all variants (500 static warm-up iterations, 64×4 MLP as deform4d's "
        "field and as the IDN core) and `scripts/quickstart_flag4d.args` for the flag4d variants (GRU state and "
        "attention width 32, DRN 64×2); otherwise flag4d's defaults (4 heads, 8×8 pooled + 3×3 local tokens, all "
        "loss weights 1, Eq. 7 on ≤4096 and Eq. 11 on ≤512 random Gaussians per step, depth prior = the synthetic "
        "depth maps, DIS flow embeddings because no RAFT weights are on this machine). Training time excludes set-up, image caching and the flow "
        "embeddings. LPIPS: only when its weights are present.",
        "",
        *results_table(rows, ["scene", "variant", "seed"]),
        *seed_summary(rows),
        *commands_and_notes(rows, options.notes),
    ]
    print(write_section(options.section, "\n".join(lines)))


if __name__ == "__main__":
    main()
