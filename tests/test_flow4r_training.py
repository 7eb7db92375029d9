"""Flow4R training: schedule, data mixing, exact resume, checkpoints that reload with from_pretrained, stage-2
initialisation, two-process DDP on CPU (gloo), and the evaluation command. Tiny models on 32×32 synthetic pairs."""

from __future__ import annotations

import json
import math
import os
import socket
from functools import partial
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from fourd_ns.feedforward.dpt_head import DPTHead
from fourd_ns.feedforward.flow4r import Flow4R, Flow4RConfig
from fourd_ns.feedforward.flow4r_geometry import transform_points
from fourd_ns.feedforward.flow4r_losses import Flow4RLossConfig
from fourd_ns.feedforward.pair_dataset import collate_pairs
from fourd_ns.feedforward.pretrained import from_pretrained, save_pretrained
from fourd_ns.feedforward.synthetic_pairs import SyntheticPairSource
from fourd_ns.feedforward.training import (
    Flow4RTrainConfig,
    MemoryCachedPairs,
    MixedPairDataset,
    build_model,
    pair_metrics,
    train,
    train_step,
)
from fourd_ns.learning.checkpoints import TRAINER_STATE_NAME, checkpoint_folders, find_checkpoint, save_checkpoint
from fourd_ns.learning.resumable_loader import ResumableDistributedSampler
from fourd_ns.learning.rng import rng_state, seed_everything, set_rng_state
from fourd_ns.learning.schedules import learning_rate

SIZE = (32, 32)
SOURCE = SyntheticPairSource(image_size=SIZE, supersample=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(output_dir: Path, **overrides) -> Flow4RTrainConfig:
    settings = dict(
        output_dir=output_dir, model=Flow4RConfig.tiny(), synthetic=SOURCE, synthetic_pairs=4, image_size=SIZE,
        epochs=2, pairs_per_epoch=4, batch_size=2, num_workers=0, device="cpu", log_every=1, save_every=2,
        keep_last=5, val_every=0, lr=1e-3, min_lr=1e-5,
    )
    settings.update(overrides)
    return Flow4RTrainConfig(**settings)


def save_flow4r_checkpoint(run_dir: Path, step: int, model: Flow4R, trainer_state: dict, keep_last: int) -> Path:
    """A checkpoint folder in the layout train() writes: save_pretrained's files beside the trainer state."""
    return save_checkpoint(run_dir, step, partial(save_pretrained, model), trainer_state, keep_last)


def parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_learning_rate_warms_up_linearly_then_follows_a_cosine():
    total, warmup, peak, low = 110, 10, 1e-4, 1e-6
    assert learning_rate(0, total, warmup, peak, low) == pytest.approx(peak / warmup)
    assert learning_rate(4, total, warmup, peak, low) == pytest.approx(peak / 2)
    assert learning_rate(9, total, warmup, peak, low) == pytest.approx(peak)
    assert learning_rate(10, total, warmup, peak, low) == pytest.approx(peak)
    middle = warmup + (total - 1 - warmup) / 2  # cos(π/2) = 0: halfway between peak and minimum
    assert learning_rate(int(middle), total, warmup, peak, low) == pytest.approx(
        low + (peak - low) * 0.5 * (1 + math.cos(math.pi * (int(middle) - warmup) / (total - 1 - warmup)))
    )
    assert learning_rate(total - 1, total, warmup, peak, low) == pytest.approx(low)
    decay = [learning_rate(step, total, warmup, peak, low) for step in range(warmup, total)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_mixed_pairs_follow_the_ratios_and_shard_without_overlap():
    sources = [[("a", i) for i in range(7)], [("b", i) for i in range(3)]]
    mixed = MixedPairDataset(sources, [3.0, 1.0], length=4000, seed=5)
    first_epoch = [mixed[i] for i in range(len(mixed))]
    share_a = sum(item[0] == "a" for item in first_epoch) / len(first_epoch)
    assert share_a == pytest.approx(0.75, abs=0.03)
    assert {item for item in first_epoch if item[0] == "b"} == {("b", i) for i in range(3)}
    again = MixedPairDataset(sources, [3.0, 1.0], length=4000, seed=5)
    assert [again[i] for i in range(50)] == first_epoch[:50]  # a pure function of (seed, epoch, index)
    mixed.set_epoch(1)
    assert [mixed[i] for i in range(50)] != first_epoch[:50]

    shards = [list(ResumableDistributedSampler(mixed, 2, rank, seed=0)) for rank in range(2)]
    assert not set(shards[0]) & set(shards[1]) and len(shards[0]) == len(shards[1]) == 2000
    sampler = ResumableDistributedSampler(mixed, 2, 1, seed=0)
    sampler.skip(6)
    assert list(sampler) == shards[1][6:] and len(sampler) == 1994


def test_rng_state_survives_a_weights_only_round_trip(tmp_path: Path):
    torch.manual_seed(3)
    np.random.seed(3)
    state = rng_state()
    expected = (torch.rand(3), np.random.rand(2), __import__("random").random())
    torch.save(state, tmp_path / "rng.pt")
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(3), np.random.rand(2), __import__("random").random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


@pytest.fixture(scope="module")
def fixed_batch():
    return collate_pairs([SOURCE.pair(seed) for seed in (11, 12)])


def test_train_step_overfits_a_fixed_batch(fixed_batch):
    torch.manual_seed(0)
    model = Flow4R(Flow4RConfig.tiny(head="linear"))
    model.mask_token.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    losses = [float(train_step(model, fixed_batch, optimizer, scheduler, Flow4RLossConfig(), 10.0)["loss"])
              for _ in range(30)]
    assert all(math.isfinite(loss) for loss in losses)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])  # ~16 → ~5 for seeds 0–2


