"""Triton kernels of the plane-sweep cost volume: sample every source at the projected pixels of each
hypothesis (the warp's bilinear sampling, :mod:`fastdepth.kernels.warp`) and reduce against the
target features on the fly; the warped features are never written.

One program handles BLOCK target pixels of one (image, hypothesis), looping over groups, channels
and sources. The backward recomputes the samples, scatters the features' gradients with float
atomics and writes the gradient of the projected pixels (u, v), from which autograd reaches the
hypotheses, poses and K (:mod:`fastdepth.cost_volume`). The sweep backward (``sweep=True``; l1, dot
and group_dot) gives a program BLOCK target pixels and SWEEP_CHANNELS channels of one image at every
hypothesis: the target's gradient stays in registers and is stored once, where the per-hypothesis
backward scatters it from D programs, and the sources' is scattered once per run of consecutive
hypotheses that sample the same four pixels. Where the geometry needs no gradient, the
projection kernel computes u and v (the warp's projection) in one launch. The CUDA twin is
csrc/cost_volume.cu.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from fastdepth.kernels.launch import device_guard
from fastdepth.kernels.warp import FLOAT_MAX, _project, _ray, _sample_coord, _taps

from fastdepth.conventions import check_grid, sample_affine

BLOCK = 128
# measured in the compile report with Triton 3.8 and 3.6: 2 warps (two pixels a thread) spill in
# the forward on sm_80 (3.6) and in the backward (variance) on sm_80 (3.8); at 4 warps only the
# half-precision variance backward on sm_90 under Triton 3.6 spills (8 bytes)
FWD_WARPS = 4
PROJ_WARPS = 4
BWD_WARPS = 4
# 8 warps (two elements of a program's pixels x channels a thread): at 4, ptxas spilled in the sweep
# backward (Triton 3.8: sm_90, 4 to 8 bytes at 168 registers)
SWEEP_WARPS = 8
#: channels per program of the sweep backward: csrc/cost_volume.cuh's kSweepChannels
SWEEP_CHANNELS = 4
REDUCTIONS = {"l1": 0, "dot": 1, "group_dot": 1, "variance": 2}


@triton.jit
def _view(u_ptr, v_ptr, at, in_range, W, H, sx, ox, sy, oy, BORDER: tl.constexpr):
    """Where a source is read for each pixel: the taps (masked off where the projection does not
    exist), d(sample position)/d(projected pixel) per axis (csrc/cost_volume.cuh: make_view)."""
    pu = tl.load(u_ptr + at, mask=in_range, other=float("nan"))
    pv = tl.load(v_ptr + at, mask=in_range, other=float("nan"))
    keep = in_range & (tl.abs(pu) <= FLOAT_MAX) & (tl.abs(pv) <= FLOAT_MAX)
    iu, du, _ = _sample_coord(pu, W, sx, ox, BORDER)
    iv, dv, _ = _sample_coord(pv, H, sy, oy, BORDER)
    o00, o01, o10, o11, m00, m01, m10, m11, fu, fv = _taps(iu, iv, W, H)
    return o00, o01, o10, o11, keep & m00, keep & m01, keep & m10, keep & m11, fu, fv, du, dv, keep


@triton.jit
def _corners(plane_ptr, o00, o01, o10, o11, m00, m01, m10, m11):
    v00 = tl.load(plane_ptr + o00, mask=m00, other=0.0).to(tl.float32)
    v01 = tl.load(plane_ptr + o01, mask=m01, other=0.0).to(tl.float32)
    v10 = tl.load(plane_ptr + o10, mask=m10, other=0.0).to(tl.float32)
    v11 = tl.load(plane_ptr + o11, mask=m11, other=0.0).to(tl.float32)
    return v00, v01, v10, v11


@triton.jit
def _bilinear(v00, v01, v10, v11, fu, fv):
    return (v00 * (1.0 - fu) + v01 * fu) * (1.0 - fv) + (v10 * (1.0 - fu) + v11 * fu) * fv


@triton.jit
def _sample_view(fs_ptr, u_ptr, v_ptr, src_plane, at, in_range, W, H, sx, ox, sy, oy, BORDER: tl.constexpr):
    o00, o01, o10, o11, m00, m01, m10, m11, fu, fv, du, dv, keep = _view(
        u_ptr, v_ptr, at, in_range, W, H, sx, ox, sy, oy, BORDER
    )
    v00, v01, v10, v11 = _corners(fs_ptr + src_plane, o00, o01, o10, o11, m00, m01, m10, m11)
    return _bilinear(v00, v01, v10, v11, fu, fv)


@triton.jit
def _block(HW, D, BLOCK: tl.constexpr):
    """This program's pixels, image b and hypothesis d: (image, hypothesis, block) folded into grid
    dimension 0."""
    n_blocks = tl.cdiv(HW, BLOCK)
    pid = tl.program_id(0)
    blk = pid % n_blocks
    bd = (pid // n_blocks).to(tl.int64)
    pix = blk * BLOCK + tl.arange(0, BLOCK)
    return pix, pix < HW, bd // D, bd % D


@triton.jit
def cost_volume_proj_kernel(
    hyp_ptr, pose_ptr, k_ptr, u_ptr, v_ptr, S, D, H, W, PER_PIXEL: tl.constexpr, BLOCK: tl.constexpr
):  # fmt: skip
    """The projections u, v of BLOCK target pixels of one (image, source, hypothesis): the warp's
    projection of the unnormalised ray, NaN where it does not exist (csrc/cost_volume.cuh:
    project_view). Hypotheses (B, D) planes or, PER_PIXEL, (B, D, H, W)."""
    HW = H * W
    pix, in_range, bs, d = _block(HW, D, BLOCK)
    b = bs // S
    if PER_PIXEL:
        depth = tl.load(hyp_ptr + (b * D + d) * HW + pix, mask=in_range, other=0.0)
    else:
        depth = tl.load(hyp_ptr + b * D + d) + tl.zeros([BLOCK], tl.float32)
    kb = k_ptr + b * 9
    fx, fy, cx, cy = tl.load(kb + 0), tl.load(kb + 4), tl.load(kb + 2), tl.load(kb + 5)
    _, _, rx, ry, rz = _ray((pix % W).to(tl.float32), (pix // W).to(tl.float32), fx, fy, cx, cy, False)
    _, _, _, _, _, _, _, _, _, _, _, _, u, v, finite = _project(depth, rx, ry, rz, fx, fy, cx, cy, pose_ptr + bs * 16)
    at = (bs * D + d) * HW + pix
    tl.store(u_ptr + at, tl.where(finite, u, float("nan")), mask=in_range)
    tl.store(v_ptr + at, tl.where(finite, v, float("nan")), mask=in_range)


@triton.jit
def cost_volume_fwd_kernel(
    ft_ptr, fs_ptr, u_ptr, v_ptr, out_ptr, S, C, D, G, H, W, sx, ox, sy, oy,
    REDUCTION: tl.constexpr, BORDER: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """l1 and dot take each source's view once per group and go through the group's channels with
    it; the variance (one channel per group) needs every view of a channel at once."""
    HW = H * W
    pix, in_range, b, d = _block(HW, D, BLOCK)
    Cg = C // G
    for g in range(G):
        if REDUCTION == 2:
            t = tl.load(ft_ptr + (b * C + g) * HW + pix, mask=in_range, other=0.0).to(tl.float32)
            total = tl.zeros([BLOCK], tl.float32)
            total_sq = tl.zeros([BLOCK], tl.float32)
            for s in range(S):
                at = ((b * S + s) * D + d) * HW + pix
                plane = ((b * S + s) * C + g) * HW
                x = _sample_view(fs_ptr, u_ptr, v_ptr, plane, at, in_range, W, H, sx, ox, sy, oy, BORDER)
                total += x
                total_sq += x * x
            mean = (t + total) / (S + 1)
            cost = (t * t + total_sq) / (S + 1) - mean * mean
        else:
            acc = tl.zeros([BLOCK], tl.float32)
            for s in range(S):
                at = ((b * S + s) * D + d) * HW + pix
                o00, o01, o10, o11, m00, m01, m10, m11, fu, fv, _, _, _ = _view(
                    u_ptr, v_ptr, at, in_range, W, H, sx, ox, sy, oy, BORDER
                )
                for cc in range(Cg):
                    c = g * Cg + cc
                    t = tl.load(ft_ptr + (b * C + c) * HW + pix, mask=in_range, other=0.0).to(tl.float32)
                    plane = ((b * S + s) * C + c) * HW
                    v00, v01, v10, v11 = _corners(fs_ptr + plane, o00, o01, o10, o11, m00, m01, m10, m11)
                    x = _bilinear(v00, v01, v10, v11, fu, fv)
                    if REDUCTION == 0:
                        acc += tl.abs(t - x)
                    else:
                        acc += t * x
            cost = acc / (Cg * S)
        tl.store(out_ptr + ((b * G + g) * D + d) * HW + pix, cost.to(out_ptr.dtype.element_ty), mask=in_range)


@triton.jit
def _scaled_upstream(go, S, Cg, REDUCTION: tl.constexpr):
    """go times the reduction's constant factor (csrc/cost_volume.cuh: scaled_upstream)."""
    if REDUCTION == 2:
        return go * 2.0 / (S + 1)
    return go / (Cg * S)


