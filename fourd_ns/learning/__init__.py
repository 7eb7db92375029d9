"""The cross-scene trainer machinery that Flow4R, G3R and Flux4D share: processes under ``torchrun``
(`distributed`), seeding and RNG states (`rng`), checkpoint folders (`checkpoints`) with exact resume (`resume`),
a data order that resumes mid-epoch (`resumable_loader`), learning-rate schedules (`schedules`), clipped steps
that skip non-finite gradients (`optimizer_step`), and the progress bar / TensorBoard log of rank 0 (`progress`).

A trainer built on it (one code path for one process and for ``torchrun --nproc_per_node N``)::

    context = init_distributed(config.device)
    try:
        seed_everything(config.seed)                       # the same initial weights on every rank …
        model = Network(config.network).to(context.device)
        broadcast_parameters(model, context)               # … and rank 0's, whatever the initialisation drew
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        scheduler = warmup_cosine_schedule(optimizer, total_steps, warmup_steps, config.lr, config.min_lr)
        step = 0
        if config.resume is not None:
            checkpoint = find_checkpoint(config.resume)    # a checkpoint folder, or a run folder's newest
            load_model_weights(checkpoint, model)
            step = restore_trainer_state(checkpoint, optimizer, scheduler, context, config.seed)
        else:
            seed_everything(rank_seed(config.seed, context.rank))  # each rank its own stream from here on
        write_model = lambda folder: write_model_folder(folder, model, config.network.to_dict())
        with TrainingLog(run_dir / "tensorboard", context, step) as log, \\
                TrainingProgress("G3R", "training", total_steps, step, context) as progress:
            while step < total_steps:
                optimizer.zero_grad(set_to_none=True)
                loss = compute_loss(model, sample(step))
                loss.backward()
                all_reduce_gradients(model.parameters(), context)  # parts without a gradient count as zeros
                grad_norm, stepped = clipped_step(optimizer, model.parameters(), config.clip_norm)
                scheduler.step()
                step += 1
                log.scalars(mean_over_ranks(dict(loss=loss.detach()), context), step, prefix="train/")
                progress.update(step)
                if step % config.save_every == 0 or step == total_steps:
                    save_training_checkpoint(run_dir, step, write_model, optimizer, scheduler, context,
                                             config.keep_last)   # every rank calls it; rank 0 writes
    finally:
        close_distributed(context)

Models whose every trainable parameter receives a gradient in every step may use `data_parallel` (DDP) instead of
`broadcast_parameters` + `all_reduce_gradients`, as Flow4R's trainer does (`fourd_ns.feedforward.training`).
"""

from fourd_ns.learning.checkpoints import (
    TRAINER_STATE_NAME,
    checkpoint_folders,
    find_checkpoint,
    load_model_weights,
    read_model_config,
    save_checkpoint,
    write_model_folder,
)
from fourd_ns.learning.distributed import (
    DistributedContext,
    all_reduce_gradients,
    broadcast_parameters,
    close_distributed,
    data_parallel,
    gather_to_main,
    init_distributed,
    mean_over_ranks,
)
from fourd_ns.learning.optimizer_step import SkippedSteps, clipped_step
from fourd_ns.learning.progress import Throughput, TrainingLog, TrainingProgress
from fourd_ns.learning.resumable_loader import ResumableDistributedSampler, epoch_loader, seed_worker
from fourd_ns.learning.resume import (
    load_trainer_state,
    restore_trainer_state,
    save_training_checkpoint,
    trainer_state,
)
from fourd_ns.learning.rng import rank_seed, rng_state, seed_everything, set_rng_state
from fourd_ns.learning.schedules import learning_rate, warmup_cosine_schedule

__all__ = [
    "TRAINER_STATE_NAME",
    "DistributedContext",
    "ResumableDistributedSampler",
    "SkippedSteps",
    "Throughput",
    "TrainingLog",
    "TrainingProgress",
    "all_reduce_gradients",
    "broadcast_parameters",
    "checkpoint_folders",
    "clipped_step",
    "close_distributed",
    "data_parallel",
    "epoch_loader",
    "find_checkpoint",
    "gather_to_main",
    "init_distributed",
    "learning_rate",
    "load_model_weights",
    "load_trainer_state",
    "mean_over_ranks",
    "rank_seed",
    "read_model_config",
    "restore_trainer_state",
    "rng_state",
    "save_checkpoint",
    "save_training_checkpoint",
    "seed_everything",
    "seed_worker",
    "set_rng_state",
    "trainer_state",
    "warmup_cosine_schedule",
    "write_model_folder",
]
