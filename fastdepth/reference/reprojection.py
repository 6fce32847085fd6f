"""The plain-PyTorch reference of the reprojection op: the warp followed by the photometric loss and
the per-pixel minimum, composed (see :mod:`fastdepth.reprojection` for the conventions)."""

from __future__ import annotations

import torch

from fastdepth.reference import photometric, warp


def identity_loss(target: torch.Tensor, sources: torch.Tensor, alpha: float = 0.85) -> torch.Tensor:
    """(B, S, H, W): the photometric map of every unwarped source against the target."""
    B, S, C, H, W = sources.shape
    maps = photometric.photometric_loss(
        sources.reshape(B * S, C, H, W), target[:, None].expand(B, S, C, H, W).reshape(B * S, C, H, W), alpha
    )
    return maps.reshape(B, S, H, W)


def reprojection_loss(
    target: torch.Tensor,
    sources: torch.Tensor,
    depth: torch.Tensor,
    poses: torch.Tensor,
    K: torch.Tensor,
    identity: torch.Tensor | None,
    alpha: float,
    normalize_points: bool,
    padding_mode: str,
    align_corners: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, index)``, each (B, 1, H, W): the minimum over the identity maps (B, S', H, W) and the
    photometric maps of the warped sources, and the index of the winner (identity maps first)."""
    warped, _ = warp.warp(sources, depth, poses, K, normalize_points, padding_mode, align_corners, False)
    maps = identity_loss(target, warped, alpha)
    if identity is not None:
        maps = torch.cat([identity.to(maps.dtype), maps], dim=1)
    loss, index = torch.min(maps, dim=1, keepdim=True)
    return loss, index
