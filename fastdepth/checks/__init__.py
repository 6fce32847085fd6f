"""Named correctness cases of the fused backends against the float64 reference, on any device.

Every op of :mod:`fastdepth.registry` has a module ``fastdepth.checks.<op>`` with ``CASES`` (the
names), ``SANITIZER_CASES`` (few and small, for compute-sanitizer), ``SELFCHECK_CASE`` (the one
``fastdepth info`` runs) and ``run_case(name, backend, device, dtype, quick)``. A case runs the op
forward and backward on one backend, dtype and device and records the errors against the float64
reference on the same inputs, the bound from :mod:`fastdepth.tolerances` and, where it applies,
mismatching masks or winners and whether gradients are bitwise equal over repeated runs; ``where``
names the largest differences of the output and of the worst gradient with their indices, so that a
failure on a borrowed GPU can be diagnosed from the results alone.

The GPU campaign's correctness step (``benchmarks/gpu_campaign.sh``), its sanitizer step and its
CPU rehearsal run::

    python -m fastdepth.checks --device cuda [--backends triton,cuda] [--dtypes fp32,bf16,fp16]
        [--ops warp,photometric] [--quick] [--sanitizer] [--out checks.json]

Without ``--backends`` it checks the fused backends that can run on the device and says why any
other cannot; the GPU campaign names both, so that one that cannot run fails its cases. Results are
written (atomically) after every case, so a run that is cut off keeps what it checked. Exit status
1 when any case failed or could not run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import torch

from fastdepth import registry
from fastdepth.checks.case import CaseResult

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def op_cases(op: str):
    """The ``fastdepth.checks.<op>`` module."""
    return importlib.import_module(registry.OPS[op].checks_module)


def run_one(op: str, name: str, backend: str, device: str, dtype: torch.dtype, quick: bool) -> CaseResult:
    """One case; an exception becomes a failed result that carries its cause."""
    start = time.perf_counter()
    try:
        result = op_cases(op).run_case(name, backend, device, dtype, quick)
    except Exception as error:
        message = f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}"[:2000]
        result = CaseResult(op, name, backend, device, str(dtype).removeprefix("torch."), error=message)
    result.seconds = round(time.perf_counter() - start, 3)
    return result


def run_cases(
    device: str,
    backends: list[str],
    dtypes: list[str],
    ops: list[str],
    quick: bool,
    sanitizer: bool,
    out: Path | None,
) -> list[CaseResult]:
    results = []
    # dtype first: a run cut short by its time limit has covered every op in the first dtype
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        for op in ops:
            module = op_cases(op)
            for name in module.SANITIZER_CASES if sanitizer else module.CASES:
                for backend in backends:
                    results.append(run_one(op, name, backend, device, dtype, quick))
                    print(_line(results[-1]), flush=True)
                    if out is not None:
                        _write(results, out)
    return results


def _line(r: CaseResult) -> str:
    verdict = "pass" if r.passed else "FAIL"
    if r.error:
        return f"{verdict} {r.op:11} {r.case:18} {r.backend:6} {r.dtype:8} error: {r.error.splitlines()[0]}"
    det = "" if r.deterministic is None else f" deterministic={r.deterministic}"
    line = (
        f"{verdict} {r.op:11} {r.case:18} {r.backend:6} {r.dtype:8} fwd {r.forward_error:.2e}/{r.forward_tol:.0e} "
        f"grad {r.gradient_error:.2e}/{r.gradient_tol:.0e} mismatches {r.mismatches}{det} ({r.seconds:.1f} s)"
    )
    return line if r.passed else f"{line}\n     where: {r.where}"


def _write(results: list[CaseResult], path: Path) -> None:
    rows = [asdict(r) | {"passed": r.passed} for r in results]
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(rows, indent=1) + "\n")
    partial.replace(path)


def usable_backends(device: torch.device) -> list[str]:
    """The fused backends that can run on ``device`` here; prints why each other one cannot."""
    from fastdepth import _cuda, backends

    reasons = {"triton": backends.triton_usable_on(device), "cuda": _cuda.unavailable_reason(device)}
    for name, reason in reasons.items():
        if reason is not None:
            print(f"skipped backend {name}: {reason}", flush=True)
    return [name for name, reason in reasons.items() if reason is None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastdepth.checks", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backends", default=None, help="default: the fused backends usable on the device")
    parser.add_argument("--dtypes", default="fp32,bf16,fp16")
    parser.add_argument("--ops", default=",".join(registry.OPS))
    parser.add_argument("--quick", action="store_true", help="tiny shapes (for Triton's interpreter)")
    parser.add_argument("--sanitizer", action="store_true", help="the few small float32 cases of compute-sanitizer")
    parser.add_argument("--out", type=Path, default=None, help="JSON file of the results")
    args = parser.parse_args(argv)
    dtypes = ["fp32"] if args.sanitizer else args.dtypes.split(",")
    for name, chosen, allowed in (("dtypes", dtypes, DTYPES), ("ops", args.ops.split(","), registry.OPS)):
        unknown = [c for c in chosen if c not in allowed]
        if unknown:
            parser.error(f"unknown {name}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    chosen = args.backends.split(",") if args.backends else usable_backends(torch.device(args.device))
    results = run_cases(args.device, chosen, dtypes, args.ops.split(","), args.quick, args.sanitizer, args.out)
    failed = [r for r in results if not r.passed]
    print(f"checks: {len(results) - len(failed)} of {len(results)} cases passed")
    return 1 if failed or not results else 0