def test_pair_metrics_are_zero_for_the_ground_truth(fixed_batch):
    from fourd_ns.feedforward.pair_types import PairPrediction, ViewPrediction

    batch, targets = fixed_batch, fixed_batch.targets1
    # W spread over the pixels that move rigidly with the camera, so Eq. 2 recovers T̄ on dynamic pairs too.
    rigid = transform_points(batch.pose_1to2, targets.points)
    static = targets.valid & ((targets.points_other - rigid).norm(dim=-1) < 1e-4)
    weights = static.float() / static.flatten(1).sum(1)[:, None, None]
    view = ViewPrediction(3 * targets.points, 3 * targets.points_other, weights, torch.ones_like(weights))
    metrics = pair_metrics(PairPrediction(view, view), batch)
    for name in ("rotation_error_deg", "translation_error", "point_error", "motion_epe", "flow_epe_px"):
        assert metrics[name].abs().max() < 1e-2, name
    assert (metrics["identity_rotation_error_deg"] > 1.0).all()  # the baseline is a real error


def test_training_resumes_exactly_and_checkpoints_reload(tmp_path: Path, fixed_batch):
    uninterrupted = train(tiny_config(tmp_path / "a", val_every=4, val_pairs=2))
    assert uninterrupted.step == 4
    assert set(uninterrupted.validation) >= {"rotation_error_deg", "identity_rotation_error_deg", "point_error"}
    assert all(math.isfinite(value) for value in uninterrupted.validation.values())
    folders = checkpoint_folders(tmp_path / "a")
    assert [folder.name for folder in folders] == ["step-0000002", "step-0000004"]
    assert find_checkpoint(tmp_path / "a") == folders[-1] == uninterrupted.checkpoint

    state = torch.load(folders[0] / TRAINER_STATE_NAME, weights_only=True)
    assert state["step"] == 2 and state["scheduler"]["last_epoch"] == 2
    assert all(int(entry["step"]) == 2 for entry in state["optimizer"]["state"].values())

    resumed = train(tiny_config(tmp_path / "b", resume=folders[0]))
    assert resumed.step == 4
    reference, continued = parameters(uninterrupted.model), parameters(resumed.model)
    assert reference.keys() == continued.keys()
    for name in reference:
        assert torch.equal(reference[name], continued[name]), name

    reloaded = from_pretrained(uninterrupted.checkpoint)
    uninterrupted.model.eval()
    reloaded.eval()
    with torch.no_grad():
        expected = uninterrupted.model(fixed_batch.image1, fixed_batch.image2)
        actual = reloaded(fixed_batch.image1, fixed_batch.image2)
    assert torch.equal(expected.view1.points, actual.view1.points)
    assert torch.equal(expected.view2.pose_weight, actual.view2.pose_weight)
    assert (tmp_path / "a" / "config.yml").exists() and any((tmp_path / "a" / "tensorboard").iterdir())


