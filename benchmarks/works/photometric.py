"""The photometric loss's benchmark work: Monodepth2's eager SSIM + L1, torch.compile of the
reference, and fastdepth's backends; the gradient to the prediction in fwd+bwd. On a GPU also
``<backend>-tile``: the backward kernel that computes each window's stat gradients once per block
(:func:`fastdepth.photometric.backward_kernel`)."""

from __future__ import annotations

import torch
from fastdepth.benchmarks import monodepth2
from fastdepth.benchmarks.work import Size, Work, run_mode, within

import fastdepth
from fastdepth.reference import photometric as reference
from fastdepth.scenes import natural_images


def inputs(size: Size, dtype: torch.dtype, device: str, grad: bool) -> dict:
    target = natural_images(size.batch, size.channels, size.height, size.width, dtype=dtype, device=device)
    pred = natural_images(size.batch, size.channels, size.height, size.width, seed=1, dtype=dtype, device=device)
    grad_out = torch.rand(size.batch, 1, size.height, size.width, device=device).to(dtype)
    return {"pred": pred.requires_grad_(grad), "target": target, "grad_out": grad_out}


def make(name: str, x: dict, mode: str):
    pred, target = x["pred"], x["target"]
    if name == "monodepth2":
        forward = lambda: monodepth2.reprojection_loss(pred, target)
    elif name == "compile":
        compiled = torch.compile(reference.photometric_loss, dynamic=False)
        forward = lambda: compiled(pred, target)
    else:
        backend, _, variant = name.partition("-")
        step = run_mode(mode, lambda: fastdepth.photometric_loss(pred, target, backend=backend), [pred], x["grad_out"])
        return tile_backward(step) if variant == "tile" else step
    return run_mode(mode, forward, [pred], x["grad_out"])


def tile_backward(step):
    """``step`` with the photometric op's tile backward kernel."""
    return within(step, lambda: fastdepth.photometric.backward_kernel("tile"))


def floor_bytes(size: Size, dtype: torch.dtype, mode: str) -> int:
    """fwd: read pred + target, write the map; bwd: read grad, pred, target, write grad pred."""
    e = torch.finfo(dtype).bits // 8
    image = size.batch * size.channels * size.height * size.width
    plane = size.batch * size.height * size.width
    fwd = 2 * e * image + e * plane
    return fwd if mode == "fwd" else fwd + e * plane + 3 * e * image


WORK = Work("photometric", inputs, ("monodepth2", "compile"), make, floor_bytes, gpu_variants=("tile",))
