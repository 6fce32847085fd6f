"""Triton kernels of the depth warp, and their launchers.

One program handles BLOCK destination pixels of one batch element and loops over the S source
frames that share the depth map, and over the C channels. The forward kernel back-projects,
transforms, projects and samples bilinearly; the backward kernel recomputes all of that (only the
inputs are saved) and writes

* the image gradient by scatter: float32 atomics into a float32 buffer, or (DETERMINISTIC) int64
  atomics of fixed-point contributions, whose sum does not depend on the order of the atomics
  (:func:`fastdepth.conventions.fixed_point_scale`),
* the depth gradient per pixel (summed over the sources in registers: no atomics),
* pose and intrinsics gradients as per-program partial sums, reduced afterwards in a fixed order
  by the launcher: deterministic, no float atomics.

The math follows :mod:`fastdepth.reference` (Kornia's conventions); the CUDA twin is csrc/warp.cu.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from fastdepth.kernels.launch import device_guard

from fastdepth.conventions import (
    DIVIDE_EPS,
    FLOAT32_MAX,
    check_grid,
    fixed_point_scale,
    from_fixed_point,
    sample_affine,
)

BLOCK = 128
NUM_WARPS = 4

DIVIDE_EPS = tl.constexpr(DIVIDE_EPS)
FLOAT_MAX = tl.constexpr(FLOAT32_MAX)


@triton.jit
def _ray(col, row, fx, fy, cx, cy, NORMALIZE: tl.constexpr):
    """Unnormalised ray (rx, ry, 1) through pixel centres, and the unit ray when NORMALIZE."""
    tx = (col - cx) / fx
    ty = (row - cy) / fy
    inv_n = tx * 0.0 + 1.0
    if NORMALIZE:
        inv_n = 1.0 / tl.sqrt(tx * tx + ty * ty + 1.0)
    return tx, ty, tx * inv_n, ty * inv_n, inv_n


@triton.jit
def _transform(X, Y, Z, pose_ptr):
    """Apply the 4x4 pose at pose_ptr to (X, Y, Z, 1): returns q (xyz before /w), w and the division flags."""
    qx = tl.load(pose_ptr + 0) * X + tl.load(pose_ptr + 1) * Y + tl.load(pose_ptr + 2) * Z + tl.load(pose_ptr + 3)
    qy = tl.load(pose_ptr + 4) * X + tl.load(pose_ptr + 5) * Y + tl.load(pose_ptr + 6) * Z + tl.load(pose_ptr + 7)
    qz = tl.load(pose_ptr + 8) * X + tl.load(pose_ptr + 9) * Y + tl.load(pose_ptr + 10) * Z + tl.load(pose_ptr + 11)
    w = tl.load(pose_ptr + 12) * X + tl.load(pose_ptr + 13) * Y + tl.load(pose_ptr + 14) * Z + tl.load(pose_ptr + 15)
    return qx, qy, qz, w


@triton.jit
def _safe_inverse(den):
    """(1 / den, True) where |den| > 1e-8, else (1, False): Kornia's no-divide rule."""
    ok = tl.abs(den) > DIVIDE_EPS
    return tl.where(ok, 1.0 / tl.where(ok, den, 1.0), 1.0), ok


@triton.jit
def _sample_coord(p, size, scale, offset, BORDER: tl.constexpr):
    """Sampling position on one axis from the projected pixel p, d(position)/dp, and whether the
    unclipped position lies within [0, size - 1].

    Positions far outside are pinned to -2 so that the float -> int conversion stays defined; that
    changes nothing, since every tap there is outside the image (zeros) or was clipped (border).
    """
    pos = p * scale + offset
    inside = (pos >= 0.0) & (pos <= size - 1.0)
    dpos = tl.zeros_like(p) + scale
    if BORDER:
        # grid_sample's clip: gradient 0 at and beyond the edges
        dpos = tl.where((pos > 0.0) & (pos < size - 1.0), dpos, 0.0)
        pos = tl.minimum(tl.maximum(pos, 0.0), size - 1.0)
    pos = tl.where((pos > -2.0) & (pos < size + 1.0), pos, -2.0)
    return pos, dpos, inside


