"""Evaluation metrics against hand-computed values on constructed depth maps."""

import math

import pytest
import torch

from fastdepth.train.metrics import depth_errors, evaluate_image, median, scale_invariant_log_loss


def test_depth_errors_by_hand():
    gt = torch.tensor([1.0, 2.0, 4.0, 8.0])
    pred = torch.tensor([1.0, 2.5, 3.0, 8.0])
    m = depth_errors(gt, pred)
    assert m["abs_rel"] == pytest.approx((0 + 0.5 / 2 + 1 / 4 + 0) / 4)
    assert m["sq_rel"] == pytest.approx((0 + 0.25 / 2 + 1 / 4 + 0) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((0.25 + 1) / 4))
    assert m["rmse_log"] == pytest.approx(math.sqrt((math.log(2.5 / 2) ** 2 + math.log(3 / 4) ** 2) / 4))
    # max ratios: 1, 1.25, 1.333, 1 -> below 1.25 strictly: 2 of 4
    assert m["a1"] == pytest.approx(0.5) and m["a2"] == pytest.approx(1.0) and m["a3"] == pytest.approx(1.0)


def test_depth_error_thresholds_by_hand():
    # max(gt / pred, pred / gt): 1, 1.3 (< 1.25²), 1.7 (< 1.25³), 2.5, and 2 from a prediction half the truth
    gt = torch.ones(5)
    pred = torch.tensor([1.0, 1.3, 1.7, 2.5, 0.5])
    m = depth_errors(gt, pred)
    assert (m["a1"], m["a2"], m["a3"]) == pytest.approx((0.2, 0.4, 0.6))


def test_median_scaling_takes_numpys_median():
    # Monodepth2 scales by np.median, the mean of the two middle values of an even count: 5 / 3 here
    # (torch.median's lower middle values would give 4 / 2)
    gt, pred = torch.tensor([[2.0, 4.0, 6.0, 8.0]]), torch.tensor([[1.0, 2.0, 4.0, 10.0]])
    scaled = pred * 5 / 3
    expected = {**depth_errors(gt, scaled), "silog": scale_invariant_log_loss(gt, scaled)}
    assert evaluate_image(gt, pred) == pytest.approx(expected)
    assert median(torch.tensor([3.0, 1.0, 2.0])) == 2.0 and median(torch.tensor([4.0, 1.0, 3.0, 2.0])) == 2.5


def test_perfect_prediction():
    gt = torch.rand(100) * 50 + 1
    m = depth_errors(gt, gt.clone())
    assert m["abs_rel"] == 0 and m["rmse"] == 0 and m["a1"] == 1.0


def test_median_scaling_removes_scale():
    gt = torch.rand(1, 20, 30) * 40 + 2
    m = evaluate_image(gt[0], 0.1 * gt[0])
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-6) and m["silog"] == pytest.approx(0.0, abs=1e-10)


def test_scale_invariant_log_loss_by_hand():
    gt = torch.tensor([1.0, 1.0])
    pred = torch.tensor([math.e, 1.0])  # d = [1, 0]: mean(d²) = 0.5, mean(d)² = 0.25
    assert scale_invariant_log_loss(gt, pred) == pytest.approx(0.5 - 0.85 * 0.25)
    assert scale_invariant_log_loss(gt, 3 * gt, lam=1.0) == pytest.approx(0.0, abs=1e-12)


def test_evaluate_image_masks_invalid_ground_truth():
    gt = torch.tensor([[0.0, 2.0], [4.0, 100.0]])  # 0 and 100 are outside (1e-3, 80)
    pred = torch.tensor([[5.0, 2.0], [4.0, 1.0]])
    assert evaluate_image(gt, pred)["abs_rel"] == pytest.approx(0.0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="positive"):
        depth_errors(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="equal size"):
        depth_errors(torch.tensor([1.0]), torch.tensor([1.0, 2.0]))
