"""Turn a runner's JSON into the speed targets, a Markdown table, PNG bar charts and the README section.

python -m fastdepth.benchmarks.report --readme   # rewrite README.md's benchmark section from the newest results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fastdepth.benchmarks import workloads

CHECKOUT = Path(__file__).resolve().parent.parent
#: Whether this is a source checkout (an editable install) rather than an installed wheel.
IN_CHECKOUT = (CHECKOUT / "pyproject.toml").exists()
#: The checkout's benchmarks/results; installed, benchmarks/results under the working directory.
RESULTS_DIR = CHECKOUT / "benchmarks" / "results" if IN_CHECKOUT else Path("benchmarks", "results")
README = CHECKOUT / "README.md"
BEGIN, END = "<!-- benchmark-table:begin -->", "<!-- benchmark-table:end -->"
FUSED = ("triton", "cuda")


def _index(result: dict) -> dict[tuple, dict]:
    return {(r["work"], r["mode"], r["size"], r["dtype"], r["impl"]): r for r in result["rows"]}


def _shape(rows: list[dict], size: str, work: str | None = None) -> str:
    """The shape the rows of ``size`` (of ``work``, or the first work) ran at, as the runner wrote it."""
    return next((r["shape"] for r in rows if r["size"] == size and work in (None, r["work"])), size)


def _ms(rows: dict, *key) -> float | None:
    row = rows.get(key)
    return row["median_ms"] if row else None


def _best_fused(rows: dict, work, mode, size, dtype) -> tuple[str, float] | None:
    """The faster of the fused backends (their default, atomic variants)."""
    found = [(impl, _ms(rows, work, mode, size, dtype, impl)) for impl in FUSED]
    found = [(impl, ms) for impl, ms in found if ms]
    return min(found, key=lambda f: f[1]) if found else None


def _target(name, value, threshold, kind=">=") -> dict:
    met = None if value is None else (value >= threshold if kind == ">=" else value <= threshold)
    return {"target": name, "value": value, "threshold": threshold, "kind": kind, "met": met}


def on_cpu(result: dict) -> bool:
    return result.get("meta", {}).get("device_type") == "cpu"


def targets(result: dict) -> list[dict]:
    """The issues' speed targets, evaluated on this result: on a GPU those stated for an H100 at
    the main size, fp32; on a CPU those stated for the CPU twin (:func:`cpu_targets`)."""
    if on_cpu(result):
        return cpu_targets(result)
    rows = _index(result)
    size, largest = workloads.MAIN_SIZE, workloads.LARGEST_SIZE
    out = []

    def add(name, value, threshold, kind=">="):
        out.append(_target(name, value, threshold, kind))

    for work, peer, threshold in (
        ("warp", "kornia", 10),
        ("warp", "compile", 2),
        ("photometric", "monodepth2", 5),
        ("photometric", "compile", 1.5),
        ("objective", "monodepth2", 5),
        ("reprojection", "monodepth2", 8),
        ("cost_volume", "homo_warping", 5),
        ("cost_volume", "compile", 2),
    ):
        best = _best_fused(rows, work, "fwd+bwd", size, "fp32")
        peer_ms = _ms(rows, work, "fwd+bwd", size, "fp32", peer)
        value = peer_ms / best[1] if best and peer_ms else None
        add(f"{work} fwd+bwd speed-up over {peer}", value, threshold)
    for work in ("warp", "photometric"):
        for mode in workloads.MODES:
            for impl in FUSED:
                row = rows.get((work, mode, largest, "fp32", impl))
                add(f"{impl} {work} {mode}: fraction of copy bandwidth at the largest size",
                    row["bandwidth_fraction"] if row else None, 0.6)  # fmt: skip
    fused = _best_fused(rows, "reprojection", "fwd+bwd", size, "fp32")
    # the composed ops of the same backend, timed in turns with it where the run has them
    composed_ms = _ms(rows, "reprojection", "fwd+bwd", size, "fp32", f"{fused[0]}-composed") if fused else None
    if composed_ms is None:
        composed = _best_fused(rows, "objective", "fwd+bwd", size, "fp32")
        composed_ms = composed[1] if composed else None
    speed_up = composed_ms / fused[1] if composed_ms and fused else None
    add("reprojection fwd+bwd speed-up over the composed fused ops", speed_up, 2)
    for work, peer, threshold in (
        ("objective", "monodepth2", 0.5),
        ("reprojection", "monodepth2", 0.25),
        ("cost_volume", "homo_warping", 1 / 20),
    ):
        eager = rows.get((work, "fwd+bwd", size, "fp32", peer))
        best = _best_fused(rows, work, "fwd+bwd", size, "fp32")
        ours = rows.get((work, "fwd+bwd", size, "fp32", best[0])) if best else None
        ratio = ours["peak_mem_mb"] / eager["peak_mem_mb"] if ours and eager and eager["peak_mem_mb"] else None
        add(f"{work} peak memory / {peer}", ratio, threshold, "<=")
    for impl in FUSED:
        atomic = _ms(rows, "warp", "fwd+bwd", size, "fp32", impl)
        fixed = _ms(rows, "warp", "fwd+bwd", size, "fp32", f"{impl}-deterministic")
        add(f"{impl} warp fwd+bwd: deterministic time / atomic time", fixed / atomic if fixed and atomic else None, 1.3,
            "<=")  # fmt: skip
    for work in workloads.WORKS:
        for impl in FUSED:
            fp32 = _ms(rows, work, "fwd+bwd", size, "fp32", impl)
            bf16 = _ms(rows, work, "fwd+bwd", size, "bf16", impl)
            add(f"{impl} {work} fwd+bwd: bf16 time / fp32 time", bf16 / fp32 if fp32 and bf16 else None, 1.0, "<=")
    return out


#: the CPU twin's targets: (work, the twin's peer, minimum speed-up, the sizes it is stated at)
CPU_SPEED_TARGETS = (
    ("reprojection", "monodepth2", 3, ("kitti", "kitti_b2")),  # the fused objective (B=2 where B=12 is too slow)
    ("reprojection", "cuda-composed", 1.5, ("kitti", "kitti_b2")),
    ("cost_volume", "torch", 2, ("kitti_b2",)),  # B=2 C=64 D=32 48x160, its eager reference
)
#: (work, peer, the twin's peak memory over the peer's at most, sizes)
CPU_MEMORY_TARGETS = (("cost_volume", "torch", 1 / 8, ("kitti_b2",)),)


def cpu_targets(result: dict) -> list[dict]:
    """The targets stated for the CPU twin (``cuda`` on a CPU), fp32 fwd+bwd, at each size the
    issue names that the result measured (not measured: one row at the first size); then, as the
    quality bar asks of every fast path, the twin against the eager reference (``torch``) of every
    work at every size measured where no stated target already does."""
    rows = _index(result)
    out = []

    def row(work, size, impl):
        return rows.get((work, "fwd+bwd", size, "fp32", impl))

    def speed_up(work, size, peer):
        twin, other = row(work, size, "cuda"), row(work, size, peer)
        return other["median_ms"] / twin["median_ms"] if twin and other and twin["median_ms"] else None

    def at_sizes(work, sizes):
        measured = [size for size in sizes if row(work, size, "cuda")]
        return [(size, _shape(result["rows"], size, work)) for size in measured] or [(sizes[0], sizes[0])]

    for work, peer, threshold, sizes in CPU_SPEED_TARGETS:
        for size, shape in at_sizes(work, sizes):
            name = f"{work} fwd+bwd at {shape}: CPU twin speed-up over {peer}"
            out.append(_target(name, speed_up(work, size, peer), threshold))
    for work, peer, threshold, sizes in CPU_MEMORY_TARGETS:
        for size, shape in at_sizes(work, sizes):
            twin, other = row(work, size, "cuda"), row(work, size, peer)
            ok = twin and other and twin["peak_mem_mb"] and other["peak_mem_mb"]
            value = twin["peak_mem_mb"] / other["peak_mem_mb"] if ok else None
            out.append(_target(f"{work} fwd+bwd at {shape}: CPU twin peak memory / {peer}", value, threshold, "<="))
    stated = {(work, size) for work, peer, _, sizes in CPU_SPEED_TARGETS if peer == "torch" for size in sizes}
    for work, size in sorted({(r["work"], r["size"]) for r in result["rows"] if r["impl"] == "cuda"} - stated):
        name = f"{work} fwd+bwd at {_shape(result['rows'], size, work)}: CPU twin speed-up over the eager reference"
        out.append(_target(name, speed_up(work, size, "torch"), 1))
    return out


def _fmt(value, digits=3) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


#: kernels shown per profiled row in the Markdown (the JSON keeps breakdown.TOP)
BREAKDOWN_SHOWN = 5


def _breakdown_lines(rows: list[dict]) -> list[str]:
    """The table of the rows' kernel breakdowns (run.profiled rows), the slowest kernels first."""
    profiled = [r for r in rows if r.get("breakdown")]
    if not profiled:
        return []
    lines = [
        "",
        "## where the time goes: one profiled call of each fused implementation (fwd+bwd, fp32)",
        "",
        "GPU: device time per kernel; CPU: self time per op (the CPU twin's launches are `fastdepth_ext::*`).",
        "`share`: of the total over every kernel (op) of the call, itself not the median time.",
        "",
        "| work | size | impl | kernel | calls | ms | share |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in profiled:
        where = f"| {r['work']} | {r['shape']} | {r['impl']} |"
        b = r["breakdown"]
        if isinstance(b, str):
            lines.append(f"{where} profiler failed: {b} | – | – | – |")
            continue
        entries = [(f"`{k['name'].replace('|', '/')}`", k["calls"], k["ms"]) for k in b["kernels"][:BREAKDOWN_SHOWN]]
        others = sum(k["ms"] for k in b["kernels"][BREAKDOWN_SHOWN:]) + b["other_ms"]
        if others:
            entries.append(("the others", "–", others))
        for name, calls, ms in entries:
            share = f"{ms / b['total_ms']:.0%}" if b["total_ms"] else "–"
            lines.append(f"{where} {name} | {calls} | {_fmt(ms)} | {share} |")
    return lines


def markdown(result: dict) -> str:
    meta, rows = result["meta"], _index(result)
    lines = [f"# fastdepth benchmarks: {meta['device']}", ""]
    lines += [
        f"- date {meta['date']}, git {meta['git_revision']}, torch {meta['torch']}, triton {meta['triton']}, "
        f"CUDA {meta['cuda']}, driver {meta.get('driver')}, kornia {meta['kornia']}",
        f"- timing: {meta['timing']}; copy bandwidth {meta['copy_bandwidth_gbps']:.1f} GB/s"
        + ("; quick run (not a measurement to quote)" if meta["quick"] else ""),
        "",
    ]
    impls_seen: dict[str, list[str]] = {}
    for r in result["rows"]:
        impls_seen.setdefault(r["work"], [])
        if r["impl"] not in impls_seen[r["work"]]:
            impls_seen[r["work"]].append(r["impl"])
    sizes = list(dict.fromkeys(r["size"] for r in result["rows"]))
    dtypes = list(dict.fromkeys(r["dtype"] for r in result["rows"]))
    for work, impls in impls_seen.items():
        peers = [i for i in impls if i in workloads.PEERS[work]]
        ours = [i for i in impls if i not in peers]
        for mode in workloads.MODES:
            for dtype in dtypes:
                lines += [f"## {work} {mode} ({dtype}): median ms, speed-up of fastdepth over each peer", ""]
                header = ["size", *impls, *(f"{o} vs {p}" for o in ours for p in peers)]
                lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                for size in sizes:
                    shape = _shape(result["rows"], size, work)
                    cells = [shape] + [_fmt(_ms(rows, work, mode, size, dtype, i)) for i in impls]
                    for o in ours:
                        for p in peers:
                            a, b = _ms(rows, work, mode, size, dtype, o), _ms(rows, work, mode, size, dtype, p)
                            cells.append(f"{b / a:.2f}x" if a and b else "–")
                    lines.append("| " + " | ".join(cells) + " |")
                lines.append("")
    lines += ["## peak memory (MB above the inputs) and fraction of copy bandwidth", ""]
    lines += [
        "`kernel traffic / floor`: the bytes the implementation's kernels read and write by their design (counted",
        "from the launches, not measured) over the floor (the work's inputs read once, its outputs written once).",
        "`host ms / call` (GPU runs): the host's time per call, launches queued and not waited for; close to the",
        "median time, the call is bound by its launches rather than by the GPU.",
        "",
        "| work | mode | size | dtype | impl | peak MB | bandwidth | host ms / call | kernel traffic / floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if r["peak_mem_mb"] is not None or r["bandwidth_fraction"] is not None:
            traffic = r.get("kernel_bytes")
            ratio = traffic / r["floor_bytes"] if traffic and r["floor_bytes"] else None
            lines.append(
                f"| {r['work']} | {r['mode']} | {r['shape']} | {r['dtype']} | {r['impl']} | "
                f"{_fmt(r['peak_mem_mb'])} | {_fmt(r['bandwidth_fraction'], 2)} | {_fmt(r.get('host_ms'))} | "
                f"{_fmt(ratio, 2)} |"
            )
    lines += _breakdown_lines(result["rows"])
    errors = [r for r in result["rows"] if r["error"]]
    if errors:
        lines += ["", "## could not run", ""]
        lines += [f"- {r['work']} {r['mode']} {r['shape']} {r['dtype']} {r['impl']}: {r['error']}" for r in errors]
    # the stored targets' own kind: results written before the CPU twin's targets hold the GPU's
    cpu_twin = any("CPU twin" in t["target"] for t in result["targets"])
    heading = "the CPU twin's, fp32" if cpu_twin else "stated for an H100 at B=12 3x192x640, fp32"
    lines += ["", f"## targets ({heading})", ""]
    lines += ["| target | measured | required | met |", "|---|---|---|---|"]
    for t in result["targets"]:
        met = "not measured" if t["met"] is None else ("met" if t["met"] else "NOT met")
        lines.append(f"| {t['target']} | {_fmt(t['value'])} | {t['kind']} {t['threshold']} | {met} |")
    return "\n".join(lines) + "\n"


def write_charts(result: dict, stem: Path) -> list[Path]:
    """One PNG per work: median time of every implementation, per mode, at the first size and dtype."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    rows = result["rows"]
    size, dtype = rows[0]["size"], rows[0]["dtype"]
    paths = []
    for work in dict.fromkeys(r["work"] for r in rows):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for ax, mode in zip(axes, workloads.MODES, strict=True):
            chosen = [r for r in rows if (r["work"], r["mode"], r["size"], r["dtype"]) == (work, mode, size, dtype)]
            chosen = [r for r in chosen if r["median_ms"]]
            ax.barh([r["impl"] for r in chosen], [r["median_ms"] for r in chosen], color="tab:blue")
            ax.set_xlabel("median ms")
            ax.set_title(f"{work} {mode}")
        fig.suptitle(f"{result['meta']['device']} — {_shape(rows, size, work)} {dtype}", fontsize=9)
        fig.tight_layout()
        path = stem.parent / f"{stem.name}-{work}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def _case_keys(data: dict) -> set[tuple[str, str, str]]:
    """(device type, work, size) of every row: a GPU result and a CPU result of one work and size
    are different measurements, neither supersedes the other."""
    device_type = data["meta"]["device_type"]
    return {(device_type, r["work"], r["size"]) for r in data["rows"]}


def newest_results(results_dir: Path = RESULTS_DIR) -> list[Path]:
    """For every device type, work and size, the newest committed full (not quick) result that
    measured it: the files that are newest for at least one of them, GPU results first, then oldest
    first."""
    newest: dict[tuple[str, str, str], tuple] = {}
    for path in results_dir.glob("*.json"):
        data = json.loads(path.read_text())
        if data["meta"]["quick"]:
            continue
        key = (data["meta"]["device_type"] != "cuda", data["meta"]["date"], path)
        for case in _case_keys(data):
            newest[case] = max(newest.get(case, key), key)  # a case's files share a device type: the newest
    return [path for *_, path in sorted(set(newest.values()))]


def readme_section(path: Path, works: set[str] | None = None) -> str:
    """The table of one result file: fp32 at its main size, the works in ``works`` (default all)."""
    result = json.loads(path.read_text())
    meta, rows = result["meta"], _index(result)
    size = (
        workloads.MAIN_SIZE
        if any(r["size"] == workloads.MAIN_SIZE for r in result["rows"])
        else result["rows"][0]["size"]
    )
    selected = [r for r in result["rows"] if works is None or r["work"] in works]
    shape = _shape(selected, size)
    impls = list(dict.fromkeys(r["impl"] for r in selected))
    lines = [
        f"Measured on **{meta['device']}** ({meta['date'][:10]}, git {meta['git_revision']}, torch {meta['torch']}), "
        f"{shape}, fp32, median ms (generated by `python -m fastdepth.benchmarks.report --readme` from "
        f"`benchmarks/results/{path.name}`; full tables in the `.md` beside it).",
        "",
        "| work | " + " | ".join(impls) + " |",
        "|---|" + "---|" * len(impls),
    ]
    for work in workloads.WORKS:
        if works is not None and work not in works:
            continue
        for mode in workloads.MODES:
            cells = [_fmt(_ms(rows, work, mode, size, "fp32", i)) for i in impls]
            own = _shape(selected, size, work)
            label = f"{work} {mode}" if own == shape else f"{work} {mode} at {own}"
            if any(c != "–" for c in cells):
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_sections(paths: list[Path]) -> str:
    """One table per result file, each with the works it is the newest result of at some size."""
    owner: dict[tuple[str, str, str], Path] = {}
    for path in paths:  # oldest first within a device type: a newer file takes over what it measured again
        owner.update(dict.fromkeys(_case_keys(json.loads(path.read_text())), path))
    owned = [p for p in paths if p in owner.values()]
    sections = [readme_section(p, {w for (_, w, _), o in owner.items() if o == p}) for p in owned]
    if not any(json.loads(p.read_text())["meta"]["device_type"] == "cuda" for p in paths):
        sections.append(
            "No GPU measurement is committed yet: these are CPU figures (`torch` is the reference, "
            "`cuda` the CPU twin of the CUDA kernels)."
        )
    return "\n\n".join(sections)


def update_readme(readme: Path = README, results_dir: Path = RESULTS_DIR) -> bool:
    paths = newest_results(results_dir)
    if not paths:
        return False
    text = readme.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + readme_sections(paths) + "\n" + text[end:])
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", action="store_true", help="rewrite README.md's benchmark section")
    parser.add_argument("result", nargs="?", type=Path, help="a result JSON to render as Markdown")
    args = parser.parse_args(argv)
    if args.readme:
        if not IN_CHECKOUT:
            parser.error("--readme rewrites the README of a source checkout; fastdepth is installed here")
        return 0 if update_readme() else 1
    if args.result:
        print(markdown(json.loads(args.result.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
