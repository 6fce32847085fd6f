"""``fastdepth info``: versions, the backends usable here, and a self-check of each against the reference.

The self-check runs one small case of every op (``SELFCHECK_CASE`` of ``fastdepth.checks.<op>``) on
every usable fused backend, forward and backward, against the float64 reference, with the bounds of
:mod:`fastdepth.tolerances`.
"""

from __future__ import annotations

import importlib.metadata
import platform

import torch

from fastdepth import backends, checks, registry
from fastdepth.checks.case import CaseResult


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("fastdepth", "torch", "triton", "numpy", "kornia"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    found["cuda (torch build)"] = torch.version.cuda or "none"
    if torch.cuda.is_available():
        found["gpu"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    else:
        found["gpu"] = "none"
    return found


def backend_status() -> dict[str, tuple[str | None, str]]:
    """backend -> (device it can run on here, or None; a note)."""
    status: dict[str, tuple[str | None, str]] = {"torch": ("cpu", "plain-PyTorch reference, any device")}
    if torch.cuda.is_available():
        status["torch"] = ("cuda", "plain-PyTorch reference, any device")
        reason = backends.triton_usable_on(torch.device("cuda"))
        status["triton"] = ("cuda", "fused Triton kernels") if reason is None else (None, reason)
    elif (reason := backends.triton_usable_on(torch.device("cpu"))) is None:
        status["triton"] = ("cpu", "no GPU: Triton's CPU interpreter (TRITON_INTERPRET=1), slow")
    else:
        status["triton"] = (None, f"no GPU, and {reason}")
    from fastdepth import _cuda

    if torch.cuda.is_available() and _cuda.unavailable_reason(torch.device("cuda")) is None:
        status["cuda"] = ("cuda", "fused CUDA C++ kernels (compiled on first use)")
    elif _cuda.unavailable_reason(torch.device("cpu")) is None:
        why = _cuda.cuda_build_reason() or "CPU tensors"
        status["cuda"] = ("cpu", f"CPU twin of the CUDA kernels (compiled on first use; CUDA kernels: {why})")
    else:
        status["cuda"] = (None, _cuda.unavailable_reason(torch.device("cpu")))
    return status


def run_checks(status: dict[str, tuple[str | None, str]]) -> list[CaseResult]:
    """Each op's ``SELFCHECK_CASE`` (small, float32) on every fused backend usable here."""
    results = []
    for backend, (device, _) in status.items():
        if device is None or backend == "torch":
            continue
        for op in registry.OPS:
            case = checks.op_cases(op).SELFCHECK_CASE
            results.append(checks.run_one(op, case, backend, device, torch.float32, quick=True))
    return results


def report() -> tuple[str, bool]:
    """The text ``fastdepth info`` prints and whether every self-check passed."""
    lines = ["fastdepth info", "", "versions:"]
    lines += [f"  {k:20} {v}" for k, v in versions().items()]
    status = backend_status()
    lines += ["", "backends:"]
    lines += [
        f"  {name:8} {'usable on ' + dev if dev else 'unavailable':18} {note}" for name, (dev, note) in status.items()
    ]
    lines += ["", "self-check against the float64 reference (bounds from fastdepth.tolerances):"]
    results = run_checks(status)
    for r in results:
        verdict = "pass" if r.passed else "FAIL"
        if r.error:
            lines.append(f"  {r.op:12} {r.backend:8} {r.device:5} error: {r.error.splitlines()[0]}  {verdict}")
            continue
        lines.append(
            f"  {r.op:12} {r.backend:8} {r.device:5} forward {r.forward_error:.2e} (<= {r.forward_tol:.0e})  "
            f"gradients {r.gradient_error:.2e} (<= {r.gradient_tol:.0e})  {verdict}"
        )
    from fastdepth import _cuda

    built = _cuda.state()
    extension = "loaded" if built["loaded"] else "not loaded"
    if built["cuda"]:
        extension += ", CUDA kernels compiled in"
    if built["error"]:
        extension += f"; last build error: {built['error']}"
    lines += ["", f"C++/CUDA extension: {extension}"]
    return "\n".join(lines), all(r.passed for r in results)
