"""The benchmark runner: every implementation of every work on the same inputs, in one process.

Writes ``<out>/<device>-<date>.json`` (device, driver, versions, git revision, date, every
measurement), a Markdown table and PNG bar charts beside it, and prints each speed target as met
or not met. Timing: on a GPU ``triton.testing.do_bench`` (CUDA events after warm-up, L2 flushed
before every run, median); on the CPU the median of wall-clock runs after a warm-up, the
implementations of a case run in turns (:func:`measure_case`), with glibc's allocator held in its
steady state (:func:`steady_allocator`). Peak memory
is ``torch.cuda.max_memory_allocated`` during one run, above the inputs; on the CPU the peak
resident set during one run above the one before it (:func:`cpu_peak_memory_mb`). Bandwidth is
the floor traffic of the work (inputs read once, outputs written once) over the median time, as a
fraction of the device's copy bandwidth measured in the same run. Once the cases are written (before
the torch.compile ones on a GPU), each fused implementation's fwd+bwd fp32 call runs once more
under the profiler: its time per kernel (:mod:`fastdepth.benchmarks.breakdown`).

    python -m fastdepth.benchmarks.run [--quick] [--device cpu|cuda] [--sizes kitti,small] [--out DIR]
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from fastdepth.benchmarks import workloads
from fastdepth.benchmarks.breakdown import kernel_breakdown
from fastdepth.benchmarks.report import IN_CHECKOUT, RESULTS_DIR, markdown, targets, write_charts

import fastdepth

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def git_revision() -> str:
    """``$FASTDEPTH_GIT_REVISION`` (set where .git did not travel, e.g. by the GPU staging), else git's;
    an installed fastdepth's version (a git repository around site-packages is not fastdepth's)."""
    if os.environ.get("FASTDEPTH_GIT_REVISION"):
        return os.environ["FASTDEPTH_GIT_REVISION"]
    if not IN_CHECKOUT:
        return f"installed fastdepth {fastdepth.__version__}"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        )
        dirty = subprocess.run(
            # neither untracked files nor results (this runner writes them) change the code measured
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)benchmarks/results"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
        )
        rev = out.stdout.strip() or "unknown"
        return rev + ("-dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {name} ({torch.get_num_threads()} threads)"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def metadata(device: str, quick: bool) -> dict:
    meta = {
        "device": device_name(device),
        "device_type": device,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "quick": quick,
    }
    try:
        import triton

        meta["triton"] = triton.__version__
    except ImportError:
        meta["triton"] = None
    try:
        import kornia

        meta["kornia"] = kornia.__version__
    except ImportError:
        meta["kornia"] = None
    if device == "cuda":
        try:
            meta["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
            ).stdout.strip()
        except OSError:
            meta["driver"] = None
        meta["timing"] = "triton.testing.do_bench median (CUDA events, L2 flushed before each run)"
    else:
        meta["timing"] = (
            f"median of {CPU_ROUNDS} wall-clock runs after one warm-up run, the implementations of a case in turns"
        )
    return meta


def time_ms(fn: Callable, device: str, quick: bool) -> float:
    if device == "cuda":
        import triton.testing

        return float(
            triton.testing.do_bench(fn, warmup=5 if quick else 25, rep=20 if quick else 100, return_mode="median")
        )
    fn()
    runs = 1 if quick else 5
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return sorted(samples)[len(samples) // 2]


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmRSS: resident now, VmHWM: its peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _mallopt(param: int, value: int) -> bool:
    try:
        return bool(ctypes.CDLL(None).mallopt(param, value))
    except (OSError, AttributeError):  # not glibc
        return False


M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's largest dynamic mmap threshold on 64-bit systems, where it settles by itself
DEFAULT_MMAP_THRESHOLD = 32 * 2**20


def steady_allocator() -> None:
    """Put glibc's allocator where a long CPU run settles: allocations up to 32 MiB from the heap,
    freed memory kept for reuse. Left dynamic, the first implementation measured pays for page
    faults on every large temporary that later ones do not (measured: Monodepth2's eager objective
    at B=2 took 1.3 s as the first row of a run, 0.7 s later on), which made CPU comparisons depend
    on the order of the rows."""
    _mallopt(M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD)
    _mallopt(M_TRIM_THRESHOLD, 2**30)


def cpu_peak_memory_mb(fn: Callable) -> float | None:
    """The peak resident set during one run above the resident set before it (Linux, glibc).

    The peak (VmHWM) is reset through ``/proc/self/clear_refs`` after ``malloc_trim`` has given the
    free heap pages back. During the run glibc maps every allocation above 64 KiB on its own and
    unmaps it when freed, so that the resident set follows the live memory (tensors and the C++
    twins' own buffers alike); :func:`steady_allocator` is restored afterwards.
    """
    clear_refs = Path("/proc/self/clear_refs")
    if not clear_refs.exists() or not _mallopt(M_MMAP_THRESHOLD, 64 * 1024):
        return None
    try:
        gc.collect()
        ctypes.CDLL(None).malloc_trim(0)  # free heap pages back to the system: reused ones count again
        clear_refs.write_text("5")
        base = _status_kib("VmRSS")
        fn()
        return (_status_kib("VmHWM") - base) / 1024
    except OSError:
        return None
    finally:
        steady_allocator()


HOST_CALLS = 5


def host_ms(fn: Callable, device: str) -> float | None:
    """On a GPU, the host's time per call: the median of HOST_CALLS calls timed back to back, their
    launches queued and not waited for. Where it comes close to the median (GPU) time, the call is
    bound by its launches, not by the GPU. None on the CPU, where the call is the work."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    samples = []
    for _ in range(HOST_CALLS):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    torch.cuda.synchronize()
    return sorted(samples)[len(samples) // 2]


def peak_memory_mb(fn: Callable, device: str) -> float | None:
    if device != "cuda":
        return cpu_peak_memory_mb(fn)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def copy_bandwidth(device: str, quick: bool) -> float:
    """Bytes per second of a large device-to-device copy (read + write)."""
    n = (64 if quick else 256) * 2**20 // 4
    src = torch.rand(n, device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / (time_ms(lambda: dst.copy_(src), device, quick) * 1e-3)


def plan(
    device: str, sizes: list[str], dtypes: list[str], works: list[str], quick: bool, modes=workloads.MODES
) -> list[tuple]:
    """Every case to measure: dtype first (a run cut short by its time limit has measured every
    work in the first dtype), the slow torch.compile cases last (results are written after every
    case, so a run cut short keeps the rest). torch.compile is measured at the first size in fp32
    only (each new shape or dtype recompiles, which would dominate a campaign) and not at all in a
    quick run."""
    jobs, compiled = [], []
    size_list = [("quick", workloads.QUICK_SIZE)] if quick else [(s, workloads.SIZES[s]) for s in sizes]
    for dtype in dtypes:
        for work in works:
            for mode in modes:
                for size_key, size in size_list:
                    for impl in workloads.implementations(work, device):
                        job = (work, mode, size_key, size, dtype, impl)
                        if impl != "compile":
                            jobs.append(job)
                        elif not quick and size_key == size_list[0][0] and dtype == "fp32":
                            compiled.append(job)
    return jobs + compiled


#: CPU: every implementation of a case runs this many times, in turns, after one warm-up run
CPU_ROUNDS = 7


def cases(jobs: list[tuple], device: str) -> list[list[tuple]]:
    """The jobs grouped into cases, in plan order: on the CPU a case is every implementation of one
    (work, mode, size, dtype), timed in turns (:func:`measure_case`); on a GPU each job is a case."""
    if device != "cpu":
        return [[job] for job in jobs]
    grouped: dict[tuple, list[tuple]] = {}
    for job in jobs:
        grouped.setdefault(job[:5], []).append(job)
    return list(grouped.values())


def _row(job: tuple) -> dict:
    work, mode, size_key, size, dtype_name, impl = job
    return {
        "work": work,
        "mode": mode,
        "size": size_key,
        "shape": workloads.shape(work, size),
        "dtype": dtype_name,
        "impl": impl,
        "median_ms": None,
        "peak_mem_mb": None,
        "floor_bytes": workloads.floor_bytes(work, size, DTYPES[dtype_name], mode),
        "kernel_bytes": workloads.kernel_bytes(work, impl, size, DTYPES[dtype_name], mode),
        "bandwidth_fraction": None,
        "host_ms": None,
        "breakdown": None,
        "error": None,
    }


def _error(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"


def _build(job: tuple, device: str) -> Callable:
    work, mode, _, size, dtype_name, impl = job
    inputs = workloads.make_inputs(work, size, DTYPES[dtype_name], device, mode)
    return workloads.make_impl(work, impl, inputs, mode)


def _interleaved_ms(fns: list[Callable | None], rows: list[dict], quick: bool) -> list[float | None]:
    """Median wall-clock ms of each callable, run in turns: round r runs every one once, so that a
    machine whose speed drifts (a shared VM drifted 2x within minutes) slows them alike. A callable
    that raises is reported in its row and dropped."""
    samples: list[list[float]] = [[] for _ in fns]
    for i, fn in enumerate(fns):  # warm-up
        try:
            if fn is not None:
                fn()
        except Exception as error:
            rows[i]["error"], fns[i] = _error(error), None
    for _ in range(1 if quick else CPU_ROUNDS):
        for i, fn in enumerate(fns):
            if fn is None:
                continue
            try:
                start = time.perf_counter()
                fn()
                samples[i].append((time.perf_counter() - start) * 1e3)
            except Exception as error:
                rows[i]["error"], fns[i] = _error(error), None
    return [sorted(s)[len(s) // 2] if fn is not None and s else None for fn, s in zip(fns, samples, strict=True)]


def profiled(row: dict) -> bool:
    """Whether the runner records the row's kernel breakdown: fastdepth's fused implementations
    (and their variants), fwd+bwd, fp32, measured without error."""
    fused = row["impl"].partition("-")[0] in ("triton", "cuda")
    return fused and row["mode"] == "fwd+bwd" and row["dtype"] == "fp32" and bool(row["median_ms"])


def add_breakdowns(result: dict, jobs: list[tuple], device: str, path: Path) -> None:
    """The kernel breakdown (breakdown.kernel_breakdown) of every :func:`profiled` row of ``result``
    (``jobs``: the job of each row), once the cases have been measured and written, so that a
    profiler that fails, or even crashes the process, costs no other measurement: :func:`run` calls
    it after every case but those of torch.compile alone (on a GPU, the last cases: their
    compilation may use up a campaign's time limit). The results are rewritten after each; a
    failure leaves its text in the row's ``breakdown``."""
    for row, job in zip(result["rows"], jobs, strict=True):
        if not profiled(row):
            continue
        print(f"profiling {row['work']} {row['shape']} {row['impl']}", file=sys.stderr)
        try:
            fn = _build(job, device)
            fn()  # warm-up
            row["breakdown"] = kernel_breakdown(fn, device)
        except Exception as error:
            row["breakdown"] = _error(error)
        _write(result, path)


def measure_case(case: list[tuple], device: str, quick: bool, bandwidth: float) -> list[dict]:
    """The rows of one case: median time, peak memory and fraction of copy bandwidth of each job.
    An implementation that cannot run the case is reported in its row, not fatal."""
    rows = [_row(job) for job in case]
    fns: list[Callable | None] = []
    for job, row in zip(case, rows, strict=True):
        try:
            fns.append(_build(job, device))
        except Exception as error:
            row["error"] = _error(error)
            fns.append(None)
    if device == "cpu":
        times = _interleaved_ms(fns, rows, quick)
    else:
        times = []
        for fn, row in zip(fns, rows, strict=True):
            try:
                times.append(time_ms(fn, device, quick) if fn is not None else None)
            except Exception as error:
                row["error"] = _error(error)
                times.append(None)
    for fn, row, ms in zip(fns, rows, times, strict=True):
        if ms is None or row["error"]:
            continue
        try:
            row["median_ms"] = ms
            row["peak_mem_mb"] = peak_memory_mb(fn, device)
            row["host_ms"] = host_ms(fn, device)
        except Exception as error:
            row["error"] = _error(error)
        if row["median_ms"] and row["floor_bytes"]:
            row["bandwidth_fraction"] = row["floor_bytes"] / (row["median_ms"] * 1e-3) / bandwidth
    return rows


def _write(result: dict, path: Path) -> None:
    """Write the JSON and its Markdown table, each atomically (a run killed mid-write keeps the last)."""
    result["targets"] = targets(result)
    for target, text in ((path, json.dumps(result, indent=1) + "\n"), (path.with_suffix(".md"), markdown(result))):
        partial = target.with_name(target.name + ".partial")
        partial.write_text(text)
        partial.replace(target)


def run(
    device: str,
    sizes: list[str],
    dtypes: list[str],
    works: list[str],
    quick: bool,
    out: Path,
    progress: Callable | None = None,
    modes=workloads.MODES,
    charts: bool = True,
    tag: str = "",
) -> Path:
    """Measure, writing the JSON and Markdown after every case (PNG charts at the end); return the JSON's path."""
    torch.manual_seed(0)
    if device == "cpu":
        steady_allocator()
    meta = metadata(device, quick)
    bandwidth = copy_bandwidth(device, quick)
    meta["copy_bandwidth_gbps"] = bandwidth / 1e9
    jobs = plan(device, sizes, dtypes, works, quick, modes)
    out.mkdir(parents=True, exist_ok=True)
    stem = (
        f"{slug(meta['device'])}-{meta['date'][:10]}" + (f"-{slug(tag)}" if tag else "") + ("-quick" if quick else "")
    )
    path = out / f"{stem}.json"
    result = {"meta": meta, "rows": []}
    measured: list[tuple] = []  # the job of each row
    profiling_due = True  # before the torch.compile cases, whose compilation may use up a time limit
    for case in progress(cases(jobs, device)) if progress else cases(jobs, device):
        if profiling_due and all(job[5] == "compile" for job in case):
            add_breakdowns(result, measured, device, path)
            profiling_due = False
        result["rows"].extend(measure_case(case, device, quick, bandwidth))
        measured.extend(case)
        _write(result, path)
    if profiling_due:
        add_breakdowns(result, measured, device, path)
    if charts:
        write_charts(result, out / stem)
    return path


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description="fastdepth benchmark runner")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", default=None, help=f"comma-separated, from {','.join(workloads.SIZES)}")
    parser.add_argument("--dtypes", default=None, help="comma-separated, from fp32,bf16,fp16")
    parser.add_argument(
        "--works", default=",".join(workloads.WORKS), help=f"comma-separated, from {','.join(workloads.WORKS)}"
    )
    parser.add_argument("--modes", default=",".join(workloads.MODES), help="comma-separated, from fwd,fwd+bwd")
    parser.add_argument("--no-charts", action="store_true", help="write no PNG charts")
    parser.add_argument("--tag", default="", help="a suffix for the result files (several runs on one day)")
    parser.add_argument("--quick", action="store_true", help="one tiny size, fp32, few runs, no torch.compile")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    on_gpu = args.device == "cuda"
    args.sizes = (args.sizes or (",".join(workloads.SIZES) if on_gpu else "small")).split(",")
    args.dtypes = (args.dtypes or ("fp32,bf16" if on_gpu else "fp32")).split(",")
    args.works = args.works.split(",")
    args.modes = args.modes.split(",")
    for name, chosen, allowed in (
        ("sizes", args.sizes, workloads.SIZES),
        ("dtypes", args.dtypes, DTYPES),
        ("works", args.works, workloads.WORKS),
        ("modes", args.modes, workloads.MODES),
    ):
        unknown = [c for c in chosen if c not in allowed]
        if unknown:
            parser.error(f"unknown {name}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    if on_gpu and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU is visible")
    return args


def _log_progress(case_list):
    for i, case in enumerate(case_list, 1):
        work, mode, _, size, dtype, _ = case[0]
        impls = ", ".join(job[5] for job in case)
        print(f"[{i}/{len(case_list)}] {work} {mode} {workloads.shape(work, size)} {dtype}: {impls}", file=sys.stderr)
        yield case


def main(argv: list[str] | None = None, progress: Callable | None = None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    if args.device == "cpu":
        print("no GPU: benchmarking the CPU implementations (the reference, the CPU twin and the peers)")
    path = run(
        args.device,
        args.sizes,
        args.dtypes,
        args.works,
        args.quick,
        args.out,
        progress or _log_progress,
        args.modes,
        not args.no_charts,
        args.tag,
    )
    print(path.with_suffix(".md").read_text())
    failed = [r for r in json.loads(path.read_text())["rows"] if r["error"]]
    print(f"results: {path} ({len(failed)} cases could not run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
