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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import huggingface_hub

from fourd_ns.learning.checkpoints import MODEL_CONFIG_NAME, MODEL_WEIGHTS_NAME, load_model_weights, read_model_config
from fourd_ns.networks.g3r_net import G3RLearnedOptimizer, G3RNetworkConfig

RECONSTRUCTION_SETTINGS = "reconstruction.json"
"""Step and seeding settings of a checkpoint (written by `fourd_ns.learning.g3r_training`)."""

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

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


def _holds_weights(folder: Path) -> bool:
    """A complete weights folder (a checkpoint's ``*.partial`` folder of an interrupted save is not one)."""
    return not folder.name.endswith(".partial") and (folder / MODEL_CONFIG_NAME).is_file() and (
        folder / MODEL_WEIGHTS_NAME
    ).is_file()


def locate_g3r_weights(name_or_path: Union[str, Path, None], revision: Optional[str] = None) -> tuple[Path, str]:
    """(checkpoint folder, description); raises FileNotFoundError naming what was tried and how to get weights."""
    if name_or_path is None or str(name_or_path) == "":
        raise FileNotFoundError("No G3R weights given (--pipeline.model.weights).\n" + HOW_TO_GET_WEIGHTS)
    path = Path(name_or_path).expanduser()
    if path.is_dir() and not (path / MODEL_CONFIG_NAME).is_file():
        folders = [folder for folder in (path / "checkpoints").glob("step-*") if _holds_weights(folder)]
        if folders:
            newest = max(folders, key=lambda folder: int(folder.name.split("-", 1)[1]))
            return newest, f"{newest} (newest checkpoint of the run folder {path})"
    if _holds_weights(path):
        return path, str(path)
    tried = [f"a checkpoint or run folder at {path.resolve()}: "
             + ("has no config.json + model.safetensors and no checkpoints/step-*" if path.exists() else "does not exist")]
    name = str(name_or_path)
    if _REPO_ID.match(name) and not path.exists():
        offline = bool(huggingface_hub.constants.HF_HUB_OFFLINE)
        try:
            folder = huggingface_hub.snapshot_download(
                name, revision=revision, local_files_only=offline,
                allow_patterns=[MODEL_CONFIG_NAME, MODEL_WEIGHTS_NAME, RECONSTRUCTION_SETTINGS],
            )  # fmt: skip
            return Path(folder), f"{name} (Hugging Face hub, revision {revision or 'main'})"
        except (OSError, ValueError) as error:  # hub / network / cache errors are OSErrors, bad ids ValueErrors
            tried.append(f"the Hugging Face hub model {name!r} (HF_HUB_OFFLINE={int(offline)}): "
                         f"{type(error).__name__}: {error}")
    raise FileNotFoundError(f"Could not find G3R weights {name!r}. Looked for:\n  - " + "\n  - ".join(tried)
                            + "\n" + HOW_TO_GET_WEIGHTS)


def load_g3r_weights(name_or_path: Union[str, Path, None], revision: Optional[str] = None) -> G3RWeights:
    """The learned optimizer (on the CPU) and its reconstruction settings."""
    folder, source = locate_g3r_weights(name_or_path, revision)
    config = G3RNetworkConfig.from_dict(read_model_config(folder))
    network = G3RLearnedOptimizer(config)
    load_model_weights(folder, network)
    settings_path = folder / RECONSTRUCTION_SETTINGS
    settings = json.loads(settings_path.read_text(encoding="utf8")) if settings_path.is_file() else {}
    return G3RWeights(network=network, settings=settings, source=source)
