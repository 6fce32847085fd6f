"""The plain-PyTorch reference of the plane-sweep cost volume: the composition the fused op must
equal (see :mod:`fastdepth.cost_volume`). For each depth hypothesis, the reference warp
(:func:`fastdepth.reference.warp.warp`) of every source at that depth, then the reduction against
the target features. Differentiable in all five inputs; float64 accepted.
"""

from __future__ import annotations

import torch

from fastdepth.reference import warp as reference_warp

REDUCTIONS = ("l1", "dot", "group_dot", "variance")


def reduce_views(target: torch.Tensor, warped: torch.Tensor, reduction: str, groups: int) -> torch.Tensor:
    """One hypothesis: target (B, C, h, w) against the warped sources (B, S, C, h, w).

    ``l1``, ``dot``: (B, h, w), the mean over channels and sources of ``|t - w|`` or ``t * w``;
    ``group_dot``: (B, groups, h, w), the mean of ``t * w`` over each group of C / groups
    consecutive channels and over sources; ``variance``: (B, C, h, w), per channel the variance
    (``mean(x²) - mean(x)²``) of the S + 1 views, the target included (MVSNet).
    """
    B, S, C, h, w = warped.shape
    if reduction == "l1":
        return (target[:, None] - warped).abs().mean((1, 2))
    if reduction == "dot":
        return (target[:, None] * warped).mean((1, 2))
    if reduction == "group_dot":
        return (target[:, None] * warped).reshape(B, S, groups, C // groups, h, w).mean((1, 3))
    views = torch.cat([target[:, None], warped], 1)
    return (views * views).mean(1) - views.mean(1) ** 2


def hypothesis_maps(depth_hypotheses: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, D, h, w): each hypothesis as a depth map, from planes (B, D) (a view, no copy) or as given."""
    if depth_hypotheses.dim() == 2:
        return depth_hypotheses[:, :, None, None].expand(-1, -1, h, w)
    return depth_hypotheses


def cost_volume(
    features_target: torch.Tensor,
    features_source: torch.Tensor,
    depth_hypotheses: torch.Tensor,
    poses: torch.Tensor,
    K: torch.Tensor,
    reduction: str = "l1",
    groups: int = 1,
    padding_mode: str = "zeros",
    align_corners: bool = True,
    want_mask: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(cost, mask)``: cost (B, D, h, w) for l1 and dot, (B, groups, D, h, w) for group_dot,
    (B, C, D, h, w) for variance, in the features' dtype; mask (B, D, h, w) bool, where the
    hypothesis projects inside every source (the warp's validity), or None."""
    B, S, C, h, w = features_source.shape
    costs, masks = [], []
    maps = hypothesis_maps(depth_hypotheses, h, w)
    for d in range(depth_hypotheses.shape[1]):
        depth = maps[:, d : d + 1]
        warped, valid = reference_warp.warp(
            features_source, depth, poses, K, False, padding_mode, align_corners, want_mask
        )
        costs.append(reduce_views(features_target, warped, reduction, groups))
        if want_mask:
            masks.append(valid.all(1)[:, 0])
    dim = 1 if reduction in ("l1", "dot") else 2
    return torch.stack(costs, dim), torch.stack(masks, 1) if want_mask else None
