"""Which implementation of an op runs: ``"auto" | "torch" | "triton" | "cuda"``.

* ``torch``: the plain-PyTorch reference (:mod:`fastdepth.reference`); any device, float64 too.
* ``triton``: the fused Triton kernels; CUDA tensors, or CPU tensors when ``TRITON_INTERPRET=1``
  (Triton's interpreter: slow, for tests).
* ``cuda``: the fused CUDA C++ kernels (``csrc/``), compiled on first use; on CPU tensors their
  CPU twin (the same per-pixel math in OpenMP loops; float64 too).
* ``auto`` (the default; the environment variable ``FASTDEPTH_BACKEND`` overrides it): CUDA
  tensors without float64 use the fused Triton kernels; everything else uses the reference.

The GPU kernels compute in float32: asked for with float64 inputs, ``triton`` (and ``cuda`` on CUDA
tensors) run the reference instead, with one warning per process; the CPU twin computes float64.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import os
import re
import warnings

import torch

ENV_VAR = "FASTDEPTH_BACKEND"
NAMES = ("auto", "torch", "triton", "cuda")


def requested(backend: str | None) -> str:
    """The backend asked for: the argument, else ``$FASTDEPTH_BACKEND``, else ``"auto"``."""
    name = backend if backend is not None else os.environ.get(ENV_VAR, "auto")
    if name not in NAMES:
        source = "backend" if backend is not None else f"${ENV_VAR}"
        raise ValueError(f"{source} must be one of {NAMES}, got {name!r}")
    return name


_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def triton_importable() -> bool:
    return _TRITON_INSTALLED


def triton_interpreted() -> bool:
    """True when Triton kernels run in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _assume_constant_result(fn):
    """``torch.compiler.assume_constant_result`` (it marks the function, nothing more) without its
    import of dynamo, and of Triton with it, when fastdepth is imported: Triton must be imported
    only after ``fastdepth info`` has set TRITON_INTERPRET on a machine without a GPU."""
    fn._dynamo_marked_constant = True
    return fn


def interpreter_clash(triton_version: str, numpy_refuses_int_of_1d: bool) -> str | None:
    """Why Triton ``triton_version``'s interpreter cannot run the kernels beside this NumPy, or None.

    Before 3.7 the interpreter takes ``int()`` of a one-element array for ``range(n)`` over a kernel
    argument, which NumPy 2.4 refuses (``TypeError: only 0-dimensional arrays can be converted``).
    Compiled kernels, on a GPU, are not affected.
    """
    major, minor = (int(part) for part in re.findall(r"\d+", triton_version)[:2])
    if (major, minor) < (3, 7) and numpy_refuses_int_of_1d:
        return (
            f"Triton {triton_version}'s interpreter cannot run with NumPy {importlib.metadata.version('numpy')} "
            "(>= 2.4): install numpy<2.4 or Triton >= 3.7 to run backend='triton' on CPU tensors"
        )
    return None


@functools.cache
def _interpreter_clash_here() -> str | None:
    import numpy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # NumPy 1.25 to 2.3 warn, then comply
        try:
            int(numpy.zeros(1))
            refuses = False
        except TypeError:
            refuses = True
    return interpreter_clash(importlib.metadata.version("triton"), refuses)


@_assume_constant_result  # torch.compile traces the backend choice: a constant of the process
def _interpreter_reason() -> str | None:
    return _interpreter_clash_here()


def triton_usable_on(device: torch.device) -> str | None:
    """None if the Triton kernels can run on tensors of ``device``, else the reason why not."""
    if not triton_importable():
        return "Triton is not installed (it comes with the CUDA builds of PyTorch)"
    if device.type == "cuda":
        return None
    if device.type == "cpu":
        if triton_interpreted():
            return _interpreter_reason()
        return "backend='triton' on CPU tensors needs TRITON_INTERPRET=1 (Triton's slow interpreter)"
    return f"Triton kernels do not run on {device.type} tensors"


def _cuda_reason(device: torch.device) -> str | None:
    from fastdepth import _cuda

    return _cuda.unavailable_reason(device)


# torch.compile traces the backend choice: the extension's availability (compiler look-ups on the
# file system, which dynamo cannot trace) is a constant of the process for each device type.
_CUDA_UNAVAILABLE = {
    kind: _assume_constant_result(lambda kind=kind: _cuda_reason(torch.device(kind))) for kind in ("cpu", "cuda")
}


#: the float64 fallbacks already warned about: one warning per backend and process
_warned_float64: set[str] = set()


def _float64_fallback(name: str) -> str:
    if name not in _warned_float64:
        _warned_float64.add(name)
        warnings.warn(
            f"backend={name!r} computes in float32 on this device: float64 inputs run on the reference "
            "(backend='torch') instead (warned once per process)",
            stacklevel=4,
        )
    return "torch"


def resolve(backend: str | None, device: torch.device, dtypes: tuple[torch.dtype, ...]) -> str:
    """The implementation that will run: ``"torch"``, ``"triton"`` or ``"cuda"``.

    Args:
        backend: the caller's choice (None: the environment variable, else ``"auto"``).
        device: the device of the op's tensors.
        dtypes: (image dtype, geometry compute dtype) or, for image-only ops, the image dtypes.

    A fused backend asked for with float64 inputs computes them where it can (the CPU twin, in
    float64) and otherwise falls back to the reference, with one warning per backend and process.

    Raises:
        RuntimeError: an explicitly requested fused backend cannot run here.
    """
    name = requested(backend)
    float64 = any(dt == torch.float64 for dt in dtypes)
    if name == "auto":
        if device.type == "cuda" and not float64 and triton_usable_on(device) is None:
            return "triton"
        return "torch"
    if name == "torch":
        return name
    if name == "cuda":
        reason = _CUDA_UNAVAILABLE[device.type]() if device.type in _CUDA_UNAVAILABLE else _cuda_reason(device)
        if reason is not None:
            raise RuntimeError(reason)
        if device.type == "cpu":  # the CPU twin computes in float64 where an input is float64
            return name
    else:
        reason = triton_usable_on(device)
        if reason is not None:
            raise RuntimeError(reason)
    return _float64_fallback(name) if float64 else name


def launcher(op: str, backend: str, which: str):
    """The ``<op>_<which>`` launcher (``which``: "forward" or "backward") of a fused backend.

    Triton: ``fastdepth.kernels.<op>``; CUDA: the extension's ``torch.ops.fastdepth_ext`` (built on
    first use). Both take the same arguments (:mod:`fastdepth.registry`).
    """
    if backend == "triton":
        return getattr(importlib.import_module(f"fastdepth.kernels.{op}"), f"{op}_{which}")
    if backend == "cuda":
        from fastdepth import _cuda

        return getattr(_cuda.library(), f"{op}_{which}")
    raise ValueError(f"no fused {op} for backend {backend!r}")
