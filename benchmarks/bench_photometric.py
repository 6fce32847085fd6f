"""pytest-benchmark suite of the photometric: every implementation, fwd and fwd+bwd (see workloads.py)."""

import pytest
from fastdepth.benchmarks.suite import cases, run_case


@pytest.mark.parametrize("impl,mode,size,dtype", cases("photometric"))
def test_photometric(benchmark, impl, mode, size, dtype):
    run_case(benchmark, "photometric", impl, mode, size, dtype)
