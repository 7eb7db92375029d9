"""`fourd-train-flux4d`: train Flux4D's networks without labels across driving logs (PandaSet layout, real or
synthetic).

Examples::

    fourd-synth-driving --out data/synth-driving --num-scenes 8
    fourd-train-flux4d --output-dir outputs/flux4d --data.logs data/synth-driving --iterations 500
    torchrun --nproc_per_node 2 -m fourd_ns.scripts.train_flux4d --device cpu --output-dir outputs/flux4d-ddp ...
    fourd-train-flux4d --output-dir outputs/flux4d --data.logs data/synth-driving --resume outputs/flux4d

The newest checkpoint folder (``outputs/flux4d/checkpoints/step-N``) is what ``ns-train flux4d
--pipeline.model.weights`` takes (a run folder means its newest checkpoint). All options are the fields of
`fourd_ns.learning.flux4d_training.Flux4DTrainConfig`.
"""

from __future__ import annotations

import tyro
from rich.console import Console

from fourd_ns.learning.flux4d_training import Flux4DTrainConfig, train


def entrypoint() -> None:
    """Console-script entry point (`fourd-train-flux4d`)."""
    config = tyro.cli(Flux4DTrainConfig, description=__doc__.splitlines()[0])
    try:
        checkpoint = train(config)
    except (FileNotFoundError, ValueError) as error:
        Console(stderr=True).print(f"[red]fourd-train-flux4d:[/red] {error}")
        raise SystemExit(2) from error
    Console().print(f"fourd-train-flux4d: newest checkpoint {checkpoint}")


if __name__ == "__main__":
    entrypoint()
