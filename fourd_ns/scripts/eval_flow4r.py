"""`fourd-eval-flow4r`: evaluate Flow4R weights on held-out synthetic pairs or on sequences in the on-disk format.

Examples::

    fourd-eval-flow4r --checkpoint outputs/flow4r-s1/checkpoints/step-0350000 --data synthetic:500
    fourd-eval-flow4r --checkpoint outputs/flow4r-s2 --data data/eval_sequences --output-json eval.json

``--data synthetic:N`` evaluates N held-out synthetic pairs; a folder evaluates that sequence folder (with
``meta.json``) or every sequence in its subfolders (``docs/sequence_format.md``) as anchored pairs. The metrics and
how they are computed are described in `fourd_ns.feedforward.evaluation`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import tyro
from rich.console import Console

from fourd_ns.feedforward.evaluation import evaluate, resolve_device, results_table
from fourd_ns.feedforward.pretrained import from_pretrained


@dataclass
class EvalArgs:
    checkpoint: str
    """Flow4R weights: a checkpoint folder, a run's checkpoint, a ``.pth`` or a hub id (anything from_pretrained
    reads)."""
    data: str
    """``synthetic:N`` for N held-out synthetic pairs, or a sequence folder / a folder of sequence folders."""
    output_json: Optional[Path] = None
    """Also write the metrics to this JSON file."""
    image_size: tuple[int, int] = (224, 224)
    """(height, width) of the network input, multiples of the patch size."""
    anchor: int = 0
    """Anchor frame of the sequence evaluation."""
    max_frames: int = 64
    """Frames evaluated per sequence (from the first)."""
    batch_size: int = 8
    """Pairs per forward pass."""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    """Where the network runs."""


def main(args: EvalArgs) -> dict:
    """Run the evaluation, print it, write ``--output-json`` if given and return what was written."""
    console = Console()
    device = resolve_device(args.device)
    model = from_pretrained(args.checkpoint, console=console).to(device)
    evaluation = evaluate(model, args.data, image_size=tuple(args.image_size), anchor=args.anchor,
                          max_frames=args.max_frames, batch_size=args.batch_size, device=device)
    console.print(results_table(evaluation))
    results = dict(mode=evaluation.pop("mode"), checkpoint=args.checkpoint, **evaluation)
    if args.output_json is not None:
        args.output_json.parent.mkdir(parents=True, exist_ok=True)
        args.output_json.write_text(json.dumps(results, indent=2) + "\n")
        console.print(f"Wrote {args.output_json}")
    return results


def entrypoint() -> None:
    """Console-script entry point (`fourd-eval-flow4r`); exits with status 2 after printing a usage or data error."""
    args = tyro.cli(EvalArgs, description=__doc__.splitlines()[0])
    try:
        main(args)
    except (FileNotFoundError, ValueError) as error:
        Console(stderr=True).print(f"[red]fourd-eval-flow4r:[/red] {error}")
        raise SystemExit(2) from error


if __name__ == "__main__":
    entrypoint()
