"""LPIPS that never downloads: built on first use from locally present weights, or reported as unavailable.

torchmetrics' ``LearnedPerceptualImagePatchSimilarity`` downloads torchvision's ImageNet backbone weights when it
is constructed, which kills model set-up on a machine without internet. Here the backbone file is looked up in
torch's hub cache (``$TORCH_HOME/hub/checkpoints``, the place torchvision itself would download it to); when it is
absent the metric is unavailable, one warning says where to put the file, and no other weights are substituted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio.utils.rich_utils import CONSOLE

BackboneName = Literal["alex", "vgg", "squeeze"]
_WARNED: set = set()
"""Reasons already printed in this process: one warning per missing file, however many models are built."""


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        CONSOLE.print(f"[bold yellow]{message}")


def backbone_weights_path(net_type: BackboneName) -> Path:
    """Where torchvision keeps the ImageNet weights of the LPIPS backbone ``net_type``."""
    from torchvision import models

    weights = {
        "alex": models.AlexNet_Weights.IMAGENET1K_V1,
        "vgg": models.VGG16_Weights.IMAGENET1K_V1,
        "squeeze": models.SqueezeNet1_1_Weights.IMAGENET1K_V1,
    }[net_type]
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


class LazyLPIPS:
    """Callable LPIPS metric on images in [0, 1]; returns ``None`` when the backbone weights are not available."""

    def __init__(self, net_type: BackboneName = "alex") -> None:
        self.net_type = net_type
        self._metric: Optional[torch.nn.Module] = None
        self._unavailable_reason: Optional[str] = None

    @property
    def available(self) -> bool:
        return self._load() is not None

    @property
    def unavailable_reason(self) -> Optional[str]:
        self._load()
        return self._unavailable_reason

    def _load(self) -> Optional[torch.nn.Module]:
        if self._metric is not None or self._unavailable_reason is not None:
            return self._metric
        path = backbone_weights_path(self.net_type)
        if not path.is_file():
            self._unavailable_reason = f"backbone weights not found at {path}"
            _warn_once(
                f"LPIPS ({self.net_type}) is unavailable: {path} does not exist and weights are never "
                f"downloaded. Copy that file there (or set TORCH_HOME) to get LPIPS; PSNR and SSIM are unaffected."
            )
            return None
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        try:
            self._metric = LearnedPerceptualImagePatchSimilarity(net_type=self.net_type, normalize=True)
        except Exception as error:  # a truncated or wrong file: say so once and keep training/evaluating
            self._unavailable_reason = f"could not load {path}: {error}"
            _warn_once(f"LPIPS ({self.net_type}) is unavailable: {self._unavailable_reason}")
            return None
        return self._metric

    def __call__(
        self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]
    ) -> Optional[Float[Tensor, ""]]:
        metric = self._load()
        if metric is None:
            return None
        metric = metric.to(prediction.device)
        return metric(prediction.clamp(0, 1), target.clamp(0, 1))
