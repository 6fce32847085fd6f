"""Argument checks shared by the public ops: clear exceptions that name the argument.

Shape, dtype and device checks are free (metadata only) and always run. Value checks (finite pose
and intrinsics) look at the values: on the CPU they raise ValueError at once; on a GPU they never
synchronise with the host: they queue a device-side assertion (``torch._assert_async``) that fails
the next synchronising call with the same message (and, as any device-side assert, leaves the CUDA
context unusable). ``FASTDEPTH_CHECK_VALUES=sync`` makes GPU checks read the flags back and raise
ValueError (one synchronisation per call); ``FASTDEPTH_CHECK_VALUES=0`` switches value checks off.
They are skipped while ``torch.compile`` or ``torch.jit.trace`` traces and on meta tensors.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence

import torch

from fastdepth.conventions import INDEX_LIMIT

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_shape(name: str, t: torch.Tensor, expected: Sequence[int | str]) -> None:
    """``expected`` lists sizes (ints) and symbolic names (str, any size) per dimension."""
    ok = t.dim() == len(expected) and all(
        isinstance(e, str) or size == e for size, e in zip(t.shape, expected, strict=False)
    )
    if not ok:
        pattern = "(" + ", ".join(str(e) for e in expected) + ")"
        raise ValueError(f"{name} must have shape {pattern}, got {tuple(t.shape)}")


def check_dtype(name: str, t: torch.Tensor, allowed: Sequence[torch.dtype]) -> None:
    if t.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        raise TypeError(f"{name} must have dtype in ({names}), got {str(t.dtype).removeprefix('torch.')}")


def check_same_device(named: dict[str, torch.Tensor]) -> torch.device:
    devices = {name: t.device for name, t in named.items()}
    first_name, first = next(iter(devices.items()))
    for name, dev in devices.items():
        if dev != first:
            raise ValueError(f"{name} is on {dev} but {first_name} is on {first}: all inputs must share a device")
    return first


def check_same_dtype(named: dict[str, torch.Tensor]) -> torch.dtype:
    first_name, first = next(iter(named.items()))
    for name, t in named.items():
        if t.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but {first_name} has {first.dtype}: they must share a dtype")
    return first.dtype


def check_index_range(name: str, t: torch.Tensor) -> None:
    h, w = t.shape[-2:]
    if h * w >= INDEX_LIMIT:
        raise ValueError(f"{name}: H * W = {h * w} must be below 2**31")


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def check_flag(name: str, value: object) -> bool:
    """A bool option: True or False, nothing truthy (``"False"`` is a string, not a flag)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def check_channels(name: str, t: torch.Tensor, dim: int) -> None:
    if t.shape[dim] == 0:
        raise ValueError(f"{name} must have at least one channel, got shape {tuple(t.shape)}")


def no_autocast(device: torch.device):
    """A context in which autocast does not reach: fastdepth's ops compute from their inputs' own
    dtypes (float32 geometry at least) whether or not the caller runs under ``torch.autocast``."""
    if device.type in ("cpu", "cuda") and torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


CHECK_VALUES_ENV = "FASTDEPTH_CHECK_VALUES"
CHECK_VALUES_MODES = ("1", "0", "sync")


def value_check_mode(device: torch.device) -> str:
    """``"off"``, ``"raise"`` (read the flags back, raise ValueError) or ``"async"`` (device-side assert)."""
    mode = os.environ.get(CHECK_VALUES_ENV, "1")
    if mode not in CHECK_VALUES_MODES:
        raise ValueError(f"${CHECK_VALUES_ENV} must be one of {CHECK_VALUES_MODES}, got {mode!r}")
    if mode == "0" or torch.compiler.is_compiling() or torch.jit.is_tracing() or device.type == "meta":
        return "off"
    return "async" if device.type == "cuda" and mode == "1" else "raise"


def all_finite(t: torch.Tensor) -> torch.Tensor:
    """A 0-dim bool tensor: whether every value of ``t`` is finite. ``t - t`` is exactly 0 at a finite
    value and NaN at NaN or inf: three small kernels on a GPU, where ``isfinite(t).all()`` takes five."""
    return (t - t).eq(0.0).all()


def check_values(conditions: dict[str, torch.Tensor], device: torch.device) -> None:
    """Check that every condition holds (see the module docstring for when and how).

    ``conditions`` maps a message to a 0-dim bool tensor on ``device`` that must be true. In
    ``"raise"`` mode: ValueError with the message of the first false condition, one read-back for all.
    """
    mode = value_check_mode(device)
    if mode == "off" or not conditions:
        return
    if mode == "async":
        for message, ok in conditions.items():
            torch._assert_async(ok, message)
        return
    flags = torch.stack(list(conditions.values())).tolist()
    for message, ok in zip(conditions, flags, strict=True):
        if not ok:
            raise ValueError(message)


def check_values_at_once(ok: torch.Tensor, conditions: dict[str, Callable[[], torch.Tensor]], device) -> None:
    """Several conditions through one 0-dim bool ``ok`` that is false wherever any of them is: a GPU
    call queues one assertion, whose message names them all; a read-back looks at the conditions
    (message -> the function that computes it) only where ``ok`` is false, to raise the message of
    the first that fails."""
    mode = value_check_mode(device)
    if mode == "off":
        return
    if mode == "async":
        torch._assert_async(ok, "; ".join(conditions) + " (one of these does not hold)")
    elif not ok.item():
        check_values({message: condition() for message, condition in conditions.items()}, device)
