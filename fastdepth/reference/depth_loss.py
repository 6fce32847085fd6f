"""The plain-PyTorch reference of the supervised depth losses (the oracle of
:mod:`fastdepth.depth_loss`): Eigen's scale-invariant log loss and the scale-and-shift-invariant loss
of MiDaS, each over the valid pixels of every image.

* ``scale_invariant_loss``: ``d = log pred - log target``; ``mean(d²) - lam * mean(d)²``. With
  ``lam = 1`` a prediction off by a constant factor costs exactly 0.
* ``scale_shift_invariant_loss``: the least-squares ``a * pred + b`` to the target (closed form from
  the masked sums ``n, Σp, Σt, Σp², Σpt``; in ``space="disparity"`` the target is inverted first,
  as MiDaS aligns relative inverse depth), then the mean ``|a p + b - t|`` (``residual="l1"``) or
  its square (``"l2"``). Differentiable through the alignment.

Both: ``reduction="image"`` averages the per-image losses, ``"batch"`` pools the valid pixels of the
whole batch (one alignment per image still, for the second). Degenerate images give defined values,
never NaN: an image without a valid pixel contributes 0 (and does not count in the image average);
a constant prediction aligns with ``a = 0, b = mean(t)``.
"""

from __future__ import annotations

import torch

REDUCTIONS = ("image", "batch")


def _flat(pred, target, mask):
    """(B, N) views of pred and target, 1.0 at the invalid pixels (whatever they hold there must not
    reach the sums or the gradients), and the valid mask."""
    B = pred.shape[0]
    valid = (target > 0) & torch.isfinite(target)
    if mask is not None:
        valid = valid & mask.bool()
    valid = valid.reshape(B, -1)
    p = torch.where(valid, pred.reshape(B, -1), 1.0)
    t = torch.where(valid, target.reshape(B, -1), 1.0)
    return p, t, valid


def _reduce(per_pixel: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    n = valid.sum(1)
    if reduction == "batch":
        return per_pixel.sum() / n.sum().clamp(min=1)
    per_image = per_pixel.sum(1) / n.clamp(min=1)
    images = (n > 0).sum().clamp(min=1)
    return per_image.sum() / images


def scale_invariant_loss(pred, target, mask=None, lam: float = 0.85, reduction: str = "image") -> torch.Tensor:
    """pred, target (B, ...) positive depths where valid (target > 0, and ``mask`` if given)."""
    p, t, valid = _flat(pred, target, mask)
    d = torch.where(valid, torch.log(p) - torch.log(t), 0.0)
    if reduction == "batch":
        n = valid.sum().clamp(min=1)
        return (d * d).sum() / n - lam * (d.sum() / n) ** 2
    n = valid.sum(1).clamp(min=1)
    per_image = (d * d).sum(1) / n - lam * (d.sum(1) / n) ** 2
    return per_image.sum() / (valid.sum(1) > 0).sum().clamp(min=1)


def alignment_from_sums(n, sp, st, spp, spt):
    """The least-squares ``a * p + b ~ t`` from the masked sums ``n, Σp, Σt, Σp², Σpt`` (any shape):
    ``(a, b, det, ok)``; where the prediction is constant (``det = nΣp² - (Σp)²`` vanishes relative to
    ``nΣp²``) ``a = 0, b = mean(t)``, and ``b = 0`` without a valid pixel."""
    det = n * spp - sp * sp
    ok = det.abs() > 1e-12 * (n * spp).abs().clamp(min=1e-30)
    a = torch.where(ok, (n * spt - sp * st) / torch.where(ok, det, 1.0), 0.0)
    b = torch.where(n > 0, (st - a * sp) / n.clamp(min=1), 0.0)
    return a, b, det, ok


def align(pred, target, mask=None, space: str = "depth") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image ``(a, b)`` of the least-squares ``a * pred + b ~ t`` and the valid mask (B, N); ``t``
    is the target, or its inverse in ``space="disparity"``."""
    p, t, valid = _flat(pred, target, mask)
    if space == "disparity":
        t = 1.0 / t
    w = valid.to(p.dtype)
    a, b, _, _ = alignment_from_sums(w.sum(1), (w * p).sum(1), (w * t).sum(1), (w * p * p).sum(1), (w * p * t).sum(1))
    return a, b, valid


def scale_shift_invariant_loss(
    pred, target, mask=None, space: str = "depth", residual: str = "l1", reduction: str = "image"
) -> torch.Tensor:
    """pred (B, ...) any real values (depth, or relative disparity in ``space="disparity"``)."""
    a, b, valid = align(pred, target, mask, space)
    p, t, _ = _flat(pred, target, mask)
    if space == "disparity":
        t = 1.0 / t
    r = torch.where(valid, a[:, None] * p + b[:, None] - t, 0.0)
    return _reduce(r.abs() if residual == "l1" else r * r, valid, reduction)
