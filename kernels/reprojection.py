"""Triton kernels of the fused objective (the reprojection op), and their launchers.

The forward: one program handles a BH x BW tile of one batch element. The identity maps give the
first candidates; then, for every source, the kernel warps the reflected 3x3 neighbourhood of each
pixel on the fly (the projection and bilinear taps of :mod:`fastdepth.kernels.warp`, recomputed for
each neighbour and channel) and accumulates Monodepth2's SSIM and L1 terms as the photometric
kernel does. Only the per-pixel minimum and its index are written: the warped images never are.
The CUDA twin is csrc/reprojection.cu; it computes the window's taps once per source for every
channel, which here kept 240 registers live at one pixel per thread (the compile report), so this
kernel recomputes them per channel. The GPU benchmark's reprojection rows compare the two. The
alternative forward (``tile=True``; :data:`fastdepth.reprojection.FORWARD`), one program per block
of positions, warps each position once per source and channel into a scratch of its own (L1/L2
hold it) and reads the windows from there; the benchmark's ``<backend>-tile`` rows time it.

The backward of the geometry (depth, poses, K): one program per PB_H x PB_W block of positions, a
tile of pixels and its halo of 2, in phases separated by barriers over a scratch of its own in
global memory (L1/L2 hold it): the block warped, the SSIM gradients of the windows around the
tile's pixels, their adjoint times the sample's position gradient, then the warp's geometry
backward (csrc/reprojection.cuh has the same phases; CUDA keeps the scratch in shared memory).
With a gradient to the target or the sources, :mod:`fastdepth.reprojection` composes the warp and
photometric launchers instead.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from fastdepth.kernels import photometric as tiles
from fastdepth.kernels.launch import device_guard
from fastdepth.kernels.photometric import (
    _block_position,
    _mix_channels,
    _reflect,
    _reflect_count,
    _ssim_from_sums,
    _ssim_loss,
    _take_if_lower,
    _tile,
    _window_stat_grads,
)
from fastdepth.kernels.warp import (
    FLOAT_MAX,
    _depth_grad,
    _depth_shares,
    _geometry,
    _projection_backward,
    _ray,
    _ray_backward_k,
    _store_pose_sums,
    _taps,
    _transform_backward,
    reduce_partials,
)

from fastdepth.conventions import check_grid, sample_affine

#: 2 warps, four pixels per thread: with 4 or 8 warps ptxas spilled on sm_80 (the compile report)
NUM_WARPS = 2
#: a block of positions, one per thread (photometric's): the backward's tile of (PB_H - 4) x
#: (PB_W - 4) pixels and a halo of 2 (the windows of the tile's neighbours read the warped image 2
#: pixels out); the tile forward's (PB_H - 2) x (PB_W - 2) pixels and a halo of 1
PB_H = tiles.PB_H
PB_W = tiles.PB_W
BLOCK_WARPS = tiles.BLOCK_WARPS
#: planes of a backward program's scratch: the warped plane, d/d E[x], d/d E[x²], d/d E[xy]
SCRATCH_PLANES = tl.constexpr(4)


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
    return _sample(src, keep, o00, o01, o10, o11, m00, m01, m10, m11, fu, fv)


@triton.jit
def _sample(src, keep, o00, o01, o10, o11, m00, m01, m10, m11, fu, fv):
    """The bilinear sample of one source plane at its taps, 0 where not ``keep``."""
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
        best, best_k = _take_if_lower(loss, k, best, best_k)
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
        best, best_k = _take_if_lower(loss, S_ID + s, best, best_k)
    tl.store(loss_ptr + b * HW + off, best.to(loss_ptr.dtype.element_ty), mask=inside)
    tl.store(index_ptr + b * HW + off, best_k.to(tl.int64), mask=inside)


@triton.jit
def reprojection_tile_fwd_kernel(
    target_ptr,  # (B, C, H, W)
    sources_ptr,  # (B, S, C, H, W)
    depth_ptr,  # (B, H, W) float32
    pose_ptr,  # (B, S, 4, 4) float32
    k_ptr,  # (B, 3, 3) float32
    identity_ptr,  # (B, S_ID, H, W) identity loss maps, unused when S_ID == 0
    scratch_ptr,  # (programs, PB_H * PB_W) float32: a warped plane
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
    PB_H: tl.constexpr,
    PB_W: tl.constexpr,
):
    """The forward over blocks (FORWARD = "tile"): one program per PB_H x PB_W block of positions, a
    tile of pixels and its halo of 1; per source, each position's taps once; per channel, the block
    warped into the program's scratch, then, after a barrier, the SSIM and L1 terms of the window
    around each tile pixel read from it. The same samples, sums and comparisons in the same order as
    reprojection_fwd_kernel, each warp computed once instead of in 9 windows and every channel."""
    b = tl.program_id(2).to(tl.int64)
    HW = H * W
    pos, tile, n_tiles, row0, col0, own, _, r_in, c_in = _block_position(H, W, 1, PB_H, PB_W)
    off = r_in * W + c_in
    x_scr = scratch_ptr + (b * n_tiles + tile) * (PB_H * PB_W)
    kb = k_ptr + b * 9
    fx = tl.load(kb + 0)
    fy = tl.load(kb + 4)
    cx = tl.load(kb + 2)
    cy = tl.load(kb + 5)
    best = tl.full([PB_H * PB_W], float("inf"), tl.float32)
    best_k = tl.zeros([PB_H * PB_W], tl.int32)
    for k in range(S_ID):
        loss = tl.load(identity_ptr + (b * S_ID + k) * HW + off).to(tl.float32)
        best, best_k = _take_if_lower(loss, k, best, best_k)
    d, d_ok = _depth(depth_ptr + b * HW + off)
    tx, ty, rx, ry, rz = _ray(c_in.to(tl.float32), r_in.to(tl.float32), fx, fy, cx, cy, NORMALIZE)
    nine = 9 + (S_ID < 0).to(tl.int32)  # a runtime loop, as in the backward
    for s in range(S):
        bs = b * S + s
        iu, iv, keep = _sample_positions(d, tx, ty, rx, ry, rz, fx, fy, cx, cy, pose_ptr + bs * 16, W, H, sx, ox, sy,
                                         oy, BORDER)  # fmt: skip
        keep = keep & d_ok
        o00, o01, o10, o11, m00, m01, m10, m11, fu, fv = _taps(iu, iv, W, H)
        ssim = tl.zeros([PB_H * PB_W], tl.float32)
        l1 = tl.zeros_like(ssim)
        for c in range(C):
            yc = target_ptr + (b * C + c) * HW
            xv = _sample(sources_ptr + (bs * C + c) * HW, keep, o00, o01, o10, o11, m00, m01, m10, m11, fu, fv)
            tl.store(x_scr + pos, xv)
            tl.debug_barrier()
            s_x, s_y, s_xx, s_yy, s_xy = _scratch_window_sums(x_scr, yc, r_in, c_in, H, W, row0, col0, own, nine, PB_W)
            mx, my, a, bb, cc, dd = _ssim_from_sums(s_x, s_y, s_xx, s_yy, s_xy)
            ssim += _ssim_loss(a, bb, cc, dd)
            l1 += tl.abs(tl.load(yc + off).to(tl.float32) - xv)
            tl.debug_barrier()  # before the next channel overwrites the scratch
        loss = _mix_channels(ssim, l1, alpha, C)
        best, best_k = _take_if_lower(loss, S_ID + s, best, best_k)
    tl.store(loss_ptr + b * HW + off, best.to(loss_ptr.dtype.element_ty), mask=own)
    tl.store(index_ptr + b * HW + off, best_k.to(tl.int64), mask=own)


@triton.jit
def _depth(ptr):
    """The depth at ptr, NaN/inf sanitised to 0, and whether it was finite (csrc/warp.cuh: make_pixel)."""
    d = tl.load(ptr)
    d_ok = tl.abs(d) <= FLOAT_MAX
    return tl.where(d_ok, d, 0.0), d_ok


@triton.jit
def _sample_positions(d, tx, ty, rx, ry, rz, fx, fy, cx, cy, pose_s, W, H, sx, ox, sy, oy, BORDER: tl.constexpr):
    """The warp's sample position (iu, iv) and whether the projection is finite: what the sampling needs."""
    X, Y, Z, px, py, pz, inv_w, w_ok, inv_z, z_ok, x, y, finite, inside, iu, du, iv, dv = _geometry(
        d, tx, ty, rx, ry, rz, fx, fy, cx, cy, pose_s, W, H, sx, ox, sy, oy, BORDER
    )
    return iu, iv, finite


