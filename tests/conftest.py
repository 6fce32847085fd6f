"""Test configuration: Triton's interpreter on machines without a GPU, devices, per-test seeds."""

import os
import zlib

import pytest
import torch

from fastdepth import backends

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    # must be set before the first Triton kernel is defined (fastdepth.kernels.* import)
    os.environ.setdefault("TRITON_INTERPRET", "1")

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])
#: devices on which the Triton kernels run: CUDA, or the CPU through an interpreter that can
TRITON_DEVICES = [d for d in DEVICES if backends.triton_usable_on(torch.device(d)) is None]


@pytest.fixture
def seed(request) -> int:
    """A seed derived from the test's id: random each test, reproducible run to run."""
    value = zlib.crc32(request.node.nodeid.encode())
    torch.manual_seed(value)
    return value


def pytest_report_header(config):
    return (
        f"fastdepth tests: torch {torch.__version__}, devices {DEVICES}, "
        f"triton on {TRITON_DEVICES or 'nothing'} (interpreter: {INTERPRETED}), "
        f"backend='cuda' on {CUDA_BACKEND_DEVICES or 'nothing'}"
    )


def _cuda_backend_devices() -> list[str]:
    """Devices on which backend='cuda' runs here: the CPU twin wherever the extension builds."""
    from fastdepth import _cuda

    devices = ["cpu"] if _cuda.build_reason() is None else []
    if HAS_CUDA and _cuda.cuda_build_reason() is None:
        devices.append("cuda")
    return devices


CUDA_BACKEND_DEVICES = _cuda_backend_devices()
#: (backend, device) pairs of the fused implementations that can run here
FUSED = [("triton", d) for d in TRITON_DEVICES] + [("cuda", d) for d in CUDA_BACKEND_DEVICES]
#: the CPU twin: the CUDA kernels' math in host loops, float64 included
TWIN = ("cuda", "cpu") in FUSED
#: fused implementations that compute in float32 only (all but the CPU twin)
FLOAT32_ONLY = [pair for pair in FUSED if pair != ("cuda", "cpu")]
#: every (backend, device) pair that runs here, the reference included
ALL = [("torch", d) for d in DEVICES] + FUSED
#: backend names that run here (for tests on CPU inputs that fail before any kernel runs)
BACKEND_NAMES = sorted({"torch", *(b for b, _ in FUSED)})


def pytest_collection_modifyitems(config, items):
    """FASTDEPTH_GPU_TESTS_ONLY=1 (the sanitizer runs) keeps only tests that run on a CUDA device."""
    if os.environ.get("FASTDEPTH_GPU_TESTS_ONLY") != "1":
        return
    keep = [item for item in items if getattr(item, "callspec", None) and item.callspec.params.get("device") == "cuda"]
    deselected = [item for item in items if item not in keep]
    config.hook.pytest_deselected(items=deselected)
    items[:] = keep
