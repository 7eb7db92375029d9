"""Train a small Flow4R on synthetic pairs and evaluate it on held-out synthetic pairs.

Run from the repository root::

    python -m benchmarks.flow4r_synthetic --backbone mini --epochs 4 --pairs-per-epoch 2400 --synthetic-pairs 600

Both stages of the paper's schedule run at a CPU-sized budget: stage 1 (linear head) from scratch, then stage 2 (DPT
head) initialised from the stage-1 checkpoint — both at the same small resolution, on pairs rendered on the fly by
the analytic scene engine (half of the scenes dynamic). The held-out pairs are the validation seeds
(``training.VALIDATION_FIRST_SEED`` onwards), never seen in training. Metrics per pair, averaged (NaN-free):
rotation error of the weighted-Procrustes pose (Eq. 2) against the ground-truth relative pose, next to the identity
baseline (predicting "no camera motion"); translation direction error; point-map error of P after one median scale
per pair (P̄ units); 3D end-point error of P_vt after the same scale; optical-flow EPE of the projected P_vt (pixels).
The untrained network (same initialisation) is evaluated too, so the table shows what training bought.

Results go to the ``flow4r-synthetic`` section of docs/benchmarks.md and ``outputs/benchmarks/flow4r-synthetic.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import tyro

from benchmarks.report import machine_description, write_section
from benchmarks.train_eval import ROOT
from fourd_ns.feedforward.flow4r import Flow4R, Flow4RConfig
from fourd_ns.feedforward.pretrained import save_pretrained
from fourd_ns.feedforward.training import Flow4RTrainConfig, train
from fourd_ns.scripts.eval_flow4r import EvalArgs
from fourd_ns.scripts.eval_flow4r import main as evaluate

COLUMNS = (
    ("rotation_error_deg", "rot. err (°)"),
    ("identity_rotation_error_deg", "identity rot. err (°)"),
    ("translation_angle_deg", "trans. dir. err (°)"),
    ("point_error", "point err"),
    ("motion_epe", "P_vt EPE"),
    ("flow_epe_px", "flow EPE (px)"),
)


def train_args(options: argparse.Namespace, stage: str, output: Path, init: Path | None) -> list[str]:
    size = [str(options.image_size), str(options.image_size)]
    args = [
        "--output-dir", str(output), "--stage", stage, "--model.backbone", options.backbone,
        "--image-size", *size, "--synthetic.image-size", *size,
        "--epochs", str(options.epochs), "--pairs-per-epoch", str(options.pairs_per_epoch),
        "--batch-size", str(options.batch_size), "--synthetic-pairs", str(options.synthetic_pairs),
        "--lr", str(options.lr), "--num-workers", "0", "--device", options.device,
        "--val-every", "0", "--save-every", "1000000", "--seed", "0",
        "--synthetic.supersample", str(options.supersample), "--synthetic-cache-in-memory",
        "--model.dpt-layer-dims", *map(str, options.dpt_layer_dims), "--model.dpt-feature-dim",
        str(options.dpt_feature_dim), "--model.dpt-last-dim", str(options.dpt_last_dim),
    ]
    if init is not None:
        args += ["--init", str(init)]
    return args


def evaluate_checkpoint(checkpoint: Path, options: argparse.Namespace) -> dict:
    size = (options.image_size, options.image_size)
    result = evaluate(EvalArgs(str(checkpoint), f"synthetic:{options.eval_pairs}", image_size=size, device=options.device))
    return result["metrics"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="mini")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4, help="per stage")
    parser.add_argument("--pairs-per-epoch", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--synthetic-pairs", type=int, default=4000, help="distinct training pairs (seeds)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--supersample", type=int, default=1, help="RGB samples per pixel side when rendering pairs")
    parser.add_argument("--dpt-layer-dims", type=int, nargs=4, default=[48, 96, 192, 384])
    parser.add_argument("--dpt-feature-dim", type=int, default=64)
    parser.add_argument("--dpt-last-dim", type=int, default=32)
    parser.add_argument("--eval-pairs", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "outputs" / "benchmarks" / "flow4r-synthetic")
    parser.add_argument("--section", default="flow4r-synthetic")
    parser.add_argument("--notes", default="", help="markdown appended under the table (observations)")
    options = parser.parse_args()

    rows = []
    torch.manual_seed(0)
    untrained = options.output_dir / "untrained"
    untrained_config = Flow4RConfig(
        backbone=options.backbone, head="dpt", dpt_layer_dims=tuple(options.dpt_layer_dims),
        dpt_feature_dim=options.dpt_feature_dim, dpt_last_dim=options.dpt_last_dim,
    )
    save_pretrained(Flow4R(untrained_config), untrained)
    rows.append(dict(model="untrained (random init, DPT head)", steps=0, seconds=0.0, **evaluate_checkpoint(untrained, options)))

    init = None
    commands = []
    for stage in ("stage1", "stage2"):
        args = train_args(options, stage, options.output_dir / stage, init)
        commands.append("fourd-train-flow4r " + " ".join(args))
        config = tyro.cli(Flow4RTrainConfig, args=args)
        start = time.perf_counter()
        result = train(config)
        seconds = time.perf_counter() - start
        init = result.checkpoint
        rows.append(dict(model=f"after {stage}", steps=result.step, seconds=seconds, **evaluate_checkpoint(init, options)))
        (options.output_dir / "results.json").write_text(json.dumps(rows, indent=2))

    num_params = sum(p.numel() for p in result.model.parameters())
    header = "| model | steps | train time (s) | " + " | ".join(title for _, title in COLUMNS) + " |"
    lines = [
        f"## Flow4R trained on synthetic pairs ({options.device.upper()}, `{options.backbone}` backbone)",
        "",
        f"Command: `python -m benchmarks.flow4r_synthetic --backbone {options.backbone} --image-size {options.image_size} "
        f"--epochs {options.epochs} --pairs-per-epoch {options.pairs_per_epoch} --batch-size {options.batch_size} "
        f"--synthetic-pairs {options.synthetic_pairs} --supersample {options.supersample} --dpt-layer-dims "
        f"{' '.join(map(str, options.dpt_layer_dims))} --dpt-feature-dim {options.dpt_feature_dim} --dpt-last-dim "
        f"{options.dpt_last_dim} --eval-pairs {options.eval_pairs} --device {options.device}`  ",
        f"Machine: {machine_description()}  ",
        f"Model: {num_params / 1e6:.1f}M parameters; {options.image_size}×{options.image_size} images; "
        f"{options.synthetic_pairs} distinct training pairs, {options.epochs} epochs × {options.pairs_per_epoch} pairs "
        f"per stage; evaluated on {options.eval_pairs} held-out synthetic pairs (validation seeds).  ",
        "Training commands: " + "; ".join(f"`{c}`" for c in commands),
        "",
        header,
        "|" + "---|" * (3 + len(COLUMNS)),
    ]
    for row in rows:
        values = " | ".join(f"{row[key]:.3f}" for key, _ in COLUMNS)
        lines.append(f"| {row['model']} | {row['steps']} | {row['seconds']:.0f} | {values} |")
    if options.notes:
        lines += ["", options.notes]
    write_section(options.section, "\n".join(lines))
    (options.output_dir / "results.json").write_text(json.dumps(rows, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
