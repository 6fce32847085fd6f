"""Backend selection: auto, explicit choices and the environment variable."""

import pytest
import torch

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
