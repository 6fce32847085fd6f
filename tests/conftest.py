"""Test configuration: Triton's interpreter on machines without a GPU, devices, per-test seeds."""

import os
import zlib

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    # must be set before the first Triton kernel is defined (fastdepth.kernels.* import)
    os.environ.setdefault("TRITON_INTERPRET", "1")

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])
#: devices on which the Triton kernels run: CUDA, or the CPU through the interpreter
TRITON_DEVICES = ["cuda"] if HAS_CUDA else (["cpu"] if INTERPRETED else [])


@pytest.fixture
def seed(request) -> int:
    """A seed derived from the test's id: random each test, reproducible run to run."""
    value = zlib.crc32(request.node.nodeid.encode())
    torch.manual_seed(value)
    return value


def pytest_report_header(config):
    return (
        f"fastdepth tests: torch {torch.__version__}, devices {DEVICES}, "
        f"triton on {TRITON_DEVICES or 'nothing'} (interpreter: {INTERPRETED})"
    )


#: (backend, device) pairs of the fused implementations that can run here
FUSED = [("triton", d) for d in TRITON_DEVICES]
