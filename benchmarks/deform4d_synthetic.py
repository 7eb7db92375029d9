"""Train deform4d with the quickstart schedule on synthetic scenes; record test-view quality and speed.

Run from the repository root::

    python -m benchmarks.deform4d_synthetic --scenes bell press --iterations 3000

For each scene it generates ``data/synth/<scene>`` with ``fourd-synth`` (320×180, 48 time steps) if missing,
builds the exact config that ``scripts/quickstart.sh`` trains (same flags, parsed by nerfstudio's own CLI union),
times ``Trainer.train()`` (setup and image caching excluded), then evaluates the final checkpoint on the right
(test) camera like ``ns-eval`` and writes the table into the ``deform4d-synthetic`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import torch  # noqa: E402

from benchmarks.report import machine_description, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE_ARGS = ROOT / "scripts" / "quickstart_schedule.args"


def train_args(scene: Path, output_dir: Path, iterations: int, device: str) -> list[str]:
    """The ns-train arguments of the quickstart, for any synthetic scene."""
    return [
        "deform4d", "--data", str(scene), "--machine.device-type", device, "--vis", "tensorboard",
        "--viewer.quit-on-train-completion", "True", "--output-dir", str(output_dir),
        "--experiment-name", "benchmark", "--timestamp", scene.name,
        "--max-num-iterations", str(iterations), "--steps-per-save", str(iterations),
        "--steps-per-eval-all-images", "1000000",
        *SCHEDULE_ARGS.read_text().split(),
        "nerfies-data", "--downscale-factor", "2",
    ]  # fmt: skip


def run_scene(scene_name: str, iterations: int, device: str, output_dir: Path) -> dict:
    import tyro

    from fourd_ns.synthetic.generate import generate_scene
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion
    from nerfstudio.utils.eval_utils import eval_setup

    scene = ROOT / "data" / "synth" / scene_name
    if not (scene / "dataset.json").exists():
        generate_scene(scene_name, scene)
    args = train_args(scene, output_dir, iterations, device)
    config = tyro.cli(AnnotatedBaseConfigUnion, args=args)
    config.pipeline.datamanager.data = config.data  # what ns-train's main() does with its --data alias
    config.set_timestamp()
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    num_gaussians = trainer.pipeline.model.num_points
    del trainer
    _, pipeline, _, _ = eval_setup(config.get_base_dir() / "config.yml", test_mode="test")
    metrics = pipeline.get_average_eval_image_metrics(output_path=None, get_std=False)
    return {
        "scene": scene_name,
        "command": "ns-train " + shlex.join(args).replace(str(ROOT) + "/", ""),
        "psnr": metrics["psnr"],
        "ssim": metrics["ssim"],
        "lpips": metrics.get("lpips"),
        "num_test_views": len(pipeline.datamanager.eval_dataset),
        "train_seconds": train_seconds,
        "iterations_per_second": iterations / train_seconds,
        "gaussians": num_gaussians,
    }


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
        "| scene | iterations | PSNR | SSIM | LPIPS | Gaussians | train time (s) | it/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lpips = "n/a" if row["lpips"] is None else f"{row['lpips']:.4f}"
        lines.append(
            f"| {row['scene']} | {options.iterations} | {row['psnr']:.2f} | {row['ssim']:.4f} | {lpips} | "
            f"{row['gaussians']} | {row['train_seconds']:.0f} | {row['iterations_per_second']:.2f} |"
        )
    lines += ["", "Exact training commands:", ""] + [f"- `{row['command']}`" for row in rows]
    print(write_section(options.section, "\n".join(lines)))


if __name__ == "__main__":
    main()
