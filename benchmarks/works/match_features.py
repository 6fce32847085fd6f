"""ManyDepth's matching cost volume (:func:`fastdepth.manydepth.match_features`) against ManyDepth's
own ``match_features`` (``benchmarks/manydepth.py``): one lookup frame (ManyDepth's default), C = 64
features at a quarter of the size's resolution, D = 96 planes (32 at batch <= 2, the CPU sizes), the
gradient to the current frame's features in fwd+bwd (ManyDepth itself builds its cost volume
without one: its mode is fwd)."""

from __future__ import annotations

import torch
from fastdepth.benchmarks import manydepth
from fastdepth.benchmarks.work import Size, Work, run_mode
from fastdepth.benchmarks.works.cost_volume import CHANNELS, hypotheses

import fastdepth
from fastdepth.checks.cost_volume import inputs as volume_inputs


def inputs(size: Size, dtype: torch.dtype, device: str, grad: bool) -> dict:
    h, w = size.height // 4, size.width // 4
    D = hypotheses(size)
    current, lookup, planes, poses, K = volume_inputs(size.batch, 1, CHANNELS, h, w, D, 0, dtype, device)
    K4 = torch.eye(4, device=device).repeat(size.batch, 1, 1)
    K4[:, :3, :3] = K
    grad_out = torch.rand(size.batch, D, h, w, device=device).to(dtype)
    x = {"current": current.requires_grad_(grad), "lookup": lookup, "poses": poses, "K": K4, "bins": planes[0]}
    return x | {"invK": torch.linalg.inv(K4), "grad_out": grad_out}


def make(name: str, x: dict, mode: str):
    if name == "manydepth":
        args = (x["current"], x["lookup"], x["poses"], x["K"], x["invK"], x["bins"])
        forward = lambda: manydepth.match_features(*args, eps=1e-7)[0]
    else:
        args = (x["current"], x["lookup"], x["poses"], x["K"], x["bins"])
        forward = lambda: fastdepth.manydepth.match_features(*args, backend=name)[0]
    return run_mode(mode, forward, [x["current"]], x["grad_out"])


def shape(size: Size) -> str:
    return f"B={size.batch} S=1 C={CHANNELS} D={hypotheses(size)} {size.height // 4}x{size.width // 4}"


def floor_bytes(size: Size, dtype: torch.dtype, mode: str) -> int:
    """fwd: read both feature maps, write the cost volume and its mask (float32); bwd: read the
    features and the cost's gradient again, write the current features' gradient."""
    e = torch.finfo(dtype).bits // 8
    plane = size.batch * (size.height // 4) * (size.width // 4)
    features, cost = 2 * CHANNELS * plane, hypotheses(size) * plane
    fwd = e * features + 4 * 2 * cost
    return fwd if mode == "fwd" else fwd + e * (features + CHANNELS * plane) + 4 * cost


WORK = Work("match_features", inputs, ("manydepth",), make, floor_bytes, shape=shape)
