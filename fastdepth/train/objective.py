"""Monodepth2's self-supervised objective, with the warp and the photometric loss from fastdepth
(``backend`` torch | triton | cuda | auto) or from Kornia (``backend="kornia"``: Kornia's
``warp_frame_depth`` and the eager loss).

Per scale: the disparity is upsampled to full resolution, turned into depth in [0.1, 100], both
neighbour frames are warped onto the target with it and the predicted poses, and the per-pixel
minimum reprojection loss with identity auto-masking is averaged; plus the edge-aware smoothness
of the mean-normalised disparity (weight 1e-3 / 2**scale). The total is the mean over scales.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import fastdepth
from fastdepth import reference
from fastdepth.train.models import disp_to_depth, transformation_from_parameters

BACKENDS = ("kornia", "torch", "triton", "cuda", "auto")
SMOOTHNESS = 1e-3
#: Kornia's warp_frame_depth samples with zeros padding and align_corners=True; fastdepth's
#: backends use the same sampling by default so that all backends optimise the same function
#: (``--monodepth2-sampling`` switches them to Monodepth2's border / align_corners=False).
KORNIA_SAMPLING = {"padding_mode": "zeros", "align_corners": True}
MONODEPTH2_SAMPLING = {"padding_mode": "border", "align_corners": False}


def predict_poses(pose_net, frames: torch.Tensor) -> torch.Tensor:
    """(B, 2, 4, 4) target -> previous and target -> next transforms, as Monodepth2 builds them."""
    prev, target, nxt = frames[:, 0], frames[:, 1], frames[:, 2]
    B = frames.shape[0]
    # both pairs in one forward (DDP allows one forward per backward): (prev, target), (target, next)
    pairs = torch.cat([torch.cat([prev, target], 1), torch.cat([target, nxt], 1)], 0)
    axis_angle, translation = pose_net(pairs)
    to_prev = transformation_from_parameters(axis_angle[:B], translation[:B], invert=True)
    to_next = transformation_from_parameters(axis_angle[B:], translation[B:], invert=False)
    return torch.stack([to_prev, to_next], 1)


def smoothness_loss(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Monodepth2's edge-aware smoothness of a disparity map against its image."""
    grad_x = (disp[:, :, :, :-1] - disp[:, :, :, 1:]).abs()
    grad_y = (disp[:, :, :-1, :] - disp[:, :, 1:, :]).abs()
    grad_x = grad_x * torch.exp(-(image[:, :, :, :-1] - image[:, :, :, 1:]).abs().mean(1, keepdim=True))
    grad_y = grad_y * torch.exp(-(image[:, :, :-1, :] - image[:, :, 1:, :]).abs().mean(1, keepdim=True))
    return grad_x.mean() + grad_y.mean()


def _min_reprojection_kornia(target, sources, depth, poses, K):
    """Kornia's warp per source, then the eager (reference) loss maps and torch.min."""
    import kornia

    warped = torch.stack(
        [kornia.geometry.depth.warp_frame_depth(sources[:, s], depth, poses[:, s], K) for s in range(2)], 1
    )
    return reference.min_reprojection_loss(target, warped, sources)


def compute_loss(
    disps: list[torch.Tensor],
    poses: torch.Tensor,
    frames: torch.Tensor,
    K: torch.Tensor,
    backend: str = "auto",
    sampling: dict | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective of one batch.

    Args:
        disps: 4 disparity maps in (0, 1), finest first, (B, 1, H / 2**s, W / 2**s).
        poses: (B, 2, 4, 4) target -> previous/next transforms.
        frames: (B, 3, 3, H, W) previous, target, next images in [0, 1].
        K: (B, 3, 3) intrinsics at full resolution.
        backend: ``"kornia"`` or a fastdepth backend.
        sampling: warp options of the fastdepth backends (default: Kornia's, see KORNIA_SAMPLING).

    Returns:
        ``(loss, parts)``; ``parts`` holds ``photometric``, ``smoothness`` and ``automask`` (the
        fraction of pixels where a warped source won, at the finest scale).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    sampling = sampling or KORNIA_SAMPLING
    if backend == "kornia" and sampling != KORNIA_SAMPLING:
        raise ValueError("backend='kornia' warps with zeros padding and align_corners=True only")
    target, sources = frames[:, 1], frames[:, [0, 2]]
    H, W = target.shape[-2:]
    photometric = smoothness = 0.0
    automask = None
    for scale, disp in enumerate(disps):
        depth = disp_to_depth(F.interpolate(disp, [H, W], mode="bilinear", align_corners=False))
        if backend == "kornia":
            loss_map, _, mask = _min_reprojection_kornia(target, sources, depth, poses, K)
        else:
            warped = fastdepth.warp(sources, depth, poses, K, backend=backend, **sampling)
            loss_map, _, mask = fastdepth.min_reprojection_loss(target, warped, sources, backend=backend)
        photometric = photometric + loss_map.float().mean()
        if automask is None:
            automask = mask.float().mean()
        scaled_image = F.interpolate(target, disp.shape[-2:], mode="bilinear", align_corners=False)
        norm_disp = disp / (disp.mean((2, 3), keepdim=True) + 1e-7)
        smoothness = smoothness + SMOOTHNESS * smoothness_loss(norm_disp, scaled_image) / 2**scale
    n = len(disps)
    loss = (photometric + smoothness) / n
    return loss, {"photometric": photometric / n, "smoothness": smoothness / n, "automask": automask}
