"""``fastdepth info``: versions, the backends usable here, and a self-check of each against the reference.

The self-check runs every op of every usable backend on a small synthetic scene, forward and
backward, and compares with the float64 reference.
"""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass

import torch

from fastdepth import backends
from fastdepth.scenes import warp_scene

#: tolerances of the self-check (float32 kernels against the float64 reference)
FORWARD_TOL = 1e-4
GRADIENT_TOL = 1e-3


@dataclass
class CheckResult:
    op: str
    backend: str
    device: str
    forward_error: float
    gradient_error: float

    @property
    def passed(self) -> bool:
        return self.forward_error <= FORWARD_TOL and self.gradient_error <= GRADIENT_TOL


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
    elif backends.triton_usable_on(torch.device("cpu")) is None:
        status["triton"] = ("cpu", "no GPU: Triton's CPU interpreter (TRITON_INTERPRET=1), slow")
    else:
        status["triton"] = (None, "no GPU (set TRITON_INTERPRET=1 to run the kernels in Triton's interpreter)")
    from fastdepth import _cuda

    if torch.cuda.is_available() and _cuda.unavailable_reason(torch.device("cuda")) is None:
        status["cuda"] = ("cuda", "fused CUDA C++ kernels (compiled on first use)")
    elif _cuda.unavailable_reason(torch.device("cpu")) is None:
        why = _cuda.cuda_build_reason() or "CPU tensors"
        status["cuda"] = ("cpu", f"CPU twin of the CUDA kernels (compiled on first use; CUDA kernels: {why})")
    else:
        status["cuda"] = (None, _cuda.unavailable_reason(torch.device("cpu")))
    return status


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


def _gradient_error(ours, expected) -> float:
    """The worst gradient difference, relative to each expected gradient's max-norm."""
    return max(_max_abs(a, b) / max(b.abs().max().item(), 1e-12) for a, b in zip(ours, expected, strict=True))


def check_warp(backend: str, device: str, seed: int = 0) -> CheckResult:
    import fastdepth

    scene = warp_scene(2, 2, 3, 24, 32, seed=seed, device=device, translation=0.3)
    names = ("image", "depth", "pose", "K")
    ours = [scene[n].clone().requires_grad_(True) for n in names]
    ref = [scene[n].double().clone().requires_grad_(True) for n in names]
    options = dict(padding_mode="border", align_corners=False)
    out = fastdepth.warp(*ours, **options, backend=backend)
    expected = fastdepth.warp(*ref, **options, backend="torch")
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(device)
    g_ours = torch.autograd.grad(out, ours, g)
    g_ref = torch.autograd.grad(expected, ref, g.double())
    return CheckResult("warp", backend, device, _max_abs(out, expected), _gradient_error(g_ours, g_ref))


def check_min_reprojection(backend: str, device: str, seed: int = 0) -> CheckResult:
    import fastdepth
    from fastdepth.scenes import natural_images

    target = natural_images(2, 3, 8, 12, seed=seed, device=device)
    gen = torch.Generator().manual_seed(seed + 1)
    sources = (target[:, None] + 0.1 * torch.randn(2, 3, 3, 8, 12, generator=gen).to(device)).clamp(0, 1)
    ours = [t.clone().requires_grad_(True) for t in (target, sources[:, :2], sources[:, 2:])]
    ref = [t.double().clone().requires_grad_(True) for t in (target, sources[:, :2], sources[:, 2:])]
    loss = fastdepth.min_reprojection_loss(*ours, backend=backend)[0]
    expected = fastdepth.min_reprojection_loss(*ref, backend="torch")[0]
    g_ours = torch.autograd.grad(loss.sum(), ours)
    g_ref = torch.autograd.grad(expected.sum(), ref)
    return CheckResult("min_reproj", backend, device, _max_abs(loss, expected), _gradient_error(g_ours, g_ref))


CHECKS = (check_warp, check_min_reprojection)


def run_checks(status: dict[str, tuple[str | None, str]]) -> list[CheckResult]:
    results = []
    for name, (device, _) in status.items():
        if device is None:
            continue
        for check in CHECKS:
            results.append(check(name, device))
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
    tolerances = f"forward {FORWARD_TOL:g} abs, gradients {GRADIENT_TOL:g} relative"
    lines += ["", f"self-check against the float64 reference ({tolerances}):"]
    results = run_checks(status)
    for r in results:
        verdict = "pass" if r.passed else "FAIL"
        lines.append(
            f"  {r.op:12} {r.backend:8} {r.device:5} forward {r.forward_error:.2e}  "
            f"gradients {r.gradient_error:.2e}  {verdict}"
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
