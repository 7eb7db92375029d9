"""Flux4D's protocol on the real PandaSet clip: interpolation and future-frame quality, dynamic-region PSNR, LiDAR
depth and reconstruction time against per-scene optimisation from the same LiDAR; scene flow on the input frames.

Run from the repository root, after training weights (``fourd-train-flux4d``, see docs/benchmarks.md)::

    python -m benchmarks.flux4d_pandaset --weights outputs/flux4d-synth --base-weights outputs/flux4d-synth-base

Every row trains through nerfstudio's own CLI exactly as the printed ``ns-train`` command would, on the front camera
of ``../shared/data/pandaset/002`` (frames 00-15: inputs 0, 2, …, 10; ``flux4d-interpolation`` evaluates 1, 3, …, 9,
``flux4d-future`` 11-15), and is evaluated like ``ns-eval``. Rows:

- flux4d with the base weights (linear motion, no refinement, no velocity re-weighting in training), the full weights
  without and with their refinement iteration(s), the full weights starting from the flow4r / flow3r initializer's
  velocities (``--initial-motion-weights``), and the full weights + ``--finetune`` per-scene iterations;
- per-scene baselines from the same LiDAR seeds: static 3DGS (deform4d with its deformation never switched on) and
  deform4d with the LiDAR depth loss, at each of ``--budgets`` iterations.

Dynamic-region PSNR is computed here for every row the same way (pixels inside projected moving cuboids, pooled
over the evaluation images; `fourd_ns.metrics.dynamic_regions`). Scene flow (flux4d rows only: the per-scene
baselines have no per-point velocities to read) is ``ns-eval``'s, with the zero-flow baseline on the same points.
Reconstruction time is the training loop's wall clock plus flux4d's lifting of the initial Gaussians. Rows go to
``outputs/benchmarks/<section>.json`` as they finish (``--resume`` keeps them), the tables to the ``<section>`` part
of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Dict, List

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import torch  # noqa: E402

from benchmarks.g3r_pandaset import BASELINES, reconstruction_seconds, time_to_reach  # noqa: E402
from benchmarks.report import machine_description, write_section  # noqa: E402
from benchmarks.train_eval import ROOT, commands_and_notes, train_and_evaluate, train_args  # noqa: E402

DEFAULT_LOG = ROOT.parent / "shared" / "data" / "pandaset" / "002"
SPLITS = ("flux4d-interpolation", "flux4d-future")


def dataparser_args(options: argparse.Namespace, split: str) -> List[str]:
    return [
        "pandaset-data", "--cameras", "front", "--downscale-factor", str(options.downscale), "--split-mode", split,
        "--max-seed-points", str(options.points), "--seed-voxel-size", str(options.voxel),
    ]  # fmt: skip


def flux4d_rows(options: argparse.Namespace) -> Dict[str, List[str]]:
    """name -> extra flags of the flux4d rows."""
    common = ["--pipeline.max-background-points", str(options.points)]
    rows: Dict[str, List[str]] = {}
    if options.base_weights is not None:
        rows["flux4d base (linear, no refinement)"] = ["--pipeline.model.weights", str(options.base_weights), *common]
    full = ["--pipeline.model.weights", str(options.weights), *common]
    rows["flux4d full weights, no refinement at inference"] = [*full, "--pipeline.model.refinement-iterations", "0"]
    rows["flux4d full (+ refinement, + motion enhancement)"] = full
    for entry in options.other_weights:
        name, path = entry.split("=", 1)
        rows[name] = ["--pipeline.model.weights", path, *common]
    if options.untrained_weights is not None:
        rows["control: untrained networks (initial Gaussians, static)"] = [
            "--pipeline.model.weights", str(options.untrained_weights), *common, "--pipeline.model.refinement-iterations", "0"]
    if options.initial_motion_weights is not None:
        for initializer in ("flow4r", "flow3r"):
            rows[f"flux4d full, initial velocities from {initializer}"] = [
                *full, "--pipeline.initial-motion", "initializer", f"pipeline.initializer:{initializer}",
                "--pipeline.initializer.weights", str(options.initial_motion_weights),
                "--pipeline.initializer.long-side", str(options.initial_motion_long_side),
                "--pipeline.initializer.num-points", str(options.points)]
    rows[f"flux4d full + {options.finetune} fine-tuning"] = [
        *full, "--pipeline.model.finetune-steps", str(options.finetune), "--pipeline.model.lidar-depth-loss-weight", "0.5"]
    return rows


def row_names(options: argparse.Namespace) -> List[str]:
    names = []
    for split in options.splits:
        names += [f"{name} | {split}" for name in flux4d_rows(options)]
        budgets = options.future_budgets if split == "flux4d-future" and options.future_budgets else options.budgets
        names += [f"{variant} @ {budget} | {split}" for variant in BASELINES for budget in budgets]
    return names


def row_args(options: argparse.Namespace, name: str) -> List[str]:
    label, split = name.rsplit(" | ", 1)
    slug = options.section + "-" + "".join(c if c.isalnum() else "-" for c in name).strip("-")
    if label in flux4d_rows(options):
        return train_args("flux4d", options.data, options.output_dir, 1, options.device, slug, flux4d_rows(options)[label],
                          dataparser_args(options, split), schedule=False)  # fmt: skip
    variant, budget = label.rsplit(" @ ", 1)
    return train_args("deform4d", options.data, options.output_dir, int(budget), options.device, slug,
                      BASELINES[variant], dataparser_args(options, split))  # fmt: skip


def dynamic_region_metrics(min_displacement_metres: float):
    """Pooled PSNR over the pixels of moving cuboids in every evaluation image (the same for every method)."""

    def compute(pipeline) -> Dict[str, float]:
        from fourd_ns.metrics.dynamic_regions import dynamic_mask
        from fourd_ns.sensors.driving_metadata import get_driving_metadata

        driving = get_driving_metadata(pipeline.datamanager.train_dataset.metadata)
        dataset = pipeline.datamanager.eval_dataset
        frames = dataset.metadata["frame_indices"].tolist()
        intrinsics = dataset.cameras.get_intrinsics_matrices()
        squared, pixels = 0.0, 0
        pipeline.eval()  # get_average_eval_image_metrics leaves the model in training mode
        model = pipeline.model
        for index in range(len(dataset)):
            camera = dataset.cameras[index : index + 1].to(model.device)
            with torch.no_grad():
                outputs = model.get_outputs_for_camera(camera)
            image = dataset.get_data(index)["image"][..., :3]  # as ns-eval sees it (the parser's resolution)
            image = (image.float() / 255.0 if image.dtype == torch.uint8 else image.float()).to(outputs["rgb"])
            height, width = outputs["rgb"].shape[:2]
            mask = dynamic_mask(driving.actors, int(frames[index]), dataset.cameras.camera_to_worlds[index].float(),
                                intrinsics[index].float(), width, height,
                                min_displacement_metres / driving.metres_per_unit).to(outputs["rgb"].device)  # fmt: skip
            squared += float(((outputs["rgb"] - image) ** 2).mean(dim=-1)[mask].sum())
            pixels += int(mask.sum())
        psnr = -10.0 * math.log10(max(squared / pixels, 1e-12)) if pixels else float("nan")
        return {"dynamic_region_psnr": psnr, "dynamic_region_pixels": float(pixels)}

    return compute


def ensure_untrained_weights(trained: Path, folder: Path) -> None:
    """Networks of the trained checkpoint's architecture (torch seed 0; zero output layers, so the prediction is the
    initial Gaussians with v = 0) with its reconstruction settings, written once in the checkpoint format."""
    import shutil

    from fourd_ns.learning import write_model_folder
    from fourd_ns.networks.flux4d_net import Flux4DNetwork
    from fourd_ns.networks.flux4d_weights import RECONSTRUCTION_SETTINGS, load_flux4d_weights, locate_flux4d_weights

    if folder.exists():
        return
    source, _ = locate_flux4d_weights(trained)
    config = load_flux4d_weights(trained).network.config
    torch.manual_seed(0)
    checkpoint = folder / "checkpoints" / "step-0000000"
    write_model_folder(checkpoint, Flux4DNetwork(config), config.to_dict())
    shutil.copy(source / RECONSTRUCTION_SETTINGS, checkpoint / RECONSTRUCTION_SETTINGS)


def fmt(value, spec: str = ".2f") -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def protocol_table(rows: List[dict]) -> List[str]:
    header = ["row", "split", "iterations", "PSNR", "SSIM", "dynamic-region PSNR", "LiDAR depth RMSE (m)", "Gaussians",
              "reconstruction time (s)"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        m = row["metrics"]
        label, split = row["row"].rsplit(" | ", 1)
        cells = [label, split.replace("flux4d-", ""), str(row["iterations"]), f"{row['psnr']:.2f}", f"{row['ssim']:.4f}",
                 fmt(m.get("dynamic_region_psnr")), fmt(m.get("lidar_depth_rmse_m")), str(row["gaussians"]),
                 f"{reconstruction_seconds(row):.1f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def flow_table(rows: List[dict]) -> List[str]:
    header = ["row", "EPE3D (m)", "Acc5", "Acc10", "angle error (°)", "EPE moving (m)", "EPE static (m)", "points"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    zero = None
    for row in rows:
        m = row["metrics"]
        if "scene_flow_epe3d" not in m or not row["row"].endswith("interpolation"):
            continue
        zero = zero or m
        lines.append("| " + " | ".join([row["row"].rsplit(" | ", 1)[0], *(fmt(m.get(f"scene_flow_{k}"), ".3f") for k in (
            "epe3d", "acc5", "acc10", "angle_error_deg", "epe3d_moving", "epe3d_static")),
            str(int(m["scene_flow_num_points"]))]) + " |")  # fmt: skip
    if zero is not None:
        lines.append("| zero flow (everything static) | " + " | ".join(
            fmt(zero.get(f"scene_flow_zero_{k}"), ".3f") for k in
            ("epe3d", "acc5", "acc10", "angle_error_deg", "epe3d_moving", "epe3d_static")) +
            f" | {int(zero['scene_flow_zero_num_points'])} |")  # fmt: skip
    return lines


def speed_lines(rows: List[dict]) -> List[str]:
    lines = ["| flux4d row | split | its PSNR | its time (s) | baseline | baseline time to that PSNR (s) | speed-up | "
             "best baseline PSNR (budget) |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        label, split = row["row"].rsplit(" | ", 1)
        if not label.startswith("flux4d full (+"):
            continue
        for variant in BASELINES:
            runs = [r for r in rows if r["row"].startswith(variant + " @ ") and r["row"].endswith(split)]
            if not runs:
                continue
            reach = time_to_reach(runs, row["psnr"])
            best = max(runs, key=lambda r: r["psnr"])
            longest = max(reconstruction_seconds(r) for r in runs)
            # reached already at the smallest budget: the true time is shorter, so both numbers are upper bounds
            first = min(runs, key=reconstruction_seconds)
            bound = "≤ " if reach is not None and first["psnr"] >= row["psnr"] else ""
            reach_text = f"{bound}{reach:.1f}" if reach is not None else f"not reached in {longest:.0f}"
            ratio = f"{bound}{reach / reconstruction_seconds(row):.1f}×" if reach is not None else "—"
            lines.append(f"| {label} | {split.replace('flux4d-', '')} | {row['psnr']:.2f} | "
                         f"{reconstruction_seconds(row):.1f} | {variant} | {reach_text} | {ratio} | "
                         f"{best['psnr']:.2f} ({best['iterations']}) |")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_LOG)
    parser.add_argument("--weights", type=Path, default=ROOT / "outputs" / "flux4d-synth")
    parser.add_argument("--base-weights", type=Path, default=None, help="weights of the base ablation (linear motion, "
                        "no refinement, no velocity re-weighting)")  # fmt: skip
    parser.add_argument("--untrained-weights", type=Path, default=None,
                        help="networks of the full weights' architecture, untrained (written there if missing): the "
                        "control row")  # fmt: skip
    parser.add_argument("--other-weights", nargs="*", default=[], metavar="NAME=WEIGHTS",
                        help="more flux4d rows with other weights (e.g. trained on fewer logs)")
    parser.add_argument("--initial-motion-weights", type=Path, default=None,
                        help="a Flow4R checkpoint with the factored-flow head: adds the rows whose LiDAR Gaussians start "
                        "from the flow4r / flow3r initializer's velocities (--pipeline.initial-motion initializer)")
    parser.add_argument("--initial-motion-long-side", type=int, default=64,
                        help="long side the initial-motion checkpoint runs at (its training resolution)")
    parser.add_argument("--weights-command", default="", help="the fourd-train-flux4d commands that made the weights")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--future-budgets", type=int, nargs="*", default=None,
                        help="baseline budgets on the future split (default: --budgets)")
    parser.add_argument("--rows", nargs="*", default=None, help="run only these rows (names as in the JSON file)")
    parser.add_argument("--downscale", type=int, default=8)
    parser.add_argument("--points", type=int, default=30000, help="LiDAR point budget of every row")
    parser.add_argument("--voxel", type=float, default=0.15, help="seed-point thinning voxel (m) of the baselines")
    parser.add_argument("--finetune", type=int, default=200)
    parser.add_argument("--dynamic-min-displacement", type=float, default=0.5,
                        help="metres a cuboid must move in the clip to count as dynamic")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "outputs" / "benchmarks")
    parser.add_argument("--section", default="flux4d-pandaset")
    parser.add_argument("--resume", action="store_true", help="keep rows already in the JSON file")
    parser.add_argument("--report-only", action="store_true", help="write the tables from the JSON file")
    parser.add_argument("--notes", default="", help="markdown appended under the tables (observations)")
    options = parser.parse_args()
    if not (options.data / "camera").is_dir():
        raise SystemExit(f"No PandaSet log at {options.data} (expected camera/, lidar/, annotations/); pass --data.")

    if options.untrained_weights is not None and not options.report_only:
        ensure_untrained_weights(options.weights, options.untrained_weights)
    results = options.output_dir / f"{options.section}.json"
    rows = json.loads(results.read_text()) if (options.resume or options.report_only) and results.exists() else []
    names = row_names(options)
    if options.rows:
        names = [name for name in names if name in options.rows]
    if not options.report_only:
        done = {row["row"] for row in rows}
        for name in names:
            if name in done:
                continue
            print(f"=== {name}", flush=True)
            result = train_and_evaluate(row_args(options, name), dynamic_region_metrics(options.dynamic_min_displacement))
            rows.append({"row": name, **result})
            results.parent.mkdir(parents=True, exist_ok=True)
            results.write_text(json.dumps(rows, indent=2))

    order = {name: i for i, name in enumerate(row_names(options))}
    rows.sort(key=lambda row: order.get(row["row"], len(order)))
    relative = lambda path: os.path.relpath(path, ROOT)  # noqa: E731
    real = options.data.resolve() == DEFAULT_LOG.resolve()
    cuboid_truth = any(row["metrics"].get("scene_flow_truth_from_cuboids", 1.0) > 0 for row in rows
                       if "scene_flow_epe3d" in row["metrics"])  # fmt: skip
    truth = ("from the cuboid tracks: points in a box ride with it, all others are static" if cuboid_truth else
             "the synthetic generator's exact per-point flow")  # fmt: skip
    lines = [
        f"## flux4d on {'the real PandaSet clip' if real else 'the held-out log ' + relative(options.data)} "
        f"({options.device.upper()})",
        "",
        f"Command: `python -m benchmarks.flux4d_pandaset --section {options.section} --data {relative(options.data)} "
        f"--weights {relative(options.weights)} "
        + (f"--base-weights {relative(options.base_weights)} " if options.base_weights else "")
        + (f"--untrained-weights {relative(options.untrained_weights)} " if options.untrained_weights else "")
        + ("--other-weights " + " ".join(f"'{e}'" for e in options.other_weights) + " " if options.other_weights else "")
        + (f"--initial-motion-weights {relative(options.initial_motion_weights)} --initial-motion-long-side "
           f"{options.initial_motion_long_side} " if options.initial_motion_weights else "")
        + f"--splits {' '.join(options.splits)} --budgets {' '.join(map(str, options.budgets))} "
        + (f"--future-budgets {' '.join(map(str, options.future_budgets))} " if options.future_budgets else "")
        + "--points "
        f"{options.points} --voxel {options.voxel} --finetune {options.finetune} --downscale {options.downscale} "
        f"--device {options.device}`  ",
        f"Weights: {options.weights_command or relative(options.weights)}  ",
        f"Machine: {machine_description()}  ",
        f"Data: {'PandaSet sequence 002' if real else relative(options.data)} frames 00–15, front camera at "
        f"1/{options.downscale} resolution; inputs 0, 2, …, 10 (their images and LiDAR are all any row sees); "
        "interpolation evaluates 1, 3, …, 9, future 11–15. Dynamic regions: moving cuboids (centre moves > "
        f"{options.dynamic_min_displacement} m in the clip) projected into each evaluation image. Reconstruction time: "
        "training loop + flux4d's lifting. Final state, no best-of selection.",
        "",
        *protocol_table(rows),
        "",
        "Time for each per-scene baseline to reach flux4d's PSNR (interpolated between budgets), over flux4d's time "
        "(≤: the baseline's smallest budget already beats flux4d, so the true time and ratio are smaller):",
        "",
        *speed_lines(rows),
        "",
        f"Scene flow over one frame (0.1 s) on the input frames' LiDAR points inside the front camera's view (truth "
        f"{truth}):",
        "",
        *flow_table(rows),
        *commands_and_notes(rows, options.notes),
    ]
    print(write_section(options.section, "\n".join(lines)))


if __name__ == "__main__":
    main()
