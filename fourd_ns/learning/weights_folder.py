"""Finding a trained network's weights folder: a checkpoint folder written by a ``fourd-train-*`` command, its run
folder (newest checkpoint), or a Hugging Face hub id of such a folder (``huggingface_hub.snapshot_download``; with
``HF_HUB_OFFLINE=1`` only the local cache is asked).

A weights folder holds ``config.json`` and ``model.safetensors`` (`fourd_ns.learning.checkpoints`) and may hold
method-specific settings files. g3r and flux4d find their weights through `locate_weights_folder`; a miss is one
error listing what was tried and how to get weights.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import huggingface_hub

from fourd_ns.learning.checkpoints import MODEL_CONFIG_NAME, MODEL_WEIGHTS_NAME

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def holds_weights(folder: Path) -> bool:
    """A complete weights folder (a checkpoint's ``*.partial`` folder of an interrupted save is not one)."""
    return not folder.name.endswith(".partial") and (folder / MODEL_CONFIG_NAME).is_file() and (
        folder / MODEL_WEIGHTS_NAME
    ).is_file()


def locate_weights_folder(
    name_or_path: Union[str, Path, None],
    method: str,
    how_to_get: str,
    extra_files: Sequence[str] = (),
    revision: Optional[str] = None,
) -> Tuple[Path, str]:
    """(weights folder, description) of ``name_or_path`` for ``method`` (used in messages); raises
    FileNotFoundError naming what was tried, followed by ``how_to_get``."""
    if name_or_path is None or str(name_or_path) == "":
        raise FileNotFoundError(f"No {method} weights given (--pipeline.model.weights).\n" + how_to_get)
    path = Path(name_or_path).expanduser()
    if path.is_dir() and not (path / MODEL_CONFIG_NAME).is_file():
        folders = [folder for folder in (path / "checkpoints").glob("step-*") if holds_weights(folder)]
        if folders:
            newest = max(folders, key=lambda folder: int(folder.name.split("-", 1)[1]))
            return newest, f"{newest} (newest checkpoint of the run folder {path})"
    if holds_weights(path):
        return path, str(path)
    tried = [f"a checkpoint or run folder at {path.resolve()}: "
             + ("has no config.json + model.safetensors and no checkpoints/step-*" if path.exists() else "does not exist")]
    name = str(name_or_path)
    if _REPO_ID.match(name) and not path.exists():
        offline = bool(huggingface_hub.constants.HF_HUB_OFFLINE)
        try:
            folder = huggingface_hub.snapshot_download(
                name, revision=revision, local_files_only=offline,
                allow_patterns=[MODEL_CONFIG_NAME, MODEL_WEIGHTS_NAME, *extra_files],
            )  # fmt: skip
            return Path(folder), f"{name} (Hugging Face hub, revision {revision or 'main'})"
        except (OSError, ValueError) as error:  # hub / network / cache errors are OSErrors, bad ids ValueErrors
            tried.append(f"the Hugging Face hub model {name!r} (HF_HUB_OFFLINE={int(offline)}): "
                         f"{type(error).__name__}: {error}")
    raise FileNotFoundError(f"Could not find {method} weights {name!r}. Looked for:\n  - " + "\n  - ".join(tried)
                            + "\n" + how_to_get)
