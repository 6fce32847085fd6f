"""The supervised depth losses' benchmark work: the scale-invariant loss plus the
scale-and-shift-invariant loss of one (B, 1, H, W) depth prediction against ground truth with
missing pixels (the size's channels are not used), the gradient to the prediction in fwd+bwd.
Peers: the eager reference (masked sums as MiDaS and the SILog losses write them) and
``torch.compile`` of it."""

from __future__ import annotations

import torch
from fastdepth.benchmarks.work import Size, Work, run_mode

import fastdepth
from fastdepth.checks.depth_loss import inputs as depth_inputs
from fastdepth.reference import depth_loss as reference


def inputs(size: Size, dtype: torch.dtype, device: str, grad: bool) -> dict:
    pred, target, _ = depth_inputs(size.batch, size.height, size.width, 0, dtype, device)
    return {"pred": pred.requires_grad_(grad), "target": target}


def both_losses(pred, target, si, ssi):
    return si(pred, target) + ssi(pred, target)


def make(name: str, x: dict, mode: str):
    pred, target = x["pred"], x["target"]
    if name in ("eager", "compile"):
        wrap = (lambda f: torch.compile(f, dynamic=False)) if name == "compile" else (lambda f: f)
        forward = wrap(
            lambda p, t: both_losses(p, t, reference.scale_invariant_loss, reference.scale_shift_invariant_loss)
        )
        run = lambda: forward(pred, target)
    else:
        si = lambda p, t: fastdepth.scale_invariant_loss(p, t, backend=name)
        ssi = lambda p, t: fastdepth.scale_shift_invariant_loss(p, t, backend=name)
        run = lambda: both_losses(pred, target, si, ssi)
    return run_mode(mode, run, [pred])


def shape(size: Size) -> str:
    return f"B={size.batch} 1x{size.height}x{size.width}"


def floor_bytes(size: Size, dtype: torch.dtype, mode: str) -> int:
    """fwd: read pred and target once; bwd: read them again and write the gradient."""
    e = torch.finfo(dtype).bits // 8
    pixels = size.batch * size.height * size.width
    return 2 * e * pixels if mode == "fwd" else 5 * e * pixels


WORK = Work("depth_loss", inputs, ("eager", "compile"), make, floor_bytes, shape=shape)
