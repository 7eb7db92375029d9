"""Train one nerfstudio method on a synthetic scene exactly as ``ns-train`` would, then evaluate it like ``ns-eval``.

Shared by the benchmark scripts: the config is parsed by nerfstudio's own CLI union from the same arguments a user
types, the random seed is set as ``ns-train`` sets it, ``Trainer.train()`` is timed (set-up, image caching and flow
embeddings excluded), and the final checkpoint is evaluated on the test (right) camera.

The command recorded with each row names paths relative to the repository root (`repository_relative`), so tables
in ``docs/benchmarks.md`` can be re-run from any checkout.
"""

from __future__ import annotations

import shlex
import time
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE_ARGS = ROOT / "scripts" / "quickstart_schedule.args"


def repository_relative(argument: str) -> str:
    """``argument`` written relative to the repository root when it is an absolute path inside the repository or in
    the ``shared`` folder beside it (``data/synth/bell``, ``../shared/data/...``); any other argument unchanged.

    Only the lexical path counts (no symlinks followed: ``../shared`` is often a link), and of the repository's
    parent only ``shared/``: a clone in ``/tmp`` must not turn ``/tmp/pytest-of-root/...`` into ``../pytest-of-root``.
    """
    if not argument.startswith("/"):
        return argument
    path = Path(os.path.normpath(argument))
    for base, prefix in ((ROOT, ""), (ROOT.parent / "shared", "../shared/")):
        if path == base:
            return prefix.rstrip("/") or "."
        if path.is_relative_to(base):
            return prefix + str(path.relative_to(base))
    return argument


def schedule_args(method: str) -> List[str]:
    """The reduced CPU schedule of the README quickstart: ``scripts/quickstart_schedule.args`` plus the method's
    ``scripts/quickstart_<method>.args`` when it exists (flag4d's smaller GMN widths)."""
    method_args = SCHEDULE_ARGS.parent / f"quickstart_{method}.args"
    return SCHEDULE_ARGS.read_text().split() + (method_args.read_text().split() if method_args.exists() else [])


def train_args(
    method: str,
    scene: Path,
    output_dir: Path,
    iterations: int,
    device: str,
    name: str,
    extra: Optional[List[str]] = None,
    dataparser: Sequence[str] = ("nerfies-data", "--downscale-factor", "2"),
    schedule: bool = True,
) -> List[str]:
    """ns-train arguments: the quickstart schedule (unless ``schedule`` is False: methods without a deformation
    network, e.g. g3r) plus ``extra`` model flags, then the ``dataparser`` subcommand and its flags (default: a
    synthetic Nerfies scene at ``rgb/2x``)."""
    return [
        method, "--data", str(scene), "--machine.device-type", device, "--vis", "tensorboard",
        "--viewer.quit-on-train-completion", "True", "--output-dir", str(output_dir),
        "--experiment-name", "benchmark", "--timestamp", name,
        "--max-num-iterations", str(iterations), "--steps-per-save", str(iterations),
        "--steps-per-eval-all-images", "1000000",
        *(schedule_args(method) if schedule else []), *(extra or []), *dataparser,
    ]  # fmt: skip


def ensure_scene(scene_name: str) -> Path:
    from fourd_ns.synthetic.generate import generate_scene

    scene = ROOT / "data" / "synth" / scene_name
    if not (scene / "dataset.json").exists():
        generate_scene(scene_name, scene)
    return scene


def train_and_evaluate(args: List[str], extra_metrics: Optional[Callable[[object], Dict[str, float]]] = None) -> dict:
    """Run ``ns-train <args>`` in-process and evaluate its final checkpoint on the test camera; ``extra_metrics``
    (the evaluation pipeline -> more metrics) adds what ``ns-eval`` does not report for every method."""
    import tyro

    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion
    from nerfstudio.scripts.train import _set_random_seed
    from nerfstudio.utils.eval_utils import eval_setup

    config = tyro.cli(AnnotatedBaseConfigUnion, args=args)
    config.pipeline.datamanager.data = config.data  # what ns-train's main() does with its --data alias
    config.set_timestamp()
    config.save_config()
    _set_random_seed(config.machine.seed)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    num_gaussians = trainer.pipeline.model.num_points
    # Work a method does before its first iteration that belongs to its reconstruction time (g3r's seeding).
    setup_seconds = float(getattr(trainer.pipeline, "seeding_seconds", 0.0))
    del trainer
    _, pipeline, _, _ = eval_setup(config.get_base_dir() / "config.yml", test_mode="test")
    metrics = pipeline.get_average_eval_image_metrics(output_path=None, get_std=False)
    if extra_metrics is not None:
        metrics.update(extra_metrics(pipeline))
    iterations = config.max_num_iterations
    return {
        "command": "ns-train " + shlex.join(repository_relative(argument) for argument in args),
        "psnr": metrics["psnr"],
        "ssim": metrics["ssim"],
        "lpips": metrics.get("lpips"),
        # PSNR pooled over the test pixels of the dataset's dynamic-region masks (fourd_ns.metrics.masked_psnr)
        "dynamic_psnr": metrics.get("dynamic_psnr"),
        "num_test_views": len(pipeline.datamanager.eval_dataset),
        "train_seconds": train_seconds,
        "method_setup_seconds": setup_seconds,
        "iterations": iterations,
        "iterations_per_second": iterations / train_seconds,
        "gaussians": num_gaussians,
        "metrics": {key: float(value) for key, value in metrics.items() if isinstance(value, (int, float))},
    }


def results_table(
    rows: List[dict], label_columns: List[str], metric_columns: Sequence[Tuple[str, str, str]] = ()
) -> List[str]:
    """Markdown table of ``train_and_evaluate`` rows; ``label_columns`` name the row keys shown first and
    ``metric_columns`` ``(title, key of row["metrics"], format spec)`` extra metrics shown after LPIPS (n/a if absent,
    e.g. in rows measured before the metric existed)."""
    header = [*label_columns, "iterations", "PSNR", "SSIM", "LPIPS", *(title for title, _, _ in metric_columns),
              "Gaussians", "train time (s)", "it/s"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lpips = "n/a" if row["lpips"] is None else f"{row['lpips']:.4f}"
        measured = row["metrics"]
        extra = [format(measured[key], spec) if key in measured else "n/a" for _, key, spec in metric_columns]
        cells = [str(row[c]) for c in label_columns] + [
            str(row["iterations"]), f"{row['psnr']:.2f}", f"{row['ssim']:.4f}", lpips, *extra, str(row["gaussians"]),
            f"{row['train_seconds']:.0f}", f"{row['iterations_per_second']:.2f}",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def commands_and_notes(rows: List[dict], notes: str = "") -> List[str]:
    """Markdown tail of a benchmark section: every row's exact training command, then the observations (if any)."""
    lines = ["", "Exact training commands:", "", *[f"- `{row['command']}`" for row in rows]]
    return lines + ["", notes] if notes else lines
