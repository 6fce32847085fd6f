"""Compile every kernel for real GPU targets without a GPU and report registers and spills.

Every op of :mod:`fastdepth.registry`. Triton kernels: ``triton.compile(ASTSource(...),
target=GPUTarget("cuda", arch, 32))`` on each variant of ``kernels/<op>.py:aot_variants()``, then
``ptxas -v`` on the PTX it returns (without a GPU Triton leaves n_regs / n_spills unset).
CUDA kernels: plain ``nvcc -c -arch=sm_<arch> -Xptxas -v`` on the torch-free ``csrc/*.cu`` (when
nvcc is on PATH).
Run as ``python -m fastdepth.compile_report [--json]``; it must run without ``TRITON_INTERPRET``
(the interpreter replaces the kernels by Python functions), so tests call it in a subprocess.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from fastdepth import registry

ARCHS = (80, 90)


def ptxas_path() -> str | None:
    """Triton's bundled ptxas (it understands the PTX Triton emits), else the one on PATH."""
    try:
        import triton

        bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    return shutil.which("ptxas")


def parse_ptxas(text: str) -> dict[str, int]:
    """Registers, spill bytes and local (stack) bytes from ``ptxas -v`` output (summed over functions)."""
    found = {"registers": 0, "spill_stores": 0, "spill_loads": 0, "stack": 0}
    for m in re.finditer(r"Used (\d+) registers", text):
        found["registers"] = max(found["registers"], int(m.group(1)))
    for m in re.finditer(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text):
        found["spill_stores"] += int(m.group(1))
        found["spill_loads"] += int(m.group(2))
    for m in re.finditer(r"(\d+) bytes stack frame", text):
        found["stack"] += int(m.group(1))
    return found


def ptxas_arch(arch: int) -> str:
    return f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"


def _ast_source(ast_source: type, kernel, signature: dict, constexprs: dict):
    """The kernel's source for ``triton.compile``: Triton 3.2 (PyTorch 2.6's) names the constexpr
    values ``constants``, later releases ``constexprs``."""
    if "constexprs" in inspect.signature(ast_source).parameters:
        return ast_source(fn=kernel, signature=signature, constexprs=constexprs)
    return ast_source(fn=kernel, signature=signature, constants=constexprs)


def compile_triton(arch: int) -> list[dict]:
    """Compile every Triton kernel variant for ``sm_<arch>`` and read its resources."""
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise RuntimeError("compile_report needs TRITON_INTERPRET unset (the interpreter has no compiler)")
    ptxas = ptxas_path()
    if ptxas is None:
        raise RuntimeError("ptxas not found (neither bundled with Triton nor on PATH)")
    rows = []
    target = GPUTarget("cuda", arch, 32)
    with tempfile.TemporaryDirectory() as tmp:
        for op in registry.OPS.values():
            module = importlib.import_module(op.triton_module)
            for label, kernel, signature, constexprs, num_warps in module.aot_variants():
                for name in constexprs:
                    signature = {**signature, name: "constexpr"}
                src = _ast_source(ASTSource, kernel, signature, constexprs)
                compiled = triton.compile(src, target=target, options={"num_warps": num_warps})
                ptx_file = Path(tmp) / f"{kernel.__name__}.ptx"
                ptx_file.write_text(compiled.asm["ptx"])
                result = subprocess.run(
                    [ptxas, f"-arch={ptxas_arch(arch)}", "-v", str(ptx_file), "-o", os.devnull],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                rows.append(
                    {"kind": "triton", "kernel": label, "arch": f"sm_{arch}", "num_warps": num_warps}
                    | parse_ptxas(result.stdout + result.stderr)
                )
    return rows


CUDA_TYPES = {"f": "fp32", "6__half": "fp16", "13__nv_bfloat16": "bf16"}


def parse_nvcc(text: str, arch: int) -> list[dict]:
    """One row per kernel from ``nvcc -Xptxas -v`` output (mangled names shortened to kernel[dtype])."""
    rows = []
    for block in re.split(r"Compiling entry function ", text)[1:]:
        name = re.match(r"'(\w+)'", block)
        kernel = re.search(r"(?<=\d)([a-z_]+_kernel)I(\w+?)EEv", name.group(1)) if name else None
        label = f"{kernel.group(1)}[{CUDA_TYPES.get(kernel.group(2), kernel.group(2))}]" if kernel else "?"
        rows.append({"kind": "cuda", "kernel": label, "arch": f"sm_{arch}", "num_warps": None} | parse_ptxas(block))
    return rows


def compile_cuda(arch: int) -> list[dict]:
    """Compile every torch-free ``csrc/*.cu`` with plain nvcc for ``sm_<arch>`` and read its resources."""
    from fastdepth._cuda import CSRC, cuda_sources

    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise RuntimeError("nvcc not found on PATH")
    rows = []
    for source in cuda_sources():
        result = subprocess.run(
            [nvcc, "-c", "-std=c++17", f"-arch=sm_{arch}", "-Xptxas", "-v", str(CSRC / source), "-o", os.devnull],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"nvcc failed on {source}:\n{result.stderr}")
        rows += parse_nvcc(result.stdout + result.stderr, arch)
    return rows


def report(cuda: bool = True) -> list[dict]:
    rows = []
    for arch in ARCHS:
        rows += compile_triton(arch)
    if cuda and shutil.which("nvcc"):
        for arch in ARCHS:
            rows += compile_cuda(arch)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'kind':7} {'kernel':34} {'arch':6} {'regs':>5} {'spill st':>8} {'spill ld':>8} {'stack':>6}"]
    for r in rows:
        lines.append(
            f"{r['kind']:7} {r['kernel']:34} {r['arch']:6} {r['registers']:5d} "
            f"{r['spill_stores']:8d} {r['spill_loads']:8d} {r['stack']:6d}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    args = parser.parse_args(argv)
    rows = report()
    print(json.dumps(rows) if args.json else format_table(rows))
    spilled = [r for r in rows if r["spill_stores"] or r["spill_loads"]]
    return 1 if spilled else 0


if __name__ == "__main__":
    sys.exit(main())
