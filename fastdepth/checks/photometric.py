"""Correctness cases of the photometric op (see :mod:`fastdepth.checks`)."""

from __future__ import annotations

import contextlib

import torch

import fastdepth
from fastdepth.checks.case import CaseResult, gradient_error, grads, leaves, output_error, winner_mismatches
from fastdepth.reference import reprojection as reference
from fastdepth.scenes import natural_images
from fastdepth.tolerances import tie_tolerance, tolerance


def _candidates(B, C, H, W, seed, dtype, device):
    target = natural_images(B, C, H, W, seed=seed, dtype=dtype, device=device)
    gen = torch.Generator().manual_seed(seed + 1)
    noise = torch.randn(B, 4, C, H, W, generator=gen).to(device)
    sources = (target[:, None].float() + 0.2 * noise).clamp(0, 1).to(dtype)
    return target, sources[:, :2].contiguous(), sources[:, 2:].contiguous()


#: "tile": min_reprojection with the tile backward (fastdepth.photometric.BACKWARD = "tile")
CASES = ("photometric_loss", "min_reprojection", "ties", "nan_pixel", "tile")
SANITIZER_CASES = ("min_reprojection", "tile")  # every kernel of the op
SELFCHECK_CASE = "min_reprojection"


def run_case(name: str, backend: str, device: str, dtype: torch.dtype, quick: bool, seed: int = 0) -> CaseResult:
    """``photometric_loss`` (one candidate), ``min_reprojection`` (2 identity + 2 warped sources),
    ``ties`` (every warped source equals an identity source: identity must win), ``nan_pixel``
    (the NaN pattern of the loss map must be the reference's) or ``tile`` (min_reprojection through
    the tile backward kernel)."""
    result = CaseResult("photometric", name, backend, device, str(dtype).removeprefix("torch."))
    B, C, H, W = (1, 2, 6, 9) if quick else (2, 3, 37, 53)  # 37 x 53: not a multiple of any tile size
    target, warped, identity = _candidates(B, C, H, W, seed, dtype, device)
    if name == "ties":
        identity = warped.flip(1).contiguous()
    if name == "nan_pixel":
        warped[0, 0, 0, H // 2, W // 2] = float("nan")
    if name == "photometric_loss":
        inputs = [warped[:, 0].contiguous(), target]

        def run(*xs, backend):
            return (fastdepth.photometric_loss(*xs, backend=backend),)

    else:
        inputs = [target, warped, identity]

        def run(*xs, backend):
            return fastdepth.min_reprojection_loss(*xs, backend=backend)

    ours_in, ref_in = leaves(inputs), leaves(inputs, torch.float64)
    ref = run(*ref_in, backend="torch")
    with fastdepth.photometric.backward_kernel("tile") if name == "tile" else contextlib.nullcontext():
        ours = run(*ours_in, backend=backend)
        g = torch.rand(ours[0].shape, generator=torch.Generator().manual_seed(seed)).to(device)
        if len(ours) > 1:
            with torch.no_grad():
                maps = reference.identity_loss(target.double(), torch.cat([identity, warped], dim=1).double())
            result.mismatches, near_ties = winner_mismatches(
                maps, ours[1], ref[1], tie_tolerance("photometric", backend, device)
            )
            g = g.masked_fill(near_ties, 0.0)
        ours_grads = grads(ours[0], ours_in, g)
    tol = tolerance("photometric", dtype, backend, device)
    result.forward_tol, result.gradient_tol = tol.forward, tol.gradient
    result.forward_error, result.where = output_error(ours[0], ref[0])
    if name == "nan_pixel":  # NaN positions must agree; gradients are not compared through NaN
        result.mismatches += int((torch.isnan(ours[0]) != torch.isnan(ref[0])).sum())
        result.gradient_error = 0.0
        return result
    names = ("pred", "target") if name == "photometric_loss" else ("target", "warped", "identity")
    result.gradient_error, grad_where = gradient_error(
        names, ours_grads, grads(ref[0], ref_in, g.to(dtype).double()), tol.gradient_floor
    )
    result.where += f"; {grad_where}"
    return result
