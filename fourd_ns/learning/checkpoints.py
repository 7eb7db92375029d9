"""The checkpoint folders of a training run: ``<run>/checkpoints/step-NNNNNNN/``, each holding the model's files
and ``trainer_state.pt`` (what `fourd_ns.learning.resume` needs to continue exactly).

A checkpoint is written to ``step-NNNNNNN.partial`` and renamed when complete, so an interrupted save never shadows
the previous checkpoint (a folder counts as a checkpoint only under its final name and with its trainer state), and
only the newest ``keep_last`` are kept. How the model is written is the trainer's choice, a callback given the
folder; `write_model_folder` / `load_model_weights` are the generic form: ``config.json`` (the settings that rebuild
the network) beside ``model.safetensors``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import torch
from safetensors.torch import load_model, save_model
from torch import nn

TRAINER_STATE_NAME = "trainer_state.pt"
CHECKPOINT_PREFIX = "step-"
PARTIAL_SUFFIX = ".partial"
CHECKPOINT_NAME = re.compile(rf"{CHECKPOINT_PREFIX}\d+")
"""Names of complete checkpoint folders (a ``.partial`` folder is a save that did not finish)."""
MODEL_CONFIG_NAME = "config.json"
MODEL_WEIGHTS_NAME = "model.safetensors"

ModelWriter = Callable[[Path], Any]
"""Writes the model's files into the (existing or not yet existing) folder it is given."""


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:07d}"


def checkpoint_folders(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    complete = [path for path in folder.iterdir()
                if CHECKPOINT_NAME.fullmatch(path.name) and (path / TRAINER_STATE_NAME).is_file()]
    return sorted(complete, key=lambda path: int(path.name[len(CHECKPOINT_PREFIX):]))


def find_checkpoint(path: Path) -> Path:
    """``path`` itself if it is a checkpoint folder, else the newest checkpoint of the run folder ``path``."""
    path = Path(path)
    if (path / TRAINER_STATE_NAME).exists():
        return path
    folders = checkpoint_folders(path)
    if not folders:
        raise FileNotFoundError(f"--resume {path}: neither a checkpoint folder (with {TRAINER_STATE_NAME}) nor a run "
                                "folder with checkpoints/step-*; point it at one of those")
    return folders[-1]


def save_checkpoint(run_dir: Path, step: int, write_model: ModelWriter, trainer_state: dict, keep_last: int) -> Path:
    """Write ``checkpoints/step-NNNNNNN`` atomically (``write_model(folder)``, then ``trainer_state`` as
    `TRAINER_STATE_NAME`) and delete all but the newest ``keep_last`` checkpoints; returns the new folder.

    Call it on one process only (rank 0); `fourd_ns.learning.resume.save_training_checkpoint` is the collective
    that gathers every rank's state first.
    """
    final = Path(run_dir) / "checkpoints" / checkpoint_name(step)
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write_model(partial)
    torch.save(trainer_state, partial / TRAINER_STATE_NAME)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    for old in checkpoint_folders(run_dir)[:-keep_last]:
        shutil.rmtree(old)
    return final


def write_model_folder(folder: Path, module: nn.Module, config: Mapping[str, Any]) -> Path:
    """Write ``config`` (JSON-serialisable settings that rebuild ``module``) as ``config.json`` and the module's
    parameters and buffers as ``model.safetensors`` (a tensor shared by several names is stored once)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_CONFIG_NAME).write_text(json.dumps(dict(config), indent=2) + "\n", encoding="utf8")
    save_model(module, str(folder / MODEL_WEIGHTS_NAME), metadata={"format": "pt"})
    return folder


def read_model_config(folder: Union[str, Path]) -> dict[str, Any]:
    """The ``config.json`` written by `write_model_folder`."""
    path = Path(folder) / MODEL_CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {MODEL_CONFIG_NAME}; expected a checkpoint folder written by a "
                                "fourd_ns trainer (checkpoints/step-NNNNNNN)")
    return json.loads(path.read_text(encoding="utf8"))


def load_model_weights(folder: Union[str, Path], module: nn.Module, strict: bool = True) -> None:
    """Load ``model.safetensors`` of ``folder`` into ``module`` (built from `read_model_config`), in place."""
    path = Path(folder) / MODEL_WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {MODEL_WEIGHTS_NAME}; expected a checkpoint folder written by a "
                                "fourd_ns trainer (checkpoints/step-NNNNNNN)")
    missing, unexpected = load_model(module, str(path), strict=False)
    if strict and (missing or unexpected):
        raise ValueError(f"{path} does not match the model: missing {sorted(missing)}, unexpected "
                         f"{sorted(unexpected)}")
