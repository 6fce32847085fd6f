"""The plain-PyTorch reference of the warp op: Kornia's conventions (see :mod:`fastdepth.warp`).

The oracle of the tests and the CPU path of ``backend="auto"``: only differentiable PyTorch ops
(autograd, gradcheck and double backward work), float64 accepted for tight comparisons. Inputs are
assumed validated by :func:`fastdepth.warp`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastdepth.conventions import DIVIDE_EPS, grid_scale, sample_affine


def intrinsics(camera_matrix: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """fx, fy, cx, cy of a (B, 3, 3) K, each shaped (B, 1, 1, 1) to broadcast over (B, S, H, W)."""
    k = camera_matrix
    return tuple(k[:, i, j].reshape(-1, 1, 1, 1) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))


def safe_inverse(den: torch.Tensor) -> torch.Tensor:
    """``1 / den`` where ``|den| > 1e-8``, else 1: Kornia's homogeneous rule as a factor."""
    return torch.where(den.abs() > DIVIDE_EPS, den, 1.0).reciprocal()  # 1 / 1 = 1 where undivided


def _safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``|den| > 1e-8``, else ``num`` unchanged (Kornia's homogeneous rule)."""
    return num * safe_inverse(den)


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
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Back-project every destination pixel, move it to each source frame and project it.

    Args:
        depth_dst: (B, 1, H, W) depth of the destination view.
        src_trans_dst: (B, S, 4, 4) destination -> source transforms.
        camera_matrix: (B, 3, 3) intrinsics; only fx, fy, cx, cy are read.
        normalize_points: read depth as the Euclidean ray length instead of z.

    Returns:
        ``(u, v, z, finite)``, each (B, S, H, W) and in ``dtype``: the projected pixel column and row in
        the source image, the camera z of the point in the source frame (after the division by w),
        and whether the pixel's depth is finite and its projection within the range of the inputs'
        dtype (as the kernels decide it). Non-finite depth is replaced by 0 before any arithmetic so
        that no NaN reaches the gradients. The arithmetic is float64 whatever the inputs' dtype (the
        oracle stays accurate where float32 would overflow or cancel: depths near 1e30 and beyond)
        unless ``dtype`` says otherwise (the cost volume's fused path projects in its compute dtype).
    """
    B, _, H, W = depth_dst.shape
    limit = torch.finfo(depth_dst.dtype).max
    depth_ok = torch.isfinite(depth_dst)
    depth_dst, src_trans_dst, camera_matrix = (t.to(dtype) for t in (depth_dst, src_trans_dst, camera_matrix))
    dtype, device = depth_dst.dtype, depth_dst.device
    fx, fy, cx, cy = intrinsics(camera_matrix)
    col = torch.arange(W, dtype=dtype, device=device).view(1, 1, 1, W)
    row = torch.arange(H, dtype=dtype, device=device).view(1, 1, H, 1)
    rx = ((col - cx) / fx).expand(B, 1, H, W)
    ry = ((row - cy) / fy).expand(B, 1, H, W)
    rz = torch.ones_like(rx)
    if normalize_points:
        norm = torch.sqrt(rx * rx + ry * ry + 1.0).clamp_min(1e-12)
        rx, ry, rz = rx / norm, ry / norm, rz / norm

    depth = torch.where(depth_ok, depth_dst, torch.zeros_like(depth_dst))
    points = torch.stack([rx * depth, ry * depth, rz * depth, torch.ones_like(depth)], dim=-1)
    # row vectors times pose^T, as Kornia's transform_points: (B, 1, HW, 4) @ (B, S, 4, 4) -> (B, S, HW, 4)
    moved = torch.matmul(points.reshape(B, 1, H * W, 4), src_trans_dst.transpose(-1, -2))
    moved = moved.reshape(B, src_trans_dst.shape[1], H, W, 4)
    moved = _safe_divide(moved[..., :3], moved[..., 3:])
    xy = _safe_divide(moved[..., :2], moved[..., 2:])
    u = fx * xy[..., 0] + cx
    v = fy * xy[..., 1] + cy
    finite = depth_ok & (u.abs() <= limit) & (v.abs() <= limit)
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
    # beyond |g| = 2 every tap is outside the image (zeros) or clipped to its edge (border), with a
    # zero gradient either way: clamping there keeps the sampling grid finite in the image's dtype
    grid = torch.where(finite[..., None], grid.clamp(-4.0, 4.0), torch.zeros_like(grid))

    compute_dtype = torch.promote_types(image_src.dtype, depth_dst.dtype)
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

    return warped, validity(u, v, z, finite, H, W, align_corners)[:, :, None]


def validity(u, v, z, finite, H: int, W: int, align_corners: bool) -> torch.Tensor:
    """The warp's mask from :func:`project`'s outputs: finite, in front of the source camera and all
    four bilinear taps inside the source image."""
    iu = sample_position(u, W, align_corners)
    iv = sample_position(v, H, align_corners)
    inside = (iu >= 0) & (iu <= W - 1) & (iv >= 0) & (iv <= H - 1)
    return finite & (z > DIVIDE_EPS) & inside
