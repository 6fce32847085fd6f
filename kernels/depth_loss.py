"""Triton kernels of the supervised depth losses: masked per-image sums, and the gradient to the
prediction from per-image coefficients.

The forward kernel runs one *stage* (``STAGE``): the log-ratio moments of the scale-invariant loss
(``n, Σd, Σd²``), the moments of the scale-and-shift alignment (``n, Σp, Σt, Σp², Σpt``) or, given
those moments, the residual sums at the alignment ``(a, b)`` they give (``Σρ(r), Σρ'(r), Σρ'(r)p``).
One program computes the terms of BLOCK pixels of one image in float32, sums them in float64 (the
alignment's closed form cancels: float32 sums cost it about two digits) and writes one row of
partial sums; the launcher adds the rows of each image in a fixed order (the sums are
deterministic). The backward kernel is elementwise, from per-image coefficients: given (the
scale-invariant loss's, from :mod:`fastdepth.depth_loss`) or computed by each program from the
forward's sums, the image's weight and the upstream gradient (the scale-and-shift-invariant
loss's), so that the closed forms of a step on a GPU are a few launches rather than dozens. The
CUDA twin is csrc/depth_loss.cu.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from fastdepth.kernels.launch import device_guard

from fastdepth.conventions import check_grid

BLOCK = 1024
NUM_WARPS = 4
SUMS = tl.constexpr(5)
COEFFS = tl.constexpr(8)
#: the scale-and-shift-invariant backward's inputs per image: the ten sums, the weight, the gradient
SHIFT_INPUTS = tl.constexpr(12)
STAGES = {"log_moments": 0, "align_moments": 1, "residual": 2}
LOSSES = {"scale_invariant": 0, "scale_shift_invariant": 1}


@triton.jit
def _valid_pixel(t, mask_ptr, offs, in_range, HAS_MASK: tl.constexpr):
    """A pixel with ground truth: target > 0 and finite, and the mask where one is given."""
    ok = in_range & (t > 0) & (t < float("inf"))
    if HAS_MASK:
        ok = ok & (tl.load(mask_ptr + offs, mask=in_range, other=0) != 0)
    return ok


@triton.jit
def _target_in_space(t, DISPARITY: tl.constexpr):
    if DISPARITY:
        return 1.0 / t
    return t


@triton.jit
def _residual_slope(r, SQUARED: tl.constexpr):
    """sign(r) (0 at 0, as the gradient of |r|) or 2r."""
    if SQUARED:
        return 2.0 * r
    return tl.where(r > 0, 1.0, tl.where(r < 0, -1.0, 0.0)).to(r.dtype)


@triton.jit
def _pixel_sums(p, t, a, b, STAGE: tl.constexpr, SQUARED: tl.constexpr):
    """The contributions of each pixel to the stage's five sums (csrc/depth_loss.cuh: pixel_sums)."""
    zero = tl.zeros_like(p)
    if STAGE == 0:
        d = tl.log(p / t)
        return zero + 1.0, d, d * d, zero, zero
    elif STAGE == 1:
        return zero + 1.0, p, t, p * p, p * t
    else:
        r = a * p + b - t
        slope = _residual_slope(r, SQUARED)
        if SQUARED:
            penalty = r * r
        else:
            penalty = tl.abs(r)
        return penalty, slope, slope * p, zero, zero


@triton.jit
def _alignment(m_ptr):
    """The least-squares a p + b ~ t of one image from its float64 moments n, Σp, Σt, Σp², Σpt at
    m_ptr: (a, b, det, ok) (csrc/depth_loss.cuh: alignment_from_sums)."""
    n = tl.load(m_ptr)
    sp = tl.load(m_ptr + 1)
    st = tl.load(m_ptr + 2)
    spp = tl.load(m_ptr + 3)
    spt = tl.load(m_ptr + 4)
    det = n * spp - sp * sp
    size = tl.abs(n * spp)
    ok = tl.abs(det) > 1e-12 * tl.where(size < 1e-30, 1e-30, size)
    a = tl.where(ok, (n * spt - sp * st) / tl.where(ok, det, 1.0), 0.0)
    b = tl.where(n > 0.0, (st - a * sp) / tl.where(n < 1.0, 1.0, n), 0.0)
    return a, b, det, ok


