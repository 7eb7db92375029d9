"""Equal supervision for the flag4d-vs-deform4d comparison: deform4d's optional Eq. 9 depth term (the one flag4d
trains with, in the shared base class), and the dynamic-region PSNR that ns-eval reports for both methods (pooled
over the masked pixels of every evaluation image; images with an empty mask add nothing)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from conftest import reduced_config, train_steps
from method_registry import registered_methods
from nerfstudio.utils.eval_utils import eval_setup

from fourd_ns.metrics.masked_psnr import MaskedSquaredError, masked_squared_error, pooled_psnr


# ---------------------------------------------------------------- pooled masked PSNR, by hand


def test_masked_squared_error_and_pooled_psnr_of_a_hand_computed_example() -> None:
    truth = torch.zeros(2, 2, 3)
    predicted = torch.zeros(2, 2, 3)
    predicted[0, 0] = 0.1  # squared error 0.01 on each channel: pixel error 0.01
    predicted[1, 0] = 1.0  # outside the mask
    predicted[1, 1, 0] = 0.3  # 0.09 on one channel: pixel error 0.03
    mask = torch.tensor([[True, True], [False, True]])
    region = masked_squared_error(predicted, truth, mask)
    assert region.pixels == 3 and region.squared_error_sum == pytest.approx(0.04)
    assert pooled_psnr(region.squared_error_sum, region.pixels) == pytest.approx(10.0 * math.log10(3 / 0.04))
    assert masked_squared_error(predicted, truth, torch.zeros(2, 2, dtype=torch.bool)) == MaskedSquaredError(0.0, 0)
    assert math.isnan(pooled_psnr(0.0, 0))
    assert pooled_psnr(0.0, 3) == math.inf
    with pytest.raises(ValueError, match="mask"):
        masked_squared_error(predicted, truth, torch.ones(3, 2, dtype=torch.bool))


def test_pooling_weights_every_pixel_not_every_image() -> None:
    # image A: 1 dynamic pixel with squared error 0.1; image B: 9 pixels with 0.001; image C: an empty mask
    sums, counts = [0.1, 9 * 0.001, 0.0], [1, 9, 0]
    pooled = pooled_psnr(sum(sums), sum(counts))
    assert pooled == pytest.approx(10.0 * math.log10(10 / 0.109))  # 19.62 dB
    # ns-eval averages per-image values; the ratio of the means is the pooled MSE, the empty image changes nothing
    assert pooled_psnr(np.mean(sums), np.mean(counts)) == pytest.approx(pooled)
    mean_of_psnrs = np.mean([pooled_psnr(0.1, 1), pooled_psnr(9 * 0.001, 9)])  # 10 and 30 dB: another number
    assert abs(mean_of_psnrs - pooled) > 0.3


# ---------------------------------------------------------------- deform4d with flag4d's depth term


def _deform4d_trainer(scene: Path, output_dir: Path, iterations: int, **model_overrides):
    cfg = reduced_config(registered_methods()["deform4d"].config, scene, output_dir, iterations=iterations)
    for name, value in model_overrides.items():
        setattr(cfg.pipeline.model, name, value)
    cfg.save_config()
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    return cfg, trainer


@pytest.mark.parametrize("depth_weight", [1.0, 0.0])
def test_deform4d_trains_with_the_depth_term_only_when_asked(
    depth_weight: float, tiny_scene: Path, tmp_path: Path
) -> None:
    _, trainer = _deform4d_trainer(tiny_scene, tmp_path / "outputs", 3, depth_weight=depth_weight)
    model = trainer.pipeline.model
    assert model.uses_depth_prior == (depth_weight > 0)
    assert model.renders_depth_in_training() == (depth_weight > 0)
    losses = train_steps(trainer, range(3))
    # static_warmup_steps is 1 in the reduced config: step 0 is static (no depth term, as flag4d), then it is on
    assert "depth_loss" not in losses[0]
    for step_losses in losses[1:]:
        assert ("depth_loss" in step_losses) == (depth_weight > 0)
        if depth_weight > 0:
            assert math.isfinite(step_losses["depth_loss"]) and step_losses["depth_loss"] > 0


def test_deform4d_default_has_no_depth_term_and_flag4d_keeps_it() -> None:
    assert registered_methods()["deform4d"].config.pipeline.model.depth_weight == 0.0
    assert registered_methods()["flag4d"].config.pipeline.model.depth_weight == 1.0


# ---------------------------------------------------------------- dynamic-region PSNR in ns-eval


def test_ns_eval_reports_pooled_dynamic_psnr_and_empty_masks_add_nothing(tiny_scene: Path, tmp_path: Path) -> None:
    scene = tmp_path / "scene"
    shutil.copytree(tiny_scene, scene)
    right = sorted((scene / "dynamic_mask" / "1x").glob("right_*.png"))
    for path in right[::2]:  # half the test views see no moving object
        imageio.imwrite(path, np.zeros_like(imageio.imread(path)))
    cfg, trainer = _deform4d_trainer(scene, tmp_path / "outputs", 3)
    datamanager = trainer.pipeline.datamanager
    assert "dynamic_mask" not in datamanager.cached_train[0]  # training never sees the masks
    assert datamanager.cached_eval[1]["dynamic_mask"].any() and not datamanager.cached_eval[0]["dynamic_mask"].any()
    train_steps(trainer, range(3))
    trainer.save_checkpoint(2)

    _, pipeline, _, _ = eval_setup(cfg.get_base_dir() / "config.yml", test_mode="test")
    metrics = pipeline.get_average_eval_image_metrics(output_path=None, get_std=True)
    assert math.isfinite(metrics["dynamic_psnr"]) and math.isfinite(metrics["psnr"])

    # the same number from the per-image values, pooled by hand
    sums, counts = [], []
    model = pipeline.model
    pipeline.eval()  # get_average_eval_image_metrics puts the pipeline back into training mode
    for camera, batch in pipeline.datamanager.fixed_indices_eval_dataloader:
        outputs = model.get_outputs_for_camera(camera)
        per_image, _ = model.get_image_metrics_and_images(outputs, batch)
        mask = batch["dynamic_mask"]
        gt = model.composite_with_background(model.get_gt_img(batch["image"]), outputs["background"])
        error = ((outputs["rgb"].double() - gt.double()) ** 2).mean(dim=-1)[mask].sum()
        assert per_image["dynamic_squared_error"] == pytest.approx(float(error))
        assert per_image["dynamic_pixels"] == float(mask.sum())
        sums.append(float(error))
        counts.append(int(mask.sum()))
    assert 0 in counts and min(c for c in counts if c) > 0
    assert metrics["dynamic_psnr"] == pytest.approx(10.0 * math.log10(sum(counts) / sum(sums)), rel=1e-5)
