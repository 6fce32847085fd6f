"""The op registry: every op has every layer, found by its name, and one launcher interface shared by
its fused backends."""

import importlib
import inspect
import re
from pathlib import Path

import pytest
import torch
from conftest import TWIN
from fastdepth.benchmarks import workloads

import fastdepth
from fastdepth import tolerances
from fastdepth.registry import OPS

ROOT = Path(__file__).resolve().parent.parent
OP_PARAMS = [pytest.param(op, id=name) for name, op in OPS.items()]


@pytest.mark.parametrize("op", OP_PARAMS)
def test_public_functions_and_custom_ops(op):
    importlib.import_module(op.module)
    for name in op.api:
        assert name in fastdepth.__all__ and callable(getattr(fastdepth, name)), name
    for custom in (op.name, f"{op.name}_backward"):
        assert hasattr(torch.ops.fastdepth, custom), f"fastdepth::{custom} is not registered"


@pytest.mark.parametrize("op", OP_PARAMS)
def test_reference_and_tests(op):
    importlib.import_module(op.reference_module)
    for test_file in (f"test_{op.name}.py", f"test_reference_{op.name}.py"):
        assert (ROOT / "tests" / test_file).exists(), test_file


@pytest.mark.parametrize("op", OP_PARAMS)
def test_triton_kernels_and_launchers(op):
    module = importlib.import_module(op.triton_module)
    for launcher in op.launchers:
        assert callable(getattr(module, launcher)), launcher
    labels = {label.split("[")[0] for label, *_ in module.aot_variants()}
    assert labels == set(op.kernels)


@pytest.mark.parametrize("op", OP_PARAMS)
def test_cuda_sources(op):
    csrc = ROOT / "csrc"
    for name in (f"{op.name}.cuh", *op.cuda_sources, *op.cpu_sources):
        assert (csrc / name).exists(), name
    kernels = (csrc / f"{op.name}.cu").read_text()
    for kernel in op.kernels:
        assert re.search(rf"__global__ .*{kernel}\(", kernels, re.S), kernel
    bindings = (csrc / f"{op.name}_bindings.cpp").read_text()
    for launcher in op.launchers:
        assert f'"{launcher}(' in bindings and f'm.impl("{launcher}"' in bindings, launcher


@pytest.mark.parametrize("op", OP_PARAMS)
def test_checks_benchmark_and_tolerances(op):
    checks = importlib.import_module(op.checks_module)
    assert checks.CASES and set(checks.SANITIZER_CASES) <= set(checks.CASES)
    assert checks.SELFCHECK_CASE in checks.CASES and callable(checks.run_case)
    assert op.name in workloads.WORKS and workloads.WORK_DEFS[op.name].name == op.name
    assert importlib.import_module(op.work_module).WORK is workloads.WORK_DEFS[op.name]
    for where in ("interpreter", "twin", "gpu", "reference"):
        assert (op.name, "float32", where) in tolerances.TABLE, where


@pytest.mark.skipif(not TWIN, reason="the C++ extension cannot be built here")
@pytest.mark.parametrize("op", OP_PARAMS)
def test_one_launcher_interface_per_op(op):
    from fastdepth import _cuda

    kernels = importlib.import_module(op.triton_module)
    for launcher in op.launchers:
        triton_args = list(inspect.signature(getattr(kernels, launcher)).parameters)
        schema = getattr(_cuda.library(), launcher).default._schema
        assert triton_args == [a.name for a in schema.arguments], launcher
