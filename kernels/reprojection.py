"""Triton kernel of the fused objective (the reprojection op's forward), and its launcher.

One program handles a BH x BW tile of one batch element. The identity maps give the first
candidates; then, for every source, the kernel warps the reflected 3x3 neighbourhood of each pixel
on the fly (the projection and bilinear taps of :mod:`fastdepth.kernels.warp`, recomputed for each
neighbour and channel) and accumulates Monodepth2's SSIM and L1 terms as the photometric kernel
does. Only the per-pixel minimum and its index are written: the warped images never are. The
backward is composed of the warp and photometric launchers (see :mod:`fastdepth.reprojection`).
The CUDA twin is csrc/reprojection.cu; it computes the window's taps once per source for every
channel, which here kept 240 registers live at one pixel per thread (the compile report), so this
kernel recomputes them per channel. The GPU benchmark's reprojection rows compare the two.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from fastdepth.kernels import photometric as tiles
from fastdepth.kernels.launch import device_guard
from fastdepth.kernels.photometric import _mix_channels, _reflect, _ssim_from_sums, _ssim_loss, _tile
from fastdepth.kernels.warp import FLOAT_MAX, _geometry, _ray, _taps

from fastdepth.conventions import sample_affine

#: 2 warps, four pixels per thread: with 4 or 8 warps ptxas spilled on sm_80 (the compile report)
NUM_WARPS = 2


@triton.jit
def _warped(src, depth_b, pose_s, rows, cols, fx, fy, cx, cy, H, W, sx, ox, sy, oy, NORMALIZE: tl.constexpr,
            BORDER: tl.constexpr):  # fmt: skip
    """The warped value of one source plane at in-range pixels (rows, cols): 0 where the depth or
    the projection is not finite (the warp's convention)."""
    d = tl.load(depth_b + rows * W + cols)
    d_ok = tl.abs(d) <= FLOAT_MAX
    d = tl.where(d_ok, d, 0.0)
    tx, ty, rx, ry, rz = _ray(cols.to(tl.float32), rows.to(tl.float32), fx, fy, cx, cy, NORMALIZE)
    X, Y, Z, px, py, pz, inv_w, w_ok, inv_z, z_ok, x, y, finite, inside, iu, du, iv, dv = _geometry(
        d, tx, ty, rx, ry, rz, fx, fy, cx, cy, pose_s, W, H, sx, ox, sy, oy, BORDER
    )
    keep = d_ok & finite
    o00, o01, o10, o11, m00, m01, m10, m11, fu, fv = _taps(iu, iv, W, H)
    val = (1.0 - fu) * (1.0 - fv) * tl.load(src + o00, mask=keep & m00, other=0.0).to(tl.float32)
    val += fu * (1.0 - fv) * tl.load(src + o01, mask=keep & m01, other=0.0).to(tl.float32)
    val += (1.0 - fu) * fv * tl.load(src + o10, mask=keep & m10, other=0.0).to(tl.float32)
    val += fu * fv * tl.load(src + o11, mask=keep & m11, other=0.0).to(tl.float32)
    return tl.where(keep, val, 0.0)


@triton.jit
def reprojection_fwd_kernel(
    target_ptr,  # (B, C, H, W)
    sources_ptr,  # (B, S, C, H, W)
    depth_ptr,  # (B, H, W) float32
    pose_ptr,  # (B, S, 4, 4) float32
    k_ptr,  # (B, 3, 3) float32
    identity_ptr,  # (B, S_ID, H, W) identity loss maps, unused when S_ID == 0
    loss_ptr,  # (B, 1, H, W) in the image dtype
    index_ptr,  # (B, 1, H, W) int64
    S_ID,
    S,
    C,
    H,
    W,
    sx,
    ox,
    sy,
    oy,
    alpha,
    NORMALIZE: tl.constexpr,
    BORDER: tl.constexpr,
    BH: tl.constexpr,
    BW: tl.constexpr,
):
    b = tl.program_id(2).to(tl.int64)
    HW = H * W
    rows, cols, inside, off = _tile(H, W, BH, BW)
    kb = k_ptr + b * 9
    fx = tl.load(kb + 0)
    fy = tl.load(kb + 4)
    cx = tl.load(kb + 2)
    cy = tl.load(kb + 5)
    depth_b = depth_ptr + b * HW
    best = tl.full([BH, BW], float("inf"), tl.float32)
    best_k = tl.zeros([BH, BW], tl.int32)
    for k in range(S_ID):
        loss = tl.load(identity_ptr + (b * S_ID + k) * HW + off).to(tl.float32)
        take = (loss < best) | ((loss != loss) & (best == best))
        best = tl.where(take, loss, best)
        best_k = tl.where(take, k, best_k)
    for s in range(S):
        bs = b * S + s
        pose_s = pose_ptr + bs * 16
        ssim = tl.zeros([BH, BW], tl.float32)
        l1 = tl.zeros([BH, BW], tl.float32)
        for c in range(C):
            src = sources_ptr + (bs * C + c) * HW
            yc = target_ptr + (b * C + c) * HW
            s_x = tl.zeros([BH, BW], tl.float32)
            s_y = tl.zeros_like(s_x)
            s_xx = tl.zeros_like(s_x)
            s_yy = tl.zeros_like(s_x)
            s_xy = tl.zeros_like(s_x)
            center = tl.zeros_like(s_x)
            # a runtime loop over the 9 neighbours: unrolled, 9 inlined warps would not fit in registers
            for o in range(9):
                r = _reflect(rows + (o // 3 - 1), H)
                q = _reflect(cols + (o % 3 - 1), W)
                xv = _warped(src, depth_b, pose_s, r, q, fx, fy, cx, cy, H, W, sx, ox, sy, oy, NORMALIZE, BORDER)
                yv = tl.load(yc + r * W + q).to(tl.float32)
                s_x += xv
                s_y += yv
                s_xx += xv * xv
                s_yy += yv * yv
                s_xy += xv * yv
                center += tl.where(o == 4, xv, 0.0)
            mx, my, a, bb, cc, d = _ssim_from_sums(s_x, s_y, s_xx, s_yy, s_xy)
            ssim += _ssim_loss(a, bb, cc, d)
            l1 += tl.abs(tl.load(yc + off).to(tl.float32) - center)
        loss = _mix_channels(ssim, l1, alpha, C)
        # strictly lower wins (ties: lowest index); a NaN wins once and stays, as in torch.min
        take = (loss < best) | ((loss != loss) & (best == best))
        best = tl.where(take, loss, best)
        best_k = tl.where(take, S_ID + s, best_k)
    tl.store(loss_ptr + b * HW + off, best.to(loss_ptr.dtype.element_ty), mask=inside)
    tl.store(index_ptr + b * HW + off, best_k.to(tl.int64), mask=inside)


def reprojection_forward(
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
    """Launch the forward kernel: (loss (B, 1, H, W) in the image dtype, index int64)."""
    B, S, C, H, W = sources.shape
    grid = tiles._grid(B, C, H, W)  # the photometric kernel's tiles
    target, sources, depth, poses, K = (t.contiguous() for t in (target, sources, depth, poses, K))
    loss = torch.empty((B, 1, H, W), dtype=target.dtype, device=target.device)
    index = torch.empty((B, 1, H, W), dtype=torch.int64, device=target.device)
    s_id = 0 if identity is None else identity.shape[1]
    identity = loss if identity is None else identity.contiguous()
    if loss.numel() > 0:
        sx, ox = sample_affine(W, align_corners)
        sy, oy = sample_affine(H, align_corners)
        with device_guard(target):
            reprojection_fwd_kernel[grid](
                target, sources, depth, poses, K, identity, loss, index, s_id, S, C, H, W, sx, ox, sy, oy,
                float(alpha), NORMALIZE=normalize_points, BORDER=padding_mode == "border", BH=tiles.BH, BW=tiles.BW,
                num_warps=NUM_WARPS,
            )  # fmt: skip
    return loss, index


def aot_variants():
    """(label, kernel, signature, constexprs, num_warps) for the compile report, per image dtype."""
    scalars = dict(
        S_ID="i32", S="i32", C="i32", H="i32", W="i32", sx="fp32", ox="fp32", sy="fp32", oy="fp32", alpha="fp32"
    )
    geometry = dict(depth_ptr="*fp32", pose_ptr="*fp32", k_ptr="*fp32")
    for img in ("fp32", "fp16", "bf16"):
        yield (
            f"reprojection_fwd_kernel[{img}]",
            reprojection_fwd_kernel,
            dict(
                target_ptr=f"*{img}",
                sources_ptr=f"*{img}",
                **geometry,
                identity_ptr=f"*{img}",
                loss_ptr=f"*{img}",
                index_ptr="*i64",
                **scalars,
            ),  # fmt: skip
            dict(NORMALIZE=True, BORDER=True, BH=tiles.BH, BW=tiles.BW),
            NUM_WARPS,
        )