@triton.jit
def _reduction_grads(scaled, t, x, mean, REDUCTION: tl.constexpr):
    """d cost / d (sample x, target t) times the upstream gradient (csrc/cost_volume.cuh: reduction_grads)."""
    if REDUCTION == 0:
        gx = scaled * tl.where(x > t, 1.0, tl.where(x < t, -1.0, 0.0))
        gt = -gx
    elif REDUCTION == 1:
        gx = scaled * t
        gt = scaled * x
    else:
        gx = scaled * (x - mean)
        gt = scaled * (t - mean)
    return gx, gt


@triton.jit
def cost_volume_bwd_kernel(
    grad_ptr, ft_ptr, fs_ptr, u_ptr, v_ptr, grad_ft_ptr, grad_fs_ptr, grad_u_ptr, grad_v_ptr,
    S, C, D, G, H, W, sx, ox, sy, oy,
    REDUCTION: tl.constexpr, BORDER: tl.constexpr, NEED_FEATURES: tl.constexpr, NEED_GEOMETRY: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    HW = H * W
    pix, in_range, b, d = _block(HW, D, BLOCK)
    Cg = C // G
    for s in range(S):
        at = ((b * S + s) * D + d) * HW + pix
        if REDUCTION != 2:
            o00, o01, o10, o11, m00, m01, m10, m11, fu, fv, _, _, _ = _view(
                u_ptr, v_ptr, at, in_range, W, H, sx, ox, sy, oy, BORDER
            )
        g_iu = tl.zeros([BLOCK], tl.float32)
        g_iv = tl.zeros([BLOCK], tl.float32)
        for g in range(G):
            go = tl.load(grad_ptr + ((b * G + g) * D + d) * HW + pix, mask=in_range, other=0.0).to(tl.float32)
            go = _scaled_upstream(go, S, Cg, REDUCTION)
            for cc in range(Cg):
                c = g * Cg + cc
                mean = tl.zeros([BLOCK], tl.float32)
                if REDUCTION == 2:
                    for s2 in range(S):
                        at2 = ((b * S + s2) * D + d) * HW + pix
                        plane2 = ((b * S + s2) * C + c) * HW
                        mean += _sample_view(fs_ptr, u_ptr, v_ptr, plane2, at2, in_range, W, H, sx, ox, sy, oy, BORDER)
                    # this source's view after the mean's, not live through it (registers: the compile report)
                    o00, o01, o10, o11, m00, m01, m10, m11, fu, fv, _, _, _ = _view(
                        u_ptr, v_ptr, at, in_range, W, H, sx, ox, sy, oy, BORDER
                    )
                t = tl.load(ft_ptr + (b * C + c) * HW + pix, mask=in_range, other=0.0).to(tl.float32)
                mean = (mean + t) / (S + 1)
                plane = ((b * S + s) * C + c) * HW
                v00, v01, v10, v11 = _corners(fs_ptr + plane, o00, o01, o10, o11, m00, m01, m10, m11)
                x = _bilinear(v00, v01, v10, v11, fu, fv)
                gx, gt = _reduction_grads(go, t, x, mean, REDUCTION)
                if NEED_FEATURES:
                    # the variance's target term belongs to no source: it is added once, with the first
                    add_target = s == 0
                    if REDUCTION != 2:
                        add_target = s >= 0
                    tl.atomic_add(grad_ft_ptr + (b * C + c) * HW + pix, gt, mask=in_range & add_target, sem="relaxed")
                    gs = grad_fs_ptr + plane
                    tl.atomic_add(gs + o00, (1.0 - fu) * (1.0 - fv) * gx, mask=m00, sem="relaxed")
                    tl.atomic_add(gs + o01, fu * (1.0 - fv) * gx, mask=m01, sem="relaxed")
                    tl.atomic_add(gs + o10, (1.0 - fu) * fv * gx, mask=m10, sem="relaxed")
                    tl.atomic_add(gs + o11, fu * fv * gx, mask=m11, sem="relaxed")
                if NEED_GEOMETRY:
                    g_iu += gx * ((v01 - v00) * (1.0 - fv) + (v11 - v10) * fv)
                    g_iv += gx * ((v10 - v00) * (1.0 - fu) + (v11 - v01) * fu)
        if NEED_GEOMETRY:
            # recomputed rather than kept live through the loops (register pressure: the compile report)
            _, _, _, _, _, _, _, _, _, _, du, dv, keep = _view(u_ptr, v_ptr, at, in_range, W, H, sx, ox, sy, oy, BORDER)
            tl.store(grad_u_ptr + at, tl.where(keep, g_iu * du, 0.0), mask=in_range)
            tl.store(grad_v_ptr + at, tl.where(keep, g_iv * dv, 0.0), mask=in_range)


@triton.jit
def _flush_run(gs, run_o, run_m00, run_m01, run_m10, run_m11, acc00, acc01, acc10, acc11, W, flush):
    """Scatter a run's tap sums (csrc/cost_volume.cuh: flush_run) where ``flush``; gs: the source
    planes of the program's channels, (1, CHANNELS) pointers."""
    at = gs + run_o[:, None]
    tl.atomic_add(at, acc00, mask=flush & run_m00[:, None], sem="relaxed")
    tl.atomic_add(at + 1, acc01, mask=flush & run_m01[:, None], sem="relaxed")
    tl.atomic_add(at + W, acc10, mask=flush & run_m10[:, None], sem="relaxed")
    tl.atomic_add(at + W + 1, acc11, mask=flush & run_m11[:, None], sem="relaxed")


@triton.jit
def cost_volume_sweep_bwd_kernel(
    grad_ptr, ft_ptr, fs_ptr, u_ptr, v_ptr, grad_ft_ptr, grad_fs_ptr, grad_u_ptr, grad_v_ptr,
    S, C, D, G, H, W, sx, ox, sy, oy,
    REDUCTION: tl.constexpr, BORDER: tl.constexpr, NEED_FEATURES: tl.constexpr, NEED_GEOMETRY: tl.constexpr,
    BLOCK: tl.constexpr, CHANNELS: tl.constexpr,
):  # fmt: skip
    """The sweep backward (l1, dot, group_dot) of BLOCK target pixels and CHANNELS channels of one
    image, every source and hypothesis in turn: the target's gradient summed in registers and stored
    once, the projections' share from these channels added with atomics, and the sources' scattered
    once per run of hypotheses with the same taps (csrc/cost_volume.cuh: backward_sweep_pixel).
    (image, chunk, block) folded into grid dimension 0."""
    HW = H * W
    n_blocks = tl.cdiv(HW, BLOCK)
    n_chunks = tl.cdiv(C, CHANNELS)
    pid = tl.program_id(0)
    pix = (pid % n_blocks) * BLOCK + tl.arange(0, BLOCK)
    in_range = pix < HW
    b = (pid // n_blocks // n_chunks).to(tl.int64)
    c = (pid // n_blocks % n_chunks) * CHANNELS + tl.arange(0, CHANNELS)
    both = in_range[:, None] & (c < C)[None, :]
    Cg = C // G
    target_at = (b * C + c)[None, :] * HW + pix[:, None]
    t = tl.load(ft_ptr + target_at, mask=both, other=0.0).to(tl.float32)
    gt_sum = tl.zeros([BLOCK, CHANNELS], tl.float32)
    for s in range(S):
        planes = ((b * S + s) * C + c)[None, :] * HW
        gs = grad_fs_ptr + planes
        # the run: its taps (none yet) and its four tap sums per channel
        run_o = tl.zeros([BLOCK], tl.int32)
        run_m00 = run_o != 0
        run_m01 = run_m00
        run_m10 = run_m00
        run_m11 = run_m00
        acc00 = tl.zeros([BLOCK, CHANNELS], tl.float32)
        acc01 = tl.zeros_like(acc00)
        acc10 = tl.zeros_like(acc00)
        acc11 = tl.zeros_like(acc00)
        for d in range(D):
            at = ((b * S + s) * D + d) * HW + pix
            o00, o01, o10, o11, m00, m01, m10, m11, fu, fv, du, dv, keep = _view(
                u_ptr, v_ptr, at, in_range, W, H, sx, ox, sy, oy, BORDER
            )
            go = tl.load(grad_ptr + ((b * G + c // Cg) * D + d)[None, :] * HW + pix[:, None], mask=both, other=0.0)
            go = _scaled_upstream(go.to(tl.float32), S, Cg, REDUCTION)
            v00, v01, v10, v11 = _corners(
                fs_ptr + planes, o00[:, None], o01[:, None], o10[:, None], o11[:, None],
                m00[:, None] & both, m01[:, None] & both, m10[:, None] & both, m11[:, None] & both,
            )  # fmt: skip
            fu2 = fu[:, None]
            fv2 = fv[:, None]
            x = _bilinear(v00, v01, v10, v11, fu2, fv2)
            gx, gt = _reduction_grads(go, t, x, 0.0, REDUCTION)
            gt_sum += gt
            if NEED_FEATURES:
                any_tap = m00 | m01 | m10 | m11
                same = (o00 == run_o) & (m00 == run_m00) & (m01 == run_m01) & (m10 == run_m10) & (m11 == run_m11)
                new = any_tap & ~same
                _flush_run(gs, run_o, run_m00, run_m01, run_m10, run_m11, acc00, acc01, acc10, acc11, W,
                           new[:, None] & both)  # fmt: skip
                run_o = tl.where(new, o00, run_o)
                run_m00 = tl.where(new, m00, run_m00)
                run_m01 = tl.where(new, m01, run_m01)
                run_m10 = tl.where(new, m10, run_m10)
                run_m11 = tl.where(new, m11, run_m11)
                # a new run starts from this view's terms; a view without taps adds nothing
                keep_sums = (~new)[:, None]
                on = any_tap[:, None]
                acc00 = tl.where(keep_sums, acc00, 0.0) + tl.where(on, (1.0 - fu2) * (1.0 - fv2) * gx, 0.0)
                acc01 = tl.where(keep_sums, acc01, 0.0) + tl.where(on, fu2 * (1.0 - fv2) * gx, 0.0)
                acc10 = tl.where(keep_sums, acc10, 0.0) + tl.where(on, (1.0 - fu2) * fv2 * gx, 0.0)
                acc11 = tl.where(keep_sums, acc11, 0.0) + tl.where(on, fu2 * fv2 * gx, 0.0)
            if NEED_GEOMETRY:
                g_iu = tl.sum(gx * ((v01 - v00) * (1.0 - fv2) + (v11 - v10) * fv2), axis=1)
                g_iv = tl.sum(gx * ((v10 - v00) * (1.0 - fu2) + (v11 - v01) * fu2), axis=1)
                tl.atomic_add(grad_u_ptr + at, g_iu * du, mask=keep, sem="relaxed")
                tl.atomic_add(grad_v_ptr + at, g_iv * dv, mask=keep, sem="relaxed")
        if NEED_FEATURES:
            _flush_run(gs, run_o, run_m00, run_m01, run_m10, run_m11, acc00, acc01, acc10, acc11, W, both)
    if NEED_FEATURES:
        tl.store(grad_ft_ptr + target_at, gt_sum, mask=both)


def _setup(features_target, features_source, u, reduction, groups, padding_mode, align_corners):
    B, S, C, H, W = features_source.shape
    D = u.shape[2]
    G = {"l1": 1, "dot": 1, "group_dot": groups, "variance": C}[reduction]
    grid = (triton.cdiv(H * W, BLOCK) * B * D,)
    check_grid("features_target", grid)
    sx, ox = sample_affine(W, align_corners)
    sy, oy = sample_affine(H, align_corners)
    sizes = (S, C, D, G, H, W, sx, ox, sy, oy)
    flags = dict(REDUCTION=REDUCTIONS[reduction], BORDER=padding_mode == "border", BLOCK=BLOCK)
    return grid, sizes, flags, (B, G, D, H, W)


def cost_volume_projection(
    depth_hypotheses: torch.Tensor, poses: torch.Tensor, K: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the projection kernel: u, v (B, S, D, height, width) float32 of every target pixel at
    every hypothesis, from depth_hypotheses (B, D) or (B, D, height, width), poses (B, S, 4, 4) and
    K (B, 3, 3)."""
    B, D = depth_hypotheses.shape[:2]
    S = poses.shape[1]
    grid = (triton.cdiv(height * width, BLOCK) * B * S * D,)
    check_grid("depth_hypotheses", grid)
    u = torch.empty((B, S, D, height, width), dtype=torch.float32, device=depth_hypotheses.device)
    v = torch.empty_like(u)
    if u.numel() > 0:
        with device_guard(depth_hypotheses):
            cost_volume_proj_kernel[grid](
                *(t.float().contiguous() for t in (depth_hypotheses, poses, K)), u, v, S, D, height, width,
                PER_PIXEL=depth_hypotheses.dim() == 4, BLOCK=BLOCK, num_warps=PROJ_WARPS,
            )  # fmt: skip
    return u, v


def cost_volume_forward(
    features_target: torch.Tensor,
    features_source: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    reduction: str,
    groups: int,
    padding_mode: str,
    align_corners: bool,
) -> torch.Tensor:
    """Launch the forward kernel: the cost (B, G, D, H, W) in the features' dtype, from the
    projected pixels u, v (B, S, D, H, W) float32 (NaN where a projection does not exist)."""
    grid, sizes, flags, out_shape = _setup(
        features_target, features_source, u, reduction, groups, padding_mode, align_corners
    )
    out = features_target.new_empty(out_shape)
    if out.numel() > 0 and features_source.shape[1] > 0:
        with device_guard(features_target):
            cost_volume_fwd_kernel[grid](
                features_target.contiguous(), features_source.contiguous(), u.float().contiguous(),
                v.float().contiguous(), out, *sizes, **flags, num_warps=FWD_WARPS,
            )  # fmt: skip
    return out


def cost_volume_backward(
    grad: torch.Tensor,
    features_target: torch.Tensor,
    features_source: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    reduction: str,
    groups: int,
    padding_mode: str,
    align_corners: bool,
    needs: list[bool],
    sweep: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the backward kernel: gradients (features_target, features_source, u, v), empty where
    not needed (``needs``: features, geometry); ``sweep``: the sweep kernel, where the reduction is
    not the variance."""
    need_features, need_geometry = needs
    grid, sizes, flags, _ = _setup(features_target, features_source, u, reduction, groups, padding_mode, align_corners)
    f32 = dict(dtype=torch.float32, device=features_target.device)
    g_ft = torch.zeros(features_target.shape, **f32) if need_features else torch.empty(0, **f32)
    g_fs = torch.zeros(features_source.shape, **f32) if need_features else torch.empty(0, **f32)
    g_u = torch.zeros(u.shape, **f32) if need_geometry else torch.empty(0, **f32)
    g_v = torch.zeros(v.shape, **f32) if need_geometry else torch.empty(0, **f32)
    if grad.numel() > 0 and features_source.shape[1] > 0 and (need_features or need_geometry):
        tensors = (
            grad.contiguous(), features_target.contiguous(), features_source.contiguous(),
            u.float().contiguous(), v.float().contiguous(), g_ft, g_fs, g_u, g_v,
        )  # fmt: skip
        needs = dict(NEED_FEATURES=need_features, NEED_GEOMETRY=need_geometry)
        with device_guard(features_target):
            if sweep and reduction != "variance":
                B, C = features_target.shape[:2]
                grid = (triton.cdiv(u.shape[-2] * u.shape[-1], BLOCK) * B * triton.cdiv(C, SWEEP_CHANNELS),)
                check_grid("features_target", grid)
                cost_volume_sweep_bwd_kernel[grid](
                    *tensors, *sizes, **needs, **flags, CHANNELS=SWEEP_CHANNELS, num_warps=SWEEP_WARPS
                )
            else:
                cost_volume_bwd_kernel[grid](*tensors, *sizes, **needs, **flags, num_warps=BWD_WARPS)
    back = [(g_ft, features_target), (g_fs, features_source), (g_u, u), (g_v, v)]
    return tuple(g.to(like.dtype) if g.numel() else g for g, like in back)


def aot_variants():
    """(label, kernel, signature, constexprs, num_warps) for the compile report: the projection,
    then the forward and backward per feature dtype, and the sweep backward (l1)."""
    geometry = dict(hyp_ptr="*fp32", pose_ptr="*fp32", k_ptr="*fp32", u_ptr="*fp32", v_ptr="*fp32")
    yield (
        "cost_volume_proj_kernel[fp32]",
        cost_volume_proj_kernel,
        dict(**geometry, S="i32", D="i32", H="i32", W="i32"),
        dict(PER_PIXEL=False, BLOCK=BLOCK),
        PROJ_WARPS,
    )
    sizes = dict(S="i32", C="i32", D="i32", G="i32", H="i32", W="i32", sx="fp32", ox="fp32", sy="fp32", oy="fp32")
    for img in ("fp32", "fp16", "bf16"):
        feats = dict(ft_ptr=f"*{img}", fs_ptr=f"*{img}", u_ptr="*fp32", v_ptr="*fp32")
        for name, reduction in (("l1", 0), ("variance", 2)):
            yield (
                f"cost_volume_fwd_kernel[{img},{name}]",
                cost_volume_fwd_kernel,
                dict(**feats, out_ptr=f"*{img}", **sizes),
                dict(REDUCTION=reduction, BORDER=False, BLOCK=BLOCK),
                FWD_WARPS,
            )
            backward = dict(
                grad_ptr=f"*{img}", **feats, grad_ft_ptr="*fp32", grad_fs_ptr="*fp32", grad_u_ptr="*fp32",
                grad_v_ptr="*fp32", **sizes,
            )  # fmt: skip
            needs = dict(REDUCTION=reduction, BORDER=False, NEED_FEATURES=True, NEED_GEOMETRY=True, BLOCK=BLOCK)
            yield f"cost_volume_bwd_kernel[{img},{name}]", cost_volume_bwd_kernel, backward, needs, BWD_WARPS
            if reduction != 2:
                yield (
                    f"cost_volume_sweep_bwd_kernel[{img},{name}]",
                    cost_volume_sweep_bwd_kernel,
                    backward,
                    dict(**needs, CHANNELS=SWEEP_CHANNELS),
                    SWEEP_WARPS,
                )
