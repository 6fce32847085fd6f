"""Argument checks shared by the public ops: clear exceptions that name the argument.

Shape, dtype and device checks are free (metadata only) and always run. Value checks (finite pose
and intrinsics) read a few numbers back from the device, so they are skipped while
``torch.compile`` traces and when ``FASTDEPTH_CHECK_VALUES=0``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
GEOMETRY_DTYPES = (torch.float32, torch.float64)
INDEX_LIMIT = 2**31


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
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def values_checked() -> bool:
    """Whether value checks (which synchronise with the device) run now."""
    if torch.compiler.is_compiling():
        return False
    return os.environ.get("FASTDEPTH_CHECK_VALUES", "1") != "0"


def check_values(conditions: dict[str, torch.Tensor]) -> None:
    """Raise ValueError with the message of the first false condition (one device sync for all).

    ``conditions`` maps a message to a 0-dim bool tensor that must be true.
    """
    if not values_checked() or not conditions:
        return
    flags = torch.stack(list(conditions.values())).tolist()
    for message, ok in zip(conditions, flags, strict=True):
        if not ok:
            raise ValueError(message)
