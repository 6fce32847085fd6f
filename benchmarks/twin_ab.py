"""The CPU twin at two revisions of ``csrc/``, side by side in one process.

On a shared 2-core machine two runs of the same build differ by up to 30%, from process to
process more than within one, which hides the gains of one change to the twin. This runner builds
the twin's kernels of the training step's objective (``benchmarks/twin_ab.cpp``: the fused
objective's forward and backward, and the composed warp and photometric loss) from ``csrc/`` at
``--base`` and at ``--head`` into two shared libraries (the namespace renamed in each), loads both
and calls them in turns on the benchmark's inputs (the synthetic world, B=2 3x192x640, the
disparities of its 4 scales upsampled to depth, Monodepth2's sampling): each round times every
kernel of both builds, the side that goes first alternating. It reports each kernel's minimum and
median over the rounds, the head's time over the base's, and how far their outputs differ, into
``<out>/<device>-<date>-<base>-<head>.json`` and ``.md`` (``<out>``: benchmarks/results/twin-ab).

    python -m fastdepth.benchmarks.twin_ab [--base HEAD~1] [--head HEAD] [--rounds 30] [--out DIR]

Both sides are git revisions (``git archive``), so that the results name the code they measured;
the build flags are the extension's (``fastdepth._cuda``).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from fastdepth.benchmarks.report import IN_CHECKOUT, RESULTS_DIR
from fastdepth.benchmarks.run import device_name, slug
from fastdepth.benchmarks.work import Size
from fastdepth.benchmarks.works import objective

import fastdepth
from fastdepth import _cuda
from fastdepth.train.objective import full_resolution_depths

ROOT = Path(__file__).resolve().parents[1]
WRAPPER = Path(__file__).with_name("twin_ab.cpp")
TWIN_SOURCES = ("reprojection_cpu.cpp", "warp_cpu.cpp", "photometric_cpu.cpp")
SIZE = Size(2, 3, 192, 640)
QUICK_SIZE = Size(1, 3, 24, 80)
#: the kernels in the order a training step runs them, per scale
KERNELS = (
    "reprojection_forward",
    "reprojection_backward",
    "warp_forward",
    "photometric_forward",
    "photometric_backward",
    "warp_backward",
)
FUSED, COMPOSED = KERNELS[:2], KERNELS[2:]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def twin_flags() -> tuple[list[str], bool]:
    """The extension's compiler flags for its CPU twin (without its CUDA kernels), and whether they
    link glibc's vector math."""
    _, flags, _, vector_math = _cuda._build_config()
    return [f for f in flags if f != "-DFASTDEPTH_WITH_CUDA"], vector_math


