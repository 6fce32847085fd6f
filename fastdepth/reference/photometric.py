"""The plain-PyTorch reference of the photometric op: Monodepth2's formulas (see
:mod:`fastdepth.photometric`).

The oracle of the tests and the CPU path of ``backend="auto"``: only differentiable PyTorch ops
(autograd, gradcheck and double backward work), float64 accepted for tight comparisons. Inputs are
assumed validated by the public functions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastdepth.conventions import SSIM_C1, SSIM_C2


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Monodepth2's SSIM loss map per channel: ``clamp((1 - SSIM) / 2, 0, 1)``, (B, C, H, W).

    3x3 box window (``AvgPool2d(3, 1)``) over ``ReflectionPad2d(1)`` inputs, C1 = 0.01², C2 = 0.03².
    """
    xp = F.pad(x, (1, 1, 1, 1), mode="reflect")
    yp = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x = F.avg_pool2d(xp, 3, 1)
    mu_y = F.avg_pool2d(yp, 3, 1)
    sigma_x = F.avg_pool2d(xp * xp, 3, 1) - mu_x * mu_x
    sigma_y = F.avg_pool2d(yp * yp, 3, 1) - mu_y * mu_y
    sigma_xy = F.avg_pool2d(xp * yp, 3, 1) - mu_x * mu_y
    n = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    d = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return torch.clamp((1 - n / d) / 2, 0, 1)


def photometric_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.85) -> torch.Tensor:
    """Monodepth2's ``compute_reprojection_loss``: (B, 1, H, W) ``alpha * SSIM + (1 - alpha) * L1``.

    Both terms are means over channels. Computed in at least float32; returned in the input dtype.
    """
    compute = torch.promote_types(pred.dtype, torch.float32)
    x, y = pred.to(compute), target.to(compute)
    l1 = (y - x).abs().mean(1, keepdim=True)
    ssim = ssim_loss(x, y).mean(1, keepdim=True)
    return (alpha * ssim + (1 - alpha) * l1).to(pred.dtype)


def min_reprojection_loss(
    target: torch.Tensor,
    warped: torch.Tensor,
    identity: torch.Tensor | None = None,
    alpha: float = 0.85,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Monodepth2's per-pixel minimum reprojection with identity auto-masking (one scale).

    Args:
        target: (B, C, H, W) the frame being reconstructed.
        warped: (B, S, C, H, W) the source frames warped onto the target.
        identity: (B, S', C, H, W) the unwarped source frames (auto-masking), or None.

    Returns:
        ``(loss, index, automask)``, each (B, 1, H, W): the minimum photometric loss over the
        candidates (identity sources first, then warped sources), the int64 index of the winner in
        that order, and the bool mask of pixels where a warped source won. Ties go to the lowest
        index (so an identity source beats a warped source of equal loss), the rule of
        ``torch.min``; this replaces Monodepth2's random 1e-5 noise on the identity losses.
    """
    candidates = [warped] if identity is None else [identity, warped]
    stacked = torch.cat(candidates, dim=1)
    B, N, C, H, W = stacked.shape
    maps = photometric_loss(
        stacked.reshape(B * N, C, H, W), target[:, None].expand(B, N, C, H, W).reshape(B * N, C, H, W), alpha
    ).reshape(B, N, H, W)
    loss, index = torch.min(maps, dim=1, keepdim=True)
    n_identity = 0 if identity is None else identity.shape[1]
    return loss, index, index >= n_identity
