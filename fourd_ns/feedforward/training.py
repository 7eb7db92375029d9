"""Training Flow4R (paper §4 "Training Details", Table 4): data mixing, the optimisation schedule, checkpoints that
reload with ``from_pretrained``, periodic validation on held-out synthetic pairs, and multi-GPU data parallelism.

The generic machinery comes from `fourd_ns.learning`: processes under ``torchrun`` (`learning.distributed`; the
model is wrapped in ``DistributedDataParallel``, since every trainable Flow4R parameter gets a gradient in every
step), checkpoint folders and exact resume (`learning.checkpoints`, `learning.resume`), the mid-epoch-resumable
data order (`learning.resumable_loader`), the schedule (`learning.schedules`), clipped steps (`learning.optimizer_step`)
and rank 0's progress bar and TensorBoard log (`learning.progress`). Only rank 0 writes checkpoints, logs and
progress, and runs validation while the other ranks wait.

Choices, and where the paper is silent:

- **Stages.** ``stage1`` trains the linear head at 224 px, ``stage2`` the DPT head at 512 px (the stage sets
  ``model.head``); stage-specific defaults (image size, batch size, pairs per epoch, warm-up fraction) follow Table 4,
  with the batch size per process (Table 4's 256 / 64 are totals over eight GPUs). Stage 2 uses one 384×512 size:
  the paper draws random aspect ratios at 512 px, which needs one size per batch; ``--image-size`` sets another.
  ``--init`` accepts anything `load_pretrained` reads (a CroCo v2 ``.pth``, a DUSt3R checkpoint, a stage-1 run's
  checkpoint folder, a hub id): the backbone sizes come from that checkpoint, the head settings from this config,
  every tensor whose name and shape match is loaded and the load report lists the rest (a stage-1 → stage-2 start
  loads the backbone and re-initialises the head).
- **Schedule.** Adam (``AdamW`` with ``weight_decay = 0`` by default) with betas (0.9, 0.95) — the CroCo / DUSt3R
  recipe this model family is trained with; the paper only says "Adam". The learning rate warms up linearly over
  ``warmup_fraction`` of all steps, then follows a cosine to ``min_lr`` at the last step. Gradients are clipped to
  a global norm of 10; a step whose gradient norm is not finite is skipped on every rank, and
  ``max_skipped_steps`` consecutive skips stop training with an error.
- **Data.** Each epoch is ``pairs_per_epoch`` pairs drawn from the sources (synthetic renders, on-disk sequences,
  unlabeled videos) in proportion to their ratios (`MixedPairDataset`): which source and which pair every index maps
  to is a pure function of (seed, epoch, index), so the draw does not depend on the number of processes or workers.
  Unlabeled video pairs carry only flow pseudo-labels and need ``model.factored_flow``.
- **Checkpoints** are ``checkpoints/step-NNNNNNN`` folders holding `save_pretrained`'s ``config.json`` +
  ``model.safetensors`` (so a checkpoint loads with ``from_pretrained(folder)``) beside ``trainer_state.pt``.
- **Exact resume.** ``--resume`` restores weights, optimizer, scheduler, step and each rank's RNG states and
  restarts the interrupted epoch at the next unseen batch; on CPU, with the same number of processes, a resumed run
  reproduces the parameters of an uninterrupted run bit for bit.
- **Validation** runs on ``val_pairs`` synthetic pairs rendered from seeds the training pairs never use:
  rotation error, translation direction error and translation error at the ground truth's length of the pose
  solved from view 1 (Eq. 2), next to the identity-pose baseline (its translation error is ‖t̄‖, the error of
  predicting no motion); the point-map error after median scaling (P̄ units); the 3D end-point error of P_vt after
  the same scaling; and the optical-flow EPE of the projected P_vt (pixels).
- ``mask_token`` (CroCo's masked-image-modelling token, kept only so that CroCo checkpoints load completely) takes no
  part in Flow4R's forward pass and is frozen, so DDP does not wait for a gradient that never comes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
import torch
import yaml
from jaxtyping import Float
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from fourd_ns.feedforward.flow4r import Flow4R, Flow4RConfig
from fourd_ns.feedforward.flow4r_geometry import solve_pose
from fourd_ns.feedforward.flow4r_losses import TERM_NAMES, Flow4RLossConfig, flow4r_loss, project
from fourd_ns.feedforward.pair_dataset import SequencePairDataset, SyntheticPairDataset, collate_pairs
from fourd_ns.feedforward.pair_types import PairBatch, PairPrediction
from fourd_ns.feedforward.pretrained import load_pretrained, save_pretrained
from fourd_ns.feedforward.synthetic_pairs import SyntheticPairSource
from fourd_ns.feedforward.video_pairs import VideoPairDataset
from fourd_ns.learning.checkpoints import find_checkpoint
from fourd_ns.learning.distributed import (
    DistributedContext,
    close_distributed,
    data_parallel,
    init_distributed,
    mean_over_ranks,
)
from fourd_ns.learning.optimizer_step import SkippedSteps, clipped_step
from fourd_ns.learning.progress import Throughput, TrainingLog, TrainingProgress
from fourd_ns.learning.resumable_loader import ResumableDistributedSampler, epoch_loader
from fourd_ns.learning.resume import restore_trainer_state, save_training_checkpoint
from fourd_ns.learning.rng import rank_seed, seed_everything
from fourd_ns.learning.schedules import warmup_cosine_schedule
from fourd_ns.metrics.camera_pose import pair_pose_error
from fourd_ns.metrics.optical_flow import flow_epe
from fourd_ns.metrics.tracking import align_median_scale, end_point_error


STAGE_DEFAULTS = {
    "stage1": dict(head="linear", image_size=(224, 224), batch_size=32, pairs_per_epoch=900_000, warmup_fraction=0.1),
    "stage2": dict(head="dpt", image_size=(384, 512), batch_size=8, pairs_per_epoch=84_000, warmup_fraction=0.2),
}
"""Table 4 of the paper per stage (batch size per process for eight processes; stage 2 at 512 px wide, 4:3)."""


@dataclass
class Flow4RTrainConfig:
    """Train Flow4R: stage 1 (linear head, 224 px) from CroCo v2 weights, then stage 2 (DPT head, 512 px) from the
    stage-1 checkpoint. Run under ``torchrun --nproc_per_node N`` for N GPUs."""

    output_dir: Path = Path("outputs/flow4r")
    """Run folder: ``checkpoints/step-NNNNNNN/``, ``tensorboard/`` and ``config.yml`` are written here."""
    stage: Literal["stage1", "stage2"] = "stage1"
    """Training stage: sets ``model.head`` (linear / DPT) and the defaults of the settings left at None."""
    model: Flow4RConfig = field(default_factory=Flow4RConfig)
    """Network settings (``model.head`` is set by ``stage``; with ``--init`` the backbone sizes come from the
    checkpoint)."""
    init: Optional[str] = None
    """Initial weights: a CroCo v2 / DUSt3R ``.pth``, a checkpoint folder (e.g. stage 1's), or a hub id. Tensors
    whose names and shapes match are loaded; the rest is reported and initialised fresh."""
    resume: Optional[Path] = None
    """Continue an interrupted run: a checkpoint folder, or a run folder (its newest checkpoint)."""

    synthetic_pairs: int = 20_000
    """Distinct synthetic pairs to draw from (rendered on demand, seeds 0 … N−1); 0 disables them."""
    synthetic_cache_in_memory: bool = False
    """Keep every rendered synthetic pair in memory so later epochs reuse it instead of rendering it again (for small
    CPU runs, where rendering dominates; needs ``--num-workers 0``, since worker processes end with each epoch)."""
    synthetic: SyntheticPairSource = field(default_factory=SyntheticPairSource)
    """How synthetic pairs are rendered (scene presets, dynamic share, camera ranges; ``image_size`` is replaced by
    ``--image-size``)."""
    synthetic_ratio: float = 1.0
    """Relative share of synthetic pairs in each epoch."""
    sequences: tuple[Path, ...] = ()
    """Sequence folders in the on-disk format (``docs/sequence_format.md``: depth, poses, optional flow / tracks)."""
    sequence_ratio: float = 1.0
    """Relative share of pairs from ``sequences``."""
    max_frame_gap: int = 50
    """Largest frame distance of a pair drawn from a sequence (the paper pairs frames within 50)."""
    videos: tuple[Path, ...] = ()
    """Unlabeled video folders (frames only; flow pseudo-labels supervise the factored-flow head)."""
    video_ratio: float = 0.25
    """Relative share of unlabeled video pairs."""
    video_max_frame_gap: int = 4
    """Largest frame distance of a video pair (flow pseudo-labels fail their consistency check at large gaps)."""
    image_size: Optional[tuple[int, int]] = None
    """(height, width) of the training images, multiples of the patch size (default: the stage's)."""

    epochs: int = 100
    """Number of epochs."""
    pairs_per_epoch: Optional[int] = None
    """Pairs drawn per epoch over all processes (default: the stage's)."""
    batch_size: Optional[int] = None
    """Pairs per step and process; the effective batch is this times the number of processes."""
    lr: float = 1e-4
    """Peak learning rate."""
    min_lr: float = 1e-6
    """Learning rate at the end of the cosine decay."""
    warmup_fraction: Optional[float] = None
    """Share of all steps spent in the linear warm-up (default: the stage's)."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW); 0 is the paper's Adam."""
    betas: tuple[float, float] = (0.9, 0.95)
    """Adam's moment decay rates."""
    clip_norm: float = 10.0
    """Maximum global gradient norm."""
    max_skipped_steps: int = 10
    """Consecutive steps with a non-finite gradient after which training stops."""
    loss: Flow4RLossConfig = field(default_factory=Flow4RLossConfig)
    """Loss weights and constants."""

    device: Literal["auto", "cuda", "cpu"] = "auto"
    """Where to train; ``auto`` picks CUDA when available (one GPU per process, ``LOCAL_RANK``)."""
    precision: Literal["bf16", "fp32"] = "bf16"
    """Autocast precision of the backbone on CUDA (heads, losses and pose solves stay float32); CPU uses fp32."""
    num_workers: int = 4
    """DataLoader worker processes per training process."""
    seed: int = 0
    """Seed of the model initialisation, the data draw and every RNG."""

    log_every: int = 20
    """Steps between TensorBoard scalars (losses, learning rate, gradient norm, throughput)."""
    save_every: int = 2_000
    """Steps between checkpoints (one is always written at the end)."""
    keep_last: int = 3
    """Number of newest checkpoints kept."""
    val_every: int = 2_000
    """Steps between validations (one always runs at the end); 0 disables validation."""
    val_pairs: int = 64
    """Held-out synthetic pairs per validation."""

    def resolved(self) -> "Flow4RTrainConfig":
        """A copy with the stage's defaults filled in and ``model.head`` set by the stage; validated."""
        if self.stage not in STAGE_DEFAULTS:
            raise ValueError(f"--stage must be one of {sorted(STAGE_DEFAULTS)}, got {self.stage!r}")
        defaults = STAGE_DEFAULTS[self.stage]
        resolved = replace(
            self,
            model=replace(self.model, head=defaults["head"]),
            image_size=tuple(self.image_size) if self.image_size is not None else defaults["image_size"],
            batch_size=self.batch_size if self.batch_size is not None else defaults["batch_size"],
            pairs_per_epoch=self.pairs_per_epoch if self.pairs_per_epoch is not None else defaults["pairs_per_epoch"],
            warmup_fraction=self.warmup_fraction if self.warmup_fraction is not None else defaults["warmup_fraction"],
        )
        resolved.validate()
        return resolved

    def validate(self) -> None:
        """Raise a ValueError naming the first inconsistent setting."""
        patch = self.model.resolved_backbone().patch_size
        height, width = self.image_size
        if height % patch or width % patch:
            raise ValueError(f"--image-size {height} {width}: both sides must be multiples of the {patch}-pixel patch")
        for name in ("epochs", "batch_size", "pairs_per_epoch", "log_every", "save_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"--warmup-fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 0.0 < self.min_lr <= self.lr:
            raise ValueError(f"need 0 < --min-lr ≤ --lr, got --min-lr {self.min_lr} and --lr {self.lr}")
        if self.videos and self.video_ratio > 0 and not self.model.factored_flow:
            raise ValueError("--videos are unlabeled (flow pseudo-labels only) and train only the factored-flow head: "
                             "add --model.factored-flow True or set --video-ratio 0")
        if self.synthetic_pairs > VALIDATION_FIRST_SEED:
            raise ValueError(f"--synthetic-pairs must be ≤ {VALIDATION_FIRST_SEED} (higher seeds are validation pairs)")
        if self.synthetic_cache_in_memory and self.num_workers > 0:
            raise ValueError("--synthetic-cache-in-memory needs --num-workers 0 (worker processes, and their copies "
                             "of the cache, end with each epoch)")
        if self.val_every > 0 and self.val_pairs < 1:
            raise ValueError(f"--val-pairs must be ≥ 1 when validating (--val-every {self.val_every})")


# ---------------------------------------------------------------------------------------------------------------
# Data


class MemoryCachedPairs(Dataset):
    """A pair dataset whose items are computed once and then served from memory (see
    ``Flow4RTrainConfig.synthetic_cache_in_memory``)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.items: dict[int, PairBatch] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> PairBatch:
        if index not in self.items:
            self.items[index] = self.dataset[index]
        return self.items[index]


class MixedPairDataset(Dataset):
    """``length`` pairs per epoch drawn from several pair datasets in proportion to ``ratios``.

    Index i of epoch e maps to (source, item) through a generator seeded with (seed, e, i) only, so the draw is the
    same for any number of processes and workers, and `set_epoch` gives every epoch a fresh draw.
    """

    def __init__(self, sources: Sequence[Dataset], ratios: Sequence[float], length: int, seed: int) -> None:
        if len(sources) != len(ratios) or not sources:
            raise ValueError("MixedPairDataset needs one ratio per source and at least one source")
        if any(len(source) == 0 for source in sources):
            raise ValueError("MixedPairDataset: a pair source is empty; check its folders or set its ratio to 0")
        weights = np.asarray(ratios, dtype=np.float64)
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"MixedPairDataset: ratios must be ≥ 0 and not all 0, got {list(ratios)}")
        self.sources = list(sources)
        self.cumulative = np.cumsum(weights / weights.sum())
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def locate(self, index: int) -> tuple[int, int]:
        """(source number, item index within that source) of pair ``index`` in the current epoch."""
        generator = np.random.default_rng([self.seed, self.epoch, index])
        source = int(np.searchsorted(self.cumulative, generator.random(), side="right"))
        source = min(source, len(self.sources) - 1)
        return source, int(generator.integers(len(self.sources[source])))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        source, item = self.locate(index)
        return self.sources[source][item]


def synthetic_source(config: Flow4RTrainConfig) -> SyntheticPairSource:
    return replace(config.synthetic, image_size=tuple(config.image_size))


def build_training_data(config: Flow4RTrainConfig) -> MixedPairDataset:
    """The epoch mixture of the configured pair sources (see the module docstring)."""
    sources, ratios = [], []
    if config.synthetic_pairs > 0 and config.synthetic_ratio > 0:
        synthetic = SyntheticPairDataset(synthetic_source(config), config.synthetic_pairs, first_seed=0)
        sources.append(MemoryCachedPairs(synthetic) if config.synthetic_cache_in_memory else synthetic)
        ratios.append(config.synthetic_ratio)
    if config.sequences and config.sequence_ratio > 0:
        sources.append(SequencePairDataset(config.sequences, image_size=config.image_size,
                                           max_gap=config.max_frame_gap))
        ratios.append(config.sequence_ratio)
    if config.videos and config.video_ratio > 0:
        sources.append(VideoPairDataset(config.videos, image_size=config.image_size,
                                        max_gap=config.video_max_frame_gap))
        ratios.append(config.video_ratio)
    if not sources:
        raise ValueError("no training data: set --synthetic-pairs > 0, or give --sequences or --videos with a "
                         "positive ratio")
    return MixedPairDataset(sources, ratios, length=config.pairs_per_epoch, seed=config.seed)


VALIDATION_FIRST_SEED = 1_000_000_000
"""Synthetic seeds of the validation pairs; training pairs use seeds below ``synthetic_pairs`` (< this)."""


def validation_data(config: Flow4RTrainConfig) -> SyntheticPairDataset:
    """Held-out synthetic pairs: rendered from seeds the training pairs never use."""
    return SyntheticPairDataset(synthetic_source(config), config.val_pairs, first_seed=VALIDATION_FIRST_SEED)


# ---------------------------------------------------------------------------------------------------------------
# Model


def build_model(config: Flow4RTrainConfig, console: Console, report: bool) -> tuple[Flow4R, Optional[Path]]:
    """The network to train and, when resuming, the checkpoint it was restored from."""
    if config.resume is not None:
        checkpoint = find_checkpoint(config.resume)
        try:
            model, _ = load_pretrained(checkpoint, strict=True)
        except ValueError as error:
            raise ValueError(f"--resume {checkpoint}: the weights do not match the checkpoint's own config.json "
                             f"({error}); resume from another checkpoint") from error
        return model, checkpoint
    if config.init is not None:
        settings = config.model.to_dict()
        head_settings = {name: settings[name] for name in settings if name not in ("backbone", "backbone_config")}
        model, load_report = load_pretrained(config.init, config_overrides=head_settings)
        if not load_report.loaded:
            raise ValueError(f"--init {config.init}: no tensor matched the model by name and shape:\n"
                             f"{load_report.summary()}")
        if report:
            load_report.print(console)
        return model, None
    return Flow4R(config.model), None


def freeze_unused_parameters(model: Flow4R) -> None:
    """Freeze ``mask_token``, which Flow4R keeps only for checkpoint compatibility (see the module docstring)."""
    model.mask_token.requires_grad_(False)


# ---------------------------------------------------------------------------------------------------------------
# Steps


def _autocast(device: torch.device, precision: str):
    enabled = device.type == "cuda" and precision == "bf16"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def train_step(
    model: nn.Module,
    batch: PairBatch,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_config: Flow4RLossConfig,
    clip_norm: float,
    precision: Literal["bf16", "fp32"] = "fp32",
) -> dict[str, Tensor]:
    """One optimisation step on ``batch`` (already on the model's device).

    Returns detached scalars: ``loss``, each loss term, ``grad_norm`` (before clipping), ``lr`` (used by this step)
    and ``skipped`` (1 when the gradient norm was not finite and no update was made).
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with _autocast(batch.image1.device, precision):
        prediction = model(batch.image1, batch.image2)
    total, terms = flow4r_loss(prediction, batch, loss_config)
    total.backward()
    lr = torch.tensor(optimizer.param_groups[0]["lr"])
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    grad_norm, finite = clipped_step(optimizer, parameters, clip_norm)
    scheduler.step()
    return dict(loss=total.detach(), **{name: value.detach() for name, value in terms.items()},
                grad_norm=grad_norm.detach(), lr=lr, skipped=torch.tensor(0.0 if finite else 1.0))


# ---------------------------------------------------------------------------------------------------------------
# Validation


VALIDATION_METRICS = (
    "rotation_error_deg", "translation_angle_deg", "translation_error",
    "identity_rotation_error_deg", "identity_translation_error",
    "point_error", "motion_epe", "flow_epe_px",
)
"""Keys of `pair_metrics` / `validate`: pose errors of the solved pose and of the identity baseline, point-map
error after median scaling (P̄ units), 3D end-point error of P_vt after the same scaling, flow EPE (pixels)."""


def pair_metrics(prediction: PairPrediction, batch: PairBatch) -> dict[str, Float[Tensor, "B"]]:
    """Per-pair validation metrics of view 1 (see `VALIDATION_METRICS`; NaN where a pair has no such ground truth).

    The pose is Eq. 2 on view 1 (camera 1 → camera 2). One median scale per pair, fitted on view 1's valid points
    (median‖P̄‖ / median‖P‖), is applied to P and P_vt before the 3D errors.
    """
    view, targets = prediction.view1, batch.targets1
    points, points_other = view.points.float(), view.points_other.float()
    pose = solve_pose(points, points_other, view.pose_weight.float())
    rotation, angle, translation = pair_pose_error(pose, batch.pose_1to2)
    identity = torch.eye(4, dtype=pose.dtype, device=pose.device).expand_as(pose)
    identity_rotation, _, _ = pair_pose_error(identity, batch.pose_1to2)
    nan = torch.tensor(float("nan"), device=points.device)
    point_error, motion_epe, pixel_epe = [], [], []
    for index in range(points.shape[0]):
        valid, motion_valid, flow_valid = targets.valid[index], targets.motion_valid[index], targets.flow_valid[index]
        if valid.any():
            scaled, scale = align_median_scale(points[index], targets.points[index], valid)
            point_error.append(end_point_error(scaled, targets.points[index], valid))
            motion_epe.append(end_point_error(points_other[index] * scale, targets.points_other[index], motion_valid)
                              if motion_valid.any() else nan)
        else:
            point_error.append(nan)
            motion_epe.append(nan)
        if flow_valid.any():
            projected = project(points_other[index : index + 1], batch.intrinsics2[index : index + 1], 1e-6)[0]
            pixel_epe.append(flow_epe(projected, targets.flow_target[index], flow_valid))
        else:
            pixel_epe.append(nan)
    return dict(
        rotation_error_deg=rotation,
        translation_angle_deg=angle,
        translation_error=translation,
        identity_rotation_error_deg=identity_rotation,
        identity_translation_error=batch.pose_1to2[:, :3, 3].norm(dim=-1),
        point_error=torch.stack(point_error),
        motion_epe=torch.stack(motion_epe),
        flow_epe_px=torch.stack(pixel_epe),
    )


@torch.no_grad()
def validate(model: nn.Module, loader: DataLoader, device: torch.device, precision: str = "fp32") -> dict[str, float]:
    """Mean of `pair_metrics` over all pairs of ``loader`` (NaN entries ignored)."""
    was_training = model.training
    model.eval()
    collected: dict[str, list[Tensor]] = {name: [] for name in VALIDATION_METRICS}
    try:
        for batch in loader:
            batch = batch.to(device)
            with _autocast(device, precision):
                prediction = model(batch.image1, batch.image2)
            for name, values in pair_metrics(prediction, batch).items():
                collected[name].append(values.float().cpu())
    finally:
        model.train(was_training)
    return {name: float(torch.cat(values).nanmean()) for name, values in collected.items()}


def validation_table(metrics: dict[str, float], title: str) -> Table:
    """The `validate` metrics as a rich table, the identity-pose baseline next to the solved pose."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("Flow4R", justify="right")
    table.add_column("identity pose", justify="right")
    rows = [
        ("rotation error (°)", metrics["rotation_error_deg"], metrics["identity_rotation_error_deg"]),
        ("translation error (GT units)", metrics["translation_error"], metrics["identity_translation_error"]),
        ("translation direction (°)", metrics["translation_angle_deg"], None),
        ("point error, median-scaled", metrics["point_error"], None),
        ("P_vt end-point error, median-scaled", metrics["motion_epe"], None),
        ("optical-flow EPE (px)", metrics["flow_epe_px"], None),
    ]
    for name, value, baseline in rows:
        table.add_row(name, f"{value:.4g}", "" if baseline is None else f"{baseline:.4g}")
    return table


# ---------------------------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainResult:
    """What `train` leaves behind (on every rank)."""

    model: Flow4R
    """The trained network (unwrapped from DDP)."""
    step: int
    """Number of optimisation steps done."""
    checkpoint: Optional[Path]
    """The final checkpoint folder (None on ranks other than 0)."""
    validation: dict[str, float]
    """The last validation metrics (empty when validation is off or on ranks other than 0)."""


def train(config: Flow4RTrainConfig) -> TrainResult:
    """Train Flow4R as configured (see the module docstring); returns the trained model on every rank."""
    config = config.resolved()
    context = init_distributed(config.device)
    try:
        return _train(config, context)
    finally:
        close_distributed(context)


def _train(config: Flow4RTrainConfig, context: DistributedContext) -> TrainResult:
    console = Console()
    main = context.is_main
    seed_everything(config.seed)
    model, resumed_from = build_model(config, console, report=main)
    freeze_unused_parameters(model)
    model.to(context.device)
    trained = data_parallel(model, context)

    dataset = build_training_data(config)
    steps_per_epoch = config.pairs_per_epoch // (config.batch_size * context.world_size)
    if steps_per_epoch < 1:
        raise ValueError(f"--pairs-per-epoch {config.pairs_per_epoch} is smaller than one step's batch "
                         f"({config.batch_size} pairs × {context.world_size} processes)")
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = round(config.warmup_fraction * total_steps)

    optimizer = torch.optim.AdamW([parameter for parameter in model.parameters() if parameter.requires_grad],
                                  lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    scheduler = warmup_cosine_schedule(optimizer, total_steps, warmup_steps, config.lr, config.min_lr)
    step = 0
    if resumed_from is not None:
        step = restore_trainer_state(resumed_from, optimizer, scheduler, context, config.seed, console)
    else:
        seed_everything(rank_seed(config.seed, context.rank))

    sampler = ResumableDistributedSampler(dataset, context.world_size, context.rank, config.seed)
    validation_loader = None
    if main:
        config.output_dir.mkdir(parents=True, exist_ok=True)
        (config.output_dir / "config.yml").write_text(yaml.dump(config), encoding="utf8")
    log = TrainingLog(config.output_dir / "tensorboard", context, purge_step=step)
    if main:
        if config.val_every > 0:
            validation_loader = DataLoader(validation_data(config), batch_size=config.batch_size,
                                           num_workers=min(config.num_workers, 2), collate_fn=collate_pairs)
        console.print(f"Flow4R {config.stage}: {total_steps} steps ({config.epochs} epochs × {steps_per_epoch}), "
                      f"{config.batch_size} × {context.world_size} pairs per step at "
                      f"{config.image_size[0]}×{config.image_size[1]}, on {context.device}"
                      + (f", resuming at step {step} from {resumed_from}" if resumed_from else ""))

    def checkpoint_now() -> Optional[Path]:
        return save_training_checkpoint(config.output_dir, step, partial(save_pretrained, model), optimizer,
                                        scheduler, context, config.keep_last)

    def validate_now() -> dict[str, float]:
        metrics: dict[str, float] = {}
        if main and validation_loader is not None:
            metrics = validate(model, validation_loader, context.device, config.precision)
            log.scalars(metrics, step, prefix="val/")
            console.print(validation_table(metrics, f"Validation at step {step}"))
        context.barrier()
        return metrics

    checkpoint, metrics = None, {}
    skipped = SkippedSteps(config.max_skipped_steps, config.output_dir)
    throughput = Throughput()
    with TrainingProgress("Flow4R", config.stage, total_steps, step, context, console) as progress:
        while step < total_steps:
            epoch, start_batch = divmod(step, steps_per_epoch)
            dataset.set_epoch(epoch)
            loader = epoch_loader(dataset, sampler, config.batch_size, config.num_workers, epoch, start_batch,
                                  config.seed, context.rank, pin_memory=context.device.type == "cuda",
                                  collate_fn=collate_pairs)
            for batch in loader:
                values = train_step(trained, batch.to(context.device), optimizer, scheduler, config.loss,
                                    config.clip_norm, config.precision)
                step += 1
                throughput.step()
                skipped.update(bool(values["skipped"] > 0), step)
                if step % config.log_every == 0 or step == total_steps:
                    logged = mean_over_ranks(values, context)
                    pairs_per_second = throughput.per_second(config.batch_size * context.world_size)
                    names = ("loss", *TERM_NAMES, "lr", "grad_norm", "skipped")
                    log.scalars({name: logged[name] for name in names}, step, prefix="train/")
                    log.scalars(dict(pairs_per_second=pairs_per_second), step, prefix="train/")
                    progress.update(step, status=f"loss {logged['loss']:.4f} lr {logged['lr']:.2e} "
                                                 f"{pairs_per_second:.1f} pairs/s")
                progress.update(step)
                if config.val_every > 0 and step % config.val_every == 0 and step < total_steps:
                    metrics = validate_now()
                if step % config.save_every == 0 and step < total_steps:
                    checkpoint = checkpoint_now()
                if step == total_steps or step % steps_per_epoch == 0:
                    break
    if config.val_every > 0:
        metrics = validate_now()
    checkpoint = checkpoint_now()
    log.close()
    if main:
        console.print(f"[green]Done:[/green] {step} steps; checkpoint {checkpoint} "
                      f"(load with fourd_ns.feedforward.pretrained.from_pretrained)")
    return TrainResult(model=model, step=step, checkpoint=checkpoint, validation=metrics)
