"""nerfstudio's ``FullImageDatamanager`` without the CPU-only crash.

With more than 500 training images nerfstudio switches its image cache to ``"cpu"``, which calls
``Tensor.pin_memory()``; on a CUDA build of torch without a driver that raises "Found no NVIDIA driver". When the
datamanager's device is the CPU the images already live in host memory, so we cache them on ``self.device`` instead
and skip pinning; on CUDA the upstream behaviour is unchanged.

Its dataset is :class:`~fourd_ns.datasets.depth_prior_dataset.DepthPriorDataset`: batches carry ``depth_image`` when
the dataparser lists depth files (FLAG-4D's depth term), and nothing extra otherwise. The evaluation dataset also
loads the dataparser's dynamic-region masks (``dynamic_mask``, for the dynamic-region PSNR); the training one does
not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Literal, Type

import torch

from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig

from fourd_ns.datasets.depth_prior_dataset import DepthPriorDataset


class FourDFullImageDatamanager(FullImageDatamanager[DepthPriorDataset]):
    """Full-image datamanager that never pins memory on the CPU and passes the dataset's depth maps along."""

    def _load_images(
        self, split: Literal["train", "eval"], cache_images_device: Literal["cpu", "gpu"]
    ) -> List[Dict[str, torch.Tensor]]:
        if torch.device(self.device).type == "cpu":
            cache_images_device = "gpu"  # nerfstudio's "gpu" means "on self.device", here the CPU: no pinning
        return super()._load_images(split, cache_images_device)

    def create_eval_dataset(self) -> DepthPriorDataset:
        return self.dataset_type(
            dataparser_outputs=self.dataparser.get_dataparser_outputs(split=self.test_split),
            scale_factor=self.config.camera_res_scale_factor,
            load_dynamic_masks=True,
        )


@dataclass
class FourDFullImageDatamanagerConfig(FullImageDatamanagerConfig):
    _target: Type = field(default_factory=lambda: FourDFullImageDatamanager)
    cache_images_type: Literal["uint8", "float32"] = "uint8"
    """Cache images as uint8 (4x less memory than float32, as splatfacto does)."""
