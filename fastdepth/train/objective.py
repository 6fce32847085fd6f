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
from fastdepth.reference import photometric as reference
from fastdepth.scenes import axis_angle_to_matrix

BACKENDS = ("kornia", "torch", "triton", "cuda", "auto")
#: fused: fastdepth.reprojection_loss per scale (warped images never stored, identity maps once per
#: batch); composed: fastdepth.warp then fastdepth.min_reprojection_loss (Kornia's backend always is)
OBJECTIVES = ("fused", "composed")
SMOOTHNESS = 1e-3
#: Kornia's warp_frame_depth samples with zeros padding and align_corners=True; fastdepth's
#: backends use the same sampling by default so that all backends optimise the same function
#: (``--monodepth2-sampling`` switches them to Monodepth2's border / align_corners=False).
KORNIA_SAMPLING = {"padding_mode": "zeros", "align_corners": True}
MONODEPTH2_SAMPLING = {"padding_mode": "border", "align_corners": False}


def warp_sampling(monodepth2_sampling: bool) -> dict:
    """The warp options of a run: Monodepth2's with ``--monodepth2-sampling``, else Kornia's."""
    return MONODEPTH2_SAMPLING if monodepth2_sampling else KORNIA_SAMPLING


def transformation_from_parameters(axis_angle: torch.Tensor, translation: torch.Tensor, invert: bool) -> torch.Tensor:
    """Monodepth2's pose: (B, 4, 4) ``T @ R``, or ``R^T @ T(-t)`` when inverted."""
    B = axis_angle.shape[0]
    R = torch.eye(4, dtype=axis_angle.dtype, device=axis_angle.device).repeat(B, 1, 1)
    R[:, :3, :3] = axis_angle_to_matrix(axis_angle)
    t = -translation if invert else translation
    T = torch.eye(4, dtype=axis_angle.dtype, device=axis_angle.device).repeat(B, 1, 1)
    T[:, :3, 3] = t
    if invert:
        R = R.transpose(1, 2)
        return R @ T
    return T @ R


def disp_to_depth(disp: torch.Tensor, min_depth: float = 0.1, max_depth: float = 100.0) -> torch.Tensor:
    """Monodepth2's sigmoid disparity -> depth in [min_depth, max_depth]."""
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    return 1.0 / (min_disp + (max_disp - min_disp) * disp)


def depth_to_disp(depth: torch.Tensor, min_depth: float = 0.1, max_depth: float = 100.0) -> torch.Tensor:
    """The inverse of :func:`disp_to_depth`: the sigmoid disparity a network predicts for ``depth``."""
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    return (1.0 / depth - min_disp) / (max_disp - min_disp)


def full_resolution_depths(disps: list[torch.Tensor], height: int, width: int) -> list[torch.Tensor]:
    """Each scale's disparity upsampled to full resolution (bilinear), as depth in [0.1, 100]."""
    return [disp_to_depth(F.interpolate(d, [height, width], mode="bilinear", align_corners=False)) for d in disps]


def photometric_term(depths: list[torch.Tensor], min_reprojection) -> tuple[torch.Tensor, torch.Tensor]:
    """Monodepth2's photometric objective over scales: the sum over scales of the mean per-pixel
    minimum reprojection loss (Monodepth2 divides the total by the number of scales), and the
    auto-mask fraction at the finest scale.

    ``min_reprojection(depth)`` warps the sources with one scale's full-resolution depth and returns
    ``(loss_map, automask)``: the same loop serves fastdepth's ops, Kornia's warp, the reference
    and the eager Monodepth2 peer of the benchmarks.
    """
    total, automask = 0.0, None
    for depth in depths:
        loss_map, mask = min_reprojection(depth)
        total = total + loss_map.float().mean()
        if automask is None:
            automask = mask.float().mean()
    return total, automask


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
    objective: str = "fused",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective of one batch.

    Args:
        disps: 4 disparity maps in (0, 1), finest first, (B, 1, H / 2**s, W / 2**s).
        poses: (B, 2, 4, 4) target -> previous/next transforms.
        frames: (B, 3, 3, H, W) previous, target, next images in [0, 1].
        K: (B, 3, 3) intrinsics at full resolution.
        backend: ``"kornia"`` or a fastdepth backend.
        sampling: warp options of the fastdepth backends (default: Kornia's, see KORNIA_SAMPLING).
        objective: ``"fused"`` or ``"composed"`` (see OBJECTIVES); the same function either way.

    Returns:
        ``(loss, parts)``; ``parts`` holds ``photometric``, ``smoothness`` and ``automask`` (the
        fraction of pixels where a warped source won, at the finest scale).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    sampling = sampling or KORNIA_SAMPLING
    if backend == "kornia" and sampling != KORNIA_SAMPLING:
        raise ValueError("backend='kornia' warps with zeros padding and align_corners=True only")
    target, sources = frames[:, 1], frames[:, [0, 2]]
    H, W = target.shape[-2:]
    if backend == "kornia":
        per_scale = lambda depth: _min_reprojection_kornia(target, sources, depth, poses, K)[::2]
    elif objective == "fused":
        identity = fastdepth.identity_loss(target, sources, backend=backend)
        per_scale = lambda depth: fastdepth.reprojection_loss(
            target, sources, depth, poses, K, identity=identity, backend=backend, **sampling
        )[::2]
    else:
        per_scale = lambda depth: fastdepth.min_reprojection_loss(
            target, fastdepth.warp(sources, depth, poses, K, backend=backend, **sampling), sources, backend=backend
        )[::2]
    photometric, automask = photometric_term(full_resolution_depths(disps, H, W), per_scale)
    smoothness = 0.0
    for scale, disp in enumerate(disps):
        scaled_image = F.interpolate(target, disp.shape[-2:], mode="bilinear", align_corners=False)
        norm_disp = disp / (disp.mean((2, 3), keepdim=True) + 1e-7)
        smoothness = smoothness + SMOOTHNESS * smoothness_loss(norm_disp, scaled_image) / 2**scale
    n = len(disps)
    loss = (photometric + smoothness) / n
    return loss, {"photometric": photometric / n, "smoothness": smoothness / n, "automask": automask}


SUPERVISED_LOSSES = ("si", "ssi")


def supervised_loss(
    disps: list[torch.Tensor], depth_gt: torch.Tensor, loss: str = "si", backend: str = "auto"
) -> torch.Tensor:
    """Supervised objective against ground-truth depth (B, 1, H, W; 0 = invalid), averaged over the
    scales upsampled to full resolution: ``si``, Eigen's scale-invariant log loss (lam 0.85) of the
    predicted depth; ``ssi``, the scale-and-shift-invariant L1 loss of the predicted disparity
    aligned to the inverse ground truth (MiDaS). fastdepth's ops on ``backend`` (Kornia has no such
    loss: ``backend="kornia"`` runs the reference)."""
    if loss not in SUPERVISED_LOSSES:
        raise ValueError(f"--loss must be one of {SUPERVISED_LOSSES}, got {loss!r}")
    backend = "torch" if backend == "kornia" else backend
    H, W = depth_gt.shape[-2:]
    total = 0.0
    for disp in disps:
        up = F.interpolate(disp, [H, W], mode="bilinear", align_corners=False)
        if loss == "si":
            total = total + fastdepth.scale_invariant_loss(disp_to_depth(up), depth_gt, backend=backend)
        else:
            total = total + fastdepth.scale_shift_invariant_loss(up, depth_gt, space="disparity", backend=backend)
    return total / len(disps)
