"""Supervised depth losses against ground truth: Eigen's scale-invariant log loss and the
scale-and-shift-invariant loss of MiDaS (and Depth Anything), each over the valid pixels of every
image, in as few passes over the pixels as the math allows.

Conventions:

* pred, target (B, ...): B images of any shape (e.g. (B, 1, H, W)); a pixel is *valid* where the
  target is > 0 and finite (LiDAR's 0 = no measurement) and, if given, the bool ``mask`` is true.
  Whatever pred holds at the other pixels is ignored and gets a zero gradient. The target is
  ground truth: no gradient reaches it, on any backend.
* ``scale_invariant_loss``: ``d = log pred - log target``; ``mean(d²) - lam * mean(d)²`` over the
  valid pixels. With ``lam = 1`` a prediction off by a constant factor costs exactly 0.
* ``scale_shift_invariant_loss``: per image the least-squares ``a * pred + b ~ t`` (closed form
  from the masked sums ``n, Σp, Σt, Σp², Σpt``; ``t`` is the target, or its inverse with
  ``space="disparity"``, where MiDaS aligns relative inverse depth), then the mean of
  ``|a p + b - t|`` (``residual="l1"``) or of its square (``"l2"``). The gradient flows through the
  alignment.
* ``reduction="image"`` (default) averages the per-image losses over the images with a valid pixel;
  ``"batch"`` pools the valid pixels of the whole batch (one alignment per image still).
* Degenerate images are defined, never NaN: an image without a valid pixel contributes 0 and does
  not count in the image average; a constant prediction aligns with ``a = 0, b = mean(t)`` (no
  gradient). A batch without any valid pixel is an error.
* Values are checked (see :mod:`fastdepth.validation`): pred must be finite where the target is
  valid, and positive as well for the scale-invariant loss (its log is taken). The fused backends'
  per-pixel terms are float32: a value beyond about 1e19 whose square or product overflows is
  refused there as non-finite (the reference computes it in float64).

The fused backends (``triton``, ``cuda``) make one pass over the pixels for the scale-invariant
loss and two for the scale-and-shift-invariant loss (the moments, then the residuals at the
alignment, which the kernels compute from the moments), writing per-image float64 sums; the loss
and the backward's per-image coefficients are closed forms of those sums (those of the
scale-and-shift-invariant backward computed by its kernels: csrc/depth_loss.cuh,
shift_coefficients), and the backward is one elementwise pass. Dtypes: pred and target
float16, bfloat16, float32 (float64 on the reference and the CPU twin); if they differ both are
read in the wider one. The per-pixel terms are computed in float32 (float64 for float64 inputs) and
summed in float64 (the alignment's closed form cancels); the reference (``backend="torch"``)
computes in float64 throughout. The loss comes back in pred's dtype.
With float16 predictions of large images the gradient (about 1 / pixels per pixel) falls below
float16's normal range: scale the loss (``torch.amp.GradScaler``) or use bfloat16.
"""

from __future__ import annotations

import math

import torch

from fastdepth import backends, dispatch, validation
from fastdepth.conventions import INDEX_LIMIT
from fastdepth.reference import depth_loss as reference

REDUCTIONS = reference.REDUCTIONS
SPACES = ("depth", "disparity")
RESIDUALS = ("l1", "l2")