def build(revision: str, side: str, workdir: Path, flags: list[str], vector_math: bool) -> ctypes.CDLL:
    """``twin_ab.cpp`` and the twin's sources of ``csrc/`` at ``revision``, as a shared library whose
    namespace is ``fastdepth_<side>``."""
    src = workdir / side
    src.mkdir()
    archive = subprocess.run(["git", "archive", revision, "csrc"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    library = workdir / f"{side}.so"
    sources = [str(WRAPPER), *(str(src / "csrc" / name) for name in TWIN_SOURCES)]
    command = ["g++", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden", *flags, f"-Dfastdepth=fastdepth_{side}"]
    command += [f"-I{src / 'csrc'}", *sources, "-o", str(library), *(["-lmvec"] if vector_math else [])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"building {revision} failed (does its csrc/ have twin_ab.cpp's signatures?):\n{done.stderr[-3000:]}")
    lib = ctypes.CDLL(str(library))
    lib.ab_bands.restype = lib.ab_blocks.restype = ctypes.c_int64
    return lib


def inputs(size: Size) -> dict:
    x = objective.inputs(size, torch.float32, "cpu", False)
    depths = full_resolution_depths(x["disps"], size.height, size.width)
    return {
        "target": x["target"].contiguous(),
        "sources": x["sources"].contiguous(),
        "depths": [d.reshape(size.batch, size.height, size.width).contiguous() for d in depths],
        "poses": x["poses"].contiguous(),
        "K": x["K"].contiguous(),
        "identity": fastdepth.identity_loss(x["target"], x["sources"], backend="torch").contiguous(),
    }


class Side:
    """One build's kernels at one scale's depth, with buffers of its own for every output."""

    def __init__(self, lib: ctypes.CDLL, x: dict):
        self.lib, self.x = lib, x
        B, S, C, H, W = x["sources"].shape
        self.dims = (B, S, C, H, W)
        sampling = objective.MONODEPTH2_SAMPLING
        self.sampling = (int(sampling["padding_mode"] == "border"), int(sampling["align_corners"]))
        self.out = {
            "loss": torch.empty(B, H, W),
            "index": torch.empty(B, H, W, dtype=torch.int64),
            "grad_depth": torch.empty(B, H, W),
            "pose_partials": torch.empty(B, S, lib.ab_bands(H, ctypes.c_int64(B)), 16),
            "warped": torch.empty(B, S, C, H, W),
            "composed_loss": torch.empty(B, H, W),
            "composed_index": torch.empty(B, H, W, dtype=torch.int64),
            "grad_warped": torch.empty(B, S, C, H, W),
            "warp_grad_depth": torch.empty(B, H, W),
            "warp_pose_partials": torch.empty(B, S, lib.ab_blocks(H, W), 16),
        }
        self.grad = torch.full((B, H, W), 1.0 / (B * H * W))

    def call(self, kernel: str, depth: torch.Tensor) -> None:
        p = lambda t: ctypes.c_void_p(t.data_ptr())  # noqa: E731
        x, o = self.x, self.out
        B, S, C, H, W = self.dims
        dims = (ctypes.c_int64(B), ctypes.c_int64(S), ctypes.c_int64(C), H, W)
        geometry = (p(x["sources"]), p(depth), p(x["poses"]), p(x["K"]))
        if kernel == "reprojection_forward":
            self.lib.ab_reprojection_forward(
                p(x["target"]), *geometry, p(x["identity"]), p(o["loss"]), p(o["index"]), *dims, *self.sampling
            )
        elif kernel == "reprojection_backward":
            self.lib.ab_reprojection_backward(
                p(self.grad), p(o["index"]), p(x["target"]), *geometry, p(o["grad_depth"]), p(o["pose_partials"]),
                *dims, *self.sampling,
            )  # fmt: skip
        elif kernel == "warp_forward":
            self.lib.ab_warp_forward(*geometry, p(o["warped"]), *dims, *self.sampling)
        elif kernel == "photometric_forward":
            self.lib.ab_photometric_forward(
                p(x["target"]), p(x["sources"]), p(o["warped"]), p(o["composed_loss"]), p(o["composed_index"]), *dims
            )
        elif kernel == "photometric_backward":
            self.lib.ab_photometric_backward(
                p(self.grad), p(o["composed_index"]), p(x["target"]), p(x["sources"]), p(o["warped"]),
                p(o["grad_warped"]), *dims,
            )  # fmt: skip
        else:
            self.lib.ab_warp_backward(
                p(o["grad_warped"]), *geometry, p(o["warp_grad_depth"]), p(o["warp_pose_partials"]), *dims,
                *self.sampling,
            )  # fmt: skip


def measure(sides: dict[str, Side], depths: list[torch.Tensor], rounds: int) -> tuple[dict, dict]:
    """Per side and kernel, the time of a round (every scale) of each round; and how far the head's
    outputs at the last scale are from the base's (max abs difference; the indices: how many differ)."""
    times = {side: {k: [] for k in KERNELS} for side in sides}
    names = list(sides)
    for r in range(rounds + 1):  # round 0 warms up
        for side in names if r % 2 else names[::-1]:
            for kernel in KERNELS:
                start = time.perf_counter()
                for depth in depths:
                    sides[side].call(kernel, depth)
                if r:
                    times[side][kernel].append((time.perf_counter() - start) * 1e3)
    base, head = (sides[n].out for n in names)
    differences = {
        name: int((base[name] != head[name]).sum()) if base[name].dtype == torch.int64
        else float((base[name] - head[name]).abs().max())
        for name in ("loss", "index", "grad_depth", "composed_loss", "grad_warped", "warp_grad_depth")
    }  # fmt: skip
    return times, differences


def summary(times: dict) -> dict:
    out = {}
    for side, kernels in times.items():
        rows = {k: {"min_ms": min(v), "median_ms": float(np.median(v))} for k, v in kernels.items()}
        for group, members in (("fused", FUSED), ("composed", COMPOSED)):
            per_round = [sum(kernels[k][i] for k in members) for i in range(len(kernels[members[0]]))]
            rows[group] = {"min_ms": min(per_round), "median_ms": float(np.median(per_round))}
        out[side] = rows
    return out


def markdown(result: dict) -> str:
    meta, base, head = result["meta"], result["summary"]["base"], result["summary"]["head"]
    lines = [
        f"# CPU twin A/B: {meta['base']} (base) against {meta['head']} (head)",
        "",
        f"- {meta['device']}, date {meta['date']}, torch {meta['torch']}, {meta['compiler']}",
        f"- flags: `{' '.join(meta['flags'])}`",
        f"- {meta['rounds']} rounds after one warm-up, both builds in one process in turns (the first alternating);"
        f" a round: each kernel at the 4 scales of {meta['size']} (the objective work's inputs)",
        "",
        "| kernel | base min ms | head min ms | head / base (min) | base median ms | head median ms"
        " | head / base (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for k in (*KERNELS, "fused", "composed"):
        b, h = base[k], head[k]
        lines.append(
            f"| {k} | {b['min_ms']:.2f} | {h['min_ms']:.2f} | {h['min_ms'] / b['min_ms']:.3f} | {b['median_ms']:.2f}"
            f" | {h['median_ms']:.2f} | {h['median_ms'] / b['median_ms']:.3f} |"
        )
    lines += ["", "Head against base at the last scale (max abs difference; index: pixels that differ):", ""]
    lines += [f"- {name}: {value:.3g}" for name, value in result["differences"].items()]
    lines += [
        "",
        "fused: the fused objective's two kernels; composed: the warp and photometric kernels that compute the"
        " same objective (fused / composed is #14's CPU ratio on the kernels alone, without the step's shared work).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="git revision of the base side")
    parser.add_argument("--head", default="HEAD", help="git revision of the head side")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "twin-ab")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZE.label}: a check that it runs")
    args = parser.parse_args(argv)
    if not IN_CHECKOUT:
        parser.error("needs a git checkout of fastdepth (it builds csrc/ at two of its revisions)")
    size = QUICK_SIZE if args.quick else SIZE
    revisions = {side: git("rev-parse", "--short", rev) for side, rev in (("base", args.base), ("head", args.head))}
    x = inputs(size)
    flags, vector_math = twin_flags()
    with tempfile.TemporaryDirectory() as workdir:
        with ThreadPoolExecutor(len(revisions)) as pool:  # the compiler's processes, side by side
            builds = {
                side: pool.submit(build, rev, side, Path(workdir), flags, vector_math)
                for side, rev in revisions.items()
            }
        libs = {side: future.result() for side, future in builds.items()}
        sides = {side: Side(lib, x) for side, lib in libs.items()}
        times, differences = measure(sides, x["depths"], args.rounds)
    compiler = subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    meta = {
        "device": device_name("cpu"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "base": revisions["base"],
        "head": revisions["head"],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "compiler": compiler,
        "flags": flags,
        "rounds": args.rounds,
        "size": size.label,
    }
    result = {"meta": meta, "summary": summary(times), "differences": differences, "times_ms": times}
    args.out.mkdir(parents=True, exist_ok=True)
    quick = "-quick" if args.quick else ""
    stem = f"{slug(meta['device'])}-{meta['date'][:10]}-{meta['base']}-{meta['head']}{quick}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
