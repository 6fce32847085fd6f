"""Every benchmark work by name, for the runner (``run.py``) and the pytest-benchmark suite
(``bench_works.py``): the works of :mod:`fastdepth.benchmarks.works` and the sizes of
:mod:`fastdepth.benchmarks.work`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from fastdepth.benchmarks.work import LARGEST_SIZE, MAIN_SIZE, MODES, QUICK_SIZE, SIZES, Size  # noqa: F401
from fastdepth.benchmarks.works import all_works

WORK_DEFS = all_works()
WORKS = tuple(WORK_DEFS)
PEERS = {name: work.peers for name, work in WORK_DEFS.items()}


def implementations(work: str, device: str) -> list[str]:
    """Every implementation of ``work`` measured on ``device``: the peers, then fastdepth's.

    On the CPU fastdepth's are the reference (``torch``) and the CPU twin (``cuda``); Triton runs
    there only in its interpreter, which is not a performance path. The work's variants follow
    (e.g. ``triton-deterministic``), on a GPU also its GPU variants.
    """
    ours = ("triton", "cuda") if device == "cuda" else ("torch", "cuda")
    fused = [o for o in ours if o != "torch"]
    variants = WORK_DEFS[work].variants + (WORK_DEFS[work].gpu_variants if device == "cuda" else ())
    return [*PEERS[work], *ours, *(f"{o}-{variant}" for variant in variants for o in fused)]


def make_inputs(work: str, size: Size, dtype: torch.dtype, device: str, mode: str) -> dict:
    return WORK_DEFS[work].inputs(size, dtype, device, mode == "fwd+bwd")


def make_impl(work: str, name: str, inputs: dict, mode: str) -> Callable:
    return WORK_DEFS[work].make(name, inputs, mode)


def floor_bytes(work: str, size: Size, dtype: torch.dtype, mode: str) -> int | None:
    """Minimum memory traffic: every input read once, every output written once (None: not defined)."""
    return WORK_DEFS[work].floor_bytes(size, dtype, mode)


def kernel_bytes(work: str, impl: str, size: Size, dtype: torch.dtype, mode: str) -> int | None:
    """The traffic of an implementation's kernels as designed (None: not counted for it)."""
    return WORK_DEFS[work].kernel_bytes(impl, size, dtype, mode)


def shape(work: str, size: Size) -> str:
    """The shape ``work`` runs at for ``size``, as the results show it."""
    return WORK_DEFS[work].shape(size)
