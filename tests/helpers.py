"""Helpers shared by the test modules: comparisons, leaves, and the environment of subprocesses."""

import os

import torch

from fastdepth.compare import max_abs, max_rel  # noqa: F401 (the tests import them from here)


def grads(outputs: torch.Tensor, inputs: list[torch.Tensor], grad_output: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(outputs, inputs, grad_output.to(outputs.dtype)))


def leaves(*tensors: torch.Tensor, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """Fresh leaf copies that require grad (optionally cast)."""
    return [t.detach().to(dtype or t.dtype).clone().requires_grad_(True) for t in tensors]


def non_contiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values with non-trivial strides (a transposed copy, transposed back)."""
    out = t.detach().transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not out.is_contiguous() or t.shape[-1] == 1 or t.shape[-2] == 1
    return out.requires_grad_(t.requires_grad)


def subprocess_env(threads: int | None = None, **extra: str) -> dict[str, str]:
    """This process's environment for a subprocess, with its OpenMP thread count set explicitly:
    two busy processes with 2 threads each on 2 cores slow each other tenfold. The test waits for
    the subprocess, so by default it gets this process's threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads or torch.get_num_threads())}
    env.update(extra)
    return env