@triton.jit
def _project(d, rx, ry, rz, fx, fy, cx, cy, pose_ptr):
    """The point at depth d along the ray projected into the source (pose at pose_ptr): the
    intermediates the backward needs, the projected pixel (u, v) and whether it is finite."""
    X = d * rx
    Y = d * ry
    Z = d * rz
    qx, qy, qz, w = _transform(X, Y, Z, pose_ptr)
    inv_w, w_ok = _safe_inverse(w)
    px = qx * inv_w
    py = qy * inv_w
    pz = qz * inv_w
    inv_z, z_ok = _safe_inverse(pz)
    x = px * inv_z
    y = py * inv_z
    u = fx * x + cx
    v = fy * y + cy
    finite = (tl.abs(u) <= FLOAT_MAX) & (tl.abs(v) <= FLOAT_MAX)
    return X, Y, Z, px, py, pz, inv_w, w_ok, inv_z, z_ok, x, y, u, v, finite


@triton.jit
def _geometry(d, tx, ty, rx, ry, rz, fx, fy, cx, cy, pose_ptr, W, H, sx, ox, sy, oy, BORDER: tl.constexpr):
    """Per pixel and source: everything the forward and backward passes need, recomputed."""
    X, Y, Z, px, py, pz, inv_w, w_ok, inv_z, z_ok, x, y, u, v, finite = _project(
        d, rx, ry, rz, fx, fy, cx, cy, pose_ptr
    )
    iu, du, u_in = _sample_coord(u, W, sx, ox, BORDER)
    iv, dv, v_in = _sample_coord(v, H, sy, oy, BORDER)
    inside = u_in & v_in & (pz > DIVIDE_EPS)
    return X, Y, Z, px, py, pz, inv_w, w_ok, inv_z, z_ok, x, y, finite, inside, iu, du, iv, dv


@triton.jit
def _taps(iu, iv, W, H):
    """Bilinear taps: in-plane offsets of the four corners, their in-bounds masks and the fractions."""
    u0f = tl.floor(iu)
    v0f = tl.floor(iv)
    fu = iu - u0f
    fv = iv - v0f
    u0 = u0f.to(tl.int32)
    v0 = v0f.to(tl.int32)
    u1 = u0 + 1
    v1 = v0 + 1
    mu0 = (u0 >= 0) & (u0 < W)
    mu1 = (u1 >= 0) & (u1 < W)
    mv0 = (v0 >= 0) & (v0 < H)
    mv1 = (v1 >= 0) & (v1 < H)
    o00 = v0 * W + u0
    return o00, o00 + 1, o00 + W, o00 + W + 1, mu0 & mv0, mu1 & mv0, mu0 & mv1, mu1 & mv1, fu, fv


@triton.jit
def _fixed(v):
    """A scaled contribution as int64 fixed point (rounded to nearest)."""
    return tl.floor(v + 0.5).to(tl.int64)


@triton.jit
def _scatter_bilinear(grad_ptr, fixed_ptr, scale, go, keep, o00, o01, o10, o11, m00, m01, m10, m11, fu, fv,
                      DETERMINISTIC: tl.constexpr):  # fmt: skip
    """Add go times each bilinear weight at the four taps of one plane: float32 atomics at grad_ptr,
    or (DETERMINISTIC) int64 atomics of the contributions scaled by ``scale`` at fixed_ptr."""
    if DETERMINISTIC:
        g = go * scale
        tl.atomic_add(fixed_ptr + o00, _fixed((1.0 - fu) * (1.0 - fv) * g), mask=keep & m00, sem="relaxed")
        tl.atomic_add(fixed_ptr + o01, _fixed(fu * (1.0 - fv) * g), mask=keep & m01, sem="relaxed")
        tl.atomic_add(fixed_ptr + o10, _fixed((1.0 - fu) * fv * g), mask=keep & m10, sem="relaxed")
        tl.atomic_add(fixed_ptr + o11, _fixed(fu * fv * g), mask=keep & m11, sem="relaxed")
    else:
        tl.atomic_add(grad_ptr + o00, (1.0 - fu) * (1.0 - fv) * go, mask=keep & m00, sem="relaxed")
        tl.atomic_add(grad_ptr + o01, fu * (1.0 - fv) * go, mask=keep & m01, sem="relaxed")
        tl.atomic_add(grad_ptr + o10, (1.0 - fu) * fv * go, mask=keep & m10, sem="relaxed")
        tl.atomic_add(grad_ptr + o11, fu * fv * go, mask=keep & m11, sem="relaxed")


