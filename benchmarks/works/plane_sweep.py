"""The MVSNet family's variance cost volume (:func:`fastdepth.mvsnet.plane_sweep`) against its own
``homo_warping`` and variance (``benchmarks/mvsnet.py``): S = 2 source views, C = 32 features at a
quarter of the size's resolution, D = 96 depth hypotheses (48 at batch <= 2, the CPU sizes), the
gradient to every view's features in fwd+bwd (MVSNet trains its feature network through it)."""

from __future__ import annotations

import torch
from fastdepth.benchmarks import mvsnet
from fastdepth.benchmarks.work import Size, Work, run_mode

import fastdepth
from fastdepth.checks.cost_volume import inputs as volume_inputs

CHANNELS, SOURCES = 32, 2


def hypotheses(size: Size) -> int:
    return 48 if size.batch <= 2 else 96


def inputs(size: Size, dtype: torch.dtype, device: str, grad: bool) -> dict:
    h, w = size.height // 4, size.width // 4
    D = hypotheses(size)
    ref, srcs, depth, poses, K = volume_inputs(size.batch, SOURCES, CHANNELS, h, w, D, 0, dtype, device)
    ref_proj = torch.eye(4, device=device).repeat(size.batch, 1, 1)
    ref_proj[:, :3, :3] = K  # the reference camera at the origin: [K | 0]
    src_projs = ref_proj[:, None] @ poses  # [K R | K t] of each source
    grad_out = torch.rand(size.batch, CHANNELS, D, h, w, device=device).to(dtype)
    srcs = [srcs[:, s].contiguous().requires_grad_(grad) for s in range(SOURCES)]
    x = {"ref": ref.requires_grad_(grad), "srcs": srcs, "ref_proj": ref_proj, "src_projs": src_projs.unbind(1)}
    return x | {"depth": depth, "grad_out": grad_out}


def make(name: str, x: dict, mode: str):
    args = (x["ref"], x["srcs"], x["ref_proj"], x["src_projs"], x["depth"])
    if name == "homo_warping":
        forward = lambda: mvsnet.variance_volume(*args)
    else:
        forward = lambda: fastdepth.mvsnet.plane_sweep(*args, backend=name)
    return run_mode(mode, forward, [x["ref"], *x["srcs"]], x["grad_out"])


def shape(size: Size) -> str:
    return f"B={size.batch} S={SOURCES} C={CHANNELS} D={hypotheses(size)} {size.height // 4}x{size.width // 4}"


def floor_bytes(size: Size, dtype: torch.dtype, mode: str) -> int:
    """fwd: read every view's features, write the (B, C, D, h, w) variance; bwd: read the features
    and the variance's gradient again, write every view's gradient."""
    e = torch.finfo(dtype).bits // 8
    plane = size.batch * (size.height // 4) * (size.width // 4)
    features, volume = (SOURCES + 1) * CHANNELS * plane, CHANNELS * hypotheses(size) * plane
    fwd = e * (features + volume)
    return fwd if mode == "fwd" else fwd + e * (2 * features + volume)


WORK = Work("plane_sweep", inputs, ("homo_warping",), make, floor_bytes, shape=shape)
