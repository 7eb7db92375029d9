"""``ns-train flux4d``: Flux4D's feed-forward 4D reconstruction of a driving clip (``pandaset-data``).

Use the Flux4D protocol splits of ``pandaset-data`` (``--split-mode flux4d-interpolation`` or ``flux4d-future``).
Iteration 0 is the prediction, the next ones the refinement iterations the weights were trained with, then
``--pipeline.model.finetune-steps N`` iterations of per-scene optimisation (the run's length is set from these;
`fourd_ns.engine.trainer`). Needs ``--pipeline.model.weights`` (a ``fourd-train-flux4d`` run or checkpoint folder,
or a hub id).
"""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.plugins.types import MethodSpecification

from fourd_ns.dataparsers.pandaset_dataparser import PandaSetDataParserConfig
from fourd_ns.datamanagers.full_image_datamanager import FourDFullImageDatamanagerConfig
from fourd_ns.engine.trainer import FourDTrainerConfig
from fourd_ns.models.flux4d import Flux4DModelConfig
from fourd_ns.pipelines.flux4d_pipeline import Flux4DPipelineConfig


def flux4d_config() -> FourDTrainerConfig:
    return FourDTrainerConfig(
        method_name="flux4d",
        max_num_iterations=1,
        steps_per_eval_image=10_000,
        steps_per_eval_batch=0,
        steps_per_save=1_000,
        steps_per_eval_all_images=100_000,
        save_only_latest_checkpoint=True,
        mixed_precision=False,
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
        pipeline=Flux4DPipelineConfig(
            datamanager=FourDFullImageDatamanagerConfig(
                dataparser=PandaSetDataParserConfig(split_mode="flux4d-interpolation")
            ),
            model=Flux4DModelConfig(),
        ),
        optimizers={
            # lr 1 on offsets whose per-channel scale is the step size (fourd_ns.models.g3r); no decay
            "g3r_finetune": {"optimizer": AdamOptimizerConfig(lr=1.0, eps=1e-15), "scheduler": None},
        },
    )


flux4d = MethodSpecification(
    config=flux4d_config(),
    description="Flux4D (Wang et al. 2025): unsupervised feed-forward 4D driving reconstruction, LiDAR-lifted "
    "Gaussians with velocities; needs --pipeline.model.weights.",
)