@triton.jit
def _sample_position_grads(src, keep, o00, o01, o10, o11, m00, m01, m10, m11, fu, fv):
    """d sample / d (iu, iv) of one plane at its bilinear taps (0 at corners outside the plane)."""
    v00 = tl.load(src + o00, mask=keep & m00, other=0.0).to(tl.float32)
    v01 = tl.load(src + o01, mask=keep & m01, other=0.0).to(tl.float32)
    v10 = tl.load(src + o10, mask=keep & m10, other=0.0).to(tl.float32)
    v11 = tl.load(src + o11, mask=keep & m11, other=0.0).to(tl.float32)
    return (v01 - v00) * (1.0 - fv) + (v11 - v10) * fv, (v10 - v00) * (1.0 - fu) + (v11 - v01) * fu


@triton.jit
def _projection_backward(g_iu, g_iv, du, dv, x, y, px, py, pz, inv_w, w_ok, inv_z, z_ok, fx, fy):
    """From the sample-position gradients to the homogeneous point (q, w) before the divisions:
    returns d/dq (x, y, z), d/dw and d/d(u, v) (whose products with x, y, 1 are the intrinsics' terms)."""
    # sample position -> projected pixel -> normalised camera coordinates
    gu = g_iu * du
    gv = g_iv * dv
    gx = fx * gu
    gy = fy * gv
    # camera coordinates -> point after /w (Kornia skips the divide where |z| <= eps)
    gpx = gx * inv_z
    gpy = gy * inv_z
    gpz = tl.where(z_ok, -(gx * x + gy * y) * inv_z, 0.0)
    # point after /w -> homogeneous point q, w. Where z is divided, x = qx / qz and y = qy / qz do not
    # depend on w: its gradient is 0 there, not the rounding of a cancellation (times X in the pose's last row)
    gw = tl.where(w_ok & (z_ok == 0), -(gpx * px + gpy * py + gpz * pz) * inv_w, 0.0)
    return gpx * inv_w, gpy * inv_w, gpz * inv_w, gw, gu, gv


@triton.jit
def _store_pose_sums(part, gqx, gqy, gqz, gw, X, Y, Z):
    """The pose gradient d/dT[i, j] = g(q, w)[i] * (X, Y, Z, 1)[j], summed over the (1-D) block, at part[0:16]."""
    tl.store(part + 0, tl.sum(gqx * X, 0))
    tl.store(part + 1, tl.sum(gqx * Y, 0))
    tl.store(part + 2, tl.sum(gqx * Z, 0))
    tl.store(part + 3, tl.sum(gqx, 0))
    tl.store(part + 4, tl.sum(gqy * X, 0))
    tl.store(part + 5, tl.sum(gqy * Y, 0))
    tl.store(part + 6, tl.sum(gqy * Z, 0))
    tl.store(part + 7, tl.sum(gqy, 0))
    tl.store(part + 8, tl.sum(gqz * X, 0))
    tl.store(part + 9, tl.sum(gqz * Y, 0))
    tl.store(part + 10, tl.sum(gqz * Z, 0))
    tl.store(part + 11, tl.sum(gqz, 0))
    tl.store(part + 12, tl.sum(gw * X, 0))
    tl.store(part + 13, tl.sum(gw * Y, 0))
    tl.store(part + 14, tl.sum(gw * Z, 0))
    tl.store(part + 15, tl.sum(gw, 0))


