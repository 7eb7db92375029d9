"""One typed time axis for every dataparser (:mod:`fourd_ns.dataparsers.time_axis`): flag4d's IDN window step is one
frame on a Nerfies capture and on a driving log, and flag4d trains on a synthetic driving log; a dataset given to the
wrong dataparser names the right one and leaves the run folder empty."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import pandaset_fixture as pf
from conftest import TINY_SCENE, reduced_config, train_steps
from method_registry import registered_methods

from fourd_ns.dataparsers.dataset_layouts import WrongDataparserError
from fourd_ns.dataparsers.nerfies_dataparser import NerfiesDataParserConfig
from fourd_ns.dataparsers.pandaset_dataparser import PandaSetDataParserConfig
from fourd_ns.dataparsers.time_axis import TimeAxis, get_time_axis
from fourd_ns.synthetic.driving import generate_driving_scene

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_time_axis_fields_and_validation() -> None:
    assert TimeAxis.evenly_spaced(5) == TimeAxis(num_frames=5, frame_step=0.25)
    assert TimeAxis.evenly_spaced(1) == TimeAxis(num_frames=1, frame_step=1.0)
    assert TimeAxis.evenly_spaced(11, duration_seconds=1.0).duration_seconds == 1.0
    with pytest.raises(ValueError, match="at least one frame"):
        TimeAxis(num_frames=0, frame_step=1.0)
    with pytest.raises(ValueError, match="frame_step"):
        TimeAxis(num_frames=3, frame_step=0.0)
    with pytest.raises(ValueError, match="duration_seconds"):
        TimeAxis(num_frames=3, frame_step=0.5, duration_seconds=-1.0)
    assert get_time_axis({"time_axis": TimeAxis.evenly_spaced(3)}) == TimeAxis.evenly_spaced(3)
    assert get_time_axis({"time_span": 5.0}) is None  # not ours: no typed axis


def _flag4d(data: Path, output_dir: Path, iterations: int, dataparser=None):
    cfg = reduced_config(registered_methods()["flag4d"].config, data, output_dir, iterations=iterations)
    if dataparser is not None:
        cfg.pipeline.datamanager.dataparser = dataparser
    cfg.pipeline.model.static_warmup_steps = 1
    cfg.pipeline.flow.backend = "dis"
    return cfg


def test_window_step_is_one_frame_on_a_nerfies_capture(tiny_scene: Path, tmp_path: Path) -> None:
    cfg = _flag4d(tiny_scene, tmp_path, iterations=2)
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    frames = TINY_SCENE["num_frames"]
    assert trainer.pipeline.model.window_step == pytest.approx(1 / (frames - 1))
    # consecutive training times are exactly one step apart
    times = trainer.pipeline.datamanager.train_dataset.cameras.times.flatten().sort().values.unique()
    assert (times[1:] - times[:-1]).tolist() == pytest.approx([1 / (frames - 1)] * (frames - 1))


def test_window_step_is_one_frame_on_a_pandaset_log(tmp_path: Path) -> None:
    """The fixture log runs at 10 Hz over 6 frames (0.5 s): one frame is 1/5 of the normalised axis, not 1/0.5."""
    log = pf.write_pandaset_log(tmp_path / "log", num_frames=6)
    dataparser = PandaSetDataParserConfig(cameras=("front",), downscale_factor=2, split_mode="all")
    cfg = _flag4d(log.root, tmp_path / "out", iterations=2, dataparser=dataparser)
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    axis = get_time_axis(trainer.pipeline.datamanager.train_dataparser_outputs.metadata)
    assert axis.duration_seconds == pytest.approx(5 * pf.FRAME_PERIOD)
    assert trainer.pipeline.model.window_step == pytest.approx(1 / 5)


def test_flag4d_trains_on_a_synthetic_driving_log(tmp_path: Path) -> None:
    log = tmp_path / "driving"
    generate_driving_scene(log, seed=1, config="small")
    dataparser = PandaSetDataParserConfig(cameras=("front",), downscale_factor=2, split_mode="every-other")
    cfg = _flag4d(log, tmp_path / "out", iterations=4, dataparser=dataparser)
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    model = trainer.pipeline.model
    assert model.window_step == pytest.approx(1 / 3)  # 'small': 4 frames at 10 Hz
    losses = train_steps(trainer, range(4))
    assert all(math.isfinite(value) for step in losses for value in step.values())
    assert "mutual_loss" in losses[-1]  # the IDN and the GMN both ran at the last step


def test_wrong_dataparser_names_the_right_one(tiny_scene: Path, tmp_path: Path) -> None:
    log = pf.write_pandaset_log(tmp_path / "log", num_frames=2)
    with pytest.raises(WrongDataparserError, match="pandaset-data") as error:
        NerfiesDataParserConfig(data=log.root).setup().get_dataparser_outputs(split="train")
    assert "PandaSet log" in str(error.value) and "nerfies-data" in str(error.value)
    with pytest.raises(WrongDataparserError, match="use `ns-train <method> \\[method options\\] nerfies-data"):
        PandaSetDataParserConfig(data=tiny_scene).setup().get_dataparser_outputs(split="train")


def test_ns_train_on_the_wrong_layout_writes_nothing(tmp_path: Path) -> None:
    """nerfstudio's ``ns-train`` main saves config.yml before any data is read; ours waits for the dataparser."""
    from nerfstudio.scripts.train import main

    log = pf.write_pandaset_log(tmp_path / "log", num_frames=2)
    output_dir = tmp_path / "outputs"
    cfg = _flag4d(log.root, output_dir, iterations=2)  # default dataparser: nerfies-data
    with pytest.raises(WrongDataparserError, match="ns-train flag4d \\[method options\\] pandaset-data"):
        main(cfg)
    assert not output_dir.exists() or not [p for p in output_dir.rglob("*") if p.is_file()]
