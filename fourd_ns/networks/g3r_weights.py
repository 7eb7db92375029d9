"""Finding and loading trained G3R weights: a checkpoint folder of ``fourd-train-g3r``, its run folder (newest
checkpoint), or a Hugging Face hub id of such a folder (``huggingface_hub.snapshot_download``; with
``HF_HUB_OFFLINE=1`` only the local cache is asked).

A checkpoint folder holds ``config.json`` (`G3RNetworkConfig`), ``model.safetensors`` (decoder and update
networks) and ``reconstruction.json`` (the step and seeding settings it was trained with, so ``ns-train g3r``
reconstructs the way the network learned to). No weights ship with fourd_ns: they have to be trained
(``fourd-train-g3r``) or copied in, and a missing file is one error that says how.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from fourd_ns.learning.checkpoints import load_model_weights, read_model_config
from fourd_ns.learning.weights_folder import locate_weights_folder
from fourd_ns.networks.g3r_net import G3RLearnedOptimizer, G3RNetworkConfig

RECONSTRUCTION_SETTINGS = "reconstruction.json"
"""Step and seeding settings of a checkpoint (written by `fourd_ns.learning.g3r_training`)."""

HOW_TO_GET_WEIGHTS = (
    "G3R needs a trained learned optimizer and none ships with fourd_ns. Train one with\n"
    "  fourd-synth-driving --out data/synth-driving --num-scenes 8\n"
    "  fourd-train-g3r --output-dir outputs/g3r --data.logs data/synth-driving\n"
    "and pass --pipeline.model.weights outputs/g3r (a run folder means its newest checkpoint), a checkpoint folder "
    "(checkpoints/step-N with config.json and model.safetensors), or a Hugging Face hub id of such a folder."
)


@dataclass
class G3RWeights:
    network: G3RLearnedOptimizer
    settings: dict
    """reconstruction.json: {"steps": G3RStepConfig fields, "seeding": G3RSeedingConfig fields} (may be empty)."""
    source: str
    """Where the weights came from (for logs)."""


def locate_g3r_weights(name_or_path: Union[str, Path, None], revision: Optional[str] = None) -> tuple[Path, str]:
    """(checkpoint folder, description); raises FileNotFoundError naming what was tried and how to get weights."""
    return locate_weights_folder(name_or_path, "G3R", HOW_TO_GET_WEIGHTS, [RECONSTRUCTION_SETTINGS], revision)


def load_g3r_weights(name_or_path: Union[str, Path, None], revision: Optional[str] = None) -> G3RWeights:
    """The learned optimizer (on the CPU) and its reconstruction settings."""
    folder, source = locate_g3r_weights(name_or_path, revision)
    config = G3RNetworkConfig.from_dict(read_model_config(folder))
    network = G3RLearnedOptimizer(config)
    load_model_weights(folder, network)
    settings_path = folder / RECONSTRUCTION_SETTINGS
    settings = json.loads(settings_path.read_text(encoding="utf8")) if settings_path.is_file() else {}
    return G3RWeights(network=network, settings=settings, source=source)