def test_checkpoints_are_pruned_and_partial_saves_ignored(tmp_path: Path):
    model = Flow4R(Flow4RConfig.tiny(head="linear"))
    for step in (1, 2, 3):
        save_flow4r_checkpoint(tmp_path, step, model, dict(step=step), keep_last=2)
    (tmp_path / "checkpoints" / "step-0000009.partial").mkdir()
    assert [folder.name for folder in checkpoint_folders(tmp_path)] == ["step-0000002", "step-0000003"]
    with pytest.raises(FileNotFoundError, match="--resume"):
        find_checkpoint(tmp_path / "nothing-here")


def test_stage2_starts_from_a_stage1_checkpoint(tmp_path: Path):
    stage1 = Flow4R(Flow4RConfig.tiny(head="linear"))
    save_flow4r_checkpoint(tmp_path, 7, stage1, dict(step=7), keep_last=1)
    config = tiny_config(tmp_path / "s2", stage="stage2", init=str(tmp_path / "checkpoints" / "step-0000007"))
    model, resumed = build_model(config.resolved(), console=None, report=False)
    assert resumed is None and model.config.head == "dpt"
    source = stage1.state_dict()
    for name, value in model.state_dict().items():
        if name.startswith(("enc_", "dec_", "patch_embed", "decoder_embed")):
            assert torch.equal(value, source[name]), name
    assert isinstance(model.downstream_head, DPTHead)


def test_stage_sets_the_head_and_settings_are_checked(tmp_path: Path):
    assert tiny_config(tmp_path).resolved().model.head == "linear"
    assert tiny_config(tmp_path, stage="stage2").resolved().model.head == "dpt"
    with pytest.raises(ValueError, match="--image-size"):
        tiny_config(tmp_path, image_size=(40, 32)).resolved()
    with pytest.raises(ValueError, match="factored-flow"):
        tiny_config(tmp_path, videos=(tmp_path,)).resolved()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, output_dir: str, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    result = train(tiny_config(Path(output_dir), epochs=1, batch_size=1, save_every=1, keep_last=5))
    torch.save(dict(parameters=parameters(result.model), step=result.step,
                    checkpoint=None if result.checkpoint is None else str(result.checkpoint)),
               Path(result_dir) / f"rank{rank}.pt")


def test_two_process_ddp_on_cpu_keeps_ranks_identical(tmp_path: Path):
    run, results = tmp_path / "run", tmp_path / "results"
    results.mkdir()
    # fork: the workers inherit the imported modules (spawning re-imports torch and roma, ~10 s per process here);
    # the process group itself is created inside each worker by train(), from the environment, as under torchrun.
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(run), str(results)), nprocs=2, join=True,
                       start_method="fork")
    rank0 = torch.load(results / "rank0.pt", weights_only=True)
    rank1 = torch.load(results / "rank1.pt", weights_only=True)
    assert rank0["step"] == rank1["step"] == 2  # 4 pairs per epoch / (1 pair × 2 processes)
    for name, value in rank0["parameters"].items():
        assert torch.equal(value, rank1["parameters"][name]), name
    assert rank0["checkpoint"] is not None and rank1["checkpoint"] is None
    assert [folder.name for folder in checkpoint_folders(run)] == ["step-0000001", "step-0000002"]
    assert len(list((run / "tensorboard").glob("events.*"))) == 1  # one writer: rank 0
    state = torch.load(run / "checkpoints" / "step-0000002" / TRAINER_STATE_NAME, weights_only=True)
    assert len(state["rng"]) == 2 and state["world_size"] == 2
    seed_everything(0)  # the initialisation train() starts from (config seed 0)
    initial = Flow4R(Flow4RConfig.tiny(head="linear"))
    start = initial.state_dict()
    assert any(not torch.equal(value, start[name]) for name, value in rank0["parameters"].items())  # it trained
    loaded = from_pretrained(run / "checkpoints" / "step-0000002")
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, rank0["parameters"][name]), name


