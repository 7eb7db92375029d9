"""`fourd-train-g3r`: train G3R's learned optimizer across driving logs (PandaSet layout, real or synthetic).

Examples::

    fourd-synth-driving --out data/synth-driving --num-scenes 8
    fourd-train-g3r --output-dir outputs/g3r --data.logs data/synth-driving --iterations 200
    torchrun --nproc_per_node 2 -m fourd_ns.scripts.train_g3r --device cpu --output-dir outputs/g3r-ddp ...
    fourd-train-g3r --output-dir outputs/g3r --data.logs data/synth-driving --resume outputs/g3r   # same options

The newest checkpoint folder (``outputs/g3r/checkpoints/step-N``) is what ``ns-train g3r
--pipeline.model.weights`` takes (a run folder means its newest checkpoint). All options are the fields of
`fourd_ns.learning.g3r_training.G3RTrainConfig`.
"""

from __future__ import annotations

import tyro
from rich.console import Console

from fourd_ns.learning.g3r_training import G3RTrainConfig, train


def entrypoint() -> None:
    """Console-script entry point (`fourd-train-g3r`)."""
    config = tyro.cli(G3RTrainConfig, description=__doc__.splitlines()[0])
    try:
        checkpoint = train(config)
    except (FileNotFoundError, ValueError) as error:
        Console(stderr=True).print(f"[red]fourd-train-g3r:[/red] {error}")
        raise SystemExit(2) from error
    Console().print(f"fourd-train-g3r: newest checkpoint {checkpoint}")


if __name__ == "__main__":
    entrypoint()
