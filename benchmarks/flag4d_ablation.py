"""FLAG-4D against deform4d and its three ablations (paper Table 3) on synthetic scenes, same iteration budget.

Run from the repository root::

    python -m benchmarks.flag4d_ablation --scenes bell press --iterations 1500

Every variant trains with the README quickstart schedule (``scripts/quickstart_schedule.args``: 500 static warm-up
iterations, 64×4 core MLP for both deform4d and the IDN; ``scripts/quickstart_flag4d.args`` for flag4d's GMN
widths) and the same seed; the flag4d variants differ only by the ablation switch. Results go to the ``flag4d-ablation`` section of docs/benchmarks.md (``--section`` to keep runs at
different budgets or on other devices apart) and, row by row as they finish, to
``outputs/benchmarks/<section>.json``, so an interrupted run keeps what it measured (``--resume`` skips rows done).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

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


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", nargs="+", default=["bell", "press"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--iterations", type=int, default=1500)
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
    done = {(row["scene"], row["variant"]) for row in rows}
    for scene_name in [] if options.report_only else options.scenes:
        scene = ensure_scene(scene_name)
        for variant in options.variants:
            if (scene_name, variant) in done:
                continue
            method, extra = VARIANTS[variant]
            name = f"{options.section}-{scene_name}-{slug(variant)}"
            args = train_args(method, scene, options.output_dir, options.iterations, options.device, name, extra)
            rows.append({"scene": scene_name, "variant": variant, **train_and_evaluate(args)})
            results_path.parent.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(rows, indent=2))
            print(f"{scene_name} / {variant}: PSNR {rows[-1]['psnr']:.2f}, SSIM {rows[-1]['ssim']:.4f}", flush=True)

    # table order: scenes as given, variants as in VARIANTS, whatever order the runs happened in
    scene_rank = {name: i for i, name in enumerate(options.scenes)}
    rows.sort(key=lambda row: (scene_rank.get(row["scene"], len(scene_rank)), list(VARIANTS).index(row["variant"])))
    lines = [
        f"## flag4d vs deform4d and the FLAG-4D ablations ({options.device.upper()}, {options.iterations} iterations)",
        "",
        f"Command: `python -m benchmarks.flag4d_ablation --scenes {' '.join(options.scenes)} "
        f"--iterations {options.iterations} --device {options.device}`  ",
        f"Machine: {machine_description()}  ",
        "Scenes: `fourd-synth` presets at 320×180 (trained at `rgb/2x`, 160×90), 48 time steps; train = left camera, "
        "test = right camera (48 views), final checkpoint, seed 42 for every run. Schedule: "
        "`scripts/quickstart_schedule.args` for all variants (500 static warm-up iterations, 64×4 MLP as deform4d's "
        "field and as the IDN core) and `scripts/quickstart_flag4d.args` for the flag4d variants (GRU state and "
        "attention width 32, DRN 64×2); otherwise flag4d's defaults (4 heads, 8×8 pooled + 3×3 local tokens, all "
        "loss weights 1, Eq. 7 on ≤4096 and Eq. 11 on ≤512 random Gaussians per step, depth prior = the synthetic "
        "depth maps, DIS flow embeddings because no RAFT weights are on this machine). Training time excludes set-up, image caching and the flow "
        "embeddings. LPIPS: only when its weights are present.",
        "",
        *results_table(rows, ["scene", "variant"]),
        *commands_and_notes(rows, options.notes),
    ]
    print(write_section(options.section, "\n".join(lines)))


if __name__ == "__main__":
    main()
