"""`fourd-train-flow4r`: train Flow4R (stage 1: linear head at 224 px; stage 2: DPT head at 512 px).

Examples::

    fourd-train-flow4r --stage stage1 --init CroCo_V2_ViTLarge_BaseDecoder.pth --output-dir outputs/flow4r-s1 \
        --sequences data/seqs/a data/seqs/b
    torchrun --nproc_per_node 8 -m fourd_ns.scripts.train_flow4r --stage stage2 \
        --init outputs/flow4r-s1/checkpoints/step-0350000 --output-dir outputs/flow4r-s2
    fourd-train-flow4r --resume outputs/flow4r-s2          # continue from the newest checkpoint

All options are the fields of `fourd_ns.feedforward.training.Flow4RTrainConfig`.
"""

from __future__ import annotations

import tyro
from rich.console import Console

from fourd_ns.feedforward.training import Flow4RTrainConfig, train


def entrypoint() -> None:
    """Console-script entry point (`fourd-train-flow4r`)."""
    config = tyro.cli(Flow4RTrainConfig, description=__doc__.splitlines()[0])
    try:
        train(config)
    except (FileNotFoundError, ValueError) as error:
        Console(stderr=True).print(f"[red]fourd-train-flow4r:[/red] {error}")
        raise SystemExit(2) from error


if __name__ == "__main__":
    entrypoint()
