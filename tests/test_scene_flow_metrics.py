"""Scene-flow metrics (EPE3D, Acc5, Acc10, angle error, moving / static EPE) on small hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from fourd_ns.metrics.scene_flow import SceneFlowAccumulator, scene_flow_metrics

# Five points; |truth| > 0.1 (moving): points 1, 2, 4.
TRUTH = torch.tensor(
    [
        [0.0, 0.0, 0.0],  # static, exactly zero
        [1.0, 0.0, 0.0],  # moving
        [0.0, 2.0, 0.0],  # moving
        [0.05, 0.0, 0.0],  # static (|truth| = 0.05 <= 0.1)
        [0.0, 0.0, 3.0],  # moving
    ]
)
PREDICTED = torch.tensor(
    [
        [0.036, 0.0, 0.048],  # error 0.06: fails acc5 (zero truth: no relative test), passes acc10
        [1.0, 0.08, 0.0],  # error 0.08 (8 %): fails acc5, passes acc10; angle atan(0.08)
        [0.0, 0.0, 0.0],  # error 2: fails both; zero prediction of a moving point: 90°
        [0.05, 0.01, 0.0],  # error 0.01: passes both
        [0.0, 0.0, 3.12],  # error 0.12 but 4 % relative: passes both through the relative test; angle 0
    ]
)


def test_metrics_of_five_hand_computed_points():
    metrics = scene_flow_metrics(PREDICTED, TRUTH)
    errors = [0.06, 0.08, 2.0, 0.01, 0.12]
    assert metrics["num_points"] == 5
    assert metrics["epe3d"] == pytest.approx(sum(errors) / 5)  # 0.454
    assert metrics["acc5"] == pytest.approx(2 / 5)  # points 3, 4
    assert metrics["acc10"] == pytest.approx(4 / 5)  # all but point 2
    assert metrics["angle_error_deg"] == pytest.approx((math.degrees(math.atan(0.08)) + 90.0 + 0.0) / 3)
    assert metrics["epe3d_moving"] == pytest.approx((0.08 + 2.0 + 0.12) / 3)
    assert metrics["epe3d_static"] == pytest.approx((0.06 + 0.01) / 2)


def test_moving_threshold_moves_points_between_the_groups():
    # With a threshold of 1.5 only points 2 (|truth| = 2) and 4 (3) are moving.
    metrics = scene_flow_metrics(PREDICTED, TRUTH, moving_threshold=1.5)
    assert metrics["angle_error_deg"] == pytest.approx(45.0)
    assert metrics["epe3d_moving"] == pytest.approx((2.0 + 0.12) / 2)
    assert metrics["epe3d_static"] == pytest.approx((0.06 + 0.08 + 0.01) / 3)
    assert metrics["epe3d"] == pytest.approx(0.454)


def test_opposite_prediction_is_180_degrees_and_no_moving_point_gives_nan():
    truth = torch.tensor([[0.0, 0.5, 0.0]])
    metrics = scene_flow_metrics(-truth, truth)
    assert metrics["angle_error_deg"] == pytest.approx(180.0)
    assert metrics["epe3d"] == pytest.approx(1.0) and math.isnan(metrics["epe3d_static"])
    static = scene_flow_metrics(torch.zeros(2, 3), torch.zeros(2, 3))
    assert math.isnan(static["angle_error_deg"]) and math.isnan(static["epe3d_moving"])
    assert static["epe3d"] == 0.0 and static["epe3d_static"] == 0.0
    assert static["acc5"] == 1.0 and static["acc10"] == 1.0  # zero error passes the absolute test


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="empty"):
        scene_flow_metrics(torch.zeros(0, 3), torch.zeros(0, 3))
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        scene_flow_metrics(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="moving_threshold"):
        scene_flow_metrics(PREDICTED, TRUTH, moving_threshold=-1.0)
    with pytest.raises(ValueError, match="no points"):
        SceneFlowAccumulator().metrics()


def test_accumulator_equals_one_call_on_the_concatenation():
    generator = torch.Generator().manual_seed(0)
    truth = torch.randn(50, 3, generator=generator) * 0.3
    truth[::4] = 0.0
    predicted = truth + torch.randn(50, 3, generator=generator) * 0.05
    predicted[::7] = 0.0
    accumulator = SceneFlowAccumulator(moving_threshold=0.2)
    for start, stop in ((0, 17), (17, 17), (17, 40), (40, 50)):  # an empty batch in the middle
        accumulator.add(predicted[start:stop], truth[start:stop])
    assert accumulator.num_points == 50
    expected = scene_flow_metrics(predicted, truth, moving_threshold=0.2)
    assert accumulator.metrics() == expected
    assert expected["num_points"] == 50 and 0.0 < expected["acc5"] < expected["acc10"] <= 1.0
