"""The real commands, as a user types them: ns-train → ns-eval → ns-export → ns-render → fourd-render-sweep.

Each runs in its own process from the installed console scripts, so entry-point registration, config.yml
round-trips, checkpoint loading under torch's ``weights_only`` default and the open3d import of ``ns-export``
are all exercised exactly as on a user's machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path) -> str:
    env = dict(os.environ, TORCHDYNAMO_DISABLE="1")
    result = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout + result.stderr


SMALL_NETWORKS = {
    "deform4d": ["--pipeline.model.mlp-width", "32", "--pipeline.model.mlp-depth", "3", "--pipeline.model.mlp-skips", "1"],
    "flag4d": [
        "--pipeline.model.mlp-width", "32", "--pipeline.model.mlp-depth", "3", "--pipeline.model.mlp-skips", "1",
        "--pipeline.model.representation-dim", "16", "--pipeline.model.attention-dim", "16",
        "--pipeline.model.attention-heads", "2", "--pipeline.model.refinement-width", "32",
    ],
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(SMALL_NETWORKS))
def trained_run(request, tiny_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    method = request.param
    out = tmp_path_factory.mktemp(f"cli_{method}")
    run(
        "ns-train", method, "--data", str(tiny_scene),
        "--machine.device-type", "cpu", "--vis", "tensorboard", "--viewer.quit-on-train-completion", "True",
        "--max-num-iterations", "6", "--steps-per-save", "6", "--output-dir", str(out / "outputs"),
        "--timestamp", "e2e", "--pipeline.model.static-warmup-steps", "2", "--pipeline.model.warmup-length", "2",
        "--pipeline.model.refine-every", "2", *SMALL_NETWORKS[method],
        "nerfies-data", "--downscale-factor", "1",
        cwd=out,
    )  # fmt: skip
    config = out / "outputs" / tiny_scene.name / method / "e2e" / "config.yml"
    assert config.exists()
    return config


def test_ns_train_help_lists_our_methods(tmp_path: Path) -> None:
    text = run("ns-train", "--help", cwd=tmp_path)
    assert "deform4d" in text and "flag4d" in text


def test_ns_eval_reports_test_view_metrics(trained_run: Path, tmp_path: Path) -> None:
    output = tmp_path / "metrics.json"
    run("ns-eval", "--load-config", str(trained_run), "--output-path", str(output), cwd=tmp_path)
    results = json.loads(output.read_text())["results"]
    assert results["psnr"] > 5.0 and 0.0 < results["ssim"] <= 1.0


def test_ns_export_gaussian_splat_writes_every_gaussian(trained_run: Path, tmp_path: Path) -> None:
    text = run("ns-export", "gaussian-splat", "--load-config", str(trained_run), "--output-dir", str(tmp_path), cwd=tmp_path)
    assert "canonical" in text  # the export says which Gaussians it wrote
    header = (tmp_path / "splat.ply").read_bytes()[:1000].decode("latin-1")
    vertices = int(re.search(r"element vertex (\d+)", header).group(1))
    checkpoint = next((trained_run.parent / "nerfstudio_models").glob("*.ckpt"))
    state = torch.load(checkpoint, map_location="cpu")["pipeline"]
    opacities = torch.sigmoid(state["_model.gauss_params.opacities"]).squeeze(-1)
    # ns-export drops non-finite Gaussians and those with opacity < 1/255
    assert vertices == int((opacities >= 1 / 255).sum())


def test_ns_export_at_a_chosen_time(trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOURD_EXPORT_TIME", "0.5")
    text = run("ns-export", "gaussian-splat", "--load-config", str(trained_run), "--output-dir", str(tmp_path), cwd=tmp_path)
    assert "deformed to time t=0.5" in text
    assert (tmp_path / "splat.ply").stat().st_size > 0


def test_ns_render_time_sweep(trained_run: Path, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    run(
        "ns-render", "interpolate", "--load-config", str(trained_run), "--output-path", str(frames),
        "--output-format", "images", "--interpolation-steps", "3", "--pose-source", "eval",
        cwd=tmp_path,
    )  # fmt: skip
    assert len(list(frames.glob("*.jpg")) + list(frames.glob("*.png"))) >= 3


def test_fourd_render_sweep_writes_a_video(trained_run: Path, tmp_path: Path) -> None:
    video = tmp_path / "sweep.mp4"
    run("fourd-render-sweep", "--load-config", str(trained_run), "--output", str(video), "--num-frames", "4", cwd=tmp_path)
    assert video.exists() and video.stat().st_size > 1000
