"""Plain-PyTorch versions of every fastdepth op.

These are the oracle of the test suite and the CPU path of ``backend="auto"``. They follow the
conventions in each op's docstring (and :mod:`fastdepth.conventions`) line by line, use only
differentiable PyTorch ops (so autograd, gradcheck and double backward work), and accept float64
for tight comparisons. Inputs are assumed validated by the public wrappers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastdepth.conventions import DIVIDE_EPS, SSIM_C1, SSIM_C2, grid_scale, sample_affine


def _intrinsics(camera_matrix: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """fx, fy, cx, cy of a (B, 3, 3) K, each shaped (B, 1, 1, 1) to broadcast over (B, S, H, W)."""
    k = camera_matrix
    return tuple(k[:, i, j].reshape(-1, 1, 1, 1) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))


def _safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``|den| > 1e-8``, else ``num`` unchanged (Kornia's homogeneous rule)."""
    ok = den.abs() > DIVIDE_EPS
    return num * torch.where(ok, 1.0 / torch.where(ok, den, torch.ones_like(den)), torch.ones_like(den))


def sample_position(p: torch.Tensor, size: int, align_corners: bool) -> torch.Tensor:
    """The pixel position grid_sample reads for projected coordinate ``p`` on an axis of ``size``.

    Composes Kornia's normalisation by ``size - 1`` with grid_sample's unnormalisation. Used for the
    validity mask; the kernels use the same affine map (:func:`fastdepth.conventions.sample_affine`).
    """
    scale, offset = sample_affine(size, align_corners)
    return p * scale + offset


def project(
    depth_dst: torch.Tensor,
    src_trans_dst: torch.Tensor,
    camera_matrix: torch.Tensor,
    normalize_points: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Back-project every destination pixel, move it to each source frame and project it.

    Args:
        depth_dst: (B, 1, H, W) depth of the destination view.
        src_trans_dst: (B, S, 4, 4) destination -> source transforms.
        camera_matrix: (B, 3, 3) intrinsics; only fx, fy, cx, cy are read.
        normalize_points: read depth as the Euclidean ray length instead of z.

    Returns:
        ``(u, v, z, finite)``, each (B, S, H, W): the projected pixel column and row in the source
        image, the camera z of the point in the source frame (after the division by w), and whether
        the pixel's depth and projection are finite. Non-finite depth is replaced by 0 before any
        arithmetic so that no NaN reaches the gradients.
    """
    B, _, H, W = depth_dst.shape
    dtype, device = depth_dst.dtype, depth_dst.device
    fx, fy, cx, cy = _intrinsics(camera_matrix)
    col = torch.arange(W, dtype=dtype, device=device).view(1, 1, 1, W)
    row = torch.arange(H, dtype=dtype, device=device).view(1, 1, H, 1)
    rx = ((col - cx) / fx).expand(B, 1, H, W)
    ry = ((row - cy) / fy).expand(B, 1, H, W)
    rz = torch.ones_like(rx)
    if normalize_points:
        norm = torch.sqrt(rx * rx + ry * ry + 1.0).clamp_min(1e-12)
        rx, ry, rz = rx / norm, ry / norm, rz / norm

    depth_ok = torch.isfinite(depth_dst)
    depth = torch.where(depth_ok, depth_dst, torch.zeros_like(depth_dst))
    points = torch.stack([rx * depth, ry * depth, rz * depth, torch.ones_like(depth)], dim=-1)
    # row vectors times pose^T, as Kornia's transform_points: (B, 1, HW, 4) @ (B, S, 4, 4) -> (B, S, HW, 4)
    moved = torch.matmul(points.reshape(B, 1, H * W, 4), src_trans_dst.transpose(-1, -2))
    moved = moved.reshape(B, src_trans_dst.shape[1], H, W, 4)
    moved = _safe_divide(moved[..., :3], moved[..., 3:])
    xy = _safe_divide(moved[..., :2], moved[..., 2:])
    u = fx * xy[..., 0] + cx
    v = fy * xy[..., 1] + cy
    finite = depth_ok & torch.isfinite(u) & torch.isfinite(v)
    return u, v, moved[..., 2], finite


def warp(
    image_src: torch.Tensor,
    depth_dst: torch.Tensor,
    src_trans_dst: torch.Tensor,
    camera_matrix: torch.Tensor,
    normalize_points: bool = False,
    padding_mode: str = "zeros",
    align_corners: bool = True,
    want_mask: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reference multi-source depth warp: see :func:`fastdepth.warp` for the conventions.

    Args:
        image_src: (B, S, C, H, W) source images.
        depth_dst: (B, 1, H, W) destination depth.
        src_trans_dst: (B, S, 4, 4) destination -> source transforms.
        camera_matrix: (B, 3, 3) intrinsics.

    Returns:
        ``(warped (B, S, C, H, W) in image_src's dtype, valid (B, S, 1, H, W) bool)``; valid is None
        when ``want_mask`` is false.
    """
    B, S, C, H, W = image_src.shape
    u, v, z, finite = project(depth_dst, src_trans_dst, camera_matrix, normalize_points)
    sx, ox = grid_scale(W)
    sy, oy = grid_scale(H)
    grid = torch.stack([u * sx + ox, v * sy + oy], dim=-1)
    grid = torch.where(finite[..., None], grid, torch.zeros_like(grid))

    compute_dtype = torch.promote_types(image_src.dtype, grid.dtype)
    sampled = F.grid_sample(
        image_src.reshape(B * S, C, H, W).to(compute_dtype),
        grid.reshape(B * S, H, W, 2).to(compute_dtype),
        mode="bilinear",
        padding_mode=padding_mode,
        align_corners=align_corners,
    ).reshape(B, S, C, H, W)
    keep = finite[:, :, None]
    warped = torch.where(keep, sampled, torch.zeros_like(sampled)).to(image_src.dtype)
    if not want_mask:
        return warped, None

    iu = sample_position(u, W, align_corners)
    iv = sample_position(v, H, align_corners)
    inside = (iu >= 0) & (iu <= W - 1) & (iv >= 0) & (iv <= H - 1)
    valid = (finite & (z > DIVIDE_EPS) & inside)[:, :, None]
    return warped, valid


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
