"""Finding and loading trained Flux4D weights (a ``fourd-train-flux4d`` checkpoint folder, its run folder, or a
Hugging Face hub id of one; `fourd_ns.learning.weights_folder`).

A checkpoint folder holds ``config.json`` (`Flux4DNetworkConfig`), ``model.safetensors`` (f_θ and f_φ) and
``reconstruction.json`` (the seeding, refinement and loss settings it was trained with, so ``ns-train flux4d``
reconstructs the way the network learned to). No weights ship with fourd_ns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from fourd_ns.learning.checkpoints import load_model_weights, read_model_config
from fourd_ns.learning.weights_folder import locate_weights_folder
from fourd_ns.networks.flux4d_net import Flux4DNetwork, Flux4DNetworkConfig

RECONSTRUCTION_SETTINGS = "reconstruction.json"
"""Seeding / refinement / loss settings of a checkpoint (written by `fourd_ns.learning.flux4d_training`)."""

HOW_TO_GET_WEIGHTS = (
    "Flux4D needs trained networks and none ship with fourd_ns. Train them with\n"
    "  fourd-synth-driving --out data/synth-driving --num-scenes 8 --num-frames 16\n"
    "  fourd-train-flux4d --output-dir outputs/flux4d --data.logs data/synth-driving\n"
    "and pass --pipeline.model.weights outputs/flux4d (a run folder means its newest checkpoint), a checkpoint "
    "folder (checkpoints/step-N with config.json and model.safetensors), or a Hugging Face hub id of such a folder."
)


@dataclass
class Flux4DWeights:
    network: Flux4DNetwork
    settings: dict
    """reconstruction.json: {"seeding": ..., "refinement": ..., "loss": ...} (may be empty)."""
    source: str


def locate_flux4d_weights(name_or_path: Union[str, Path, None], revision: Optional[str] = None) -> tuple[Path, str]:
    return locate_weights_folder(name_or_path, "Flux4D", HOW_TO_GET_WEIGHTS, [RECONSTRUCTION_SETTINGS], revision)


def load_flux4d_weights(name_or_path: Union[str, Path, None], revision: Optional[str] = None) -> Flux4DWeights:
    """The networks (on the CPU) and their reconstruction settings."""
    folder, source = locate_flux4d_weights(name_or_path, revision)
    network = Flux4DNetwork(Flux4DNetworkConfig.from_dict(read_model_config(folder)))
    load_model_weights(folder, network)
    settings_path = folder / RECONSTRUCTION_SETTINGS
    settings = json.loads(settings_path.read_text(encoding="utf8")) if settings_path.is_file() else {}
    return Flux4DWeights(network=network, settings=settings, source=source)