@triton.jit
def _transform_backward(gqx, gqy, gqz, gw, pb):
    """d/d(X, Y, Z) through the 4x4 pose at pb, from d/d(q, w)."""
    gX = gqx * tl.load(pb + 0) + gqy * tl.load(pb + 4) + gqz * tl.load(pb + 8) + gw * tl.load(pb + 12)
    gY = gqx * tl.load(pb + 1) + gqy * tl.load(pb + 5) + gqz * tl.load(pb + 9) + gw * tl.load(pb + 13)
    gZ = gqx * tl.load(pb + 2) + gqy * tl.load(pb + 6) + gqz * tl.load(pb + 10) + gw * tl.load(pb + 14)
    return gX, gY, gZ


@triton.jit
def _depth_shares(gqx, gqy, gqz, dX, dY, dZ, X, Y, Z, z_ok, rx, ry, rz, pb):
    """One source's share of d loss / d depth, from its d/d(q, w) (gq) and d/d(X, Y, Z) (dX, dY, dZ), as
    (along, across): (dX, dY, dZ) . ray and 0, or where z is divided and the translation t is smaller than
    the point (max norms) 0 and -gq . t, whose sum over the sources divided by the depth is the same
    share without the first's cancellation (see csrc/warp.cuh: depth_shares)."""
    t0 = tl.load(pb + 3)
    t1 = tl.load(pb + 7)
    t2 = tl.load(pb + 11)
    t_max = tl.maximum(tl.maximum(tl.abs(t0), tl.abs(t1)), tl.abs(t2))
    x_max = tl.maximum(tl.maximum(tl.abs(X), tl.abs(Y)), tl.abs(Z))
    parallax = z_ok & (t_max < x_max)
    along = tl.where(parallax, 0.0, dX * rx + dY * ry + dZ * rz)
    across = tl.where(parallax, -(gqx * t0 + gqy * t1 + gqz * t2), 0.0)
    return along, across


@triton.jit
def _depth_grad(along, across, d):
    """d loss / d depth from _depth_shares' sums over the sources (across is 0 where d is)."""
    return along + across / tl.where(d != 0.0, d, 1.0)


@triton.jit
def _ray_backward_k(gX, gY, gd, d, tx, ty, rx, ry, rz, fx, fy, NORMALIZE: tl.constexpr):
    """The intrinsics' terms (fx, fy, cx, cy) through the ray (rx, ry, rz) = normalise?((col - cx) / fx,
    (row - cy) / fy, 1), from d/d(X, Y) of the point d * ray and the depth gradient gd (_depth_grad's)."""
    grx = d * gX
    gry = d * gY
    if NORMALIZE:
        radial = d * gd  # ray . d (gX, gY, gZ)
        gtx = (grx - rx * radial) * rz
        gty = (gry - ry * radial) * rz
    else:
        gtx = grx
        gty = gry
    return -gtx * tx / fx, -gty * ty / fy, -gtx / fx, -gty / fy