@dispatch.custom_op("fastdepth::depth_loss")
def _forward_op(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    loss: str,
    lam: float,
    disparity: bool,
    squared: bool,
    per_image: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    launch = backends.launcher("depth_loss", backend, "forward")
    if loss == "scale_invariant":
        sums = launch(pred, target, mask, None, "log_moments", False, False)
        value = _scale_invariant_from_sums(sums, lam, per_image)
    else:
        moments = launch(pred, target, mask, None, "align_moments", disparity, squared)
        # the residual stage's kernels align each image from its moments themselves
        residuals = launch(pred, target, mask, moments, "residual", disparity, squared)
        weights = _image_weights(moments[:, 0], per_image)
        value = (weights * residuals[:, 0]).sum()
        sums = torch.cat([moments, residuals, weights[:, None]], 1)  # the backward's inputs but the gradient
    return value.to(pred.dtype), sums


@_forward_op.register_fake
def _forward_fake(pred, target, mask, loss, lam, disparity, squared, per_image, backend):
    columns = 5 if loss == "scale_invariant" else 11
    return pred.new_empty(()), pred.new_empty((pred.shape[0], columns), dtype=torch.float64)


@dispatch.custom_op("fastdepth::depth_loss_backward")
def _backward_op(
    grad: torch.Tensor,
    sums: torch.Tensor,
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    loss: str,
    lam: float,
    disparity: bool,
    squared: bool,
    per_image: bool,
    backend: str,
) -> torch.Tensor:
    if loss == "scale_invariant":
        coeffs = _scale_invariant_coefficients(sums, lam, per_image)
        coeffs[:, :2] *= grad.double()
    else:  # the kernels compute the coefficients from these (csrc/depth_loss.cuh: shift_coefficients)
        coeffs = torch.cat([sums, grad.double().expand(sums.shape[0], 1)], 1)
    return backends.launcher("depth_loss", backend, "backward")(coeffs, pred, target, mask, loss, disparity, squared)


@_backward_op.register_fake
def _backward_fake(grad, sums, pred, target, mask, loss, lam, disparity, squared, per_image, backend):
    return torch.empty_like(pred)


def _setup_context(ctx, inputs, output) -> None:
    pred, target, mask, *options = inputs
    ctx.save_for_backward(output[1], pred, target, mask)
    ctx.options = options


def _backward(ctx, grad_loss, grad_sums):
    sums, pred, target, mask = ctx.saved_tensors
    grad_pred = _backward_op(grad_loss, sums, pred, target, mask, *ctx.options)
    return grad_pred, None, None, None, None, None, None, None, None


_forward_op.register_autograd(_backward, setup_context=_setup_context)


def _image_weights(n: torch.Tensor, per_image: bool) -> torch.Tensor:
    """d loss / d (an image's sum of per-pixel losses): 1 / (images * n) per image, or 1 / Σn."""
    if per_image:
        images = (n > 0).sum().clamp(min=1)
        return torch.where(n > 0, 1.0 / (images * n.clamp(min=1)), 0.0)
    return (1.0 / n.sum().clamp(min=1)).expand_as(n)


def _scale_invariant_from_sums(sums: torch.Tensor, lam: float, per_image: bool) -> torch.Tensor:
    n, s1, s2 = sums[:, 0], sums[:, 1], sums[:, 2]
    if per_image:
        nc = n.clamp(min=1)
        return (s2 / nc - lam * (s1 / nc) ** 2).sum() / (n > 0).sum().clamp(min=1)
    total = n.sum().clamp(min=1)
    return s2.sum() / total - lam * (s1.sum() / total) ** 2


def _scale_invariant_coefficients(sums: torch.Tensor, lam: float, per_image: bool) -> torch.Tensor:
    """(B, 8): d loss / d pred = (c0 + c1 d) / pred, c0 = -2 lam mean(d) w, c1 = 2 w, with w the
    image weight and mean(d) per image (or over the batch)."""
    n, s1 = sums[:, 0], sums[:, 1]
    w = _image_weights(n, per_image)
    mean_d = s1 / n.clamp(min=1) if per_image else (s1.sum() / n.sum().clamp(min=1)).expand_as(n)
    coeffs = torch.zeros((n.shape[0], 8), dtype=torch.float64, device=sums.device)
    coeffs[:, 0] = -2.0 * lam * mean_d * w
    coeffs[:, 1] = 2.0 * w
    return coeffs


def _check_inputs(pred, target, mask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    validation.check_tensor("pred", pred)
    validation.check_tensor("target", target)
    if pred.dim() < 2:
        raise ValueError(f"pred must have shape (B, ...) with at least 2 dimensions, got {tuple(pred.shape)}")
    validation.check_shape("target", target, pred.shape)
    validation.check_dtype("pred", pred, validation.FLOAT_DTYPES)
    validation.check_dtype("target", target, validation.FLOAT_DTYPES)
    named = {"pred": pred, "target": target}
    if mask is not None:
        validation.check_tensor("mask", mask)
        validation.check_shape("mask", mask, pred.shape)
        validation.check_dtype("mask", mask, (torch.bool,))
        named["mask"] = mask
    validation.check_same_device(named)
    if math.prod(pred.shape[1:]) >= INDEX_LIMIT:
        raise ValueError(f"pred: {math.prod(pred.shape[1:])} pixels per image, must be below 2**31")
    if pred.dtype != target.dtype:
        wider = torch.promote_types(pred.dtype, target.dtype)
        pred, target = pred.to(wider), target.to(wider)
    return pred, target, mask


def _check_values(pred, target, mask, sums, positive: bool) -> None:
    """No valid pixel at all, or a prediction that is not finite (positive) where it is valid: from
    the fused sums (free: B rows) or, on the reference, from the tensors."""
    what = "positive and finite" if positive else "finite"
    if sums is not None:
        conditions = {"bad pred": validation.all_finite(sums), "empty": sums[:, 0].sum() > 0}
        # the fused per-pixel terms are float32: values beyond about 1e19 overflow their squares
        overflow = " (or a float32 per-pixel term overflowed: |values| beyond about 1e19)"
    else:
        valid = (target > 0) & torch.isfinite(target)
        if mask is not None:
            valid = valid & mask
        good = torch.isfinite(pred) & (pred > 0 if positive else True)
        conditions = {"bad pred": (good | ~valid).all(), "empty": valid.any()}
        overflow = ""
    messages = {
        "bad pred": f"pred must be {what} where the target is valid"
        + (" (the log of pred is taken)" if positive else overflow),
        "empty": "no valid pixel in the batch: the target is > 0 and finite (and mask is true) nowhere",
    }
    validation.check_values({messages[k]: ok for k, ok in conditions.items()}, pred.device)


def _check_reduction(reduction: object) -> bool:
    validation.check_choice("reduction", reduction, REDUCTIONS)
    return reduction == "image"


def _run(pred, target, mask, loss, lam, disparity, squared, reduction, backend):
    per_image = _check_reduction(reduction)
    pred, target, mask = _check_inputs(pred, target, mask)
    name = backends.resolve(backend, pred.device, (pred.dtype,))
    with validation.no_autocast(pred.device):
        if name == "torch":
            _check_values(pred, target, mask, None, loss == "scale_invariant")
            # in float64, as the fused backends sum; the target is ground truth, without a gradient
            p, t = pred.double(), target.detach().double()
            if loss == "scale_invariant":
                return reference.scale_invariant_loss(p, t, mask, lam, reduction).to(pred.dtype)
            space, residual = "disparity" if disparity else "depth", "l2" if squared else "l1"
            return reference.scale_shift_invariant_loss(p, t, mask, space, residual, reduction).to(pred.dtype)
        shape = (pred.shape[0], math.prod(pred.shape[1:]))
        flat_mask = mask.reshape(shape) if mask is not None else None
        value, sums = _forward_op(
            pred.reshape(shape), target.reshape(shape), flat_mask, loss, lam, disparity, squared, per_image, name
        )
        _check_values(pred, target, mask, sums, loss == "scale_invariant")
        return value


def scale_invariant_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    lam: float = 0.85,
    reduction: str = "image",
    backend: str | None = None,
) -> torch.Tensor:
    """Eigen et al.'s scale-invariant log loss, ``mean(d²) - lam * mean(d)²`` with
    ``d = log pred - log target`` over the valid pixels (see the module docstring).

    Args:
        pred: (B, ...) predicted depth, positive where the target is valid.
        target: (B, ...) ground-truth depth; <= 0 or non-finite marks a pixel without ground truth.
        mask: (B, ...) bool, or None: further restricts the valid pixels.
        lam: in [0, 1]; 0 is the plain squared log error, 1 ignores the global scale entirely
            (Eigen et al.: 0.5; Monodepth-style supervised fine-tuning and AdaBins: 0.85).
        reduction: ``"image"`` (mean over images of the per-image loss) or ``"batch"`` (one pool).
        backend: ``"auto"``, ``"torch"``, ``"triton"``, ``"cuda"`` (see :mod:`fastdepth.backends`).

    Returns:
        The loss, a 0-dim tensor in pred's dtype; differentiable in pred.
    """
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be a number in [0, 1], got {lam!r}")
    return _run(pred, target, mask, "scale_invariant", float(lam), False, False, reduction, backend)


def scale_shift_invariant_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    space: str = "depth",
    residual: str = "l1",
    reduction: str = "image",
    backend: str | None = None,
) -> torch.Tensor:
    """The scale-and-shift-invariant loss: per image the least-squares ``a * pred + b`` to the target
    (or to its inverse), then the mean absolute or squared residual (see the module docstring).

    Args:
        pred: (B, ...) the prediction, any real values: depth, or relative inverse depth (the raw
            output of MiDaS-style models) with ``space="disparity"``.
        target: (B, ...) ground-truth depth; <= 0 or non-finite marks a pixel without ground truth.
        mask: (B, ...) bool, or None: further restricts the valid pixels.
        space: ``"depth"`` (align to the target) or ``"disparity"`` (align to 1 / target, as MiDaS).
        residual: ``"l1"`` (the mean |r|; MiDaS also trims the largest residuals, this does not) or
            ``"l2"`` (the mean r²).
        reduction: ``"image"`` or ``"batch"``.
        backend: ``"auto"``, ``"torch"``, ``"triton"``, ``"cuda"``.

    Returns:
        The loss, a 0-dim tensor in pred's dtype; differentiable in pred through the alignment.
    """
    validation.check_choice("space", space, SPACES)
    validation.check_choice("residual", residual, RESIDUALS)
    return _run(
        pred, target, mask, "scale_shift_invariant", 0.0, space == "disparity", residual == "l2", reduction, backend
    )
