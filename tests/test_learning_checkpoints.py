"""Checkpoint folders of `fourd_ns.learning.checkpoints`: atomic write and rename, keep_last, finding a run's newest
checkpoint, and the generic config.json + model.safetensors model folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from fourd_ns.learning.checkpoints import (
    TRAINER_STATE_NAME,
    checkpoint_folders,
    find_checkpoint,
    load_model_weights,
    read_model_config,
    save_checkpoint,
    write_model_folder,
)


def write_marker(folder: Path) -> None:
    (folder / "weights.txt").write_text(folder.name)


def test_checkpoints_are_renamed_when_complete_and_only_the_newest_kept(tmp_path: Path):
    written = []

    def writer(folder: Path) -> None:
        written.append(folder.name)
        write_marker(folder)

    for step in (5, 10, 15):
        final = save_checkpoint(tmp_path, step, writer, dict(step=step), keep_last=2)
        assert final == tmp_path / "checkpoints" / f"step-{step:07d}"
    assert written == ["step-0000005.partial", "step-0000010.partial", "step-0000015.partial"]  # written, then renamed
    folders = checkpoint_folders(tmp_path)
    assert [folder.name for folder in folders] == ["step-0000010", "step-0000015"]
    assert (folders[-1] / "weights.txt").read_text() == "step-0000015.partial"
    assert torch.load(folders[-1] / TRAINER_STATE_NAME, weights_only=True) == dict(step=15)
    assert not list((tmp_path / "checkpoints").glob("*.partial"))


def test_an_interrupted_save_leaves_the_previous_checkpoint_the_newest(tmp_path: Path):
    save_checkpoint(tmp_path, 1, write_marker, dict(step=1), keep_last=3)

    def failing(folder: Path) -> None:
        write_marker(folder)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 2, failing, dict(step=2), keep_last=3)
    assert (tmp_path / "checkpoints" / "step-0000002.partial").is_dir()
    assert find_checkpoint(tmp_path).name == "step-0000001"
    save_checkpoint(tmp_path, 2, write_marker, dict(step=2), keep_last=3)  # a retry replaces the partial folder
    assert [folder.name for folder in checkpoint_folders(tmp_path)] == ["step-0000001", "step-0000002"]


def test_find_checkpoint_accepts_a_run_or_a_checkpoint_folder(tmp_path: Path):
    for step in (3, 20, 100):  # numeric order, not the order of the names' characters
        save_checkpoint(tmp_path, step, write_marker, dict(step=step), keep_last=5)
    (tmp_path / "checkpoints" / "step-0000200").mkdir()  # no trainer state: not a checkpoint
    (tmp_path / "checkpoints" / "notes").mkdir()
    newest = tmp_path / "checkpoints" / "step-0000100"
    assert find_checkpoint(tmp_path) == newest
    assert find_checkpoint(tmp_path / "checkpoints" / "step-0000003") == tmp_path / "checkpoints" / "step-0000003"
    with pytest.raises(FileNotFoundError, match="--resume .*checkpoints/step-"):
        find_checkpoint(tmp_path / "elsewhere")


class Tied(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.encode = nn.Linear(3, width)
        self.decode = nn.Linear(width, 3)
        self.alias = self.encode  # a shared module: its tensors are stored once
        self.register_buffer("scale", torch.tensor(2.0))


def test_model_folder_round_trip(tmp_path: Path):
    torch.manual_seed(0)
    model = Tied(4)
    write_model_folder(tmp_path / "model", model, dict(width=4, name="tied"))
    config = read_model_config(tmp_path / "model")
    assert config == dict(width=4, name="tied")
    torch.manual_seed(1)
    rebuilt = Tied(config["width"])
    load_model_weights(tmp_path / "model", rebuilt)
    for name, value in model.state_dict().items():
        assert torch.equal(value, rebuilt.state_dict()[name]), name
    with pytest.raises(ValueError, match="does not match"):
        load_model_weights(tmp_path / "model", nn.Linear(3, 4))
    with pytest.raises(FileNotFoundError, match="config.json"):
        read_model_config(tmp_path)


def test_a_model_folder_is_a_checkpoint_writer(tmp_path: Path):
    model = nn.Linear(2, 2)
    folder = save_checkpoint(tmp_path, 7, lambda target: write_model_folder(target, model, dict(width=2)),
                             dict(step=7), keep_last=1)
    assert read_model_config(folder) == dict(width=2)
    loaded = nn.Linear(2, 2)
    load_model_weights(folder, loaded)
    assert torch.equal(loaded.weight, model.weight)