def test_eval_command_writes_pair_metrics(tmp_path: Path):
    from fourd_ns.scripts.eval_flow4r import EvalArgs, main

    model = Flow4R(Flow4RConfig.tiny(head="linear"))
    save_flow4r_checkpoint(tmp_path, 1, model, dict(step=1), keep_last=1)
    output = tmp_path / "metrics.json"
    args = EvalArgs(checkpoint=str(tmp_path / "checkpoints" / "step-0000001"), data="synthetic:2", image_size=SIZE,
                    device="cpu", output_json=output)
    results = main(args)
    written = json.loads(output.read_text())
    assert written["mode"] == "pairs" and written["num_pairs"] == 2
    assert written["metrics"]["rotation_error_deg"] == pytest.approx(results["metrics"]["rotation_error_deg"])
    assert math.isfinite(written["metrics"]["identity_rotation_error_deg"])


def test_eval_command_scores_anchored_sequences(tmp_path: Path):
    from fourd_ns.feedforward.sequence_format import export_synthetic_sequence
    from fourd_ns.feedforward.evaluation import SEQUENCE_COLUMNS
    from fourd_ns.scripts.eval_flow4r import EvalArgs, main

    export_synthetic_sequence(tmp_path / "data" / "seq", seed=2, num_frames=4, image_size=SIZE, supersample=1,
                              track_stride=4)  # seed 2: four of the 64 tracks move
    model = Flow4R(Flow4RConfig.tiny(head="linear"))
    save_flow4r_checkpoint(tmp_path, 1, model, dict(step=1), keep_last=1)
    args = EvalArgs(checkpoint=str(tmp_path / "checkpoints" / "step-0000001"), data=str(tmp_path / "data"),
                    image_size=SIZE, device="cpu", batch_size=4)
    results = main(args)
    assert results["mode"] == "sequences" and list(results["sequences"]) == ["seq"]
    metrics = results["sequences"]["seq"]
    assert set(metrics) == {key for key, _ in SEQUENCE_COLUMNS}
    for key, value in metrics.items():  # the sequence has tracks and flow, so every metric applies
        assert math.isfinite(value), key
    assert 0.0 <= metrics["track_apd3d"] <= 1.0
    assert metrics["identity_rotation_error_deg"] > 0.0
    assert results["mean"] == metrics


def test_memory_cached_pairs_compute_each_item_once():
    calls = []

    class Counting(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            calls.append(index)
            return torch.full((2,), float(index))

    cached = MemoryCachedPairs(Counting())
    assert len(cached) == 3
    first = [cached[i] for i in (0, 2, 0, 2, 1)]
    assert calls == [0, 2, 1]
    assert first[0] is first[2] and torch.equal(first[4], torch.full((2,), 1.0))


def test_flow3r_head_learns_from_an_unlabeled_video_and_reloads(tmp_path: Path):
    """Flow3r-style training: frames only, flow pseudo-labels (DIS) supervise the factored-flow head."""
    rng = np.random.default_rng(0)
    texture = np.kron(rng.integers(0, 255, (24, 24, 3)), np.ones((4, 4, 1))).astype(np.uint8)  # 96×96 blocks
    video = tmp_path / "video"
    video.mkdir()
    for t in range(4):
        imageio.imwrite(video / f"{t:03d}.png", np.roll(texture, 2 * t, axis=1)[16:80, 16:80])
    torch.manual_seed(0)
    initial = Flow4R(Flow4RConfig.tiny(factored_flow=True))
    save_pretrained(initial, tmp_path / "init")
    config = tiny_config(
        tmp_path / "run", model=Flow4RConfig.tiny(factored_flow=True), init=str(tmp_path / "init"),
        synthetic_pairs=0, videos=(video,), video_ratio=1.0, video_max_frame_gap=1, epochs=1, pairs_per_epoch=4,
    )
    result = train(config)
    assert result.step == 2
    before, after = parameters(initial), parameters(result.model)
    assert any(not torch.equal(before[name], after[name]) for name in before if name.startswith("flow_head.")), (
        "the factored-flow head received no gradient from the video pairs"
    )
    reloaded = from_pretrained(result.checkpoint).eval()
    result.model.eval()
    image = torch.rand(1, 3, *SIZE) * 2 - 1
    with torch.no_grad():
        expected = result.model(image, image.flip(-1))
        actual = reloaded(image, image.flip(-1))
    assert actual.correspondence1.shape == (1, *SIZE, 2) and torch.isfinite(actual.correspondence1).all()
    assert torch.equal(expected.correspondence1, actual.correspondence1)

