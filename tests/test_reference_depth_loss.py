"""The supervised depth losses' reference against float64 formulas, the worked examples, degenerate
images and gradients through the alignment."""

import math

import pytest
import torch

from fastdepth.reference import depth_loss


def depths(seed, shape=(2, 1, 6, 7)):
    gen = torch.Generator().manual_seed(seed)
    return 1.0 + 20.0 * torch.rand(shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("factor", [2.0, 1.5])
def test_worked_example_a_scaled_prediction(factor, seed):
    # perfect shape, wrong scale: free with lam = 1, while the plain squared log loss charges log(factor)²
    gt = depths(seed)
    loss = depth_loss.scale_invariant_loss(factor * gt, gt, lam=1.0)
    assert abs(loss.item()) <= 1e-12
    plain = depth_loss.scale_invariant_loss(factor * gt, gt, lam=0.0)
    assert plain.item() == pytest.approx(math.log(factor) ** 2, rel=1e-12)  # 0.48 for 2x, 0.16 for 1.5x


def test_scale_invariant_matches_the_formula(seed):
    pred, gt = depths(seed), depths(seed + 1)
    mask = torch.rand(gt.shape, generator=torch.Generator().manual_seed(seed)) > 0.3
    loss = depth_loss.scale_invariant_loss(pred, gt, mask, lam=0.85)
    expected = []
    for b in range(2):
        d = pred[b][mask[b]].log() - gt[b][mask[b]].log()
        expected.append((d * d).mean() - 0.85 * d.mean() ** 2)
    assert abs(loss.item() - sum(expected).item() / 2) <= 1e-10
    pooled = depth_loss.scale_invariant_loss(pred, gt, mask, lam=0.85, reduction="batch")
    d = pred[mask].log() - gt[mask].log()
    assert abs(pooled.item() - ((d * d).mean() - 0.85 * d.mean() ** 2).item()) <= 1e-10


@pytest.mark.parametrize("space", ["depth", "disparity"])
def test_scale_shift_recovers_an_affine_prediction(space, seed):
    gt = depths(seed)
    t = gt if space == "depth" else 1.0 / gt
    pred = (t - 0.3) / 2.5  # a = 2.5, b = 0.3 aligns it exactly
    a, b, _ = depth_loss.align(pred, gt, space=space)
    assert torch.allclose(a, torch.full_like(a, 2.5)) and torch.allclose(b, torch.full_like(b, 0.3))
    for residual in ("l1", "l2"):
        assert depth_loss.scale_shift_invariant_loss(pred, gt, space=space, residual=residual).item() <= 1e-10


def test_scale_shift_gradient_through_the_alignment(seed):
    pred = depths(seed).requires_grad_()
    gt = depths(seed + 1)
    mask = gt > 5
    assert torch.autograd.gradcheck(
        lambda p: depth_loss.scale_shift_invariant_loss(p, gt, mask, residual="l2"), (pred,)
    )


def test_degenerate_images_are_defined(seed):
    gt = depths(seed)
    mask = torch.ones_like(gt, dtype=torch.bool)
    mask[1] = False  # no valid pixel in the second image
    constant = torch.full_like(gt, 3.0, requires_grad=True)  # a constant prediction
    for loss in (
        depth_loss.scale_shift_invariant_loss(constant, gt, mask),
        depth_loss.scale_invariant_loss(constant, gt, mask),
    ):
        assert torch.isfinite(loss)
        (g,) = torch.autograd.grad(loss, constant)
        assert torch.isfinite(g).all() and (g[1] == 0).all()
    # only the valid image counts: the same as the first image alone
    alone = depth_loss.scale_shift_invariant_loss(constant[:1], gt[:1])
    assert depth_loss.scale_shift_invariant_loss(constant, gt, mask).item() == pytest.approx(alone.item())


@pytest.mark.parametrize("loss", ["si", "ssi"])
def test_invalid_pixels_reach_neither_sums_nor_gradients(loss, seed):
    # NaN predictions and inf ground truth where there is no valid pixel: the same loss as without
    pred, gt = depths(seed), depths(seed + 1)
    gt[0, 0, 0, :3] = float("inf")
    gt[1, 0, 2, :] = 0.0
    invalid = ~((gt > 0) & torch.isfinite(gt))
    fn = depth_loss.scale_invariant_loss if loss == "si" else depth_loss.scale_shift_invariant_loss
    garbage = torch.where(invalid, float("nan"), pred).requires_grad_()
    clean = torch.where(invalid, 1.0, pred).requires_grad_()
    values = [fn(p, gt) for p in (garbage, clean)]
    assert torch.isfinite(values[0]) and values[0].item() == values[1].item()
    (g,) = torch.autograd.grad(values[0], garbage)
    assert torch.isfinite(g).all() and (g[invalid] == 0).all()
