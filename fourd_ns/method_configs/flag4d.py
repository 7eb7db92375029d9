"""``ns-train flag4d``: FLAG-4D with the Deformable-3DGS schedule and the paper's IDN/GMN learning rate (1e-4).

The flow backend is chosen under ``--pipeline.flow.*`` (RAFT when its weights are on disk, else OpenCV DIS); the
ablations of the paper's Table 3 are ``--pipeline.model.use-idn False``, ``--pipeline.model.use-gmn False`` and
``--pipeline.model.mutual-learning False``. The Gaussians are seeded by ``--pipeline.initializer`` (default: the
dataset's points; e.g. ``pipeline.initializer:flow4r --pipeline.initializer.weights <checkpoint>``).
"""

from __future__ import annotations

from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.plugins.types import MethodSpecification

from fourd_ns.dataparsers.nerfies_dataparser import NerfiesDataParserConfig
from fourd_ns.datamanagers.full_image_datamanager import FourDFullImageDatamanagerConfig
from fourd_ns.engine.trainer import FourDTrainerConfig
from fourd_ns.method_configs.deform4d import (
    MAX_ITERATIONS,
    deformable_3dgs_schedule,
    gaussian_optimizers,
    trainer_schedule,
)
from fourd_ns.models.flag4d import Flag4DModelConfig
from fourd_ns.pipelines.flow_guided_pipeline import FlowGuidedPipelineConfig


def network_optimizer(lr: float = 1e-4, lr_final: float = 1e-6, max_steps: int = MAX_ITERATIONS) -> dict:
    return {
        "optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15),
        "scheduler": ExponentialDecaySchedulerConfig(lr_final=lr_final, max_steps=max_steps),
    }


flag4d = MethodSpecification(
    config=FourDTrainerConfig(
        method_name="flag4d",
        **trainer_schedule(),
        pipeline=FlowGuidedPipelineConfig(
            datamanager=FourDFullImageDatamanagerConfig(dataparser=NerfiesDataParserConfig()),
            model=Flag4DModelConfig(**deformable_3dgs_schedule()),
        ),
        optimizers={**gaussian_optimizers(), "idn": network_optimizer(), "gmn": network_optimizer()},
    ),
    description="FLAG-4D (Tan et al. 2026): Gaussians deformed by an IDN and a flow-guided GMN with mutual learning.",
)
