"""Backend selection: auto, explicit choices and the environment variable."""

import subprocess
import sys
import warnings

import pytest
import torch
from conftest import FUSED
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


def test_the_float64_fallback_warns_once_per_backend_and_process(monkeypatch):
    monkeypatch.setattr(backends, "_warned_float64", set())
    monkeypatch.setattr(backends, "triton_usable_on", lambda device: None)  # as on a GPU
    f64 = (torch.float64, torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [backends.resolve("triton", torch.device("cpu"), f64) for _ in range(3)] == ["torch"] * 3
        assert backends.resolve("triton", torch.device("cpu"), F32) == "triton"
    assert [str(w.message).split(" computes")[0] for w in caught] == ["backend='triton'"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_auto_on_cuda_is_fused():
    assert backends.resolve("auto", torch.device("cuda"), F32) == "triton"
    assert backends.resolve("auto", torch.device("cuda"), (torch.float32, torch.float64)) == "torch"


def test_interpreter_flag(monkeypatch):
    monkeypatch.setattr(backends, "_interpreter_reason", lambda: None)  # an interpreter that runs here
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backends.triton_usable_on(torch.device("cpu")) is None
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "TRITON_INTERPRET=1" in backends.triton_usable_on(torch.device("cpu"))


@pytest.mark.parametrize("backend,device", [f for f in FUSED if f[1] == "cpu"])
def test_torch_compile_of_a_fused_backend_works_cold(backend, device):
    # the first call in a fresh process, nothing loaded yet: the availability checks must not break
    # the graph, nor make dynamo trace into a cache
    code = (
        "import torch, fastdepth\n"
        "from fastdepth.scenes import warp_scene\n"
        "s = warp_scene(1, 1, 3, 6, 8)\n"
        f"step = lambda i, d, p, k: fastdepth.warp(i, d, p, k, backend='{backend}').abs().mean()\n"
        "out = torch.compile(step, fullgraph=True)(s['image'], s['depth'], s['pose'], s['K'])\n"
        "assert torch.allclose(out, step(s['image'], s['depth'], s['pose'], s['K']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lru_cache" not in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize(
    "version,refuses,clash",
    [
        ("3.6.0", True, True),
        ("3.6.0", False, False),
        ("3.7.0", True, False),
        ("3.8.0", True, False),
        ("2.3.1", True, True),
    ],
)
def test_interpreter_clash_with_numpy(version, refuses, clash):
    # Triton before 3.7 takes int() of a one-element array in its interpreter; NumPy 2.4 refuses it
    reason = backends.interpreter_clash(version, refuses)
    assert (reason is not None) == clash
    if clash:
        assert f"Triton {version}'s interpreter" in reason and "numpy<2.4" in reason


def test_interpreter_clash_is_the_cpu_reason(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(backends, "_interpreter_reason", lambda: "the clash")
    assert backends.triton_usable_on(torch.device("cpu")) == "the clash"
    with pytest.raises(RuntimeError, match="the clash"):
        backends.resolve("triton", torch.device("cpu"), F32)
