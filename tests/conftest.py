"""Shared test set-up: an offline, CPU-only environment and tiny generated scenes.

Nothing here downloads anything or writes outside pytest's temporary folders: torch's hub cache, matplotlib's and
XDG caches point into a session temp dir (so LPIPS weights are absent and the metric reports itself unavailable),
and TorchDynamo is disabled (nerfstudio's compiled helpers would otherwise build C++ on the first call).
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import pytest

_CACHE = Path(tempfile.mkdtemp(prefix="fourd_ns_test_cache_"))
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ["TORCH_HOME"] = str(_CACHE / "torch")
os.environ["XDG_CACHE_HOME"] = str(_CACHE / "xdg")
os.environ["MPLCONFIGDIR"] = str(_CACHE / "mpl")
os.environ["TORCH_EXTENSIONS_DIR"] = str(_CACHE / "torch_extensions")
os.environ.setdefault("WANDB_MODE", "disabled")

TINY_SCENE = dict(preset="bell", num_frames=8, width=64, height=36, seed=0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module of small-tensor tests (``pytestmark = pytest.mark.usefixtures(...)``):
    on a shared 2-core machine extra threads only add contention (tens of times slower on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64×36, 8-time-step synthetic bell in the Nerfies layout (left camera = train, right = test)."""
    from fourd_ns.synthetic.generate import generate_scene

    params = dict(TINY_SCENE)
    return generate_scene(params.pop("preset"), tmp_path_factory.mktemp("scenes") / "bell", **params)


def reduced_config(method_config, data: Path, output_dir: Path, iterations: int = 4):
    """A method's TrainerConfig shrunk for CPU tests (the nerfstudio ``set_reduced_config`` pattern)."""
    cfg = copy.deepcopy(method_config)
    cfg.machine.device_type = "cpu"
    cfg.mixed_precision = False
    cfg.use_grad_scaler = False
    cfg.max_num_iterations = iterations
    cfg.steps_per_save = iterations
    cfg.steps_per_eval_image = 10**9
    cfg.steps_per_eval_batch = 0
    cfg.steps_per_eval_all_images = 10**9
    cfg.vis = "tensorboard"
    cfg.viewer.quit_on_train_completion = True
    cfg.output_dir = output_dir
    cfg.pipeline.datamanager.data = data
    cfg.pipeline.datamanager.dataparser.data = data
    model = cfg.pipeline.model
    for name, value in dict(
        static_warmup_steps=1, warmup_length=1, refine_every=2, mlp_width=32, mlp_depth=3, mlp_skips=(1,),
        representation_dim=16, attention_dim=16, attention_heads=2, pooled_tokens=(2, 2), refinement_width=32,
        refinement_depth=2,
    ).items():
        if hasattr(model, name):
            setattr(model, name, value)
    cfg.set_timestamp()
    return cfg


def train_steps(trainer, steps: range) -> list:
    """Run training iterations with their callbacks, as ``Trainer.train`` does; returns each step's loss dict."""
    from nerfstudio.engine.callbacks import TrainingCallbackLocation

    losses = []
    for step in steps:
        for callback in trainer.callbacks:
            callback.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        _, loss_dict, _ = trainer.train_iteration(step)
        losses.append({name: float(value) for name, value in loss_dict.items()})
        for callback in trainer.callbacks:
            callback.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
    return losses
