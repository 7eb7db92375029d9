"""Offline behaviours: checkpoints with numpy scalars load under torch's weights_only default; LPIPS never downloads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch


def test_checkpoint_with_numpy_scalars_loads_after_importing_the_plugin(tmp_path: Path) -> None:
    path = tmp_path / "step.ckpt"
    # what nerfstudio's ExponentialDecayScheduler leaves in optimizer/scheduler state
    torch.save({"lr": np.float64(1e-3), "last_lr": [np.exp(np.float64(-1.0))], "w": torch.ones(2)}, path)
    code = (
        "import sys, torch\n"
        "try:\n    torch.load(sys.argv[1])\nexcept Exception:\n    print('plain torch refuses')\n"
        "import fourd_ns\n"
        "print('loaded', torch.load(sys.argv[1])['lr'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    assert "plain torch refuses" in out and "loaded 0.001" in out


def test_lpips_reports_unavailable_without_weights(capsys: pytest.CaptureFixture) -> None:
    from fourd_ns.metrics import lpips as lpips_module
    from fourd_ns.metrics.lpips import LazyLPIPS, backbone_weights_path

    assert str(backbone_weights_path("alex")).startswith(os.environ["TORCH_HOME"])
    lpips_module._WARNED.clear()  # earlier tests in this process may have warned already
    for metric in (LazyLPIPS("alex"), LazyLPIPS("alex")):  # e.g. the trainer's model and an evaluation model
        assert metric(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)) is None
        assert metric(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)) is None
    printed = capsys.readouterr().out
    assert printed.count("LPIPS (alex) is unavailable") == 1  # one warning per process, not per image or model
    assert "alexnet-owt-7be5be79.pth" in printed
    assert not metric.available


def test_lpips_reports_a_corrupt_weights_file(capsys: pytest.CaptureFixture) -> None:
    from fourd_ns.metrics.lpips import LazyLPIPS, backbone_weights_path

    path = backbone_weights_path("vgg")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a checkpoint")
    try:
        metric = LazyLPIPS("vgg")
        assert metric(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)) is None
        assert "could not load" in metric.unavailable_reason
    finally:
        path.unlink()


def test_lpips_loads_torchvision_weights_from_the_hub_cache() -> None:
    """The loading path with a file in torchvision's real format (random values: this checks loading, not LPIPS)."""
    from torchvision.models import alexnet

    from fourd_ns.metrics.lpips import LazyLPIPS, backbone_weights_path

    path = backbone_weights_path("alex")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(alexnet(weights=None).state_dict(), path)
    try:
        metric = LazyLPIPS("alex")
        value = metric(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
        assert value is not None and torch.isfinite(value)
        same = metric(torch.full((1, 3, 64, 64), 0.5), torch.full((1, 3, 64, 64), 0.5))
        assert float(same) == pytest.approx(0.0, abs=1e-6)
    finally:
        path.unlink()
