"""ManyDepth's matching cost volume as ManyDepth computes it (``ResnetEncoderMatching.match_features``,
written from its formulas: the peer :func:`fastdepth.manydepth.match_features` replaces; the tests
check it against this): per batch element, every present lookup frame's features repeated for the D
planes and warped by one ``grid_sample`` (BackprojectDepth -> Project3D, zeros padding,
align_corners=True), the 2-pixel edge masks, the mean |difference| over channels, the average over
the frames that count, and missing planes set to the pixel's largest cost."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fastdepth.benchmarks import monodepth2


def match_features(current_feats, lookup_feats, relative_poses, K, invK, depth_bins, set_missing_to_max=True, eps=0.0):
    """current_feats (B, C, h, w), lookup_feats (B, S, C, h, w), relative_poses (B, S, 4, 4) (all zeros:
    a missing frame), K and invK (B, 4, 4), depth_bins (D,); ``eps``: Project3D's (ManyDepth: 1e-7).
    Returns ``(cost_volume, missing_mask)``, each (B, D, h, w)."""
    B, _, h, w = current_feats.shape
    D = depth_bins.shape[0]
    backproject = monodepth2.BackprojectDepth(D, h, w, current_feats.device, current_feats.dtype)
    project = monodepth2.Project3D(h, w, eps=eps)
    warp_depths = depth_bins.view(D, 1, 1, 1).expand(D, 1, h, w).to(current_feats.dtype)
    volumes, masks = [], []
    for b in range(B):
        volume = torch.zeros(D, h, w, dtype=current_feats.dtype, device=current_feats.device)
        counts = torch.zeros_like(volume)
        world_points = backproject(warp_depths, invK[b : b + 1])
        for s in range(lookup_feats.shape[1]):
            pose = relative_poses[b : b + 1, s]
            if pose.sum() == 0:
                continue
            pix_locs = project(world_points, K[b : b + 1], pose)
            lookup = lookup_feats[b : b + 1, s].repeat(D, 1, 1, 1)
            warped = F.grid_sample(lookup, pix_locs, padding_mode="zeros", mode="bilinear", align_corners=True)
            x = (pix_locs[..., 0].detach() / 2 + 0.5) * (w - 1)
            y = (pix_locs[..., 1].detach() / 2 + 0.5) * (h - 1)
            edge = ((x >= 2.0) * (x <= w - 2) * (y >= 2.0) * (y <= h - 2)).to(volume.dtype)
            current = torch.zeros_like(edge)
            current[:, 2:-2, 2:-2] = 1.0
            diffs = torch.abs(warped - current_feats[b : b + 1]).mean(1) * edge * current
            volume = volume + diffs
            counts = counts + (diffs > 0).to(volume.dtype)
        volume = volume / (counts + 1e-7)
        missing = (volume == 0).to(volume.dtype)
        if set_missing_to_max:
            volume = volume * (1 - missing) + volume.max(0)[0].unsqueeze(0) * missing
        volumes.append(volume)
        masks.append(missing)
    return torch.stack(volumes), torch.stack(masks)
