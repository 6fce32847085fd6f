"""The MVSNet family's plane sweep as it computes it (written from its formulas: the peer
:func:`fastdepth.mvsnet.plane_sweep` replaces; the tests check it against this): ``homo_warping``
projects every hypothesis at once through ``src_proj @ inverse(ref_proj)`` and samples the whole
(B, C, D, H, W) warped volume with one ``grid_sample``; the variance volume sums the reference and
every warped volume and their squares; the group-wise correlation averages the reference times each
warped volume within groups of channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def homo_warping(src_fea, src_proj, ref_proj, depth_values, align_corners=True):
    """src_fea (B, C, H, W), src_proj and ref_proj (B, 4, 4), depth_values (B, D) or (B, D, H, W)
    -> the warped volume (B, C, D, H, W)."""
    batch, channels, height, width = src_fea.shape
    num_depth = depth_values.shape[1]
    with torch.no_grad():
        proj = torch.matmul(src_proj, torch.inverse(ref_proj))
        rot, trans = proj[:, :3, :3].to(src_fea.dtype), proj[:, :3, 3:4].to(src_fea.dtype)
        y, x = torch.meshgrid(
            torch.arange(height, dtype=src_fea.dtype, device=src_fea.device),
            torch.arange(width, dtype=src_fea.dtype, device=src_fea.device),
            indexing="ij",
        )
        ones = torch.ones(height * width, dtype=src_fea.dtype, device=src_fea.device)
        xyz = torch.stack((x.reshape(-1), y.reshape(-1), ones))
        rot_xyz = torch.matmul(rot, xyz.unsqueeze(0).repeat(batch, 1, 1))
        depth = depth_values.to(src_fea.dtype).view(batch, 1, num_depth, -1)
        proj_xyz = rot_xyz.unsqueeze(2).repeat(1, 1, num_depth, 1) * depth + trans.view(batch, 3, 1, 1)
        proj_xy = proj_xyz[:, :2] / proj_xyz[:, 2:3]
        grid = torch.stack((proj_xy[:, 0] / ((width - 1) / 2) - 1, proj_xy[:, 1] / ((height - 1) / 2) - 1), dim=3)
    warped = F.grid_sample(
        src_fea, grid.view(batch, num_depth * height, width, 2), mode="bilinear", padding_mode="zeros",
        align_corners=align_corners,
    )  # fmt: skip
    return warped.view(batch, channels, num_depth, height, width)


def variance_volume(ref_feature, src_features, ref_proj, src_projs, depth_values, align_corners=True):
    """MVSNet's cost volume: the per-channel variance of the reference and the warped sources (lists)."""
    ref_volume = ref_feature.unsqueeze(2).repeat(1, 1, depth_values.shape[1], 1, 1)
    volume_sum, volume_sq_sum = ref_volume, ref_volume**2
    for src_fea, src_proj in zip(src_features, src_projs, strict=True):
        warped = homo_warping(src_fea, src_proj, ref_proj, depth_values, align_corners)
        volume_sum = volume_sum + warped
        volume_sq_sum = volume_sq_sum + warped**2
    views = len(src_features) + 1
    return volume_sq_sum / views - (volume_sum / views) ** 2


def group_correlation(ref_feature, src_features, ref_proj, src_projs, depth_values, groups, align_corners=True):
    """Group-wise correlation with the reference (MVSTER), averaged over the sources (lists)."""
    B, C = ref_feature.shape[:2]
    total = 0
    for src_fea, src_proj in zip(src_features, src_projs, strict=True):
        product = ref_feature.unsqueeze(2) * homo_warping(src_fea, src_proj, ref_proj, depth_values, align_corners)
        total = total + product.view(B, groups, C // groups, *product.shape[2:]).mean(2)
    return total / len(src_features)
