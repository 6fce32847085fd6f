"""Depth evaluation: Monodepth2's error metrics with per-image median scaling, and the
scale-invariant log loss of Eigen et al. (lambda = 0.85)."""

from __future__ import annotations

import torch

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def median(values: torch.Tensor) -> torch.Tensor:
    """NumPy's median, which Monodepth2's median scaling takes: the mean of the two middle values of
    an even count (``torch.median`` takes the lower one)."""
    ordered = values.flatten().sort().values
    n = ordered.numel()
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def depth_errors(gt: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
    """Monodepth2's ``compute_errors`` on matching 1-D tensors of valid (positive) depths.

    abs_rel = mean(|gt - pred| / gt), sq_rel = mean((gt - pred)² / gt), rmse, rmse_log (natural
    log), and a1/a2/a3 = fraction with max(gt / pred, pred / gt) below 1.25, 1.25², 1.25³.
    """
    gt, pred = gt.double().flatten(), pred.double().flatten()
    if gt.shape != pred.shape or gt.numel() == 0:
        raise ValueError(f"gt and pred must be non-empty and of equal size, got {gt.numel()} and {pred.numel()}")
    if (gt <= 0).any() or (pred <= 0).any():
        raise ValueError("depth_errors needs positive depths (mask invalid pixels out first)")
    thresh = torch.maximum(gt / pred, pred / gt)
    return {
        "abs_rel": ((gt - pred).abs() / gt).mean().item(),
        "sq_rel": ((gt - pred) ** 2 / gt).mean().item(),
        "rmse": ((gt - pred) ** 2).mean().sqrt().item(),
        "rmse_log": ((gt.log() - pred.log()) ** 2).mean().sqrt().item(),
        "a1": (thresh < 1.25).double().mean().item(),
        "a2": (thresh < 1.25**2).double().mean().item(),
        "a3": (thresh < 1.25**3).double().mean().item(),
    }


def scale_invariant_log_loss(gt: torch.Tensor, pred: torch.Tensor, lam: float = 0.85) -> float:
    """Eigen's scale-invariant log error: ``mean(d²) - lam * mean(d)²``, ``d = log pred - log gt``."""
    d = pred.double().flatten().log() - gt.double().flatten().log()
    return (d.pow(2).mean() - lam * d.mean().pow(2)).item()


def evaluate_image(
    gt: torch.Tensor, pred: torch.Tensor, min_depth: float = 1e-3, max_depth: float = 80.0, median_scaling: bool = True
) -> dict[str, float]:
    """All metrics of one image: valid gt pixels in (min_depth, max_depth), median scaling of the
    prediction (unless it is aligned already), predictions clamped to the same range (Monodepth2's
    evaluation)."""
    valid = (gt > min_depth) & (gt < max_depth)
    g, p = gt[valid].double(), pred[valid].double()
    if median_scaling:
        p = p * (median(g) / median(p))
    p = p.clamp(min_depth, max_depth)
    return {**depth_errors(g, p), "silog": scale_invariant_log_loss(g, p)}
