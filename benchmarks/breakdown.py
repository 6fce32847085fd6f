"""Where one call's time goes: the call run once under ``torch.profiler``, its time summed per kernel.

On a GPU each CUDA kernel's device time (Triton kernels under their names, fastdepth's CUDA kernels
and ATen's under their C++ names less the argument lists); on the CPU each op's self time
(``fastdepth_ext::*`` for the CPU twin's launches). The runner records it for fastdepth's fused
implementations, so that a result tells which kernel of a fused op to work on next, and how the
fused objective's kernels compare with the composed ones, without another device session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

#: kernels kept per call, the slowest first; the rest are summed as ``other_ms``
TOP = 8
MAX_NAME = 80


def short_name(name: str) -> str:
    """A kernel's name without its return type, anonymous namespaces and argument list."""
    name = name.replace("(anonymous namespace)::", "")
    if name.startswith("void "):
        name = name[len("void ") :]
    name = name.split("(", 1)[0].strip()
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 3] + "..."


def summarize(entries: Iterable[tuple[str, int, float]], top: int = TOP) -> dict:
    """``(name, calls, microseconds)`` entries, merged by short name, the slowest ``top`` kept.

    Returns ``{"total_ms", "kernels": [{"name", "calls", "ms"}, ...], "other_ms"}``.
    """
    merged: dict[str, list] = {}
    for name, calls, us in entries:
        entry = merged.setdefault(short_name(name), [0, 0.0])
        entry[0] += calls
        entry[1] += us
    ranked = sorted(merged.items(), key=lambda item: -item[1][1])
    return {
        "total_ms": sum(us for _, (_, us) in ranked) / 1e3,
        "kernels": [{"name": name, "calls": calls, "ms": us / 1e3} for name, (calls, us) in ranked[:top]],
        "other_ms": sum(us for _, (_, us) in ranked[top:]) / 1e3,
    }


def kernel_breakdown(fn: Callable, device: str) -> dict:
    """One call of ``fn`` (already warmed up) under the profiler, summarised per kernel (GPU) or op (CPU)."""
    on_gpu = device == "cuda"
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if on_gpu else [ProfilerActivity.CPU]
    if on_gpu:
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        fn()
        if on_gpu:
            torch.cuda.synchronize()
    kind = DeviceType.CUDA if on_gpu else DeviceType.CPU
    entries = [
        (a.key, a.count, a.self_device_time_total if on_gpu else a.self_cpu_time_total)
        for a in prof.key_averages()
        if a.device_type == kind
    ]
    entries = [e for e in entries if e[2] > 0]
    if not entries:
        raise RuntimeError(f"the profiler recorded no {'CUDA kernel' if on_gpu else 'op'} of the call")
    return summarize(entries)
