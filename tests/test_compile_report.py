"""Every Triton kernel compiles for sm_80 and sm_90 without a GPU, with its registers read by
ptxas, and none spills."""

import json
import shutil
import subprocess
import sys

import pytest
from helpers import subprocess_env

from fastdepth.compile_report import parse_nvcc, parse_ptxas


@pytest.fixture(scope="module")
def rows():
    env = {k: v for k, v in subprocess_env().items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-m", "fastdepth.compile_report", "--json"], capture_output=True, text=True, env=env
    )
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_triton_kernel_compiles_for_each_arch(rows):
    triton_rows = {(r["kernel"], r["arch"]) for r in rows if r["kind"] == "triton"}
    for kernel in ("warp_fwd_kernel", "warp_bwd_kernel", "photometric_fwd_kernel", "photometric_bwd_kernel"):
        for dtype in ("fp32", "fp16", "bf16"):
            for arch in ("sm_80", "sm_90"):
                assert (f"{kernel}[{dtype}]", arch) in triton_rows


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_every_cuda_kernel_compiles_with_plain_nvcc(rows):
    cuda_rows = {(r["kernel"], r["arch"]) for r in rows if r["kind"] == "cuda"}
    for kernel in ("warp_fwd_kernel", "warp_bwd_kernel", "photometric_fwd_kernel", "photometric_bwd_kernel"):
        for dtype in ("fp32", "fp16", "bf16"):
            for arch in ("sm_80", "sm_90"):
                assert (f"{kernel}[{dtype}]", arch) in cuda_rows


def test_no_spills_and_registers_recorded(rows):
    for r in rows:
        assert 0 < r["registers"] <= 255, r
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, r
        if r["kind"] == "cuda":  # no local memory at all in the CUDA kernels
            assert r["stack"] == 0, r


def test_parse_ptxas_reads_spills():
    text = (
        "ptxas info    : Used 40 registers, used 1 barriers, 8 bytes stack frame\n"
        "ptxas info    : 16 bytes stack frame, 12 bytes spill stores, 4 bytes spill loads\n"
    )
    assert parse_ptxas(text) == {"registers": 40, "spill_stores": 12, "spill_loads": 4, "stack": 24}


def test_parse_nvcc_names_kernels():
    text = (
        "ptxas info    : Compiling entry function '_ZN9fastdepth39_GLOBAL__N__0890fa25_7_warp_cu_d691dc9d"
        "15warp_bwd_kernelI6__halfEEvPKT_S5_' for 'sm_90'\n"
        "ptxas info    : Function properties for x\n"
        "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
        "ptxas info    : Used 72 registers, used 1 barriers, 2048 bytes smem\n"
    )
    (row,) = parse_nvcc(text, 90)
    assert row["kernel"] == "warp_bwd_kernel[fp16]" and row["registers"] == 72 and row["arch"] == "sm_90"