@triton.jit
def _block(H, W, BLOCK: tl.constexpr):
    """This program's block of pixels, its batch element and the blocks per image: the batch is
    folded into grid dimension 0 (limit 2**31 - 1; dimension 1 would cap it at 65535)."""
    n_blocks = tl.cdiv(H * W, BLOCK)
    return tl.program_id(0) % n_blocks, (tl.program_id(0) // n_blocks).to(tl.int64), n_blocks


@triton.jit
def _pixels(depth_ptr, k_ptr, b, pid, H, W, NORMALIZE: tl.constexpr, BLOCK: tl.constexpr):
    """A program's destination pixels: indices, intrinsics, rays and the sanitised depth
    (NaN/inf -> 0, flagged by d_ok), shared by all sources (csrc/warp.cuh: make_pixel)."""
    pix = pid * BLOCK + tl.arange(0, BLOCK)
    in_range = pix < H * W
    kb = k_ptr + b * 9
    fx = tl.load(kb + 0)
    fy = tl.load(kb + 4)
    cx = tl.load(kb + 2)
    cy = tl.load(kb + 5)
    tx, ty, rx, ry, rz = _ray((pix % W).to(tl.float32), (pix // W).to(tl.float32), fx, fy, cx, cy, NORMALIZE)
    d = tl.load(depth_ptr + b * H * W + pix, mask=in_range, other=0.0)
    d_ok = tl.abs(d) <= FLOAT_MAX
    return pix, in_range, fx, fy, cx, cy, tx, ty, rx, ry, rz, tl.where(d_ok, d, 0.0), d_ok


@triton.jit
def warp_fwd_kernel(
    image_ptr,  # (B, S, C, H, W) any float
    depth_ptr,  # (B, H, W) float32
    pose_ptr,  # (B, S, 4, 4) float32
    k_ptr,  # (B, 3, 3) float32
    out_ptr,  # (B, S, C, H, W) image dtype
    mask_ptr,  # (B, S, H, W) int8, written when WRITE_MASK
    S,
    C,
    H,
    W,
    sx,
    ox,
    sy,
    oy,
    NORMALIZE: tl.constexpr,
    BORDER: tl.constexpr,
    WRITE_MASK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid, b, n_blocks = _block(H, W, BLOCK)
    HW = H * W
    pix, in_range, fx, fy, cx, cy, tx, ty, rx, ry, rz, d, d_ok = _pixels(
        depth_ptr, k_ptr, b, pid, H, W, NORMALIZE, BLOCK
    )

    for s in range(S):
        bs = b * S + s
        X, Y, Z, px, py, pz, inv_w, w_ok, inv_z, z_ok, x, y, finite, inside, iu, du, iv, dv = _geometry(
            d, tx, ty, rx, ry, rz, fx, fy, cx, cy, pose_ptr + bs * 16, W, H, sx, ox, sy, oy, BORDER
        )
        keep = in_range & d_ok & finite
        o00, o01, o10, o11, m00, m01, m10, m11, fu, fv = _taps(iu, iv, W, H)
        w00 = (1.0 - fu) * (1.0 - fv)
        w01 = fu * (1.0 - fv)
        w10 = (1.0 - fu) * fv
        w11 = fu * fv
        for c in range(C):
            plane = (bs * C + c) * HW
            src = image_ptr + plane
            val = w00 * tl.load(src + o00, mask=keep & m00, other=0.0).to(tl.float32)
            val += w01 * tl.load(src + o01, mask=keep & m01, other=0.0).to(tl.float32)
            val += w10 * tl.load(src + o10, mask=keep & m10, other=0.0).to(tl.float32)
            val += w11 * tl.load(src + o11, mask=keep & m11, other=0.0).to(tl.float32)
            tl.store(out_ptr + plane + pix, val.to(out_ptr.dtype.element_ty), mask=in_range)
        if WRITE_MASK:
            tl.store(mask_ptr + bs * HW + pix, (keep & inside).to(tl.int8), mask=in_range)


@triton.jit
def warp_bwd_kernel(
    grad_out_ptr,  # (B, S, C, H, W) image dtype
    image_ptr,  # (B, S, C, H, W)
    depth_ptr,  # (B, H, W) float32
    pose_ptr,  # (B, S, 4, 4) float32
    k_ptr,  # (B, 3, 3) float32
    grad_image_ptr,  # (B, S, C, H, W) float32, zero-initialised, when NEED_IMAGE and not DETERMINISTIC
    grad_fixed_ptr,  # (B, S, C, H, W) int64, zero-initialised, when NEED_IMAGE and DETERMINISTIC
    scale_ptr,  # (1,) float32 fixed-point scale, when DETERMINISTIC
    grad_depth_ptr,  # (B, H, W) float32, when NEED_DEPTH
    pose_part_ptr,  # (B, S, n_blocks, 16) float32, when NEED_POSE
    k_part_ptr,  # (B, n_blocks, 4) float32 [fx, fy, cx, cy], when NEED_K
    S,
    C,
    H,
    W,
    sx,
    ox,
    sy,
    oy,
    NORMALIZE: tl.constexpr,
    BORDER: tl.constexpr,
    NEED_IMAGE: tl.constexpr,
    NEED_DEPTH: tl.constexpr,
    NEED_POSE: tl.constexpr,
    NEED_K: tl.constexpr,
    DETERMINISTIC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    NEED_GEOMETRY: tl.constexpr = (NEED_DEPTH or NEED_POSE) or NEED_K  # Triton 3.2 refuses a chain of or
    pid, b, n_blocks = _block(H, W, BLOCK)
    HW = H * W
    pix, in_range, fx, fy, cx, cy, tx, ty, rx, ry, rz, d, d_ok = _pixels(
        depth_ptr, k_ptr, b, pid, H, W, NORMALIZE, BLOCK
    )
    scale = tl.load(scale_ptr) if DETERMINISTIC else 1.0

    # gradients w.r.t. the destination point (X, Y) and the depth, summed over sources
    gX = tl.zeros([BLOCK], tl.float32)
    gY = tl.zeros([BLOCK], tl.float32)
    gd_along = tl.zeros([BLOCK], tl.float32)
    gd_across = tl.zeros([BLOCK], tl.float32)
    # intrinsics gradient through the projection, summed over sources
    g_fx = tl.zeros([BLOCK], tl.float32)
    g_fy = tl.zeros([BLOCK], tl.float32)
    g_cx = tl.zeros([BLOCK], tl.float32)
    g_cy = tl.zeros([BLOCK], tl.float32)

    for s in range(S):
        bs = b * S + s
        pb = pose_ptr + bs * 16
        X, Y, Z, px, py, pz, inv_w, w_ok, inv_z, z_ok, x, y, finite, inside, iu, du, iv, dv = _geometry(
            d, tx, ty, rx, ry, rz, fx, fy, cx, cy, pb, W, H, sx, ox, sy, oy, BORDER
        )
        keep = in_range & d_ok & finite
        # zero the intermediates of dropped pixels so that 0 * inf never reaches a partial sum
        X = tl.where(keep, X, 0.0)
        Y = tl.where(keep, Y, 0.0)
        Z = tl.where(keep, Z, 0.0)
        px = tl.where(keep, px, 0.0)
        py = tl.where(keep, py, 0.0)
        pz = tl.where(keep, pz, 0.0)
        x = tl.where(keep, x, 0.0)
        y = tl.where(keep, y, 0.0)
        o00, o01, o10, o11, m00, m01, m10, m11, fu, fv = _taps(iu, iv, W, H)
        g_iu = tl.zeros([BLOCK], tl.float32)
        g_iv = tl.zeros([BLOCK], tl.float32)
        for c in range(C):
            plane = (bs * C + c) * HW
            go = tl.load(grad_out_ptr + plane + pix, mask=keep, other=0.0).to(tl.float32)
            if NEED_IMAGE:
                _scatter_bilinear(grad_image_ptr + plane, grad_fixed_ptr + plane, scale, go, keep,
                                  o00, o01, o10, o11, m00, m01, m10, m11, fu, fv, DETERMINISTIC)  # fmt: skip
            if NEED_GEOMETRY:
                d_iu, d_iv = _sample_position_grads(
                    image_ptr + plane, keep, o00, o01, o10, o11, m00, m01, m10, m11, fu, fv
                )
                g_iu += go * d_iu
                g_iv += go * d_iv

        if NEED_GEOMETRY:
            gqx, gqy, gqz, gw, gu, gv = _projection_backward(g_iu, g_iv, du, dv, x, y, px, py, pz, inv_w, w_ok,
                                                             inv_z, z_ok, fx, fy)  # fmt: skip
            g_fx += gu * x
            g_fy += gv * y
            g_cx += gu
            g_cy += gv
            if NEED_POSE:
                _store_pose_sums(pose_part_ptr + (bs * n_blocks + pid) * 16, gqx, gqy, gqz, gw, X, Y, Z)
            dX, dY, dZ = _transform_backward(gqx, gqy, gqz, gw, pb)
            gX += dX
            gY += dY
            along, across = _depth_shares(gqx, gqy, gqz, dX, dY, dZ, X, Y, Z, z_ok, rx, ry, rz, pb)
            gd_along += along
            gd_across += across

    gd = _depth_grad(gd_along, gd_across, d)
    if NEED_DEPTH:
        tl.store(grad_depth_ptr + b * HW + pix, gd, mask=in_range)
    if NEED_K:
        k_fx, k_fy, k_cx, k_cy = _ray_backward_k(gX, gY, gd, d, tx, ty, rx, ry, rz, fx, fy, NORMALIZE)
        part = k_part_ptr + (b * n_blocks + pid) * 4
        tl.store(part + 0, tl.sum(g_fx + k_fx, 0))
        tl.store(part + 1, tl.sum(g_fy + k_fy, 0))
        tl.store(part + 2, tl.sum(g_cx + k_cx, 0))
        tl.store(part + 3, tl.sum(g_cy + k_cy, 0))


def warp_forward(
    image: torch.Tensor,
    depth: torch.Tensor,
    pose: torch.Tensor,
    K: torch.Tensor,
    normalize_points: bool,
    padding_mode: str,
    align_corners: bool,
    want_mask: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel. Shapes as in :func:`fastdepth.reference.warp`; geometry float32."""
    B, S, C, H, W = image.shape
    grid = (triton.cdiv(H * W, BLOCK) * B,)
    check_grid("image_src", grid)
    image = image.contiguous()
    depth = depth.contiguous()
    pose = pose.contiguous()
    K = K.contiguous()
    out = torch.empty_like(image)
    mask = torch.empty((B, S, 1, H, W) if want_mask else (0,), dtype=torch.int8, device=image.device)
    if out.numel() == 0:
        return out, mask.bool()
    sx, ox = sample_affine(W, align_corners)
    sy, oy = sample_affine(H, align_corners)
    with device_guard(image):
        warp_fwd_kernel[grid](
            image, depth, pose, K, out, mask, S, C, H, W, sx, ox, sy, oy,
            NORMALIZE=normalize_points, BORDER=padding_mode == "border", WRITE_MASK=want_mask,
            BLOCK=BLOCK, num_warps=NUM_WARPS,
        )  # fmt: skip
    return out, mask.bool()


def warp_backward(
    grad_out: torch.Tensor,
    image: torch.Tensor,
    depth: torch.Tensor,
    pose: torch.Tensor,
    K: torch.Tensor,
    normalize_points: bool,
    padding_mode: str,
    align_corners: bool,
    needs: list[bool],
    deterministic: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the backward kernel; returns (grad image, grad depth, grad pose, grad K).

    A gradient that is not needed comes back as an empty tensor. ``deterministic``: the image
    gradient is scattered in fixed point (bitwise reproducible); the other gradients always are.
    """
    need_image, need_depth, need_pose, need_k = needs
    B, S, C, H, W = image.shape
    n_blocks = triton.cdiv(H * W, BLOCK)
    check_grid("image_src", (n_blocks * B,))
    dev = image.device
    f32 = dict(dtype=torch.float32, device=dev)
    grad_out = grad_out.contiguous()
    image = image.contiguous()
    depth = depth.contiguous()
    pose = pose.contiguous()
    K = K.contiguous()
    fixed = need_image and deterministic
    g_image = torch.zeros(image.shape if need_image and not fixed else (0,), **f32)
    g_fixed = torch.zeros(image.shape if fixed else (0,), dtype=torch.int64, device=dev)
    # the largest mass one source plane can receive: each destination pixel spreads weights summing to <= 1
    scale = fixed_point_scale(grad_out.abs().sum((-2, -1))) if fixed else torch.ones(1, **f32)
    g_depth = torch.empty(depth.shape if need_depth else (0,), **f32)
    # zeros: with no source (S = 0) the kernel does not run and the partials must sum to 0
    pose_part = torch.zeros((B, S, n_blocks, 16) if need_pose else (0,), **f32)
    k_part = torch.zeros((B, n_blocks, 4) if need_k else (0,), **f32)
    if image.numel() > 0 and any(needs):
        sx, ox = sample_affine(W, align_corners)
        sy, oy = sample_affine(H, align_corners)
        with device_guard(image):
            warp_bwd_kernel[(n_blocks * B,)](
                grad_out, image, depth, pose, K, g_image, g_fixed, scale, g_depth, pose_part, k_part,
                S, C, H, W, sx, ox, sy, oy,
                NORMALIZE=normalize_points, BORDER=padding_mode == "border",
                NEED_IMAGE=need_image, NEED_DEPTH=need_depth, NEED_POSE=need_pose, NEED_K=need_k,
                DETERMINISTIC=fixed, BLOCK=BLOCK, num_warps=NUM_WARPS,
            )  # fmt: skip
    elif need_depth:
        g_depth.zero_()
    if fixed:
        g_image = from_fixed_point(g_fixed, scale)
    g_pose, g_k = reduce_partials(pose_part, k_part, need_pose, need_k)
    return g_image.to(image.dtype) if need_image else g_image, g_depth, g_pose, g_k


def reduce_partials(
    pose_part: torch.Tensor, k_part: torch.Tensor, need_pose: bool, need_k: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pose (B, S, 4, 4) and intrinsics (B, 3, 3) gradients from the per-block partial sums
    (B, S, blocks, 16) and (B, blocks, 4) [fx, fy, cx, cy], summed in a fixed order; the partials
    themselves (empty) where not needed."""
    g_pose = pose_part.sum(dim=2).reshape(*pose_part.shape[:2], 4, 4) if need_pose else pose_part
    if not need_k:
        return g_pose, k_part
    g4 = k_part.sum(dim=1)
    g_k = k_part.new_zeros((k_part.shape[0], 3, 3))
    g_k[:, 0, 0], g_k[:, 1, 1], g_k[:, 0, 2], g_k[:, 1, 2] = g4.unbind(1)
    return g_pose, g_k


def aot_variants():
    """(label, kernel, signature, constexprs, num_warps) for the compile report, per image dtype.

    Each kernel is compiled with every optional part switched on: its largest variant.
    """
    scalars = dict(S="i32", C="i32", H="i32", W="i32", sx="fp32", ox="fp32", sy="fp32", oy="fp32")
    geometry = dict(depth_ptr="*fp32", pose_ptr="*fp32", k_ptr="*fp32")
    for img in ("fp32", "fp16", "bf16"):
        yield (
            f"warp_fwd_kernel[{img}]",
            warp_fwd_kernel,
            dict(image_ptr=f"*{img}", **geometry, out_ptr=f"*{img}", mask_ptr="*i8", **scalars),
            dict(NORMALIZE=True, BORDER=True, WRITE_MASK=True, BLOCK=BLOCK),
            NUM_WARPS,
        )
    for img, deterministic in (("fp32", False), ("fp16", False), ("bf16", False), ("fp32", True)):
        yield (
            f"warp_bwd_kernel[{img}{',det' if deterministic else ''}]",
            warp_bwd_kernel,
            dict(
                grad_out_ptr=f"*{img}",
                image_ptr=f"*{img}",
                **geometry,
                grad_image_ptr="*fp32",
                grad_fixed_ptr="*i64",
                scale_ptr="*fp32",
                grad_depth_ptr="*fp32",
                pose_part_ptr="*fp32",
                k_part_ptr="*fp32",
                **scalars,
            ),  # fmt: skip
            dict(
                NORMALIZE=True,
                BORDER=True,
                NEED_IMAGE=True,
                NEED_DEPTH=True,
                NEED_POSE=True,
                NEED_K=True,
                DETERMINISTIC=deterministic,
                BLOCK=BLOCK,
            ),  # fmt: skip
            NUM_WARPS,
        )
