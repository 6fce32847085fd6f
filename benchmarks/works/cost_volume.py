"""The cost volume's benchmark work: ManyDepth's matching cost, S = 1 source, C = 64 features at a
quarter of the size's resolution, reduction l1, the gradient to both feature maps in fwd+bwd. D = 96
hypotheses (ManyDepth's), 32 at batch <= 2 (the CPU sizes). Peers: an eager ``homo_warping`` as the
MVSNet family writes it (every hypothesis projected at once, one ``grid_sample`` of the whole
(B, C, D, h, w) warped volume, then the mean |difference| over channels), and ``torch.compile`` of it.
On a GPU also ``<backend>-sweep``: the fused op with the sweep backward kernel (each thread a pixel
and 4 channels over every hypothesis) instead of the per-hypothesis one
(:func:`fastdepth.cost_volume.backward_kernel`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fastdepth.benchmarks.work import Size, Work, run_mode, within

import fastdepth
from fastdepth.checks.cost_volume import inputs as volume_inputs
from fastdepth.conventions import grid_scale
from fastdepth.cost_volume import backward_kernel
from fastdepth.reference import warp as reference_warp

CHANNELS = 64


def hypotheses(size: Size) -> int:
    return 32 if size.batch <= 2 else 96


def inputs(size: Size, dtype: torch.dtype, device: str, grad: bool) -> dict:
    h, w = size.height // 4, size.width // 4
    D = hypotheses(size)
    ft, fs, planes, poses, K = volume_inputs(size.batch, 1, CHANNELS, h, w, D, 0, dtype, device)
    grad_out = torch.rand(size.batch, D, h, w, device=device).to(dtype)
    x = {"ft": ft.requires_grad_(grad), "fs": fs.requires_grad_(grad), "planes": planes, "poses": poses, "K": K}
    return x | {"grad_out": grad_out}


def homo_warping(ft, fs, planes, poses, K):
    """Eager plane sweep: the warped volume (B, C, D, h, w) materialised by one grid_sample."""
    B, S, C, h, w = fs.shape
    D = planes.shape[1]
    depth = planes.reshape(B * D, 1, 1, 1).expand(B * D, 1, h, w)
    u, v, _, _ = reference_warp.project(depth, poses.repeat_interleave(D, 0), K.repeat_interleave(D, 0), dtype=ft.dtype)
    sx, ox = grid_scale(w)
    sy, oy = grid_scale(h)
    grid = torch.stack([u * sx + ox, v * sy + oy], -1).reshape(B, D, h, w, 2).reshape(B, D * h, w, 2)
    warped = F.grid_sample(fs[:, 0], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return (ft[:, :, None] - warped.reshape(B, C, D, h, w)).abs().mean(1)


def make(name: str, x: dict, mode: str):
    args = (x["ft"], x["fs"], x["planes"], x["poses"], x["K"])
    if name == "homo_warping":
        forward = lambda: homo_warping(*args)
    elif name == "compile":
        compiled = torch.compile(homo_warping, dynamic=False)
        forward = lambda: compiled(*args)
    else:
        backend, _, variant = name.partition("-")
        step = run_mode(mode, lambda: fastdepth.cost_volume(*args, backend=backend), [x["ft"], x["fs"]], x["grad_out"])
        return within(step, lambda: backward_kernel("sweep")) if variant == "sweep" else step
    return run_mode(mode, forward, [x["ft"], x["fs"]], x["grad_out"])


def shape(size: Size) -> str:
    return f"B={size.batch} C={CHANNELS} D={hypotheses(size)} {size.height // 4}x{size.width // 4}"


def floor_bytes(size: Size, dtype: torch.dtype, mode: str) -> int:
    """fwd: read both feature maps, write the cost; bwd: read them and the cost's gradient again,
    write both gradients (the projections are left out)."""
    e = torch.finfo(dtype).bits // 8
    plane = size.batch * (size.height // 4) * (size.width // 4)
    features, cost = 2 * CHANNELS * plane, hypotheses(size) * plane
    fwd = e * (features + cost)
    return fwd if mode == "fwd" else fwd + e * (2 * features + cost)


WORK = Work("cost_volume", inputs, ("homo_warping", "compile"), make, floor_bytes, shape=shape, gpu_variants=("sweep",))
