"""``ns-train g3r`` and ``ns-train g3r-turbo``: G3R's learned optimizer on a driving log (``pandaset-data``).

``g3r`` runs the paper's T = 24 learned steps, ``g3r-turbo`` its 12; ``--pipeline.model.finetune-steps N`` adds N
iterations of per-scene optimisation (the run's length is set from these; `fourd_ns.engine.trainer`). Both need
``--pipeline.model.weights`` (a ``fourd-train-g3r`` run or checkpoint folder, or a hub id).
"""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.plugins.types import MethodSpecification

from fourd_ns.dataparsers.pandaset_dataparser import PandaSetDataParserConfig
from fourd_ns.datamanagers.full_image_datamanager import FourDFullImageDatamanagerConfig
from fourd_ns.engine.trainer import FourDTrainerConfig
from fourd_ns.models.g3r import G3RModelConfig
from fourd_ns.pipelines.g3r_pipeline import G3RPipelineConfig


def g3r_config(method_name: str, num_steps: int) -> FourDTrainerConfig:
    return FourDTrainerConfig(
        method_name=method_name,
        max_num_iterations=num_steps,
        steps_per_eval_image=10_000,
        steps_per_eval_batch=0,
        steps_per_save=1_000,
        steps_per_eval_all_images=100_000,
        save_only_latest_checkpoint=True,
        mixed_precision=False,
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
        pipeline=G3RPipelineConfig(
            datamanager=FourDFullImageDatamanagerConfig(dataparser=PandaSetDataParserConfig()),
            model=G3RModelConfig(num_steps=num_steps),
        ),
        optimizers={
            # lr 1 on offsets whose per-channel scale is the step size (fourd_ns.models.g3r); no decay
            "g3r_finetune": {"optimizer": AdamOptimizerConfig(lr=1.0, eps=1e-15), "scheduler": None},
        },
    )


g3r = MethodSpecification(
    config=g3r_config("g3r", 24),
    description="G3R (Chen et al. 2024): a learned optimizer refines 3D neural Gaussians of a driving log from "
    "rendering gradients in 24 steps; needs --pipeline.model.weights.",
)

g3r_turbo = MethodSpecification(
    config=g3r_config("g3r-turbo", 12),
    description="G3R turbo: 12 learned-optimizer steps.",
)
