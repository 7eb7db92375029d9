"""PSNR over a region of pixels (a mask), pooled correctly over many images.

nerfstudio's ``ns-eval`` reports the mean over the evaluation images of each per-image metric. For a region that
covers a different number of pixels in every image (the moving objects of a dynamic scene) the mean of per-image
PSNRs is not the PSNR of the region: it weights a 10-pixel sliver like a half-image object, and an image whose
region is empty has no PSNR at all (NaN would poison the mean). So a model reports, per image, the squared error
summed over the region's pixels and the number of those pixels (`masked_squared_error`); their means over the
images have the same ratio as their totals, and `pooled_psnr` turns that ratio into the PSNR of all region pixels
of all images together. An image with an empty region adds 0 to both.

The squared error of a pixel is the mean over its channels, so ``squared_error_sum / pixels`` is the mean over the
region's pixels × channels, the MSE of nerfstudio's (torchmetrics') PSNR restricted to the region. Data range 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor


@dataclass(frozen=True)
class MaskedSquaredError:
    """The squared error of one image over a region: ``squared_error_sum`` (Σ over the region's pixels of the
    channel-mean squared error) and ``pixels`` (how many pixels the region has)."""

    squared_error_sum: float
    pixels: int


def masked_squared_error(
    predicted: Float[Tensor, "H W C"], truth: Float[Tensor, "H W C"], mask: Bool[Tensor, "H W"]
) -> MaskedSquaredError:
    """Squared error of ``predicted`` against ``truth`` summed over the pixels where ``mask`` is True (float64
    accumulation), and their count; ``(0, 0)`` for an empty mask."""
    if predicted.shape != truth.shape or predicted.ndim != 3:
        raise ValueError(
            f"masked_squared_error: predicted image {tuple(predicted.shape)} and true image {tuple(truth.shape)} "
            "must both be [H, W, C]"
        )
    if mask.shape != predicted.shape[:2]:
        raise ValueError(
            f"masked_squared_error: mask {tuple(mask.shape)} does not match the images' {tuple(truth.shape[:2])}"
        )
    mask = mask.to(predicted.device, torch.bool)
    pixels = int(mask.sum())
    if pixels == 0:
        return MaskedSquaredError(0.0, 0)
    error = (predicted[mask].double() - truth[mask].double()).square().mean(dim=-1).sum()
    return MaskedSquaredError(float(error), pixels)


def pooled_psnr(squared_error_sum: float, pixels: float) -> float:
    """PSNR (data range 1) of a region from its squared-error sum and pixel count (or from their means over the
    same images): ``10 log10(pixels / squared_error_sum)``; NaN without pixels, inf for a perfect match."""
    if not pixels > 0:
        return math.nan
    mse = squared_error_sum / pixels
    return math.inf if mse == 0 else -10.0 * math.log10(mse)
