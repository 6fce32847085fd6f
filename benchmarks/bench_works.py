"""pytest-benchmark suite of every work (every op, and the composed objective): every
implementation, fwd and fwd+bwd (see workloads.py). Test ids start with the work's name."""

import pytest
from fastdepth.benchmarks.suite import cases, run_case
from fastdepth.benchmarks.workloads import WORKS


@pytest.mark.parametrize("work,impl,mode,size,dtype", [c for work in WORKS for c in cases(work)])
def test_work(benchmark, work, impl, mode, size, dtype):
    run_case(benchmark, work, impl, mode, size, dtype)
