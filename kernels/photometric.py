"""Triton kernels of the SSIM + L1 photometric loss and of the min-reprojection objective.

Both ops share one forward and one backward kernel. A *candidate* is an image compared with the
target: ``photometric_loss(pred, target)`` has one (pred); ``min_reprojection_loss`` has the
identity sources followed by the warped sources, and keeps per pixel the candidate with the lowest
loss (strictly lower replaces: ties go to the lowest index).

One program handles a BH x BW tile of one batch element, loops over channels and candidates, and
reads the 3x3 reflected neighbourhoods straight from memory (L1/L2 serve the overlaps). The
forward writes only the loss map (and the winner index). The backward recomputes the window
statistics of every output pixel whose window touches the tile (the 3x3 neighbours of each input
pixel) instead of storing them, and applies the adjoint of the reflected box filter: an input
pixel next to the border appears twice in its neighbour's window. The tile backward
(``tile=True``; :data:`fastdepth.photometric.BACKWARD`), one program per PB_H x PB_W block of
positions (a tile and its halo of 1), computes each window's stat gradients once into a scratch of
its own (L1/L2 hold it) and sums them at the tile's pixels from there: the same sums in the same
order. The CUDA twin is csrc/photometric.cu.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from fastdepth.kernels.launch import device_guard

from fastdepth.conventions import INDEX_LIMIT, SSIM_C1, SSIM_C2, check_grid

BH = 8
BW = 32
NUM_WARPS = 4
#: a block of positions, one per thread: the tile backward's (PB_H - 2) x (PB_W - 2) pixels and a
#: halo of 1 (csrc/photometric.cuh: kBlockH, kBlockW); the fused objective's kernels use it too
PB_H = 16
PB_W = 32
BLOCK_WARPS = 16
#: planes of a tile backward program's scratch: d/d E[x], E[y], E[x²], E[xy] of one candidate plane
SCRATCH_PLANES = tl.constexpr(4)

SSIM_C1 = tl.constexpr(SSIM_C1)
SSIM_C2 = tl.constexpr(SSIM_C2)
NINTH = tl.constexpr(1.0 / 9.0)  # a window's box weight: the means are the sums times it


@triton.jit
def _reflect(i, n):
    """ReflectionPad index map (i in [-1, n]); clamped so that any i stays a valid address."""
    i = tl.where(i < 0, -i, i)
    i = tl.where(i > n - 1, 2 * (n - 1) - i, i)
    return tl.minimum(tl.maximum(i, 0), n - 1)


@triton.jit
def _window_moments(x_ptr, y_ptr, rows, cols, H, W):
    """Sums over the reflected 3x3 window centred on (rows, cols) (a tile's rows and columns, or
    both of a flat block's positions): x, y, x², y², xy."""
    sx = tl.zeros((rows + cols).shape, tl.float32)
    sy = tl.zeros_like(sx)
    sxx = tl.zeros_like(sx)
    syy = tl.zeros_like(sx)
    sxy = tl.zeros_like(sx)
    for dy in tl.static_range(3):
        r = _reflect(rows + (dy - 1), H) * W
        for dx in tl.static_range(3):
            off = r + _reflect(cols + (dx - 1), W)
            xv = tl.load(x_ptr + off).to(tl.float32)
            yv = tl.load(y_ptr + off).to(tl.float32)
            sx += xv
            sy += yv
            sxx += xv * xv
            syy += yv * yv
            sxy += xv * yv
    return sx, sy, sxx, syy, sxy


@triton.jit
def _ssim_terms(x_ptr, y_ptr, rows, cols, H, W):
    """Monodepth2's SSIM pieces at (rows, cols): box means and the four factors of n / d."""
    sx, sy, sxx, syy, sxy = _window_moments(x_ptr, y_ptr, rows, cols, H, W)
    return _ssim_from_sums(sx, sy, sxx, syy, sxy)


@triton.jit
def _ssim_from_sums(sx, sy, sxx, syy, sxy):
    """The SSIM pieces from the 3x3 window sums of x, y, x², y², xy (csrc/photometric.cuh: ssim_from_sums)."""
    mx = sx * NINTH
    my = sy * NINTH
    a = 2.0 * mx * my + SSIM_C1
    b = 2.0 * (sxy * NINTH - mx * my) + SSIM_C2
    c = mx * mx + my * my + SSIM_C1
    d = (sxx * NINTH - mx * mx) + (syy * NINTH - my * my) + SSIM_C2
    return mx, my, a, b, c, d


@triton.jit
def _clamp01(v):
    """clamp(v, 0, 1) that keeps NaN (as torch.clamp does; plain tl.minimum/maximum drop it)."""
    v = tl.maximum(v, 0.0, propagate_nan=tl.PropagateNan.ALL)
    return tl.minimum(v, 1.0, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _ssim_loss(a, b, c, d):
    """The clamped SSIM term (1 - SSIM) / 2 of one channel from its pieces (photometric.cuh: ssim_loss)."""
    return _clamp01((1.0 - (a * b) / (c * d)) * 0.5)


@triton.jit
def _mix_channels(ssim, l1, alpha, C):
    """alpha * SSIM + (1 - alpha) * L1 from the channel sums, averaged (photometric.cuh: mix_channels)."""
    return (alpha * ssim + (1.0 - alpha) * l1) / C


@triton.jit
def _candidate_loss(x_ptr, y_ptr, plane_stride, rows, cols, off, C, H, W, alpha):
    """Per-pixel loss map of one candidate x against the target y, averaged over the C planes.

    ``c * plane_stride`` is int32 (64-bit offsets here triple the registers): the launcher checks
    that (C - 1) * H * W stays below 2**31."""
    ssim = tl.zeros([rows.shape[0], cols.shape[1]], tl.float32)
    l1 = tl.zeros_like(ssim)
    for c in range(C):
        xc = x_ptr + c * plane_stride
        yc = y_ptr + c * plane_stride
        mx, my, a, b, cc, d = _ssim_terms(xc, yc, rows, cols, H, W)
        ssim += _ssim_loss(a, b, cc, d)
        l1 += tl.abs(tl.load(yc + off).to(tl.float32) - tl.load(xc + off).to(tl.float32))
    return _mix_channels(ssim, l1, alpha, C)


@triton.jit
def _tile(H, W, BH: tl.constexpr, BW: tl.constexpr):
    rows = tl.program_id(1) * BH + tl.arange(0, BH)[:, None]
    cols = tl.program_id(0) * BW + tl.arange(0, BW)[None, :]
    inside = (rows < H) & (cols < W)
    # out-of-image lanes read a clamped address and are never stored
    off = tl.minimum(rows, H - 1) * W + tl.minimum(cols, W - 1)
    return rows, cols, inside, off


@triton.jit
def photometric_fwd_kernel(
    target_ptr,  # (B, C, H, W)
    identity_ptr,  # (B, S_ID, C, H, W), unused when S_ID == 0
    warped_ptr,  # (B, S_W, C, H, W)
    loss_ptr,  # (B, 1, H, W) in the image dtype
    index_ptr,  # (B, 1, H, W) int64, written when WRITE_INDEX
    S_ID,
    S_W,
    C,
    H,
    W,
    alpha,
    WRITE_INDEX: tl.constexpr,
    BH: tl.constexpr,
    BW: tl.constexpr,
):
    b = tl.program_id(2).to(tl.int64)
    HW = H * W
    rows, cols, inside, off = _tile(H, W, BH, BW)
    y_ptr = target_ptr + b * C * HW
    best = tl.full([BH, BW], float("inf"), tl.float32)
    best_k = tl.zeros([BH, BW], tl.int32)
    for k in range(S_ID + S_W):
        if k < S_ID:
            x_ptr = identity_ptr + (b * S_ID + k) * C * HW
        else:
            x_ptr = warped_ptr + (b * S_W + (k - S_ID)) * C * HW
        loss = _candidate_loss(x_ptr, y_ptr, HW, rows, cols, off, C, H, W, alpha)
        best, best_k = _take_if_lower(loss, k, best, best_k)
    tl.store(loss_ptr + b * HW + off, best.to(loss_ptr.dtype.element_ty), mask=inside)
    if WRITE_INDEX:
        tl.store(index_ptr + b * HW + off, best_k.to(tl.int64), mask=inside)


@triton.jit
def _take_if_lower(loss, k, best, best_k):
    """Candidate k's loss replaces the best so far where strictly lower (ties: the lowest index), or
    where it is the first NaN (a NaN wins once and stays, as in torch.min)."""
    take = (loss < best) | ((loss != loss) & (best == best))
    return tl.where(take, loss, best), tl.where(take, k, best_k)


@triton.jit
def _reflect_count(r, o, n):
    """How often input index r appears in the reflected 3-window of output index r + o (o in -1..1)."""
    p = r + o
    valid = (p >= 0) & (p < n)
    twice = ((o == -1) & (r == 1)) | ((o == 1) & (r == n - 2))
    return tl.where(valid, tl.where(twice, 2.0, 1.0), 0.0)


@triton.jit
def _candidate_grads(x_ptr, y_ptr, grad_ptr, index_ptr, k, rows, cols, off, H, W, alpha_c, USE_INDEX: tl.constexpr):
    """Gradients of the loss map w.r.t. one plane of candidate x and of the target y at the tile.

    Sums, over the output pixels p whose reflected window holds the tile's pixels, the chain rule
    through the box means (count * d loss(p) / d mean / 9), then adds the L1 term.
    """
    g_mx = tl.zeros([rows.shape[0], cols.shape[1]], tl.float32)
    g_my = tl.zeros_like(g_mx)
    g_var = tl.zeros_like(g_mx)  # d/d E[x²] (= d/d E[y²])
    g_cov = tl.zeros_like(g_mx)  # d/d E[xy]
    # a runtime loop: unrolling the 9 neighbours makes the compiler hoist 162 loads and spill
    for o in range(9):
        oy = o // 3 - 1
        ox = o % 3 - 1
        count = _reflect_count(rows, oy, H) * _reflect_count(cols, ox, W)
        p_rows = tl.minimum(tl.maximum(rows + oy, 0), H - 1)
        p_cols = tl.minimum(tl.maximum(cols + ox, 0), W - 1)
        p_off = p_rows * W + p_cols
        g = tl.load(grad_ptr + p_off).to(tl.float32)
        if USE_INDEX:
            g = tl.where(tl.load(index_ptr + p_off) == k, g, 0.0)
        mx, my, a, b, c, d = _ssim_terms(x_ptr, y_ptr, p_rows, p_cols, H, W)
        s_mx, s_my, s_var, s_cov = _window_stat_grads(mx, my, a, b, c, d, g, alpha_c)
        # a neighbour outside the image (count 0) adds nothing, as in the CUDA kernel
        use = count > 0.0
        g_mx += tl.where(use, count * s_mx, 0.0)
        g_my += tl.where(use, count * s_my, 0.0)
        g_var += tl.where(use, count * s_var, 0.0)
        g_cov += tl.where(use, count * s_cov, 0.0)
    xv = tl.load(x_ptr + off).to(tl.float32)
    yv = tl.load(y_ptr + off).to(tl.float32)
    return g_mx, g_my, g_var, g_cov, xv, yv


@triton.jit
def _candidate_planes(identity_ptr, warped_ptr, grad_identity_ptr, grad_warped_ptr, b, k, c, S_ID, S_W, C, HW):
    """Channel c of candidate k (the identity sources, then the warped ones) and of its gradient."""
    if k < S_ID:
        x_ptr = identity_ptr + ((b * S_ID + k) * C + c) * HW
        gx_ptr = grad_identity_ptr + ((b * S_ID + k) * C + c) * HW
    else:
        x_ptr = warped_ptr + ((b * S_W + (k - S_ID)) * C + c) * HW
        gx_ptr = grad_warped_ptr + ((b * S_W + (k - S_ID)) * C + c) * HW
    return x_ptr, gx_ptr


@triton.jit
def _pixel_grads(g_mx, g_my, g_var, g_cov, xv, yv, g, alpha, C):
    """d/dx and d/dy at a pixel from the summed stat gradients of the windows it lies in and the L1
    term with the upstream gradient g there (csrc/photometric.cuh: pixel_grads)."""
    # d|y - x|/dx = -sign(y - x), 0 where equal (torch.abs)
    g_l1 = g * (1.0 - alpha) / C * tl.where(yv > xv, 1.0, tl.where(yv < xv, -1.0, 0.0))
    return g_mx + 2.0 * xv * g_var + yv * g_cov - g_l1, g_my + 2.0 * yv * g_var + xv * g_cov + g_l1


@triton.jit
def _needed_candidates(S_ID, S_W, NEED_TARGET: tl.constexpr, NEED_IDENTITY: tl.constexpr, NEED_WARPED: tl.constexpr):
    """The candidates [first, last) whose gradient is needed: a candidate's gradient matters only for
    its own input's gradient and the target's (csrc/photometric.cuh: needed_candidates); and those
    [own_first, own_last) whose own gradient is stored (a range, not a select of NEED_*: Triton
    3.2's interpreter cannot make a tensor of a constexpr bool)."""
    first = 0 if NEED_TARGET or NEED_IDENTITY else S_ID
    last = S_ID + S_W if NEED_TARGET or NEED_WARPED else S_ID
    own_first = 0 if NEED_IDENTITY else S_ID
    own_last = S_ID + S_W if NEED_WARPED else S_ID
    return first, last, own_first, own_last


@triton.jit
def photometric_bwd_kernel(
    grad_ptr,  # (B, 1, H, W) gradient of the loss map
    index_ptr,  # (B, 1, H, W) int64 winner, read when USE_INDEX
    target_ptr,
    identity_ptr,
    warped_ptr,
    grad_target_ptr,  # (B, C, H, W), when NEED_TARGET
    grad_identity_ptr,  # (B, S_ID, C, H, W), when NEED_IDENTITY
    grad_warped_ptr,  # (B, S_W, C, H, W), when NEED_WARPED
    S_ID,
    S_W,
    C,
    H,
    W,
    alpha,
    USE_INDEX: tl.constexpr,
    NEED_TARGET: tl.constexpr,
    NEED_IDENTITY: tl.constexpr,
    NEED_WARPED: tl.constexpr,
    BH: tl.constexpr,
    BW: tl.constexpr,
):
    b = tl.program_id(2).to(tl.int64)
    HW = H * W
    rows, cols, inside, off = _tile(H, W, BH, BW)
    g_map = grad_ptr + b * HW
    i_map = index_ptr + b * HW
    alpha_c = alpha / C
    g_here = tl.load(g_map + off).to(tl.float32)
    first, last, own_first, own_last = _needed_candidates(S_ID, S_W, NEED_TARGET, NEED_IDENTITY, NEED_WARPED)
    for c in range(C):
        y_ptr = target_ptr + (b * C + c) * HW
        g_target = tl.zeros([BH, BW], tl.float32)
        for k in range(first, last):
            x_ptr, gx_ptr = _candidate_planes(
                identity_ptr, warped_ptr, grad_identity_ptr, grad_warped_ptr, b, k, c, S_ID, S_W, C, HW
            )
            needed = (k >= own_first) & (k < own_last)
            g_mx, g_my, g_var, g_cov, xv, yv = _candidate_grads(
                x_ptr, y_ptr, g_map, i_map, k, rows, cols, off, H, W, alpha_c, USE_INDEX
            )
            g = g_here
            if USE_INDEX:
                g = tl.where(tl.load(i_map + off) == k, g, 0.0)
            g_x, g_y = _pixel_grads(g_mx, g_my, g_var, g_cov, xv, yv, g, alpha, C)
            tl.store(gx_ptr + off, g_x.to(gx_ptr.dtype.element_ty), mask=inside & needed)
            if NEED_TARGET:
                g_target += g_y
        if NEED_TARGET:
            gt_ptr = grad_target_ptr + (b * C + c) * HW
            tl.store(gt_ptr + off, g_target.to(gt_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _window_stat_grads(mx, my, a, b, c, d, g, alpha_c):
    """d loss / d (the box means E[x], E[y], E[x²] (= d/d E[y²]), E[xy]) of one window from its SSIM
    pieces, times the upstream gradient g at its centre and 1/9, the reflection count left to the
    caller (csrc/photometric.cuh: stat_grads_from_terms)."""
    s = (a * b) / (c * d)
    inv_cd = 1.0 / (c * d)  # 1 / c = d / (c d), 1 / d = c / (c d): two divisions, not six
    half = (1.0 - s) * 0.5
    # clamp(., 0, 1) passes the gradient at and inside its bounds (torch.clamp)
    g_s = tl.where((half >= 0.0) & (half <= 1.0), -0.5 * alpha_c * g, 0.0) * NINTH
    g_a = g_s * b * inv_cd
    g_b = g_s * a * inv_cd
    g_c = -g_s * s * (d * inv_cd)
    g_d = -g_s * s * (c * inv_cd)
    return 2.0 * (my * (g_a - g_b) + mx * (g_c - g_d)), 2.0 * (mx * (g_a - g_b) + my * (g_c - g_d)), g_d, 2.0 * g_b


@triton.jit
def _block_position(H, W, HALO: tl.constexpr, PB_H: tl.constexpr, PB_W: tl.constexpr):
    """This program's block of PB_H x PB_W positions, one per lane of a flat range: the tile of
    pixels at grid position (program 0 across, program 1 down) and a halo of HALO around it
    (csrc/photometric.cuh: block_position). Returns the positions, the tile's index and the number
    of tiles, the block's first row and column, ``own`` (a pixel of the tile), ``windows`` (the
    centre of a window a tile pixel lies in) and the positions' pixels clamped into the image."""
    tile_c = tl.program_id(0)
    tile_r = tl.program_id(1)
    tile = tile_r * tl.num_programs(0) + tile_c
    n_tiles = tl.num_programs(0) * tl.num_programs(1)
    pos = tl.arange(0, PB_H * PB_W)
    bi = pos // PB_W
    bj = pos % PB_W
    row0 = tile_r * (PB_H - 2 * HALO) - HALO
    col0 = tile_c * (PB_W - 2 * HALO) - HALO
    rows = row0 + bi
    cols = col0 + bj
    in_image = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
    own = in_image & (bi >= HALO) & (bi < PB_H - HALO) & (bj >= HALO) & (bj < PB_W - HALO)
    windows = in_image & (bi >= HALO - 1) & (bi < PB_H - HALO + 1) & (bj >= HALO - 1) & (bj < PB_W - HALO + 1)
    r_in = tl.minimum(tl.maximum(rows, 0), H - 1)
    c_in = tl.minimum(tl.maximum(cols, 0), W - 1)
    return pos, tile, n_tiles, row0, col0, own, windows, r_in, c_in


@triton.jit
def photometric_tile_bwd_kernel(
    grad_ptr,  # (B, 1, H, W) gradient of the loss map
    index_ptr,  # (B, 1, H, W) int64 winner, read when USE_INDEX
    target_ptr,
    identity_ptr,
    warped_ptr,
    scratch_ptr,  # (programs, 4, PB_H * PB_W) float32: the stat gradients of one candidate plane's windows
    grad_target_ptr,  # (B, C, H, W), when NEED_TARGET
    grad_identity_ptr,  # (B, S_ID, C, H, W), when NEED_IDENTITY
    grad_warped_ptr,  # (B, S_W, C, H, W), when NEED_WARPED
    S_ID,
    S_W,
    C,
    H,
    W,
    alpha,
    USE_INDEX: tl.constexpr,
    NEED_TARGET: tl.constexpr,
    NEED_IDENTITY: tl.constexpr,
    NEED_WARPED: tl.constexpr,
    PB_H: tl.constexpr,
    PB_W: tl.constexpr,
):
    """The backward over a block of positions, a tile of pixels and its halo of 1: per channel and
    candidate, (A) the stat gradients of the window centred on every position into the scratch, (B)
    after a barrier, at the tile's pixels, those of the windows each lies in, weighted by how often
    it lies there (reflection), and the L1 term. photometric_bwd_kernel's sums in its order, each
    window computed once per block instead of once per pixel it holds."""
    b = tl.program_id(2).to(tl.int64)
    HW = H * W
    # positions outside the image compute a window at a clamped address that no tile pixel reads
    pos, tile, n_tiles, _, _, own, _, r_in, c_in = _block_position(H, W, 1, PB_H, PB_W)
    off = r_in * W + c_in
    scr = scratch_ptr + (b * n_tiles + tile) * (SCRATCH_PLANES * PB_H * PB_W)
    g_map = grad_ptr + b * HW
    alpha_c = alpha / C
    g_here = tl.load(g_map + off).to(tl.float32)
    first, last, own_first, own_last = _needed_candidates(S_ID, S_W, NEED_TARGET, NEED_IDENTITY, NEED_WARPED)
    # a runtime loop over the 9 neighbours (a count the compiler cannot see: S_ID is never negative)
    nine = 9 + (S_ID < 0).to(tl.int32)
    for c in range(C):
        y_ptr = target_ptr + (b * C + c) * HW
        g_target = tl.zeros([PB_H * PB_W], tl.float32)
        for k in range(first, last):
            x_ptr, gx_ptr = _candidate_planes(
                identity_ptr, warped_ptr, grad_identity_ptr, grad_warped_ptr, b, k, c, S_ID, S_W, C, HW
            )
            needed = (k >= own_first) & (k < own_last)
            g = g_here
            if USE_INDEX:
                g = tl.where(tl.load(index_ptr + b * HW + off) == k, g, 0.0)
            # (A) the stat gradients of every position's window
            mx, my, a, bb, cc, d = _ssim_terms(x_ptr, y_ptr, r_in, c_in, H, W)
            s_mx, s_my, s_var, s_cov = _window_stat_grads(mx, my, a, bb, cc, d, g, alpha_c)
            tl.store(scr + pos, s_mx)
            tl.store(scr + PB_H * PB_W + pos, s_my)
            tl.store(scr + 2 * PB_H * PB_W + pos, s_var)
            tl.store(scr + 3 * PB_H * PB_W + pos, s_cov)
            tl.debug_barrier()
            # (B) their adjoint at the tile's pixels (_candidate_grads' order), and the L1 term
            g_mx = tl.zeros([PB_H * PB_W], tl.float32)
            g_my = tl.zeros_like(g_mx)
            g_var = tl.zeros_like(g_mx)
            g_cov = tl.zeros_like(g_mx)
            for o in range(0, nine):
                oy = o // 3 - 1
                ox = o % 3 - 1
                count = _reflect_count(r_in, oy, H) * _reflect_count(c_in, ox, W)
                at = pos + oy * PB_W + ox
                use = own & (count > 0.0)
                g_mx += tl.where(use, count * tl.load(scr + at, mask=use, other=0.0), 0.0)
                g_my += tl.where(use, count * tl.load(scr + PB_H * PB_W + at, mask=use, other=0.0), 0.0)
                g_var += tl.where(use, count * tl.load(scr + 2 * PB_H * PB_W + at, mask=use, other=0.0), 0.0)
                g_cov += tl.where(use, count * tl.load(scr + 3 * PB_H * PB_W + at, mask=use, other=0.0), 0.0)
            xv = tl.load(x_ptr + off).to(tl.float32)
            yv = tl.load(y_ptr + off).to(tl.float32)
            g_x, g_y = _pixel_grads(g_mx, g_my, g_var, g_cov, xv, yv, g, alpha, C)
            tl.store(gx_ptr + off, g_x.to(gx_ptr.dtype.element_ty), mask=own & needed)
            if NEED_TARGET:
                g_target += g_y
            tl.debug_barrier()  # before the next candidate's (A) overwrites the scratch
        if NEED_TARGET:
            gt_ptr = grad_target_ptr + (b * C + c) * HW
            tl.store(gt_ptr + off, g_target.to(gt_ptr.dtype.element_ty), mask=own)


def _grid(B: int, C: int, H: int, W: int) -> tuple[int, int, int]:
    """Tiles across W, tiles down H, batch; raises ValueError where a launch cannot hold the images."""
    if (C - 1) * H * W >= INDEX_LIMIT:
        raise ValueError(f"target: (C - 1) * H * W = {(C - 1) * H * W} must be below 2**31 for backend='triton'")
    grid = (triton.cdiv(W, BW), triton.cdiv(H, BH), B)
    check_grid("target", grid)
    return grid


def _candidates(identity: torch.Tensor | None, warped: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The identity tensor to pass (a dummy when absent) and its number of sources."""
    if identity is None:
        return warped, 0
    return identity.contiguous(), identity.shape[1]


def photometric_forward(
    target: torch.Tensor, warped: torch.Tensor, identity: torch.Tensor | None, alpha: float, want_index: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel: (loss (B, 1, H, W) in the image dtype, index int64 or empty)."""
    B, S_W, C, H, W = warped.shape
    grid = _grid(B, C, H, W)
    target = target.contiguous()
    warped = warped.contiguous()
    identity, s_id = _candidates(identity, warped)
    loss = torch.empty((B, 1, H, W), dtype=target.dtype, device=target.device)
    index = torch.empty((B, 1, H, W) if want_index else (0,), dtype=torch.int64, device=target.device)
    if loss.numel() > 0:
        with device_guard(target):
            photometric_fwd_kernel[grid](
                target, identity, warped, loss, index, s_id, S_W, C, H, W, float(alpha),
                WRITE_INDEX=want_index, BH=BH, BW=BW, num_warps=NUM_WARPS,
            )  # fmt: skip
    return loss, index


def photometric_backward(
    grad: torch.Tensor,
    index: torch.Tensor | None,
    target: torch.Tensor,
    warped: torch.Tensor,
    identity: torch.Tensor | None,
    alpha: float,
    needs: list[bool],
    tile: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the backward kernel (``tile``: the tile backward): gradients (target, warped,
    identity), empty where not needed.

    ``index`` (the forward's winners) routes each pixel's gradient to its winning candidate; None
    when there is a single candidate.
    """
    need_target, need_warped, need_identity = needs
    grad = grad.contiguous()
    target = target.contiguous()
    warped = warped.contiguous()
    identity_arg, s_id = _candidates(identity, warped)
    B, S_W, C, H, W = warped.shape
    g_target = torch.empty_like(target) if need_target else target.new_empty(0)
    g_warped = torch.empty_like(warped) if need_warped else warped.new_empty(0)
    g_identity = torch.empty_like(identity_arg) if need_identity and s_id else warped.new_empty(0)
    use_index = index is not None
    if target.numel() == 0 or not any(needs):
        return g_target, g_warped, g_identity
    grid = _grid(B, C, H, W)
    if tile:
        grid = (triton.cdiv(W, PB_W - 2), triton.cdiv(H, PB_H - 2), B)
        check_grid("target", grid)
    args = (grad, index.contiguous() if use_index else grad, target, identity_arg, warped)
    grads = (g_target, g_identity, g_warped, s_id, S_W, C, H, W, float(alpha))
    flags = dict(USE_INDEX=use_index, NEED_TARGET=need_target, NEED_IDENTITY=need_identity and s_id > 0,
                 NEED_WARPED=need_warped)  # fmt: skip
    with device_guard(target):
        if tile:
            scratch = torch.empty(
                grid[0] * grid[1] * B * int(SCRATCH_PLANES) * PB_H * PB_W, dtype=torch.float32, device=target.device
            )
            photometric_tile_bwd_kernel[grid](
                *args, scratch, *grads, **flags, PB_H=PB_H, PB_W=PB_W, num_warps=BLOCK_WARPS
            )
        else:
            photometric_bwd_kernel[grid](*args, *grads, **flags, BH=BH, BW=BW, num_warps=NUM_WARPS)
    return g_target, g_warped, g_identity


def aot_variants():
    """(label, kernel, signature, constexprs, num_warps) for the compile report, per image dtype."""
    sizes = dict(S_ID="i32", S_W="i32", C="i32", H="i32", W="i32", alpha="fp32")
    for img in ("fp32", "fp16", "bf16"):
        images = dict(target_ptr=f"*{img}", identity_ptr=f"*{img}", warped_ptr=f"*{img}")
        yield (
            f"photometric_fwd_kernel[{img}]",
            photometric_fwd_kernel,
            dict(**images, loss_ptr=f"*{img}", index_ptr="*i64", **sizes),
            dict(WRITE_INDEX=True, BH=BH, BW=BW),
            NUM_WARPS,
        )
        yield (
            f"photometric_bwd_kernel[{img}]",
            photometric_bwd_kernel,
            dict(
                grad_ptr=f"*{img}",
                index_ptr="*i64",
                **images,
                grad_target_ptr=f"*{img}",
                grad_identity_ptr=f"*{img}",
                grad_warped_ptr=f"*{img}",
                **sizes,
            ),  # fmt: skip
            dict(USE_INDEX=True, NEED_TARGET=True, NEED_IDENTITY=True, NEED_WARPED=True, BH=BH, BW=BW),
            NUM_WARPS,
        )
        yield (
            f"photometric_tile_bwd_kernel[{img}]",
            photometric_tile_bwd_kernel,
            dict(
                grad_ptr=f"*{img}",
                index_ptr="*i64",
                **images,
                scratch_ptr="*fp32",
                grad_target_ptr=f"*{img}",
                grad_identity_ptr=f"*{img}",
                grad_warped_ptr=f"*{img}",
                **sizes,
            ),  # fmt: skip
            dict(USE_INDEX=True, NEED_TARGET=True, NEED_IDENTITY=True, NEED_WARPED=True, PB_H=PB_H, PB_W=PB_W),
            BLOCK_WARPS,
        )
