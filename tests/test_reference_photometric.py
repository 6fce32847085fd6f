"""The reference photometric loss against Monodepth2's formulas, fp64 gradcheck, and the
min-reprojection rules (minimum, ties, auto-mask, gradient routing)."""

import pytest
import torch
from fastdepth.benchmarks import monodepth2
from helpers import grads, leaves, max_abs

from fastdepth.compare import assert_close
from fastdepth.reference import photometric as reference
from fastdepth.scenes import natural_images
from fastdepth.tolerances import tolerance


def image_pair(shape, seed, dtype, contrast=1.0):
    B, C, H, W = shape
    target = natural_images(B, C, H, W, seed=seed, dtype=dtype, contrast=contrast)
    pred = (target + 0.1 * contrast * torch.randn(target.shape, dtype=dtype)).clamp(0, 1)
    return pred, target


SHAPES = [(2, 3, 12, 16), (1, 1, 2, 2), (1, 3, 5, 2), (2, 5, 7, 9)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("alpha", [0.85, 0.0, 1.0])
def test_matches_monodepth2_float64(shape, alpha, seed):
    pred, target = leaves(*image_pair(shape, seed, torch.float64))
    ours = reference.photometric_loss(pred, target, alpha)
    theirs = monodepth2.reprojection_loss(pred, target, alpha)
    assert ours.shape == (shape[0], 1, *shape[2:])
    assert max_abs(ours, theirs) <= 1e-10
    g = torch.randn_like(ours)
    for a, b in zip(grads(ours, [pred, target], g), grads(theirs, [pred, target], g), strict=True):
        assert max_abs(a, b) <= 1e-10


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_monodepth2_float32_natural_contrast(shape, seed):
    pred, target = image_pair(shape, seed, torch.float32)
    pred, target = leaves(pred, target)
    pred64, target64 = leaves(pred, target, dtype=torch.float64)
    ours = reference.photometric_loss(pred, target)
    theirs = monodepth2.reprojection_loss(pred64, target64)
    tol = tolerance("photometric", torch.float32, "torch", "cpu")
    assert_close(ours, theirs, abs_tol=tol.forward, name="loss")
    g = torch.randn_like(theirs)
    for a, b in zip(grads(ours, [pred, target], g), grads(theirs, [pred64, target64], g), strict=True):
        assert_close(a, b, rel_tol=tol.gradient, name="gradient")


def test_float32_low_contrast_cancellation_is_bounded(seed):
    # E[x²] - E[x]² cancels on low-contrast patches: measured worst case over 10 seeds at
    # contrast 0.01 is 4.8e-5 abs in the forward (the float64 formulas as truth)
    pred, target = image_pair((2, 3, 32, 32), seed, torch.float32, contrast=0.01)
    ours = reference.photometric_loss(pred, target)
    truth = monodepth2.reprojection_loss(pred.double(), target.double())
    assert max_abs(ours, truth) <= 2e-4


@pytest.mark.parametrize("shape", [(1, 2, 4, 5), (1, 1, 2, 3)], ids=str)
def test_gradcheck(shape, seed):
    pred, target = leaves(*image_pair(shape, seed, torch.float64))
    assert torch.autograd.gradcheck(lambda p, t: reference.photometric_loss(p, t), (pred, target))


def candidates(seed, B=2, S=2, S_id=2, C=3, H=6, W=7, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(B, C, H, W, generator=gen, dtype=dtype)
    warped = torch.rand(B, S, C, H, W, generator=gen, dtype=dtype)
    identity = torch.rand(B, S_id, C, H, W, generator=gen, dtype=dtype)
    return target, warped, identity


def test_min_reprojection_is_the_minimum_of_the_maps(seed):
    target, warped, identity = candidates(seed)
    loss, index, automask = reference.min_reprojection_loss(target, warped, identity)
    maps = torch.cat(
        [reference.photometric_loss(identity[:, s], target) for s in range(2)]
        + [reference.photometric_loss(warped[:, s], target) for s in range(2)],
        dim=1,
    )
    assert torch.equal(loss, maps.min(1, keepdim=True).values)
    assert torch.equal(index, maps.argmin(1, keepdim=True))
    assert torch.equal(automask, index >= 2)
    assert index.dtype == torch.int64 and automask.dtype == torch.bool
    assert 0 < automask.sum() < automask.numel()


def test_min_reprojection_without_identity(seed):
    target, warped, _ = candidates(seed)
    loss, index, automask = reference.min_reprojection_loss(target, warped)
    assert automask.all() and index.max() <= 1


def test_ties_go_to_the_lowest_index(seed):
    target, warped, _ = candidates(seed)
    identity = warped.flip(1).clone()  # identity 0 == warped 1, identity 1 == warped 0
    _, index, automask = reference.min_reprojection_loss(target, warped, identity)
    assert index.max() <= 1 and not automask.any()
    _, index, _ = reference.min_reprojection_loss(target, torch.stack([warped[:, 0], warped[:, 0]], 1))
    assert (index == 0).all()


def test_gradient_reaches_only_the_winner(seed):
    target, warped, identity = leaves(*candidates(seed))
    loss, index, _ = reference.min_reprojection_loss(target, warped, identity)
    loss.sum().backward()
    for s in range(2):
        # a candidate's pixel can get gradient only from windows whose winner it is
        won = torch.nn.functional.max_pool2d((index == 2 + s).double(), 3, 1, 1) > 0
        assert torch.all(warped.grad[:, s][~won.expand_as(warped.grad[:, s])] == 0)
        assert warped.grad[:, s].abs().sum() > 0
