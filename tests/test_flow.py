"""Flow embeddings: DIS accuracy and layout, RAFT weight loading and features, backend selection, and the cache.

Everything runs offline on tiny frames: RAFT checkpoints are random-init models saved in torchvision's real
state-dict format to a temporary folder (or a fake torch hub cache), never downloaded.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.optical_flow import raft_large, raft_small

from nerfstudio.utils.rich_utils import CONSOLE

from fourd_ns.flow import (
    FlowEmbeddingConfig,
    FlowEmbeddings,
    compute_flow_embeddings,
    flow_cache_key,
    load_or_compute_flow_embeddings,
    select_flow_backend,
)
from fourd_ns.flow.backend import fit_channels
from fourd_ns.flow.dis_backend import DIS_NATIVE_CHANNELS, DISFlowBackend
from fourd_ns.flow.raft_backend import RAFTFlowBackend

SHIFT = (3, -2)  # (dx, dy) in pixels per frame
RAFT_FILES = {"raft_large": "raft_large_C_T_SKHT_V2-ff5fadd5.pth", "raft_small": "raft_small_C_T_V2-01064c6d.pth"}


def translating_frames(num_frames: int, height: int, width: int, shift=SHIFT, seed: int = 0) -> torch.Tensor:
    """[T, H, W, 3] crops of one smooth random texture, moving by ``shift`` pixels per frame (exact integer shift)."""
    generator = torch.Generator().manual_seed(seed)
    margin = 4 * max(abs(shift[0]), abs(shift[1])) * num_frames + 8
    coarse = torch.rand(1, 3, (height + 2 * margin) // 4 + 2, (width + 2 * margin) // 4 + 2, generator=generator)
    texture = F.interpolate(coarse, scale_factor=4, mode="bicubic", align_corners=False)[0].clamp(0, 1)
    frames = []
    for t in range(num_frames):
        # Content moves by +shift: frame t shows the texture window displaced by −t·shift.
        x0, y0 = margin - t * shift[0], margin - t * shift[1]
        frames.append(texture[:, y0 : y0 + height, x0 : x0 + width].permute(1, 2, 0))
    return torch.stack(frames)


def interior_median(flow: torch.Tensor, border: int = 12) -> torch.Tensor:
    return flow[:, border:-border, border:-border].flatten(1).median(dim=1).values


@pytest.fixture(scope="module")
def dis_sequence():
    frames = translating_frames(3, 64, 96)
    return frames, compute_flow_embeddings(frames, torch.tensor([0.0, 0.5, 1.0]), DISFlowBackend())


def test_dis_recovers_translation_and_past_future_pairs(dis_sequence):
    _, emb = dis_sequence
    dx, dy = SHIFT
    shift = torch.tensor([dx, dy], dtype=torch.float32)
    for t in (0, 1):
        assert torch.allclose(interior_median(emb.flow_forward[t]), shift, atol=0.3)
    for t in (1, 2):
        backward = interior_median(emb.flow_backward[t])
        assert torch.allclose(backward, -shift, atol=0.3)
        # past[t] is the pair (t, t−1): for a translation it is the reverse of future[t−1]'s flow.
        assert torch.allclose(backward, -interior_median(emb.flow_forward[t - 1]), atol=0.3)
    # One-sided boundary frames are zeros.
    assert emb.past[0].abs().max() == 0 and emb.flow_backward[0].abs().max() == 0
    assert emb.future[2].abs().max() == 0 and emb.flow_forward[2].abs().max() == 0
    assert emb.has_past.tolist() == [False, True, True] and emb.has_future.tolist() == [True, True, False]


def test_dis_embedding_shapes_layout_and_determinism(dis_sequence):
    frames, emb = dis_sequence
    assert emb.stride == 8
    assert emb.past.shape == emb.future.shape == (3, 128, 8, 12)
    assert emb.flow_forward.shape == emb.flow_backward.shape == (3, 2, 64, 96)
    assert torch.isfinite(emb.past).all() and torch.isfinite(emb.future).all()
    # Channels 0-1: cell-mean flow / max(H, W); channels past the native layout are zero padding.
    scale = 96.0
    cell_flow = emb.future[0, :2, 2:-2, 2:-2].flatten(1).median(1).values
    assert torch.allclose(cell_flow, torch.tensor(SHIFT) / scale, atol=0.3 / scale)
    assert emb.future[0, DIS_NATIVE_CHANNELS:].abs().max() == 0
    assert emb.future[0, DIS_NATIVE_CHANNELS - 1].abs().max() > 0  # gradient magnitude of the textured image
    again = compute_flow_embeddings(frames, torch.tensor([0.0, 0.5, 1.0]), DISFlowBackend())
    assert torch.equal(again.future, emb.future) and torch.equal(again.flow_backward, emb.flow_backward)


def test_dis_odd_size_and_narrow_channels():
    frames = translating_frames(2, 36, 60)
    emb = compute_flow_embeddings(frames, [0.0, 1.0], DISFlowBackend(channels=16, preset="fast"))
    assert emb.past.shape == (2, 16, math.ceil(36 / 8), math.ceil(60 / 8))
    assert emb.flow_forward.shape == (2, 2, 36, 60)


def test_single_frame_and_uint8_input():
    frames = (translating_frames(1, 16, 24) * 255).round().to(torch.uint8)
    emb = compute_flow_embeddings(frames.numpy(), [0.3], DISFlowBackend(channels=8))
    assert emb.past.shape == (1, 8, 2, 3) and emb.past.abs().sum() == 0 and emb.future.abs().sum() == 0
    assert emb.has_past.tolist() == [False] and emb.has_future.tolist() == [False]
    assert emb.nearest(0.9) == 0


def test_nearest_and_time_order():
    emb = FlowEmbeddings(
        past=torch.zeros(4, 1, 1, 1),
        future=torch.zeros(4, 1, 1, 1),
        flow_backward=torch.zeros(4, 2, 8, 8),
        flow_forward=torch.zeros(4, 2, 8, 8),
        times=torch.tensor([0.0, 0.25, 0.5, 1.0]),
        stride=8,
    )
    assert [emb.nearest(t) for t in (-1.0, 0.25, 0.3, 0.74, 0.8, 2.0)] == [0, 1, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="strictly increasing"):
        compute_flow_embeddings(translating_frames(2, 16, 16), [1.0, 0.0], DISFlowBackend())


# ---------------------------------------------------------------------------------------------------- RAFT


RAFT_FRAMES = (translating_frames(2, 36, 64) * 255).round().to(torch.uint8)  # not a multiple of 8, below 128


@pytest.fixture(scope="module")
def raft_checkpoints(tmp_path_factory):
    """Per variant: (random-init model saved as a torchvision .pth, that file, the in-memory model's output on
    RAFT_FRAMES). Built once: a RAFT pass takes seconds on a shared CPU."""
    checkpoints = {}
    for variant, builder in (("raft_small", raft_small), ("raft_large", raft_large)):
        torch.manual_seed(0)
        model = builder(weights=None).eval()
        path = tmp_path_factory.mktemp(variant) / "raft.pth"
        torch.save(model.state_dict(), path)
        reference = RAFTFlowBackend(model, variant, weights_file=None, num_flow_updates=2, device="cpu")
        checkpoints[variant] = (path, reference.compute_pair(RAFT_FRAMES[0], RAFT_FRAMES[1]))
    return checkpoints


@pytest.mark.parametrize("variant", ["raft_small", "raft_large"])
def test_raft_weights_file_matches_in_memory_model(raft_checkpoints, variant):
    path, expected = raft_checkpoints[variant]
    config = FlowEmbeddingConfig(backend=variant, weights_path=path, num_flow_updates=2, device="cpu")
    loaded = select_flow_backend(config)
    assert isinstance(loaded, RAFTFlowBackend) and loaded.weights_file == path

    flow, hidden = loaded.flow_and_hidden(RAFT_FRAMES[:1], RAFT_FRAMES[1:])
    native = {"raft_large": 128, "raft_small": 96}[variant]
    assert loaded.hidden_channels == native
    # 36×64 is padded for RAFT and comes back at full size; the hidden state at 1/8 with ceil (5×8 cells).
    assert flow.shape == (1, 2, 36, 64) and hidden.shape == (1, native, 5, 8)
    assert torch.equal(flow[0], expected.flow)
    assert expected.embedding.shape == (128, 5, 8)
    assert torch.equal(expected.embedding[:native], hidden[0])
    assert expected.embedding[native:].abs().sum() == 0  # raft_small: 96 real + 32 zero channels
    assert len(loaded.model.update_block._forward_hooks) == 0  # the capture hook does not leak


def test_auto_uses_raft_large_from_hub_cache(raft_checkpoints, tmp_path, monkeypatch):
    path, expected = raft_checkpoints["raft_large"]
    checkpoints = tmp_path / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(path, checkpoints / RAFT_FILES["raft_large"])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(CONSOLE, "width", 400)
    with CONSOLE.capture() as capture:
        backend = select_flow_backend(FlowEmbeddingConfig(num_flow_updates=2, device="cpu"))
    assert isinstance(backend, RAFTFlowBackend) and backend.name == "raft_large"
    assert f"using raft_large with weights {checkpoints / RAFT_FILES['raft_large']}" in capture.get()
    actual = backend.compute_pair(RAFT_FRAMES[0], RAFT_FRAMES[1])
    assert torch.equal(expected.flow, actual.flow) and torch.equal(expected.embedding, actual.embedding)


def test_raft_needs_at_least_one_update():
    with pytest.raises(ValueError, match="num_flow_updates"):
        RAFTFlowBackend(raft_small(weights=None), "raft_small", None, num_flow_updates=0, device="cpu")


def test_fit_channels_truncates_or_zero_pads():
    features = torch.arange(3 * 2 * 2, dtype=torch.float32).reshape(3, 2, 2)
    assert torch.equal(fit_channels(features, 2), features[:2])
    padded = fit_channels(features, 5)
    assert torch.equal(padded[:3], features) and padded[3:].abs().sum() == 0


# ---------------------------------------------------------------------------------------------------- selection


def test_auto_without_weights_falls_back_to_dis_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setattr(CONSOLE, "width", 400)
    with CONSOLE.capture() as capture:
        backend = select_flow_backend(FlowEmbeddingConfig())
    log = " ".join(capture.get().split())
    assert isinstance(backend, DISFlowBackend)
    assert "RAFT weights not found" in log and "DIS fallback" in log
    assert str(tmp_path / "empty_torch_home" / "hub" / "checkpoints" / RAFT_FILES["raft_large"]) in log


def test_explicit_raft_without_weights_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    with pytest.raises(FileNotFoundError) as error:
        select_flow_backend(FlowEmbeddingConfig(backend="raft_small"))
    assert str(tmp_path / "empty_torch_home" / "hub" / "checkpoints" / RAFT_FILES["raft_small"]) in str(error.value)
    assert "weights_path" in str(error.value)
    missing = tmp_path / "nowhere" / "raft.pth"
    for backend in ("raft_large", "auto"):  # a mistyped path is reported even in auto mode
        with pytest.raises(FileNotFoundError, match=str(missing)):
            select_flow_backend(FlowEmbeddingConfig(backend=backend, weights_path=missing))


def test_config_parses_as_a_tyro_cli(tmp_path):
    import tyro

    config = tyro.cli(
        FlowEmbeddingConfig,
        args=["--backend", "raft_small", "--weights-path", str(tmp_path / "w.pth"), "--embedding-channels", "64"],
    )
    assert config.backend == "raft_small" and config.weights_path == tmp_path / "w.pth"
    assert config.embedding_channels == 64 and config.num_flow_updates == 12


# ---------------------------------------------------------------------------------------------------- cache


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_cache_hit_miss_and_location(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    cache_dir = tmp_path / "run" / "flow"
    frames = translating_frames(3, 32, 48)
    times = [0.0, 0.5, 1.0]
    config = FlowEmbeddingConfig(backend="dis")

    first = load_or_compute_flow_embeddings(frames, times, config, cache_dir, "scene-a")
    written = files_under(tmp_path)
    assert len(written) == 1 and next(iter(written)).parent == cache_dir  # nothing outside cache_dir

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    with monkeypatch.context() as patch:
        patch.setattr(DISFlowBackend, "compute_pair", refuse)
        with CONSOLE.capture() as capture:
            second = load_or_compute_flow_embeddings(frames, times, config, cache_dir, "scene-a")
        assert "Loaded flow embeddings from" in capture.get()
    for name in ("past", "future", "flow_forward", "flow_backward", "times"):
        assert torch.equal(getattr(first, name), getattr(second, name))
    assert first.past.dtype == torch.float32

    changed = frames.clone()
    changed[1, 5, 7, 0] = 1.0 - changed[1, 5, 7, 0]
    load_or_compute_flow_embeddings(changed, times, config, cache_dir, "scene-a")
    load_or_compute_flow_embeddings(frames, [0.0, 0.4, 1.0], config, cache_dir, "scene-a")
    fast = FlowEmbeddingConfig(backend="dis", dis_preset="fast")
    load_or_compute_flow_embeddings(frames, times, fast, cache_dir, "scene-a")
    load_or_compute_flow_embeddings(frames, times, config, cache_dir, "scene-b")
    assert len(files_under(cache_dir)) == 5 and files_under(tmp_path) == files_under(cache_dir)


def test_cache_key_depends_on_backend_and_weights_file(tmp_path):
    frames = (translating_frames(2, 16, 16) * 255).round().to(torch.uint8)
    times = torch.tensor([0.0, 1.0], dtype=torch.float64)
    torch.manual_seed(0)
    model = raft_small(weights=None)
    path = tmp_path / "raft.pth"
    torch.save(model.state_dict(), path)
    keys = {
        flow_cache_key(frames, times, DISFlowBackend(), "d"),
        flow_cache_key(frames, times, DISFlowBackend(channels=64), "d"),
        flow_cache_key(frames, times, RAFTFlowBackend(model, "raft_small", path, device="cpu"), "d"),
        flow_cache_key(frames, times, RAFTFlowBackend(model, "raft_small", path, num_flow_updates=4), "d"),
    }
    torch.save(raft_small(weights=None).state_dict(), path)  # a different checkpoint at the same path
    keys.add(flow_cache_key(frames, times, RAFTFlowBackend(model, "raft_small", path, device="cpu"), "d"))
    assert len(keys) == 5
