"""What every Triton launcher needs around a launch."""

from __future__ import annotations

import contextlib

import torch


def device_guard(t: torch.Tensor):
    """Make the tensor's GPU current while launching (Triton launches on the current device's stream)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()
