"""The CUDA C++ backend: builds ``csrc/`` with ``torch.utils.cpp_extension`` on first use, and
registers its ops as ``torch.ops.fastdepth_ext.<op>_forward`` / ``<op>_backward``, which take the
same arguments as the Triton launchers (``fastdepth.kernels.<op>``).

The build is cached in PyTorch's extensions directory (``TORCH_EXTENSIONS_DIR``); it compiles
the CUDA kernels when PyTorch is a CUDA build, nvcc is found and a GPU is visible (or
``TORCH_CUDA_ARCH_LIST`` names the targets), and only the CPU twin otherwise. Set
``FASTDEPTH_BUILD_EXTENSION=1`` to build when ``fastdepth`` is imported (ahead of time).
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

from fastdepth import registry

CSRC = Path(__file__).resolve().parent / "csrc"
if not CSRC.exists():  # editable install: csrc/ sits beside the package
    CSRC = Path(__file__).resolve().parent.parent / "csrc"

BUILD_ENV = "FASTDEPTH_BUILD_EXTENSION"


class ExtensionUnavailable(RuntimeError):
    """The C++/CUDA extension cannot be built or loaded here; the message says what is missing."""


_lock = threading.Lock()
_state: dict[str, object] = {"loaded": False, "cuda": False, "error": None}


def cpu_sources() -> tuple[str, ...]:
    """Every op's CPU twin and torch glue (csrc/<op>_cpu.cpp, csrc/<op>_bindings.cpp)."""
    return tuple(f for op in registry.OPS.values() for f in op.cpu_sources)


def cuda_sources() -> tuple[str, ...]:
    """Every op's CUDA kernels (csrc/<op>.cu)."""
    return tuple(f for op in registry.OPS.values() for f in op.cuda_sources)


def _compiler() -> str:
    return os.environ.get("CXX", "c++")


def cuda_build_reason() -> str | None:
    """None if the CUDA kernels can be compiled here, else why not."""
    from torch.utils.cpp_extension import CUDA_HOME

    if torch.version.cuda is None:
        return "PyTorch is a CPU-only build"
    if CUDA_HOME is None:
        return "nvcc not found (set CUDA_HOME)"
    if not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return "no GPU visible (set TORCH_CUDA_ARCH_LIST to compile the CUDA kernels anyway)"
    if not (Path(CUDA_HOME) / "include" / "cuda_runtime_api.h").exists():
        # PyTorch takes the folder above the nvcc on PATH, which a wrapper script elsewhere misleads
        return f"CUDA_HOME={CUDA_HOME} has no include/cuda_runtime_api.h (set CUDA_HOME to the CUDA toolkit's folder)"
    return None


