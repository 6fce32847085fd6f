"""The fused objective's kernels, one launch each, for Nsight Compute: one fwd+bwd call of
``reprojection_loss`` per GPU backend (Triton, then CUDA) at the benchmark's size and full
resolution, with Monodepth2's sampling and the identity maps computed beforehand by the reference,
so that the only fastdepth kernels launched are the fused objective's forward and backward. The
benchmark says that the Triton backward is slower than the CUDA one; under ``ncu`` (the GPU
campaign's last step, ``KERNELS`` below its filter) this says why: occupancy, registers, memory
throughput and where the warps stall, per kernel, side by side.

    ncu --kernel-name regex:'reprojection_.*_kernel' ... \
        python -m fastdepth.benchmarks.kernel_profile [--device cuda] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from fastdepth.benchmarks import workloads
from fastdepth.benchmarks.works import objective

import fastdepth
from fastdepth.train.objective import full_resolution_depths

BACKENDS = ("triton", "cuda")
#: the kernels the campaign's ncu filter takes (regex on the kernel's function name)
KERNELS = "reprojection_.*_kernel"


def call(backend: str, x: dict) -> float:
    """One fwd+bwd of the fused objective at full resolution on ``backend``; its wall-clock ms."""
    depth = full_resolution_depths(x["disps"][:1], *x["target"].shape[-2:])[0].requires_grad_()
    poses = x["poses"].clone().requires_grad_()
    start = time.perf_counter()
    loss = fastdepth.reprojection_loss(
        x["target"], x["sources"], depth, poses, x["K"], identity=x["identity"], backend=backend,
        **objective.MONODEPTH2_SAMPLING,
    )[0]  # fmt: skip
    loss.mean().backward()
    if x["target"].is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="the tiny size of the benchmark's --quick")
    args = parser.parse_args(argv)
    size = workloads.QUICK_SIZE if args.quick else workloads.SIZES[workloads.MAIN_SIZE]
    x = objective.inputs(size, torch.float32, args.device, False)
    x["identity"] = fastdepth.identity_loss(x["target"], x["sources"], backend="torch")
    for backend in BACKENDS:
        ms = call(backend, x)
        print(f"reprojection {backend} {workloads.shape('reprojection', size)} fwd+bwd fp32: {ms:.1f} ms, first call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
