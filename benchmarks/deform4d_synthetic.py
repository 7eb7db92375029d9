"""Train deform4d with the quickstart schedule on synthetic scenes; record test-view quality and speed.

Run from the repository root::

    python -m benchmarks.deform4d_synthetic --scenes bell press --iterations 3000

For each scene it generates ``data/synth/<scene>`` with ``fourd-synth`` (320×180, 48 time steps) if missing,
builds the config that ``METHOD=deform4d bash scripts/quickstart.sh`` trains (same flags, parsed by nerfstudio's own CLI union),
times ``Trainer.train()`` (setup and image caching excluded), then evaluates the final checkpoint on the right
(test) camera like ``ns-eval`` and writes the table into the ``deform4d-synthetic`` section of docs/benchmarks.md.
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


def run_scene(scene_name: str, iterations: int, device: str, output_dir: Path) -> dict:
    scene = ensure_scene(scene_name)
    row = train_and_evaluate(train_args("deform4d", scene, output_dir, iterations, device, scene_name))
    return {"scene": scene_name, **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", nargs="+", default=["bell", "press"])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "outputs" / "benchmarks")
    parser.add_argument("--section", default="deform4d-synthetic")
    options = parser.parse_args()

    rows = [run_scene(name, options.iterations, options.device, options.output_dir) for name in options.scenes]
    (options.output_dir / f"{options.section}.json").write_text(json.dumps(rows, indent=2))
    lines = [
        f"## deform4d on synthetic scenes ({options.device.upper()}, quickstart schedule)",
        "",
        f"Command: `python -m benchmarks.deform4d_synthetic --scenes {' '.join(options.scenes)} "
        f"--iterations {options.iterations} --device {options.device}`  ",
        f"Machine: {machine_description()}  ",
        "Scenes: `fourd-synth` presets at 320×180 (trained at `rgb/2x`, 160×90), 48 time steps; train = left camera "
        "(48 views), test = right camera (48 views), final checkpoint (no best-of selection). "
        "Schedule: `scripts/quickstart_schedule.args` (500 static warm-up iterations, 64×4 deformation MLP). "
        "Training time excludes set-up and image caching. LPIPS: reported only when its weights are present.",
        "",
        *results_table(rows, ["scene"]),
        *commands_and_notes(rows),
    ]
    print(write_section(options.section, "\n".join(lines)))


if __name__ == "__main__":
    main()