@triton.jit
def _shift_coefficients(in_ptr):
    """The scale-and-shift-invariant backward's 8 coefficients of one image from its SHIFT_INPUTS
    inputs at in_ptr (csrc/depth_loss.cuh: shift_coefficients, which derives them), float32."""
    a, b, det, ok = _alignment(in_ptr)
    n = tl.load(in_ptr)
    sp = tl.load(in_ptr + 1)
    st = tl.load(in_ptr + 2)
    q = tl.load(in_ptr + 6)
    p = tl.load(in_ptr + 7)
    w = tl.load(in_ptr + 10)
    g = tl.load(in_ptr + 11)
    nc = tl.where(n < 1.0, 1.0, n)
    mean_t = st / nc
    mean_p = sp / nc
    e = p - q * mean_p
    scale = tl.where(ok, w * e * n / tl.where(ok, det, 1.0), 0.0)
    c2 = tl.where(ok, w * a, 0.0) * g
    c3 = tl.where(ok, scale, 0.0) * g
    c4 = tl.where(ok, -2.0 * scale * a, 0.0) * g
    c5 = tl.where(ok, -w * q * a / nc, 0.0) * g
    c6 = tl.where(ok, mean_t, 0.0)
    c7 = tl.where(ok, mean_p, 0.0)
    f32 = tl.float32
    return a.to(f32), b.to(f32), c2.to(f32), c3.to(f32), c4.to(f32), c5.to(f32), c6.to(f32), c7.to(f32)


@triton.jit
def _pixel_grad(p, t, c0, c1, c2, c3, c4, c5, c6, c7, LOSS: tl.constexpr, SQUARED: tl.constexpr):
    """The gradient to each valid pixel's prediction (csrc/depth_loss.cuh: pixel_grad)."""
    if LOSS == 0:
        return (c0 + c1 * tl.log(p / t)) / p
    r = c0 * p + c1 - t
    return c2 * _residual_slope(r, SQUARED) + c3 * (t - c6) + c4 * (p - c7) + c5


@triton.jit
def _pixels(
    pred_ptr, target_ptr, mask_ptr, b, blk, N, HAS_MASK: tl.constexpr, DISPARITY: tl.constexpr, BLOCK: tl.constexpr
):
    """A program's pixels of image b: offsets, in range, valid, and pred and the target in the loss's
    space (1 where invalid, so that no garbage reaches the arithmetic)."""
    local = blk * BLOCK + tl.arange(0, BLOCK)
    in_range = local < N
    offs = b.to(tl.int64) * N + local
    p = tl.load(pred_ptr + offs, mask=in_range, other=1.0).to(tl.float32)
    t = tl.load(target_ptr + offs, mask=in_range, other=1.0).to(tl.float32)
    ok = _valid_pixel(t, mask_ptr, offs, in_range, HAS_MASK)
    return offs, in_range, ok, tl.where(ok, p, 1.0), _target_in_space(tl.where(ok, t, 1.0), DISPARITY)


@triton.jit
def _load_f32(ptr):
    return tl.load(ptr).to(tl.float32)


