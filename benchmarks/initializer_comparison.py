"""What the Gaussian initializer changes: the same method and budget seeded by the dataset's points, random points,
or a trained Flow4R checkpoint (anchored-sequence inference on the training video): ``flow4r`` (placed at the anchor
camera with a depth-matched scale, the default), ``flow4r-trajectory`` (placed by a Sim(3) fit of the predicted
camera centres, the first design) and ``flow3r`` (needs a checkpoint with the factored-flow head).

Run from the repository root (after ``benchmarks.flow4r_synthetic`` has written a checkpoint)::

    python -m benchmarks.initializer_comparison --scenes press --methods deform4d \\
        --weights outputs/benchmarks/flow4r-synthetic/stage2/checkpoints/<step-folder>

Every run uses the README quickstart schedule, the same seed and the same number of seed points (the synthetic
datasets ship 4000 SfM-like points with noise and outliers; ``random`` and ``flow4r`` are asked for as many).
Flow4R runs at ``--long-side`` (the resolution its checkpoint was trained at). Rows go to
``outputs/benchmarks/<section>.json`` as they finish (``--resume`` skips rows done) and the table to the
``initializer-comparison`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Callable, Dict

import numpy as np

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import torch  # noqa: E402

from benchmarks.report import machine_description, write_section  # noqa: E402
from benchmarks.train_eval import ROOT, ensure_scene, results_table, train_and_evaluate, train_args  # noqa: E402


def initializer_args(name: str, options: argparse.Namespace) -> list[str]:
    """The ``pipeline.initializer:<name>`` subcommand and its flags."""
    if name == "dataset-points":
        return ["pipeline.initializer:dataset-points"]
    if name == "random":
        return ["pipeline.initializer:random", "--pipeline.initializer.num-points", str(options.num_points)]
    if name in ("flow4r", "flow3r", "flow4r-trajectory"):
        alignment = ["--pipeline.initializer.world-alignment", "trajectory"] if name == "flow4r-trajectory" else []
        return [
            f"pipeline.initializer:{name.split('-')[0]}", "--pipeline.initializer.weights", str(options.weights),
            "--pipeline.initializer.num-points", str(options.num_points),
            "--pipeline.initializer.long-side", str(options.long_side), *alignment,
        ]  # fmt: skip
    raise ValueError(f"unknown initializer {name!r}")


def camera_error(run_dir: Path) -> Callable[[object], Dict[str, float]]:
    """Extra metric of a row: the RMSE (dataset units) between the camera centres the initializer predicted
    (its cached result in the run folder) and the dataset's cameras of the same training-video frames."""

    def compute(pipeline) -> Dict[str, float]:
        cached = sorted(run_dir.glob("initialization_*.npz"))
        if not cached:
            return {}
        with np.load(cached[0]) as arrays:
            if "camera_to_worlds" not in arrays:
                return {}
            predicted = torch.from_numpy(arrays["camera_to_worlds"][:, :3, 3]).double()
        reference = pipeline.initializer_inputs().cameras.camera_to_worlds[:, :3, 3].double()
        return {"camera_centre_rmse": float((predicted - reference).square().sum(-1).mean().sqrt())}

    return compute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", nargs="+", default=["press"])
    parser.add_argument("--methods", nargs="+", default=["deform4d"], choices=["deform4d", "flag4d"])
    parser.add_argument("--initializers", nargs="+", default=["dataset-points", "random", "flow4r"])
    parser.add_argument("--weights", type=Path, help="Flow4R checkpoint for the flow4r initializer")
    parser.add_argument("--num-points", type=int, default=4000)
    parser.add_argument("--long-side", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "outputs" / "benchmarks")
    parser.add_argument("--section", default="initializer-comparison")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--notes", default="")
    parser.add_argument("--report-only", action="store_true")
    options = parser.parse_args()
    if any(n.startswith("flow") for n in options.initializers) and options.weights is None and not options.report_only:
        parser.error("the flow4r / flow3r initializers need --weights (a checkpoint folder written by fourd-train-flow4r)")

    results_path = options.output_dir / f"{options.section}.json"
    keep = options.resume or options.report_only
    rows = json.loads(results_path.read_text()) if keep and results_path.exists() else []
    done = {(row["scene"], row["method"], row["initializer"]) for row in rows}
    for scene_name in [] if options.report_only else options.scenes:
        scene = ensure_scene(scene_name)
        for method in options.methods:
            for name in options.initializers:
                if (scene_name, method, name) in done:
                    continue
                run = f"{options.section}-{scene_name}-{method}-{name}"
                args = train_args(method, scene, options.output_dir, options.iterations, options.device, run,
                                  initializer_args(name, options))
                extra = camera_error(options.output_dir / "benchmark" / method / run) if name.startswith("flow") else None
                rows.append({"scene": scene_name, "method": method, "initializer": name,
                             **train_and_evaluate(args, extra)})  # fmt: skip
                results_path.parent.mkdir(parents=True, exist_ok=True)
                results_path.write_text(json.dumps(rows, indent=2))
                print(f"{scene_name} / {method} / {name}: PSNR {rows[-1]['psnr']:.2f}", flush=True)

    lines = [
        f"## Gaussian initializers: {', '.join(options.initializers)} ({', '.join(options.methods)}, "
        f"{options.device.upper()}, "
        f"{options.iterations} iterations)",
        "",
        f"Command: `python -m benchmarks.initializer_comparison --scenes {' '.join(options.scenes)} "
        f"--methods {' '.join(options.methods)} --initializers {' '.join(options.initializers)} "
        f"--iterations {options.iterations} --num-points {options.num_points} "
        f"--long-side {options.long_side} --weights {os.path.relpath(options.weights, ROOT) if options.weights else ''} "
        f"--device {options.device}`  ",
        f"Machine: {machine_description()}  ",
        "Scenes: `fourd-synth` presets trained at `rgb/2x` (160×90), left camera = train, right camera = test "
        "(48 views), README quickstart schedule, seed 42. Seed points: `dataset-points` = the dataset's 4000 "
        "SfM-like points (noise and outliers); `random` = uniform in the training cameras' frusta; `flow4r` = the "
        "most confident pixels of the anchored-sequence reconstruction, placed at the anchor's dataset pose with the "
        "scale that matches the dataset points' median depth (`world_alignment auto`); `flow4r-trajectory` = the same "
        "points placed by a Sim(3) fit of the predicted camera centres to the dataset's; `flow3r` = half of the seeds "
        "lifted from factored-flow correspondences that agree with Flow4R's 3D tracks, the rest as flow4r. Camera "
        "RMSE: predicted training-camera centres against the dataset's, after placement (dataset units). "
        "The exact `ns-train` command of each row is in the JSON file.",
        "",
        *results_table(rows, ["scene", "method", "initializer"], [("camera RMSE", "camera_centre_rmse", ".3f")]),
    ]
    if options.notes:
        lines += ["", options.notes]
    write_section(options.section, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
