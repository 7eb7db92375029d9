"""Evaluation shared by the fourd_ns Gaussian models (deform4d, flag4d, g3r): image metrics and LiDAR depth
errors on a rendered view, and the export time that `ns-export` writes.

A mixin for nerfstudio ``SplatfactoModel`` subclasses: it uses their ``psnr`` / ``ssim`` / ``lpips_metric``
(`fourd_ns.metrics.lpips.LazyLPIPS`, None without local weights), ``get_gt_img`` and ``composite_with_background``.
With driving LiDAR in the batch (``lidar_depth``, see `fourd_ns.datasets.depth_prior_dataset`) evaluation reports
``lidar_depth_rmse_m`` / ``lidar_depth_mae_m`` (metres) and ``lidar_depth_absrel`` of the rendered depth (NaN for an
image without returns). The rendered ``depth`` is the alpha-normalised blend of the Gaussians' camera-space z, in
scene units, the same quantity as `fourd_ns.sensors.lidar_projection`'s depth maps.

With a dynamic-region mask in the batch (``dynamic_mask``: the synthetic scenes' moving objects, loaded for
evaluation images only, see `fourd_ns.datasets.depth_prior_dataset`) each image also reports
``dynamic_squared_error`` (the squared error summed over its dynamic pixels) and ``dynamic_pixels`` (their count),
the names flux4d uses. ns-eval averages them over the images; the pipeline
(`fourd_ns.pipelines.initialized_pipeline`) turns the two means into ``dynamic_psnr``, the PSNR *pooled* over every
dynamic pixel of the evaluation set (`fourd_ns.metrics.masked_psnr` says why not the mean of per-image PSNRs). An
image whose mask is empty adds nothing, so it cannot put inf or NaN into the result.
"""

from __future__ import annotations

import math
import os
from typing import Dict, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from fourd_ns.metrics.depth import depth_errors
from fourd_ns.metrics.masked_psnr import masked_squared_error
from fourd_ns.sensors.lidar_projection import downscale_sparse_depth

EXPORT_TIME_ENV = "FOURD_EXPORT_TIME"


def chosen_export_time(configured: Optional[float]) -> Optional[float]:
    """The time `ns-export` should write: FOURD_EXPORT_TIME, else ``configured`` (a model's export_time), else None."""
    value = os.environ.get(EXPORT_TIME_ENV)
    if value is None:
        return configured
    try:
        time = float(value)
    except ValueError as error:
        raise ValueError(f"{EXPORT_TIME_ENV}={value!r} is not a number; give a time in [0, 1]") from error
    if not (0.0 <= time <= 1.0) or math.isnan(time):
        raise ValueError(f"{EXPORT_TIME_ENV}={value!r} is outside [0, 1]")
    return time


class GaussianImageMetrics:
    """``get_image_metrics_and_images`` with LiDAR depth errors, and the LiDAR target at the render's size."""

    def get_image_metrics_and_images(
        self, outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]
    ) -> tuple[Dict[str, float], Dict[str, torch.Tensor]]:
        gt_rgb = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
        predicted_rgb = outputs["rgb"]
        combined = torch.cat([gt_rgb, predicted_rgb], dim=1)
        gt = torch.moveaxis(gt_rgb, -1, 0)[None]
        pred = torch.moveaxis(predicted_rgb, -1, 0)[None]
        metrics = {"psnr": float(self.psnr(gt, pred).item()), "ssim": float(self.ssim(gt, pred).item())}
        lpips = self.lpips_metric(pred, gt)
        if lpips is not None:
            metrics["lpips"] = float(lpips.item())
        if "dynamic_mask" in batch:
            mask = batch["dynamic_mask"]
            if tuple(mask.shape[:2]) != tuple(predicted_rgb.shape[:2]):
                raise ValueError(
                    f"The dynamic mask ({tuple(mask.shape[:2])}) and the render ({tuple(predicted_rgb.shape[:2])}) "
                    "differ in size: masks are not undistorted, so dynamic-region PSNR needs undistorted cameras "
                    "(or nerfies-data --load-masks False to skip it)."
                )
            region = masked_squared_error(predicted_rgb, gt_rgb, mask.reshape(mask.shape[:2]))
            metrics["dynamic_squared_error"] = region.squared_error_sum
            metrics["dynamic_pixels"] = float(region.pixels)
        images = {"img": combined}
        if outputs.get("depth") is not None:
            from nerfstudio.utils import colormaps

            images["depth"] = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
            if "lidar_depth" in batch:
                lidar = self.lidar_depth_target(outputs["depth"], batch)
                errors = depth_errors(outputs["depth"][..., 0], lidar)
                metres = float(batch["metres_per_unit"]) if "metres_per_unit" in batch else 1.0
                metrics["lidar_depth_rmse_m"] = float(errors["rmse"]) * metres
                metrics["lidar_depth_mae_m"] = float(errors["mae"]) * metres
                metrics["lidar_depth_absrel"] = float(errors["absrel"])
                # LiDAR returns (white where none) next to the rendered depth, on one colour scale
                returns = (lidar > 0)[..., None]
                near, far = (float(lidar[lidar > 0].min()), float(lidar.max())) if returns.any() else (None, None)
                images["lidar_depth"] = torch.cat(
                    [
                        colormaps.apply_depth_colormap(lidar[..., None], returns.float(), near, far),
                        colormaps.apply_depth_colormap(outputs["depth"], outputs["accumulation"], near, far),
                    ],
                    dim=1,
                )
        return metrics, images

    def lidar_depth_target(self, depth: Float[Tensor, "H W 1"], batch: Dict[str, Tensor]) -> Float[Tensor, "H W"]:
        """The batch's LiDAR depth (0 = no return) on the device and at the resolution of the rendered ``depth``."""
        lidar = batch["lidar_depth"][..., 0].to(depth)
        factor = lidar.shape[0] // depth.shape[0]
        if factor > 1:
            lidar = downscale_sparse_depth(lidar, factor)  # coarse-to-fine training renders at 1/2^d
        if lidar.shape != depth.shape[:2]:
            raise ValueError(f"LiDAR depth {tuple(lidar.shape)} does not match rendered depth {tuple(depth.shape)}")
        return lidar

    def lidar_depth_l1(self, depth: Float[Tensor, "H W 1"], batch: Dict[str, Tensor]) -> Tensor:
        """Mean |rendered − LiDAR depth| (scene units) over the pixels with a return (0 without any)."""
        lidar = self.lidar_depth_target(depth, batch)
        returns = lidar > 0
        error = (depth[..., 0][returns] - lidar[returns]).abs()
        return error.mean() if error.numel() else depth.sum() * 0.0