@functools.cache
def compiler_accepts(flag: str) -> bool:
    """Whether the C++ compiler takes ``flag`` (GCC before 11 does not know the x86-64 levels)."""
    try:
        probe = subprocess.run(
            [_compiler(), flag, "-x", "c++", "-fsyntax-only", "-"], input="", capture_output=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


_VECTOR_MATH_PROBE = """
#include "cpu_math.h"
float xs[64]; double ys[64];
int main() {
  for (int i = 0; i < 64; ++i) xs[i] = logf(xs[i] + 1.0f), ys[i] = log(ys[i] + 1.0);
  return 0;
}
"""


@functools.cache
def links_vector_math(level: str) -> bool:
    """Whether a program built for ``level`` with csrc/cpu_math.h's declarations links glibc's vector
    math (libmvec)."""
    flags = ["-O3", "-fno-math-errno", *([f"-march={level}"] if level else []), "-DFASTDEPTH_VECTOR_MATH", f"-I{CSRC}"]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            probe = subprocess.run(
                [_compiler(), *flags, "-x", "c++", "-", "-o", f"{tmp}/probe", "-lmvec"],
                input=_VECTOR_MATH_PROBE,
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
    return probe.returncode == 0


def cpu_level() -> str:
    """The x86-64 level the CPU twins are compiled for: ``"x86-64-v3"`` (AVX2) where PyTorch's own CPU
    kernels run at AVX2 or above on an x86-64 machine and the compiler knows the level, else ``""``
    (the compiler's baseline)."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    avx2 = x86 and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    return "x86-64-v3" if avx2 and compiler_accepts("-march=x86-64-v3") else ""


#: GCC's tuning that lets the vectoriser use the hardware's gathers (its generic tuning emulates them
#: with scalar loads, as the Gather Data Sampling microcode mitigation makes them slow)
GATHER_TUNING = "-mtune-ctrl=use_gather_2parts,use_gather_4parts,use_gather"
_GDS_STATUS = Path("/sys/devices/system/cpu/vulnerabilities/gather_data_sampling")


def gathers_at_full_speed(vendor: str, gds_status: str) -> bool:
    """Whether an x86-64 CPU's vector gathers run at full speed: an Intel CPU (``vendor``, as
    /proc/cpuinfo's vendor_id) that the kernel reports not affected by Gather Data Sampling, or not
    mitigated against it (``gds_status``, the content of :data:`_GDS_STATUS`). AMD's gathers are
    left to GCC's tuning."""
    status = gds_status.strip()
    return vendor.strip() == "GenuineIntel" and (status == "Not affected" or status.startswith("Vulnerable"))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@functools.cache
def use_gathers(level: str) -> bool:
    """Whether the CPU twins are tuned to use the CPU's gathers: at AVX2, on a CPU whose gathers run at
    full speed (:func:`gathers_at_full_speed`), with a compiler that takes :data:`GATHER_TUNING`. The
    same results either way; the twins' bilinear samples (gathers) measured 20-30% faster with them
    on an Intel Xeon that GDS does not affect."""
    vendor = next((line.split(":", 1)[1] for line in _read(Path("/proc/cpuinfo")).splitlines()
                   if line.startswith("vendor_id")), "")  # fmt: skip
    fast = level == "x86-64-v3" and gathers_at_full_speed(vendor, _read(_GDS_STATUS))
    return fast and compiler_accepts(GATHER_TUNING)


def build_reason() -> str | None:
    """None if the extension (at least its CPU twin) can be built here, else what is missing."""
    if shutil.which(_compiler()) is None:
        return f"C++ compiler {_compiler()!r} not found (install g++ or set CXX)"
    if shutil.which("ninja") is None:
        return "ninja not found (pip install ninja)"
    return None


def state() -> dict[str, object]:
    """``loaded`` (bool), ``cuda`` (kernels compiled in), ``error`` (the last build failure)."""
    return dict(_state)


#: a build takes minutes: a build lock older than this was left by a build that was killed
STALE_LOCK_S = 30 * 60


def _build_config() -> tuple[str, list[str], bool, bool]:
    """``(name, extra_cflags, with_cuda, vector_math)`` of this machine's build."""
    with_cuda = cuda_build_reason() is None
    # -fno-trapping-math, -fno-math-errno: results unchanged (no -ffast-math), but GCC may then
    # compute a division or sqrt unconditionally, which the CPU twins' row loops need to vectorise
    flags = ["-O3", "-fopenmp", "-fno-trapping-math", "-fno-math-errno"]
    flags += ["-DFASTDEPTH_WITH_CUDA"] if with_cuda else []
    # twice the baseline's vector width where the CPU has it, without fused multiply-adds: the
    # same operations at every level; the gathers' tuning changes only the instructions. Both
    # are in the name, so that a build cache shared by different machines keeps one build each.
    level = cpu_level()
    flags += [f"-march={level}", "-ffp-contract=off"] if level else []
    gathers = use_gathers(level)
    flags += [GATHER_TUNING] if gathers else []
    vector_math = links_vector_math(level)
    flags += ["-DFASTDEPTH_VECTOR_MATH"] if vector_math else []
    name = "fastdepth_ext_cuda" if with_cuda else "fastdepth_ext_cpu"
    name += f"_{level.replace('-', '_')}" if level else ""
    name += "_gathers" if gathers else ""
    return name, flags, with_cuda, vector_math


def remove_stale_lock(max_age_s: float = STALE_LOCK_S) -> Path | None:
    """Delete the build lock of this machine's extension if it is older than ``max_age_s`` seconds
    and PyTorch's build waits on the lock file's mere existence.

    Such a PyTorch (``cpp_extension`` with a ``FileBaton``: 2.11, the GPU machines') creates the
    file in the extension's build directory and deletes it when done; a build that is killed (Ctrl-C,
    a time limit) leaves it behind, and every later build then waits on it forever. Newer PyTorch
    (2.14) holds an OS lock on the file instead, which the kernel releases with its holder: the file
    stays there, harmless, and is left alone. Returns the path deleted, or None.
    """
    import time
    import warnings

    from torch.utils import cpp_extension

    if not hasattr(cpp_extension, "FileBaton"):
        return None
    lock = Path(cpp_extension._get_build_directory(_build_config()[0], verbose=False)) / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return None
    if age < max_age_s:
        return None
    lock.unlink(missing_ok=True)
    warnings.warn(f"deleted {lock}, left {age:.0f} s ago by a build that did not finish", stacklevel=2)
    return lock


def load() -> None:
    """Build (once per process; cached across processes) and load the extension.

    Raises:
        ExtensionUnavailable: a compiler or ninja is missing, or the build failed.
    """
    with _lock:
        if _state["loaded"]:
            return
        reason = build_reason()
        if reason is not None:
            _state["error"] = reason
            raise ExtensionUnavailable(f"cannot build the fastdepth C++/CUDA extension: {reason}")
        from torch.utils import cpp_extension

        name, flags, with_cuda, vector_math = _build_config()
        sources = [str(CSRC / s) for s in cpu_sources() + (cuda_sources() if with_cuda else ())]
        remove_stale_lock()
        try:
            cpp_extension.load(
                name=name,
                sources=sources,
                extra_cflags=flags,
                extra_cuda_cflags=["-O3", "-DFASTDEPTH_WITH_CUDA"],
                extra_ldflags=["-fopenmp", *(["-lmvec"] if vector_math else [])],
                extra_include_paths=[str(CSRC)],
                with_cuda=with_cuda,
                is_python_module=False,
                verbose=os.environ.get("FASTDEPTH_BUILD_VERBOSE") == "1",
            )
        except Exception as error:  # the compiler's output is in the message
            _state["error"] = str(error)
            raise ExtensionUnavailable(f"building the fastdepth C++/CUDA extension failed: {error}") from error
        _state.update(loaded=True, cuda=with_cuda, error=None)


def unavailable_reason(device: torch.device) -> str | None:
    """None if backend='cuda' can run on tensors of ``device`` (building on first use), else why not."""
    if device.type not in ("cpu", "cuda"):
        return f"backend='cuda' does not run on {device.type} tensors"
    if _state["loaded"] and (device.type == "cpu" or _state["cuda"]):
        return None
    reason = build_reason()
    if reason is None and device.type == "cuda":
        reason = cuda_build_reason()
    return None if reason is None else f"backend='cuda' is unavailable: {reason}"


def library():
    """``torch.ops.fastdepth_ext`` (the extension's ops, ``<op>_forward`` / ``<op>_backward``), loaded."""
    load()
    return torch.ops.fastdepth_ext
