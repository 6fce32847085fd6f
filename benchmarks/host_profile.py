"""Where a fused call's host time goes: the Python functions that repeated fwd+bwd calls of each
work's fused implementations spend their time in (cProfile, sorted by own time). The benchmark's
``host ms / call`` says how long the host takes per call; on a GPU, where a call bound by its
launches waits for the host, this says where. The GPU campaign's last step.

    python -m fastdepth.benchmarks.host_profile [--device cuda] [--works warp,depth_loss] [--calls 50] [--quick]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time

import torch
from fastdepth.benchmarks import workloads

WORKS = ("warp", "photometric", "reprojection", "depth_loss")
FUSED = ("triton", "cuda")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def profile(work: str, impl: str, device: str, size: workloads.Size, calls: int, rows: int) -> str:
    """The host's time per fwd+bwd call of ``impl`` (timed without the profiler, launches queued and
    not waited for) and the ``rows`` functions with the most own time over ``calls`` calls."""
    inputs = workloads.make_inputs(work, size, torch.float32, device, "fwd+bwd")
    run = workloads.make_impl(work, impl, inputs, "fwd+bwd")
    for _ in range(3):
        run()
    _sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        run()
    host_ms = (time.perf_counter() - start) / calls * 1e3
    _sync(device)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        run()
    profiler.disable()
    _sync(device)
    stats = pstats.Stats(profiler, stream=io.StringIO()).stats  # function -> (calls, calls, own, cumulative, callers)
    top = sorted(stats.items(), key=lambda item: -item[1][2])[:rows]
    lines = [f"== {work} {impl} {workloads.shape(work, size)} fwd+bwd fp32: host {host_ms:.3f} ms / call (unprofiled)",
             "  own us  total us  calls  function (per fwd+bwd call, profiled)"]  # fmt: skip
    for (path, line, name), (_, ncalls, own, cumulative, _) in top:
        where = f"{'/'.join(path.split('/')[-2:])}:{line}({name})" if line else name
        lines.append(f"{own / calls * 1e6:8.1f} {cumulative / calls * 1e6:9.1f} {ncalls / calls:6.1f}  {where}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--works", default=",".join(WORKS), help="comma-separated works")
    parser.add_argument("--calls", type=int, default=50, help="fwd+bwd calls profiled per implementation")
    parser.add_argument("--rows", type=int, default=15, help="functions listed per implementation")
    parser.add_argument("--quick", action="store_true", help="the tiny size of the benchmark's --quick")
    args = parser.parse_args(argv)
    works = args.works.split(",")
    unknown = sorted(set(works) - set(workloads.WORKS))
    if unknown:
        parser.error(f"unknown works {unknown}: choose from {', '.join(workloads.WORKS)}")
    size = workloads.QUICK_SIZE if args.quick else workloads.SIZES[workloads.MAIN_SIZE]
    for work in works:
        for impl in workloads.implementations(work, args.device):
            if impl in FUSED:
                print(profile(work, impl, args.device, size, args.calls, args.rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