@triton.jit
def _scratch_window_sums(x_win, y_ptr, rows, cols, H, W, row0, col0, valid, nine, PB_W: tl.constexpr):
    """The sums of the windows centred on the in-image positions (rows, cols) where ``valid``
    (reflected at the image border) over one warped plane whose values sit in a block's scratch
    (image pixel (r, q) at x_win + (r - row0) * PB_W + q - col0) and the target plane y_ptr, in
    _warped's windows' order (csrc/reprojection.cuh: block_window_sums)."""
    sx = tl.zeros(rows.shape, tl.float32)
    sy = tl.zeros_like(sx)
    sxx = tl.zeros_like(sx)
    syy = tl.zeros_like(sx)
    sxy = tl.zeros_like(sx)
    for o in range(0, nine):
        r = _reflect(rows + (o // 3 - 1), H)
        q = _reflect(cols + (o % 3 - 1), W)
        xv = tl.load(x_win + (r - row0) * PB_W + (q - col0), mask=valid, other=0.0)
        yv = tl.load(y_ptr + r * W + q).to(tl.float32)
        sx += xv
        sy += yv
        sxx += xv * xv
        syy += yv * yv
        sxy += xv * yv
    return sx, sy, sxx, syy, sxy


@triton.jit
def _stat_grads(x_win, y_ptr, rows, cols, H, W, g, alpha_c, row0, col0, valid, nine, PB_W: tl.constexpr):
    """d loss / d (the box means E[x], E[x²], E[xy]) at the in-image positions (rows, cols) where
    ``valid``, of one warped plane in the block's scratch (:func:`_scratch_window_sums`), against the
    target plane y_ptr, times g / 9: the photometric backward's _candidate_grads without the
    reflection counts, which the adjoint applies."""
    sx, sy, sxx, syy, sxy = _scratch_window_sums(x_win, y_ptr, rows, cols, H, W, row0, col0, valid, nine, PB_W)
    mx, my, a, b, c, d = _ssim_from_sums(sx, sy, sxx, syy, sxy)
    g_mx, _, g_var, g_cov = _window_stat_grads(mx, my, a, b, c, d, g, alpha_c)
    return g_mx, g_var, g_cov


@triton.jit
def reprojection_bwd_kernel(
    grad_ptr,  # (B, 1, H, W) gradient of the loss map, image dtype
    index_ptr,  # (B, 1, H, W) int64 winners
    target_ptr,  # (B, C, H, W)
    sources_ptr,  # (B, S, C, H, W)
    depth_ptr,  # (B, H, W) float32
    pose_ptr,  # (B, S, 4, 4) float32
    k_ptr,  # (B, 3, 3) float32
    scratch_ptr,  # (programs, 4, PB_H * PB_W) float32: a warped plane and three of its stat gradients
    grad_depth_ptr,  # (B, H, W) float32, when NEED_DEPTH
    pose_part_ptr,  # (B, S, tiles, 16) float32, when NEED_POSE
    k_part_ptr,  # (B, tiles, 4) float32 [fx, fy, cx, cy], when NEED_K
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
    NEED_DEPTH: tl.constexpr,
    NEED_POSE: tl.constexpr,
    NEED_K: tl.constexpr,
    PB_H: tl.constexpr,
    PB_W: tl.constexpr,
):
    """One pass of the fused objective's backward for the geometry (depth, poses, K): per source and
    channel, (A) the block's positions warped into the scratch, (B) the stat gradients of every
    window the tile's pixels lie in, from the scratch, into the scratch, (C) their adjoint and the L1
    term at the tile's pixels: the warped image's gradient, never stored, times the sample's
    position gradient; then the warp's geometry backward. The same sums, in the same order, as the
    photometric backward followed by the warp backward."""
    b = tl.program_id(2).to(tl.int64)
    HW = H * W
    # the tile's pixels (own), and the positions whose windows they lie in (their neighbours)
    pos, tile, n_tiles, row0, col0, own, windows, r_in, c_in = _block_position(H, W, 2, PB_H, PB_W)
    off = r_in * W + c_in
    x_scr = scratch_ptr + (b * n_tiles + tile) * (SCRATCH_PLANES * PB_H * PB_W)
    sg_scr = x_scr + PB_H * PB_W

    kb = k_ptr + b * 9
    fx = tl.load(kb + 0)
    fy = tl.load(kb + 4)
    cx = tl.load(kb + 2)
    cy = tl.load(kb + 5)
    alpha_c = alpha / C
    # the 9 neighbours' loops run to a count the compiler cannot see (S_ID is never negative):
    # unrolled, their loads were hoisted and ptxas spilled at 128 registers
    nine = 9 + (S_ID < 0).to(tl.int32)

    # what lives through the loops is kept small (the depth, rays, geometry and upstream gradient are
    # loaded or recomputed where needed): kept, they took ptxas past 128 registers at one position
    # per thread (it spilled; 240 at four)
    gX = tl.zeros([PB_H * PB_W], tl.float32)  # d/d the point (X, Y) and the depth, summed over the sources
    gY = tl.zeros_like(gX)
    gd_along = tl.zeros_like(gX)
    gd_across = tl.zeros_like(gX)
    k_fx = 0.0  # the intrinsics' terms through the projection, summed over the tile and the sources
    k_fy = 0.0
    k_cx = 0.0
    k_cy = 0.0
    for s in range(S):
        bs = b * S + s
        pb = pose_ptr + bs * 16
        d, d_ok = _depth(depth_ptr + b * HW + off)
        tx, ty, rx, ry, rz = _ray(c_in.to(tl.float32), r_in.to(tl.float32), fx, fy, cx, cy, NORMALIZE)
        iu, iv, keep = _sample_positions(d, tx, ty, rx, ry, rz, fx, fy, cx, cy, pb, W, H, sx, ox, sy, oy, BORDER)
        keep = keep & d_ok
        live = keep & own
        o00, o01, o10, o11, m00, m01, m10, m11, fu, fv = _taps(iu, iv, W, H)
        won = tl.load(index_ptr + b * HW + off) == S_ID + s
        g = tl.where(won, tl.load(grad_ptr + b * HW + off).to(tl.float32), 0.0)
        g_iu = tl.zeros_like(gX)
        g_iv = tl.zeros_like(gX)
        for c in range(C):
            src = sources_ptr + (bs * C + c) * HW
            y_ptr = target_ptr + (b * C + c) * HW
            # (A) the warped plane at the block's positions (the warp's sample, 0 where not kept)
            v00 = tl.load(src + o00, mask=keep & m00, other=0.0).to(tl.float32)
            v01 = tl.load(src + o01, mask=keep & m01, other=0.0).to(tl.float32)
            v10 = tl.load(src + o10, mask=keep & m10, other=0.0).to(tl.float32)
            v11 = tl.load(src + o11, mask=keep & m11, other=0.0).to(tl.float32)
            xv = (1.0 - fu) * (1.0 - fv) * v00
            xv += fu * (1.0 - fv) * v01
            xv += (1.0 - fu) * fv * v10
            xv += fu * fv * v11
            xv = tl.where(keep, xv, 0.0)
            d_iu = (v01 - v00) * (1.0 - fv) + (v11 - v10) * fv
            d_iv = (v10 - v00) * (1.0 - fu) + (v11 - v01) * fu
            tl.store(x_scr + pos, xv)
            tl.debug_barrier()
            # (B) the stat gradients of the windows centred on the tile's neighbours
            g_mx, g_var, g_cov = _stat_grads(
                x_scr, y_ptr, r_in, c_in, H, W, g, alpha_c, row0, col0, windows, nine, PB_W
            )
            tl.store(sg_scr + pos, g_mx)
            tl.store(sg_scr + PB_H * PB_W + pos, g_var)
            tl.store(sg_scr + 2 * PB_H * PB_W + pos, g_cov)
            tl.debug_barrier()
            # (C) their adjoint at the tile's pixels, each window weighted by how often it holds
            # the pixel (reflection), and the L1 term: d loss / d warped, times d warped / d (iu, iv)
            a_mx = tl.zeros_like(gX)
            a_var = tl.zeros_like(gX)
            a_cov = tl.zeros_like(gX)
            for o in range(0, nine):
                oy_ = o // 3 - 1
                ox_ = o % 3 - 1
                count = _reflect_count(r_in, oy_, H) * _reflect_count(c_in, ox_, W)  # own: in the image
                at = pos + oy_ * PB_W + ox_
                use = own & (count > 0.0)
                a_mx += tl.where(use, count * tl.load(sg_scr + at, mask=use, other=0.0), 0.0)
                a_var += tl.where(use, count * tl.load(sg_scr + PB_H * PB_W + at, mask=use, other=0.0), 0.0)
                a_cov += tl.where(use, count * tl.load(sg_scr + 2 * PB_H * PB_W + at, mask=use, other=0.0), 0.0)
            yv = tl.load(y_ptr + off).to(tl.float32)
            # d|y - x|/dx = -sign(y - x), 0 where equal (torch.abs)
            g_l1 = g * (1.0 - alpha) / C * tl.where(yv > xv, 1.0, tl.where(yv < xv, -1.0, 0.0))
            g_x = tl.where(live, a_mx + 2.0 * xv * a_var + yv * a_cov - g_l1, 0.0)
            g_iu += g_x * d_iu
            g_iv += g_x * d_iv
        # the warp's geometry backward at the tile's pixels, the others zeroed (0 * inf never sums)
        d, d_ok = _depth(depth_ptr + b * HW + off)
        tx, ty, rx, ry, rz = _ray(c_in.to(tl.float32), r_in.to(tl.float32), fx, fy, cx, cy, NORMALIZE)
        X, Y, Z, px, py, pz, inv_w, w_ok, inv_z, z_ok, x, y, finite, inside, iu, du, iv, dv = _geometry(
            d, tx, ty, rx, ry, rz, fx, fy, cx, cy, pb, W, H, sx, ox, sy, oy, BORDER
        )
        X = tl.where(live, X, 0.0)
        Y = tl.where(live, Y, 0.0)
        Z = tl.where(live, Z, 0.0)
        px = tl.where(live, px, 0.0)
        py = tl.where(live, py, 0.0)
        pz = tl.where(live, pz, 0.0)
        x = tl.where(live, x, 0.0)
        y = tl.where(live, y, 0.0)
        gqx, gqy, gqz, gw, gu, gv = _projection_backward(g_iu, g_iv, du, dv, x, y, px, py, pz, inv_w, w_ok,
                                                         inv_z, z_ok, fx, fy)  # fmt: skip
        if NEED_K:
            k_fx += tl.sum(gu * x, 0)
            k_fy += tl.sum(gv * y, 0)
            k_cx += tl.sum(gu, 0)
            k_cy += tl.sum(gv, 0)
        if NEED_POSE:
            _store_pose_sums(pose_part_ptr + (bs * n_tiles + tile) * 16, gqx, gqy, gqz, gw, X, Y, Z)
        dX, dY, dZ = _transform_backward(gqx, gqy, gqz, gw, pb)
        gX += dX
        gY += dY
        along, across = _depth_shares(gqx, gqy, gqz, dX, dY, dZ, X, Y, Z, z_ok, rx, ry, rz, pb)
        gd_along += along
        gd_across += across
    d, d_ok = _depth(depth_ptr + b * HW + off)
    tx, ty, rx, ry, rz = _ray(c_in.to(tl.float32), r_in.to(tl.float32), fx, fy, cx, cy, NORMALIZE)
    gd = _depth_grad(gd_along, gd_across, d)
    if NEED_DEPTH:
        tl.store(grad_depth_ptr + b * HW + off, gd, mask=own)
    if NEED_K:
        r_fx, r_fy, r_cx, r_cy = _ray_backward_k(gX, gY, gd, d, tx, ty, rx, ry, rz, fx, fy, NORMALIZE)
        part = k_part_ptr + (b * n_tiles + tile) * 4
        tl.store(part + 0, k_fx + tl.sum(tl.where(own, r_fx, 0.0), 0))
        tl.store(part + 1, k_fy + tl.sum(tl.where(own, r_fy, 0.0), 0))
        tl.store(part + 2, k_cx + tl.sum(tl.where(own, r_cx, 0.0), 0))
        tl.store(part + 3, k_cy + tl.sum(tl.where(own, r_cy, 0.0), 0))


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
    tile: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel: (loss (B, 1, H, W) in the image dtype, index int64); ``tile``: the
    block kernel (reprojection_tile_fwd_kernel) instead of the per-pixel one."""
    B, S, C, H, W = sources.shape
    target, sources, depth, poses, K = (t.contiguous() for t in (target, sources, depth, poses, K))
    loss = torch.empty((B, 1, H, W), dtype=target.dtype, device=target.device)
    index = torch.empty((B, 1, H, W), dtype=torch.int64, device=target.device)
    s_id = 0 if identity is None else identity.shape[1]
    identity = loss if identity is None else identity.contiguous()
    if loss.numel() > 0:
        sx, ox = sample_affine(W, align_corners)
        sy, oy = sample_affine(H, align_corners)
        if tile:
            grid = (triton.cdiv(W, PB_W - 2), triton.cdiv(H, PB_H - 2), B)
            check_grid("target", grid)
            scratch = torch.empty(B * grid[0] * grid[1] * PB_H * PB_W, dtype=torch.float32, device=target.device)
            with device_guard(target):
                reprojection_tile_fwd_kernel[grid](
                    target, sources, depth, poses, K, identity, scratch, loss, index, s_id, S, C, H, W, sx, ox, sy,
                    oy, float(alpha), NORMALIZE=normalize_points, BORDER=padding_mode == "border", PB_H=PB_H,
                    PB_W=PB_W, num_warps=BLOCK_WARPS,
                )  # fmt: skip
            return loss, index
        grid = tiles._grid(B, C, H, W)  # the photometric kernel's tiles
        with device_guard(target):
            reprojection_fwd_kernel[grid](
                target, sources, depth, poses, K, identity, loss, index, s_id, S, C, H, W, sx, ox, sy, oy,
                float(alpha), NORMALIZE=normalize_points, BORDER=padding_mode == "border", BH=tiles.BH, BW=tiles.BW,
                num_warps=NUM_WARPS,
            )  # fmt: skip
    return loss, index


def reprojection_backward(
    grad: torch.Tensor,
    index: torch.Tensor,
    target: torch.Tensor,
    sources: torch.Tensor,
    depth: torch.Tensor,
    poses: torch.Tensor,
    K: torch.Tensor,
    s_id: int,
    alpha: float,
    normalize_points: bool,
    padding_mode: str,
    align_corners: bool,
    needs: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the one-pass backward: (grad depth (B, 1, H, W), grad poses (B, S, 4, 4), grad K
    (B, 3, 3)), float32, empty where ``needs`` (depth, poses, K) says not needed. ``index``: the
    forward's winners, the warped sources from ``s_id`` on. The pose and intrinsics gradients are
    per-tile partial sums reduced in a fixed order: deterministic."""
    need_depth, need_poses, need_k = needs
    B, S, C, H, W = sources.shape
    grid = (triton.cdiv(W, PB_W - 4), triton.cdiv(H, PB_H - 4), B)
    check_grid("target", grid)
    tiles = grid[0] * grid[1]
    f32 = dict(dtype=torch.float32, device=target.device)
    grad, index, target, sources, depth, poses, K = (
        t.contiguous() for t in (grad, index, target, sources, depth, poses, K)
    )
    g_depth = torch.zeros(depth.shape if need_depth else (0,), **f32)
    pose_part = torch.zeros((B, S, tiles, 16) if need_poses else (0,), **f32)
    k_part = torch.zeros((B, tiles, 4) if need_k else (0,), **f32)
    if target.numel() > 0 and any(needs):
        scratch = torch.empty(B * tiles * int(SCRATCH_PLANES) * PB_H * PB_W, **f32)
        sx, ox = sample_affine(W, align_corners)
        sy, oy = sample_affine(H, align_corners)
        with device_guard(target):
            reprojection_bwd_kernel[grid](
                grad, index, target, sources, depth, poses, K, scratch, g_depth, pose_part, k_part,
                s_id, S, C, H, W, sx, ox, sy, oy, float(alpha),
                NORMALIZE=normalize_points, BORDER=padding_mode == "border",
                NEED_DEPTH=need_depth, NEED_POSE=need_poses, NEED_K=need_k, PB_H=PB_H, PB_W=PB_W,
                num_warps=BLOCK_WARPS,
            )  # fmt: skip
    return g_depth, *reduce_partials(pose_part, k_part, need_poses, need_k)


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
        yield (
            f"reprojection_tile_fwd_kernel[{img}]",
            reprojection_tile_fwd_kernel,
            dict(
                target_ptr=f"*{img}",
                sources_ptr=f"*{img}",
                **geometry,
                identity_ptr=f"*{img}",
                scratch_ptr="*fp32",
                loss_ptr=f"*{img}",
                index_ptr="*i64",
                **scalars,
            ),  # fmt: skip
            dict(NORMALIZE=True, BORDER=True, PB_H=PB_H, PB_W=PB_W),
            BLOCK_WARPS,
        )
        yield (
            f"reprojection_bwd_kernel[{img}]",
            reprojection_bwd_kernel,
            dict(
                grad_ptr=f"*{img}",
                index_ptr="*i64",
                target_ptr=f"*{img}",
                sources_ptr=f"*{img}",
                **geometry,
                scratch_ptr="*fp32",
                grad_depth_ptr="*fp32",
                pose_part_ptr="*fp32",
                k_part_ptr="*fp32",
                **scalars,
            ),  # fmt: skip
            dict(NORMALIZE=True, BORDER=True, NEED_DEPTH=True, NEED_POSE=True, NEED_K=True, PB_H=PB_H, PB_W=PB_W),
            BLOCK_WARPS,
        )
