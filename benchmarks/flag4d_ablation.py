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

Supervision: ``--depth on|off|both`` (default both) trains every variant with FLAG-4D's Eq. 9 depth term on the
scenes' depth maps (``--pipeline.model.depth-weight 1.0``), without it (``0.0``), or both, so flag4d and deform4d can
be compared with the same supervision (the term lives in the base class both share). Rows measured before the option
existed count as depth on for the flag4d variants and off for the deform4d ones (each method's default then). Every
row also reports the dynamic-region PSNR: PSNR pooled over the test pixels that see a moving object (the scenes'
``dynamic_mask`` maps; ``fourd_ns.metrics.masked_psnr``), n/a for rows measured before it existed. Rows are keyed by
(scene, variant, depth, seed) for ``--resume``. The 3-seed equal-supervision comparison, in its own section::

    python -m benchmarks.flag4d_ablation --scenes bell press --variants deform4d flag4d --depth both \
        --seeds 42 43 44 --iterations 1500 --section flag4d-equal-supervision --resume
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
from pathlib import Path
from typing import Dict, List, Optional, Tuple

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

IDN_LR_8E4 = ("--optimizers.idn.optimizer.lr", "8e-4", "--optimizers.idn.scheduler.lr-final", "1.6e-6")
GMN_LR_8E4 = ("--optimizers.gmn.optimizer.lr", "8e-4", "--optimizers.gmn.scheduler.lr-final", "1.6e-6")
"""flag4d's networks at deform4d's deformation-MLP learning rate (8e-4 -> 1.6e-6) instead of the paper's 1e-4."""

VARIANTS = {
    "deform4d": ("deform4d", []),
    "flag4d": ("flag4d", []),
    "flag4d w/o IDN": ("flag4d", ["--pipeline.model.use-idn", "False"]),
    "flag4d w/o GMN": ("flag4d", ["--pipeline.model.use-gmn", "False"]),
    "flag4d w/o mutual learning": ("flag4d", ["--pipeline.model.mutual-learning", "False"]),
    # control: flag4d's networks start at zero offsets, Deformable-3DGS's MLP does not
    "deform4d, zero-init heads": ("deform4d", ["--pipeline.model.zero-init-heads", "True"]),
    # control: flag4d's networks at deform4d's deformation-MLP learning rate (8e-4 -> 1.6e-6) instead of the paper's 1e-4
    "flag4d, network LR 8e-4": ("flag4d", [*IDN_LR_8E4, *GMN_LR_8E4]),
    # hypotheses for the gap between flag4d's IDN alone and zero-init deform4d (one run each; the IDN core is
    # deform4d's MLP, so what differs is the learning rate, the Eq. 10-11 rigidity term and Eq. 8;
    # the GRU window does not change what the IDN alone renders: its forecast is the core at t)
    "flag4d w/o GMN, LR 8e-4": ("flag4d", ["--pipeline.model.use-gmn", "False", *IDN_LR_8E4]),
    "flag4d w/o GMN, no rigidity": ("flag4d", ["--pipeline.model.use-gmn", "False", "--pipeline.model.rigidity-weight", "0"]),
    "flag4d w/o GMN, no Eq. 8": ("flag4d", ["--pipeline.model.use-gmn", "False", "--pipeline.model.smooth-opacity", "False"]),
    "flag4d, refine forecast, LR 8e-4": (
        "flag4d", ["--pipeline.model.refine-forecast", "True", *IDN_LR_8E4, *GMN_LR_8E4]
    ),
}


DEFAULT_SEED = 42  # nerfstudio's machine.seed
DEPTH_WEIGHTS = {"on": "1.0", "off": "0.0"}
"""``--pipeline.model.depth-weight`` of each setting of the depth column (Eq. 9 on the scenes' depth maps, or none)."""
DEPTH_CHOICES = {"on": ["on"], "off": ["off"], "both": ["on", "off"]}


def native_depth(variant: str) -> str:
    """The depth setting a variant had before ``--depth`` existed: its method's default (flag4d on, deform4d off)."""
    method = VARIANTS[variant][0] if variant in VARIANTS else variant.split(",")[0].split(" ")[0]
    return "on" if method == "flag4d" else "off"


def dynamic_psnr(row: dict) -> Optional[float]:
    """A row's pooled dynamic-region PSNR, None when it was not measured (rows from before the metric)."""
    value = row.get("dynamic_psnr", row.get("metrics", {}).get("dynamic_psnr"))
    return None if value is None else float(value)


def mean_and_range(values: List[Optional[float]], spec: str) -> Tuple[str, str]:
    """Mean and min–max cells of a seed group; n/a when any seed lacks the value (a mean over fewer seeds than the
    row names would mislead)."""
    if not values or any(value is None for value in values):
        return "n/a", "n/a"
    return format(sum(values) / len(values), spec), f"{format(min(values), spec)}–{format(max(values), spec)}"


def seed_summary(rows: List[dict]) -> List[str]:
    """Markdown table of the (scene, variant, depth) groups run with more than one seed: mean and min–max of PSNR,
    dynamic-region PSNR and SSIM over the seeds."""
    groups: Dict[Tuple[str, str, str], List[dict]] = {}
    for row in rows:
        groups.setdefault((row["scene"], row["variant"], row["depth"]), []).append(row)
    repeated = {key: group for key, group in groups.items() if len(group) > 1}
    if not repeated:
        return []
    header = ["scene", "variant", "depth", "seeds", "PSNR mean", "PSNR min–max", "dynamic PSNR mean",
              "dynamic PSNR min–max", "SSIM mean", "SSIM min–max"]  # fmt: skip
    lines = ["", "Variants run with several seeds:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (scene, variant, depth), group in repeated.items():
        cells = [scene, variant, depth, ", ".join(str(row["seed"]) for row in group),
                 *mean_and_range([row["psnr"] for row in group], ".2f"),
                 *mean_and_range([dynamic_psnr(row) for row in group], ".2f"),
                 *mean_and_range([row["ssim"] for row in group], ".4f")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", nargs="+", default=["bell", "press"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--seeds", nargs="+", type=int, default=[DEFAULT_SEED], help="one run per --machine.seed")
    parser.add_argument(
        "--depth", choices=list(DEPTH_CHOICES), default="both",
        help="train every variant with the Eq. 9 depth term (on), without it (off), or both",
    )  # fmt: skip
    parser.add_argument("--static-warmup", type=int, default=None,
                        help="static warm-up iterations of every variant (default: the quickstart schedule's)")
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
        row.setdefault("depth", native_depth(row["variant"]))  # and before --depth, each method's default
    done = {(row["scene"], row["variant"], row["depth"], row["seed"]) for row in rows}
    depths = DEPTH_CHOICES[options.depth]
    runs = [] if options.report_only else itertools.product(options.seeds, options.scenes, options.variants, depths)
    for seed, scene_name, variant, depth in runs:
        if (scene_name, variant, depth, seed) in done:
            continue
        method, extra = VARIANTS[variant]
        name = f"{options.section}-{scene_name}-{slug(variant)}-depth-{depth}"
        extra = [*extra, "--pipeline.model.depth-weight", DEPTH_WEIGHTS[depth]]
        if options.static_warmup is not None:
            extra += ["--pipeline.model.static-warmup-steps", str(options.static_warmup)]
        if seed != DEFAULT_SEED:
            name, extra = f"{name}-seed{seed}", ["--machine.seed", str(seed), *extra]
        scene = ensure_scene(scene_name)
        args = train_args(method, scene, options.output_dir, options.iterations, options.device, name, extra)
        rows.append({"scene": scene_name, "variant": variant, "depth": depth, "seed": seed,
                     **train_and_evaluate(args)})  # fmt: skip
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(rows, indent=2))
        dynamic = dynamic_psnr(rows[-1])
        print(f"{scene_name} / {variant} / depth {depth} / seed {seed}: PSNR {rows[-1]['psnr']:.2f}, "
              f"dynamic PSNR {'n/a' if dynamic is None else format(dynamic, '.2f')}, SSIM {rows[-1]['ssim']:.4f}")

    # table order: scenes as given, variants as in VARIANTS, depth on before off, then seeds, whatever order the
    # runs happened in
    scene_rank = {name: i for i, name in enumerate(options.scenes)}
    rows.sort(key=lambda row: (scene_rank.get(row["scene"], len(scene_rank)), list(VARIANTS).index(row["variant"]),
                               list(DEPTH_WEIGHTS).index(row["depth"]), row["seed"]))  # fmt: skip
    command = (
        f"python -m benchmarks.flag4d_ablation --scenes {' '.join(options.scenes)}"
        + ("" if options.variants == list(VARIANTS) else " --variants " + " ".join(map(shlex.quote, options.variants)))
        + f" --depth {options.depth} --iterations {options.iterations} --device {options.device}"
        + ("" if options.static_warmup is None else f" --static-warmup {options.static_warmup}")
        + ("" if options.seeds == [DEFAULT_SEED] else f" --seeds {' '.join(map(str, options.seeds))}")
        + ("" if options.section == "flag4d-ablation" else f" --section {options.section}")
    )
    lines = [
        f"## flag4d vs deform4d and the FLAG-4D ablations ({options.device.upper()}, {options.iterations} iterations)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_description()}  ",
        "Scenes: `fourd-synth` presets at 320×180 (trained at `rgb/2x`, 160×90), 48 time steps; train = left camera, "
        "test = right camera (48 views), final checkpoint, nerfstudio seed in the seed column. Schedule: "
        "`scripts/quickstart_schedule.args` for all variants ("
        + ("500" if options.static_warmup is None else str(options.static_warmup))
        + " static warm-up iterations, 64×4 MLP as deform4d's "
        "field and as the IDN core) and `scripts/quickstart_flag4d.args` for the flag4d variants (GRU state and "
        "attention width 32, DRN 64×2); otherwise flag4d's defaults (4 heads, 8×8 pooled + 3×3 local tokens, all "
        "loss weights 1, Eq. 7 on ≤4096 and Eq. 11 on ≤512 random Gaussians per step, DIS flow embeddings because "
        "no RAFT weights are on this machine). Depth column: Eq. 9 on the synthetic depth maps with weight 1 (on) or "
        "not at all (off), for every variant alike (rows from before the option: flag4d on, deform4d off). Dynamic "
        "PSNR: pooled over the test pixels whose `dynamic_mask` marks a moving object (n/a: measured before it "
        "existed). Training time excludes set-up, image caching and the flow embeddings. LPIPS: only when its "
        "weights are present.",
        "",
        *results_table(rows, ["scene", "variant", "depth", "seed"], [("dynamic PSNR", "dynamic_psnr", ".2f")]),
        *seed_summary(rows),
        *commands_and_notes(rows, options.notes),
    ]
    print(write_section(options.section, "\n".join(lines)))


if __name__ == "__main__":
    main()
