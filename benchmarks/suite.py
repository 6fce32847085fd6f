"""What the pytest-benchmark suite (bench_works.py) needs: the device, the sizes, the cases and a runner.

pytest benchmarks/ [--benchmark-only]   # FASTDEPTH_BENCH_SIZES=kitti,small FASTDEPTH_BENCH_DTYPES=fp32,bf16
"""

import os

import pytest
import torch
from fastdepth.benchmarks import workloads
from fastdepth.benchmarks.run import DTYPES

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
_default_sizes = "kitti" if DEVICE == "cuda" else "quick"
SIZES = os.environ.get("FASTDEPTH_BENCH_SIZES", _default_sizes).split(",")
DTYPE_NAMES = os.environ.get("FASTDEPTH_BENCH_DTYPES", "fp32").split(",")


def size_of(key: str) -> workloads.Size:
    return workloads.QUICK_SIZE if key == "quick" else workloads.SIZES[key]


def cases(work: str):
    """(work, impl, mode, size, dtype) parameters of one work's suite."""
    return [
        pytest.param(work, impl, mode, size, dtype, id=f"{work}-{impl}-{mode}-{size}-{dtype}")
        for impl in workloads.implementations(work, DEVICE)
        for mode in workloads.MODES
        for size in SIZES
        for dtype in DTYPE_NAMES
    ]


def run_case(benchmark, work: str, impl: str, mode: str, size: str, dtype: str) -> None:
    """Benchmark one case after a warm-up run (which also compiles), synchronising on a GPU."""
    inputs = workloads.make_inputs(work, size_of(size), DTYPES[dtype], DEVICE, mode)
    fn = workloads.make_impl(work, impl, inputs, mode)

    def synchronised():
        fn()
        if DEVICE == "cuda":
            torch.cuda.synchronize()

    synchronised()
    benchmark(synchronised)
