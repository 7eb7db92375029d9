"""``ns-train deform4d``: the Deformable-3DGS baseline with its published schedule.

The Gaussians are seeded by ``--pipeline.initializer`` (default: the dataset's points), e.g.
``ns-train deform4d pipeline.initializer:flow4r --pipeline.initializer.weights <checkpoint> nerfies-data --data D``.

Learning rates follow Deformable-3DGS, whose ``spatial_lr_scale`` is hard-coded to 5: means 1.6e-4·5 decaying to
1.6e-6·5 over 30k iterations, scales 1e-3·5, deformation 8e-4 → 1.6e-6 over 40k, Adam eps 1e-15.
"""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.plugins.types import MethodSpecification

from fourd_ns.dataparsers.nerfies_dataparser import NerfiesDataParserConfig
from fourd_ns.datamanagers.full_image_datamanager import FourDFullImageDatamanagerConfig
from fourd_ns.engine.trainer import FourDTrainerConfig
from fourd_ns.models.deform4d import Deform4DModelConfig
from fourd_ns.pipelines.initialized_pipeline import InitializedPipelineConfig

MAX_ITERATIONS = 40000


def gaussian_optimizers(max_steps: int = MAX_ITERATIONS) -> dict:
    """Optimizers of the canonical Gaussians (3DGS learning rates with Deformable-3DGS's spatial scale of 5)."""
    return {
        "means": {
            "optimizer": AdamOptimizerConfig(lr=1.6e-4 * 5, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=1.6e-6 * 5, max_steps=30000),
        },
        "features_dc": {"optimizer": AdamOptimizerConfig(lr=2.5e-3, eps=1e-15), "scheduler": None},
        "features_rest": {"optimizer": AdamOptimizerConfig(lr=2.5e-3 / 20, eps=1e-15), "scheduler": None},
        "opacities": {"optimizer": AdamOptimizerConfig(lr=0.05, eps=1e-15), "scheduler": None},
        "scales": {"optimizer": AdamOptimizerConfig(lr=1e-3 * 5, eps=1e-15), "scheduler": None},
        "quats": {"optimizer": AdamOptimizerConfig(lr=1e-3, eps=1e-15), "scheduler": None},
        "camera_opt": {
            "optimizer": AdamOptimizerConfig(lr=1e-4, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=5e-7, max_steps=max_steps, warmup_steps=1000),
        },
        "bilateral_grid": {
            "optimizer": AdamOptimizerConfig(lr=2e-3, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=max_steps, warmup_steps=1000),
        },
    }


def deformable_3dgs_schedule() -> dict:
    """Model settings of the Deformable-3DGS schedule (densification, pruning, warm-up, SH), shared by 4D methods."""
    return dict(
        warmup_length=500,
        refine_every=100,
        stop_split_at=15000,
        reset_alpha_every=30,
        densify_grad_thresh=2e-4,
        densify_size_thresh=0.01,
        cull_alpha_thresh=0.005,
        cull_scale_thresh=0.1,
        # 3DGS prunes splats wider than 20 px after the first opacity reset; gsplat measures radii as a
        # fraction of the larger image side: 20 px of a 480 px NeRF-DS frame.
        cull_screen_size=20 / 480,
        stop_screen_size_at=15000,
        split_screen_size=1.0,  # 3DGS has no screen-size split; 1.0 (a splat as wide as the image) disables it
        sh_degree=3,
        sh_degree_interval=1000,
        ssim_lambda=0.2,
        static_warmup_steps=3000,
        annealed_time_noise=True,
        time_noise_steps=20000,
    )


def trainer_schedule(max_iterations: int = MAX_ITERATIONS) -> dict:
    """Trainer settings shared by the per-scene 4D methods (evaluation/saving cadence, viewer)."""
    return dict(
        steps_per_eval_image=500,
        steps_per_eval_batch=0,
        steps_per_save=2000,
        steps_per_eval_all_images=5000,
        max_num_iterations=max_iterations,
        mixed_precision=False,
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


deform4d = MethodSpecification(
    config=FourDTrainerConfig(
        method_name="deform4d",
        **trainer_schedule(),
        pipeline=InitializedPipelineConfig(
            datamanager=FourDFullImageDatamanagerConfig(dataparser=NerfiesDataParserConfig()),
            model=Deform4DModelConfig(**deformable_3dgs_schedule()),
        ),
        optimizers={
            **gaussian_optimizers(),
            "deformation": {
                "optimizer": AdamOptimizerConfig(lr=8e-4, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=1.6e-6, max_steps=MAX_ITERATIONS),
            },
        },
    ),
    description="Deformable 3D Gaussians (Yang et al. 2024): canonical Gaussians + deformation MLP; CPU and CUDA.",
)
