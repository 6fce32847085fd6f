"""Correctness cases of the supervised depth losses (see :mod:`fastdepth.checks`): the loss and its
gradient to the prediction against the float64 reference, with missing ground truth and a mask."""

from __future__ import annotations

import torch

import fastdepth
from fastdepth.checks.case import KINK_TOL, CaseResult, gradient_error, grads, leaves
from fastdepth.compare import max_rel
from fastdepth.reference import depth_loss as reference
from fastdepth.tolerances import tolerance

#: name -> (loss function, options)
OPTIONS = {
    "scale_invariant": ("scale_invariant_loss", dict(lam=0.85)),
    "scale_invariant_batch": ("scale_invariant_loss", dict(lam=1.0, reduction="batch")),
    "scale_shift": ("scale_shift_invariant_loss", dict()),
    "scale_shift_disparity_l2": ("scale_shift_invariant_loss", dict(space="disparity", residual="l2")),
}
#: the cases above, and images that are degenerate: one without a valid pixel, one constant prediction
CASES = (*OPTIONS, "degenerate")
SANITIZER_CASES = ("scale_shift",)
SELFCHECK_CASE = "scale_shift"


def inputs(B: int, H: int, W: int, seed: int, dtype: torch.dtype, device: str):
    """Depths in [1, 11] with about a fifth of the ground truth missing (0) and a random mask."""
    gen = torch.Generator().manual_seed(seed)
    pred = 1.0 + 10.0 * torch.rand(B, 1, H, W, generator=gen)
    target = 1.0 + 10.0 * torch.rand(B, 1, H, W, generator=gen)
    target = torch.where(torch.rand(B, 1, H, W, generator=gen) < 0.2, 0.0, target)
    mask = torch.rand(B, 1, H, W, generator=gen) > 0.1
    return pred.to(dtype).to(device), target.to(dtype).to(device), mask.to(device)


def run_case(name: str, backend: str, device: str, dtype: torch.dtype, quick: bool, seed: int = 0) -> CaseResult:
    """The loss (relative to max(|loss|, 1)) and the gradient to pred; the gradient is also checked
    bitwise over repeated runs (the sums are reduced in a fixed order). The upstream gradient is the
    pixel count, as a loss scaler's, so that half-precision gradients stay in their normal range.
    The L1 residual's ground truth is moved off its kink first (:func:`_off_kinks`)."""
    result = CaseResult("depth_loss", name, backend, device, str(dtype).removeprefix("torch."))
    B, H, W = (2, 9, 13) if quick else (3, 97, 131)  # 97 x 131: a partial last block of pixels
    pred, target, mask = inputs(B, H, W, seed, dtype, device)
    function, options = OPTIONS.get(name, OPTIONS["scale_shift"])
    if name == "degenerate":
        mask[1] = False
        pred[0] = 3.0
    if options.get("residual", "l1") == "l1" and function == "scale_shift_invariant_loss":
        target = _off_kinks(pred, target, mask, options.get("space", "depth"))
    run = getattr(fastdepth, function)
    (ours_pred,), (ref_pred,) = leaves([pred]), leaves([pred], torch.float64)
    ours = run(ours_pred, target, mask, **options, backend=backend)
    ref = run(ref_pred, target.double(), mask, **options, backend="torch")
    tol = tolerance("depth_loss", dtype, backend, device)
    result.forward_tol, result.gradient_tol = tol.forward, tol.gradient
    result.forward_error = max_rel(ours.reshape(1), ref.reshape(1), 1.0)
    g = torch.tensor(float(pred.numel()), device=device)
    (ours_g,), (ref_g,) = grads(ours, [ours_pred], g), grads(ref, [ref_pred], g.double())
    result.gradient_error, result.where = gradient_error(("pred",), (ours_g,), (ref_g,), tol.gradient_floor)
    if name == "degenerate":  # a defined loss; nothing reaches the image without ground truth
        result.mismatches = int(not torch.isfinite(ours)) + int((ours_g[1] != 0).sum())
    again = grads(run(ours_pred, target, mask, **options, backend=backend), [ours_pred], g)[0]
    result.deterministic = torch.equal(again, ours_g)
    return result


def _off_kinks(pred, target, mask, space: str) -> torch.Tensor:
    """The ground truth with every valid pixel whose float64 residual of the aligned prediction lies
    within KINK_TOL of 0 moved by 1% (at least 4 epsilons of its dtype), until none does. At the kink
    of |r| the gradient jumps by twice the pixel's term, and float32 rounding of the alignment puts
    such a residual on either side (seen: a gradient 99% off at one pixel in 30 seeds)."""
    step = max(1e-2, 4 * torch.finfo(target.dtype).eps)
    for _ in range(5):
        a, b, valid = reference.align(pred.double(), target.double(), mask, space)
        t = target.double().reshape(valid.shape)
        t = 1.0 / t if space == "disparity" else t
        r = a[:, None] * pred.double().reshape(valid.shape) + b[:, None] - t
        near = (valid & (r.abs() <= KINK_TOL)).reshape(target.shape)
        if not near.any():
            return target
        target = torch.where(near, target * (1 + step), target)
    raise RuntimeError("could not move the ground truth off the kinks of the L1 residual")
