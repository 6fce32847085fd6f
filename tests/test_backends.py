"""Backend selection: auto, explicit choices and the environment variable."""

import subprocess
import sys

import pytest
import torch
from conftest import BACKEND_NAMES
from helpers import subprocess_env

from fastdepth import backends

F32 = (torch.float32, torch.float32)


def test_auto_on_cpu_is_the_reference(monkeypatch):
    monkeypatch.delenv("FASTDEPTH_BACKEND", raising=False)
    assert backends.resolve(None, torch.device("cpu"), F32) == "torch"
    assert backends.resolve("auto", torch.device("cpu"), F32) == "torch"


def test_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv("FASTDEPTH_BACKEND", "torch")
    assert backends.requested(None) == "torch"
    assert backends.requested("auto") == "auto"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_auto_on_cuda_is_fused():
    assert backends.resolve("auto", torch.device("cuda"), F32) == "triton"
    assert backends.resolve("auto", torch.device("cuda"), (torch.float32, torch.float64)) == "torch"


def test_interpreter_flag(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backends.triton_usable_on(torch.device("cpu")) is None
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "TRITON_INTERPRET=1" in backends.triton_usable_on(torch.device("cpu"))


@pytest.mark.skipif("cuda" not in BACKEND_NAMES, reason="needs the C++ extension")
def test_torch_compile_of_the_cuda_backend_works_cold():
    # the first call in a fresh process, nothing loaded yet: the availability check must not break the graph
    code = (
        "import torch, fastdepth\n"
        "from fastdepth.scenes import warp_scene\n"
        "s = warp_scene(1, 1, 3, 6, 8)\n"
        "step = lambda i, d, p, k: fastdepth.warp(i, d, p, k, backend='cuda').abs().mean()\n"
        "out = torch.compile(step, fullgraph=True)(s['image'], s['depth'], s['pose'], s['K'])\n"
        "assert torch.allclose(out, step(s['image'], s['depth'], s['pose'], s['K']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert result.returncode == 0, result.stderr[-3000:]
