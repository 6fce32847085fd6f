"""The fused objective's benchmark work: the same training-step objective as ``objective`` (2
sources, 4 scales, auto-masking; gradients to the disparities and poses), with fastdepth's
``reprojection_loss`` at every scale and the identity maps computed once, beside the same peers
and two variants of each fused backend, timed in turns with it in one case: ``<backend>-composed``,
the composed fused ops of the same backend (the ``objective`` work's), and
``<backend>-three_pass``, the fused op with the backward of the warp recomputed into memory and
the photometric and warp backward kernels instead of its one-pass backward kernels
(:func:`fastdepth.reprojection.backward_passes`); on a GPU also ``<backend>-window``, the fused op
with the forward kernel that warps each pixel's window again instead of each block of pixels once
(:func:`fastdepth.reprojection.forward_kernel`)."""

from __future__ import annotations

import torch
from fastdepth.benchmarks.work import Size, Work, run_mode
from fastdepth.benchmarks.works import objective

import fastdepth
from fastdepth.reprojection import backward_passes, forward_kernel
from fastdepth.train.objective import full_resolution_depths, photometric_term


def fused_objective(target, sources, disps, poses, K, backend: str):
    identity = fastdepth.identity_loss(target, sources, backend=backend)

    def per_scale(depth):
        return fastdepth.reprojection_loss(
            target, sources, depth, poses, K, identity=identity, backend=backend, **objective.MONODEPTH2_SAMPLING
        )[::2]

    total, _ = photometric_term(full_resolution_depths(disps, *target.shape[-2:]), per_scale)
    return total / len(disps)


def make(name: str, x: dict, mode: str):
    backend, _, variant = name.partition("-")
    if name in objective.WORK.peers or variant == "composed":
        return objective.make(backend, x, mode)
    args = (x["target"], x["sources"], x["disps"], x["poses"], x["K"])
    step = run_mode(mode, lambda: fused_objective(*args, backend), [*x["disps"], x["poses"]])
    passes = "three_pass" if variant == "three_pass" else "one_pass"
    forward = "window" if variant == "window" else "tile"

    def run():
        with backward_passes(passes), forward_kernel(forward):
            return step()

    return run


def kernel_bytes(impl: str, size: Size, dtype: torch.dtype, mode: str) -> int | None:
    """The fused op (``<backend>``) as designed: the identity maps once (the sources and the target
    expanded to them in, the maps out); at every scale the forward reads the target, the sources,
    depth and the identity maps and writes the loss and the index, and the one-pass backward reads
    the target, sources and depth again (objective.Traffic); ``<backend>-window`` as much (the tile
    forward's halos and scratch, and the window forward's repeated reads, left out).
    ``<backend>-three_pass``: the backward warps the sources into memory and runs the photometric and
    warp backward. The composed ops (``<backend>-composed``): :func:`objective.kernel_bytes`."""
    backend, _, variant = impl.partition("-")
    if variant == "composed":
        return objective.kernel_bytes(backend, size, dtype, mode)
    if backend not in ("triton", "cuda") or variant not in ("", "three_pass", "window"):
        return None
    t = objective.Traffic(size, dtype)
    identity = objective.SOURCES * t.map
    once = 2 * t.sources + identity
    fwd = t.image + t.sources + t.depth + identity + t.map + t.index
    bwd = t.warp_fwd + t.photometric_bwd + t.warp_bwd if variant == "three_pass" else t.one_pass_bwd
    return once + objective.SCALES * (fwd if mode == "fwd" else fwd + bwd)


WORK = Work(
    "reprojection",
    objective.inputs,
    objective.WORK.peers,
    make,
    objective.floor_bytes,
    variants=("composed", "three_pass"),
    gpu_variants=("window",),
    kernel_bytes=kernel_bytes,
)