@triton.jit
def depth_loss_fwd_kernel(
    pred_ptr, target_ptr, mask_ptr, coeffs_ptr, partial_ptr, N, blocks,
    STAGE: tl.constexpr, HAS_MASK: tl.constexpr, DISPARITY: tl.constexpr, SQUARED: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    blk = tl.program_id(0)
    b = tl.program_id(1)
    offs, in_range, ok, p, t = _pixels(pred_ptr, target_ptr, mask_ptr, b, blk, N, HAS_MASK, DISPARITY, BLOCK)
    a = 0.0
    shift = 0.0
    if STAGE == 2:
        a64, shift64, _, _ = _alignment(coeffs_ptr + SUMS * b)
        a = a64.to(tl.float32)
        shift = shift64.to(tl.float32)
    s0, s1, s2, s3, s4 = _pixel_sums(p, t, a, shift, STAGE, SQUARED)
    row = partial_ptr + (b.to(tl.int64) * blocks + blk) * 5
    tl.store(row + 0, tl.sum(tl.where(ok, s0, 0.0).to(tl.float64), axis=0))
    tl.store(row + 1, tl.sum(tl.where(ok, s1, 0.0).to(tl.float64), axis=0))
    tl.store(row + 2, tl.sum(tl.where(ok, s2, 0.0).to(tl.float64), axis=0))
    tl.store(row + 3, tl.sum(tl.where(ok, s3, 0.0).to(tl.float64), axis=0))
    tl.store(row + 4, tl.sum(tl.where(ok, s4, 0.0).to(tl.float64), axis=0))


@triton.jit
def depth_loss_bwd_kernel(
    coeffs_ptr, pred_ptr, target_ptr, mask_ptr, grad_pred_ptr, N,
    LOSS: tl.constexpr, HAS_MASK: tl.constexpr, DISPARITY: tl.constexpr, SQUARED: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    blk = tl.program_id(0)
    b = tl.program_id(1)
    offs, in_range, ok, p, t = _pixels(pred_ptr, target_ptr, mask_ptr, b, blk, N, HAS_MASK, DISPARITY, BLOCK)
    if LOSS == 0:
        c = coeffs_ptr + COEFFS * b
        g = _pixel_grad(
            p, t, _load_f32(c), _load_f32(c + 1), _load_f32(c + 2), _load_f32(c + 3), _load_f32(c + 4),
            _load_f32(c + 5), _load_f32(c + 6), _load_f32(c + 7), LOSS, SQUARED,
        )  # fmt: skip
    else:
        c0, c1, c2, c3, c4, c5, c6, c7 = _shift_coefficients(coeffs_ptr + SHIFT_INPUTS * b)
        g = _pixel_grad(p, t, c0, c1, c2, c3, c4, c5, c6, c7, LOSS, SQUARED)
    tl.store(grad_pred_ptr + offs, tl.where(ok, g, 0.0).to(grad_pred_ptr.dtype.element_ty), mask=in_range)


def _grid(B: int, N: int) -> tuple[int, int]:
    grid = (triton.cdiv(N, BLOCK), B)
    check_grid("pred", grid)
    return grid


def depth_loss_forward(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    coeffs: torch.Tensor | None,
    stage: str,
    disparity: bool,
    squared: bool,
) -> torch.Tensor:
    """Launch the forward kernel for ``stage``: the per-image sums (B, 5) in float64.

    pred, target (B, N) one float dtype, mask (B, N) bool or None, coeffs (B, 5) float64: for the
    residual stage the alignment's moments (the align_moments stage's sums), else None.
    """
    B, N = pred.shape
    grid = _grid(B, N)
    pred, target = pred.contiguous(), target.contiguous()
    partial = torch.zeros((B, grid[0], int(SUMS)), dtype=torch.float64, device=pred.device)
    if coeffs is None:
        coeffs = torch.zeros((B, int(SUMS)), dtype=torch.float64, device=pred.device)
    if pred.numel() > 0:
        with device_guard(pred):
            depth_loss_fwd_kernel[grid](
                pred, target, mask.contiguous() if mask is not None else pred, coeffs.contiguous(), partial, N,
                grid[0], STAGE=STAGES[stage], HAS_MASK=mask is not None, DISPARITY=disparity, SQUARED=squared,
                BLOCK=BLOCK, num_warps=NUM_WARPS,
            )  # fmt: skip
    return partial.sum(1)


def depth_loss_backward(
    coeffs: torch.Tensor,
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    loss: str,
    disparity: bool,
    squared: bool,
) -> torch.Tensor:
    """Launch the backward kernel: the gradient to pred (B, N) in its dtype, 0 at invalid pixels, from
    per image float64 coefficients (B, 8) (scale-invariant, see :mod:`fastdepth.depth_loss`) or the
    inputs they are computed from (B, SHIFT_INPUTS) (scale-and-shift-invariant: the forward's ten
    sums, the image's weight, the upstream gradient)."""
    B, N = pred.shape
    grid = _grid(B, N)
    pred, target = pred.contiguous(), target.contiguous()
    grad_pred = torch.empty_like(pred)
    if pred.numel() > 0:
        with device_guard(pred):
            depth_loss_bwd_kernel[grid](
                coeffs.contiguous(), pred, target, mask.contiguous() if mask is not None else pred, grad_pred, N,
                LOSS=LOSSES[loss], HAS_MASK=mask is not None, DISPARITY=disparity, SQUARED=squared, BLOCK=BLOCK,
                num_warps=NUM_WARPS,
            )  # fmt: skip
    return grad_pred


def aot_variants():
    """(label, kernel, signature, constexprs, num_warps) for the compile report, per prediction dtype."""
    for img in ("fp32", "fp16", "bf16"):
        images = dict(pred_ptr=f"*{img}", target_ptr=f"*{img}", mask_ptr="*i1")
        for stage in (0, 2):
            yield (
                f"depth_loss_fwd_kernel[{img},stage{stage}]",
                depth_loss_fwd_kernel,
                dict(**images, coeffs_ptr="*fp64", partial_ptr="*fp64", N="i32", blocks="i32"),
                dict(STAGE=stage, HAS_MASK=True, DISPARITY=stage == 2, SQUARED=False, BLOCK=BLOCK),
                NUM_WARPS,
            )
        for loss in (0, 1):
            yield (
                f"depth_loss_bwd_kernel[{img},loss{loss}]",
                depth_loss_bwd_kernel,
                dict(coeffs_ptr="*fp64", **images, grad_pred_ptr=f"*{img}", N="i32"),
                dict(LOSS=loss, HAS_MASK=True, DISPARITY=loss == 1, SQUARED=False, BLOCK=BLOCK),
                NUM_WARPS,
            )
