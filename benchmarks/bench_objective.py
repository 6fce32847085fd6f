"""pytest-benchmark suite of the objective: every implementation, fwd and fwd+bwd (see workloads.py)."""

import pytest
from fastdepth.benchmarks.suite import cases, run_case


@pytest.mark.parametrize("impl,mode,size,dtype", cases("objective"))
def test_objective(benchmark, impl, mode, size, dtype):
    run_case(benchmark, "objective", impl, mode, size, dtype)
