"""pytest-benchmark suite of the warp: every implementation, fwd and fwd+bwd (see workloads.py)."""

import pytest
from fastdepth.benchmarks.suite import cases, run_case


@pytest.mark.parametrize("impl,mode,size,dtype", cases("warp"))
def test_warp(benchmark, impl, mode, size, dtype):
    run_case(benchmark, "warp", impl, mode, size, dtype)
