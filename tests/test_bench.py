"""The benchmark runner, `fastdepth bench` and the report: a quick smoke run on the CPU (no timing
asserts), the target logic and the README table generator."""

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from fastdepth.benchmarks import host_profile, report, run, workloads
from fastdepth.benchmarks.work import QUICK_SIZE
from fastdepth.benchmarks.works import objective, warp
from helpers import subprocess_env

import fastdepth
from fastdepth.train.objective import full_resolution_depths

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run(
        [sys.executable, "-m", "fastdepth", "bench", "--quick", "--device", "cpu", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
        env=subprocess_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = out.glob("*.json")
    return path, json.loads(path.read_text()), result.stdout


def test_quick_run_writes_json_markdown_and_charts(quick_result):
    path, data, stdout = quick_result
    meta = data["meta"]
    for key in ("device", "date", "git_revision", "torch", "triton", "copy_bandwidth_gbps", "timing"):
        assert meta[key] is not None, key
    assert meta["quick"] is True and meta["device_type"] == "cpu"
    assert "## targets (the CPU twin's, fp32)" in path.with_suffix(".md").read_text()
    assert sorted(p.name for p in path.parent.glob("*.png")) == sorted(
        f"{path.stem}-{work}.png" for work in workloads.WORKS
    )
    assert "no GPU: benchmarking the CPU implementations" in stdout


def test_quick_run_measures_every_implementation(quick_result):
    _, data, _ = quick_result
    measured = {(r["work"], r["mode"], r["impl"]) for r in data["rows"] if r["median_ms"] and not r["error"]}
    for work in workloads.WORKS:
        for mode in workloads.MODES:
            for impl in workloads.implementations(work, "cpu"):
                if impl != "compile":  # a quick run does not compile
                    assert (work, mode, impl) in measured
    assert all(r["bandwidth_fraction"] for r in data["rows"] if r["floor_bytes"])
    assert all(r["floor_bytes"] for r in data["rows"])


def _fake_result(ours_ms: float, peer_ms: float) -> dict:
    rows = []
    for work in workloads.WORKS:
        for mode in workloads.MODES:
            for dtype in ("fp32", "bf16"):
                for impl, ms in (
                    ("triton", ours_ms),
                    ("kornia", peer_ms),
                    ("monodepth2", peer_ms),
                    ("compile", peer_ms),
                    ("homo_warping", peer_ms),
                ):
                    rows.append(
                        {"work": work, "mode": mode, "size": workloads.MAIN_SIZE, "shape": "s", "dtype": dtype,
                         "impl": impl, "median_ms": ms, "peak_mem_mb": ms, "floor_bytes": None,
                         "bandwidth_fraction": None, "error": None}
                    )  # fmt: skip
    return {"rows": rows}


def test_quick_run_counts_the_objective_kernels_traffic(quick_result):
    path, data, _ = quick_result
    counted = {(r["work"], r["impl"]) for r in data["rows"] if r["kernel_bytes"]}
    assert counted == {
        ("objective", "cuda"),
        ("reprojection", "cuda"),
        ("reprojection", "cuda-composed"),
        ("reprojection", "cuda-three_pass"),
    }
    assert "kernel traffic / floor" in path.with_suffix(".md").read_text()


def test_kernel_traffic_of_the_fused_and_the_composed_objective():
    # the fused forward never writes the warped images nor reads the identity images at every
    # scale; its one-pass backward never writes the warped images nor their gradient, where the
    # three-pass backward warps the sources again, which the composed ops do not
    size, f32 = workloads.SIZES["kitti"], torch.float32
    traffic = {
        impl: {m: workloads.kernel_bytes("reprojection", impl, size, f32, m) for m in workloads.MODES}
        for impl in ("triton", "triton-three_pass", "triton-composed")
    }
    fused, three, composed = traffic.values()
    backward = {impl: t["fwd+bwd"] - t["fwd"] for impl, t in traffic.items()}
    assert composed == {m: workloads.kernel_bytes("objective", "triton", size, f32, m) for m in workloads.MODES}
    assert fused["fwd"] == three["fwd"] < composed["fwd"]
    assert backward["triton"] < backward["triton-composed"] < backward["triton-three_pass"]
    assert 1.9 * fused["fwd+bwd"] < composed["fwd+bwd"]  # about half the composed ops' traffic, as designed
    for mode in workloads.MODES:
        assert fused[mode] > workloads.floor_bytes("reprojection", size, f32, mode)
        assert workloads.kernel_bytes("reprojection", "monodepth2", size, f32, mode) is None


def test_window_forward_is_a_gpu_variant():
    # timed on a GPU beside the default (tile) forward; on the CPU the twin runs the same code either way
    assert {"triton-window", "cuda-window"} <= set(workloads.implementations("reprojection", "cuda"))
    assert not any(impl.endswith("-window") for impl in workloads.implementations("reprojection", "cpu"))
    size, f32 = workloads.SIZES["kitti"], torch.float32
    for mode in workloads.MODES:
        window = workloads.kernel_bytes("reprojection", "triton-window", size, f32, mode)
        assert window == workloads.kernel_bytes("reprojection", "triton", size, f32, mode)
    x = workloads.make_inputs("reprojection", workloads.QUICK_SIZE, f32, "cpu", "fwd+bwd")
    grads = workloads.make_impl("reprojection", "torch-window", x, "fwd+bwd")()  # the variant's path, on the reference
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("work", ["photometric", "objective"])
def test_tile_backward_is_a_gpu_variant(work, monkeypatch):
    # the photometric op's tile backward, timed on a GPU beside its default; the CPU twin computes
    # each window once either way
    assert {"triton-tile", "cuda-tile"} <= set(workloads.implementations(work, "cuda"))
    assert not any(impl.endswith("-tile") for impl in workloads.implementations(work, "cpu"))
    size, f32 = workloads.SIZES["kitti"], torch.float32
    for mode in workloads.MODES:
        assert workloads.kernel_bytes(work, "cuda-tile", size, f32, mode) == workloads.kernel_bytes(
            work, "cuda", size, f32, mode
        )
    seen = []
    original = fastdepth.photometric.backward_kernel
    monkeypatch.setattr(fastdepth.photometric, "backward_kernel", lambda name: seen.append(name) or original(name))
    x = workloads.make_inputs(work, workloads.QUICK_SIZE, f32, "cpu", "fwd+bwd")
    grads = workloads.make_impl(work, "torch-tile", x, "fwd+bwd")()  # the variant's path, on the reference
    assert seen == ["tile"] and all(torch.isfinite(g).all() for g in grads)


def test_targets_met_and_not_met():
    fast = {t["target"]: t["met"] for t in report.targets(_fake_result(1.0, 20.0))}
    slow = {t["target"]: t["met"] for t in report.targets(_fake_result(1.0, 1.2))}
    assert fast["warp fwd+bwd speed-up over kornia"] is True
    assert slow["warp fwd+bwd speed-up over kornia"] is False
    for target in ("objective peak memory / monodepth2", "cost_volume peak memory / homo_warping"):
        assert fast[target] is True and slow[target] is False, target
    assert fast["cost_volume fwd+bwd speed-up over homo_warping"] is True
    assert fast["triton warp fwd: fraction of copy bandwidth at the largest size"] is None  # not measured


def test_the_fused_objective_is_held_to_the_composed_ops_of_its_backend():
    def result(fused_ms):
        rows = [
            {"work": "reprojection", "mode": "fwd+bwd", "size": workloads.MAIN_SIZE, "shape": "s", "dtype": "fp32",
             "impl": impl, "median_ms": ms, "peak_mem_mb": ms, "floor_bytes": None, "bandwidth_fraction": None,
             "error": None}
            for impl, ms in (("triton", fused_ms), ("triton-composed", 10.0))
        ]  # fmt: skip
        return {"rows": rows}

    name = "reprojection fwd+bwd speed-up over the composed fused ops"
    fast, slow = ({t["target"]: t for t in report.targets(result(ms))}[name] for ms in (4.0, 6.0))
    assert (fast["value"], fast["met"]) == (2.5, True)
    assert (slow["value"], slow["met"]) == (pytest.approx(10 / 6), False)


def test_cpu_timing_is_the_median_of_runs_in_turns(monkeypatch):
    # a fake clock that each call moves on by its scripted time: a warm-up call, then 7 rounds
    clock = [0.0]
    scripts = {"cuda": iter([99, 5, 1, 9, 3, 7, 2, 8]), "torch": iter([99, 50, 10, 90, 30, 70, 20, 80])}
    order = []

    def build(job, device):
        def call():
            order.append(job[-1])
            clock[0] += next(scripts[job[-1]], 0) * 1e-3

        return call

    monkeypatch.setattr(run, "_build", build)
    monkeypatch.setattr(run, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    case = [("warp", "fwd", "quick", QUICK_SIZE, "fp32", impl) for impl in ("cuda", "torch")]
    rows = run.measure_case(case, "cpu", quick=False, bandwidth=1e10)
    assert order[: 2 * 8] == ["cuda", "torch"] * 8  # in turns
    assert [row["median_ms"] for row in rows] == pytest.approx([5.0, 50.0])
    for row in rows:
        assert row["bandwidth_fraction"] == pytest.approx(row["floor_bytes"] / (row["median_ms"] * 1e-3) / 1e10)


def test_cpu_results_are_held_to_the_cpu_twins_targets():
    def result(twin_ms):
        rows = [
            {"work": work, "mode": "fwd+bwd", "size": "kitti_b2", "shape": shape, "dtype": "fp32", "impl": impl,
             "median_ms": ms, "peak_mem_mb": ms, "floor_bytes": None, "bandwidth_fraction": None, "error": None}
            for work, shape in (("reprojection", "B=2 3x192x640"), ("cost_volume", "B=2 C=64 D=32 48x160"))
            for impl, ms in (("cuda", twin_ms), ("cuda-composed", 15.0), ("monodepth2", 30.0), ("torch", 20.0))
        ]  # fmt: skip
        return {"meta": {"device_type": "cpu"}, "rows": rows}

    fast = {t["target"]: t["met"] for t in report.targets(result(9.0))}
    slow = {t["target"]: t["met"] for t in report.targets(result(12.0))}
    fused = "reprojection fwd+bwd at B=2 3x192x640: CPU twin speed-up over "
    assert fast[fused + "cuda-composed"] is True and slow[fused + "cuda-composed"] is False  # >= 1.5
    assert fast[fused + "monodepth2"] is True and slow[fused + "monodepth2"] is False  # >= 3
    assert fast[fused + "the eager reference"] is True and slow[fused + "the eager reference"] is True
    volume = "cost_volume fwd+bwd at B=2 C=64 D=32 48x160: CPU twin "
    assert fast[volume + "speed-up over torch"] is True and slow[volume + "speed-up over torch"] is False  # >= 2
    assert fast[volume + "peak memory / torch"] is False  # 9 / 20 > 1/8
    assert volume + "speed-up over the eager reference" not in fast  # stated already, as over torch
    assert "reprojection fwd+bwd at B=12 3x192x640: CPU twin speed-up over monodepth2" not in fast  # B=2 measured
    assert not any("copy bandwidth" in t["target"] for t in report.targets(result(9.0)))  # a GPU target


def test_readme_section_is_generated_from_results(tmp_path, quick_result):
    path, data, _ = quick_result
    data["meta"]["quick"] = False
    (tmp_path / "r.json").write_text(json.dumps(data))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\nrest\n")
    assert report.update_readme(readme, tmp_path)
    text = readme.read_text()
    assert "old" not in text and data["meta"]["device"] in text and text.endswith(f"{report.END}\nrest\n")


def test_readme_shows_every_work_from_its_newest_result(tmp_path, quick_result):
    # an older run of every work and a newer run of one: both tables, each work once
    _, data, _ = quick_result
    data["meta"]["quick"] = False
    works = sorted({r["work"] for r in data["rows"]})
    newer = json.loads(json.dumps(data))
    newer["meta"]["date"] = "9" + data["meta"]["date"][1:]
    newer["rows"] = [r for r in data["rows"] if r["work"] == works[0]]
    (tmp_path / "old.json").write_text(json.dumps(data))
    (tmp_path / "new.json").write_text(json.dumps(newer))
    readme = tmp_path / "README.md"
    readme.write_text(f"{report.BEGIN}\n{report.END}\n")
    assert report.update_readme(readme, tmp_path)
    text = readme.read_text()
    assert "results/old.json" in text and "results/new.json" in text
    for work in works:
        assert text.count(f"| {work} fwd ") == 1, work
    assert text.index(f"| {works[0]} fwd ") > text.index("results/new.json")


def test_readme_keeps_cpu_tables_beside_a_gpu_result_and_shows_the_gpu_first(tmp_path, quick_result):
    # a GPU run of the same works and sizes measures something else: it takes over no CPU table
    _, data, _ = quick_result
    data["meta"]["quick"] = False
    gpu = json.loads(json.dumps(data))
    gpu["meta"].update(device_type="cuda", device="NVIDIA H200", date="9" + data["meta"]["date"][1:])
    (tmp_path / "cpu.json").write_text(json.dumps(data))
    (tmp_path / "gpu.json").write_text(json.dumps(gpu))
    assert report.newest_results(tmp_path) == [tmp_path / "gpu.json", tmp_path / "cpu.json"]
    readme = tmp_path / "README.md"
    readme.write_text(f"{report.BEGIN}\n{report.END}\n")
    assert report.update_readme(readme, tmp_path)
    text = readme.read_text()
    assert text.index("results/gpu.json") < text.index("results/cpu.json")
    assert text.count("| warp fwd ") == 2 and "No GPU measurement" not in text


def test_results_show_the_shape_each_work_runs_at(tmp_path, quick_result):
    # the cost volume runs on features at a quarter of the size's resolution, not on its images
    _, data, _ = quick_result
    shapes = {r["work"]: r["shape"] for r in data["rows"]}
    assert shapes["warp"] == "B=1 3x24x80" and shapes["cost_volume"] == "B=1 C=64 D=32 6x20"
    assert shapes["depth_loss"] == "B=1 1x24x80"
    assert "| B=1 C=64 D=32 6x20 |" in report.markdown(data)
    data["meta"]["quick"] = False
    (tmp_path / "r.json").write_text(json.dumps(data))
    section = report.readme_section(tmp_path / "r.json")
    assert "B=1 3x24x80, fp32" in section and "| cost_volume fwd at B=1 C=64 D=32 6x20 |" in section


def test_committed_results_are_runner_output():
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):
        data = json.loads(path.read_text())
        assert {"meta", "rows", "targets"} <= set(data), path
        assert data["meta"]["git_revision"] and data["meta"]["device"], path
        assert path.with_suffix(".md").read_text() == report.markdown(data), f"{path.name}: .md edited by hand?"


def test_gpu_campaign_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_campaign.sh")]).returncode == 0


def test_cpu_peak_memory_follows_the_live_memory():
    from fastdepth.benchmarks.run import cpu_peak_memory_mb

    peak = cpu_peak_memory_mb(lambda: torch.ones(64 * 2**20 // 4))
    if peak is None:
        pytest.skip("needs Linux's /proc/self/clear_refs and glibc")
    assert 60 <= peak <= 80, peak  # a 64 MiB tensor, freed at the end


def test_cpu_cases_time_every_implementation_in_turns(monkeypatch):
    from fastdepth.benchmarks import run as runner

    jobs = runner.plan("cpu", ["small"], ["fp32"], ["warp"], quick=False, modes=["fwd"])
    (case,) = runner.cases(jobs, "cpu")  # torch.compile, planned last, joins its case
    assert [job[5] for job in case] == [job[5] for job in jobs] and case[-1][5] == "compile"
    calls = []

    def build(job, device):
        if job[5] == "torch":
            raise RuntimeError("cannot run here")
        return lambda: calls.append(job[5])

    monkeypatch.setattr(runner, "_build", build)
    monkeypatch.setattr(runner, "peak_memory_mb", lambda fn, device: 1.0)
    rows = runner.measure_case(case, "cpu", quick=False, bandwidth=1e9)
    runnable = [job[5] for job in case if job[5] != "torch"]
    assert calls == runnable * (1 + runner.CPU_ROUNDS)  # a warm-up round, then the timed rounds
    for row in rows:
        if row["impl"] == "torch":
            assert row["error"] == "RuntimeError: cannot run here" and row["median_ms"] is None
        else:
            assert row["error"] is None and row["median_ms"] is not None and row["peak_mem_mb"] == 1.0


def test_host_time_per_call_is_measured_on_a_gpu_only(monkeypatch):
    import time

    from fastdepth.benchmarks import run as runner

    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    assert runner.host_ms(lambda: time.sleep(0.002), "cuda") >= 2.0
    assert runner.host_ms(lambda: None, "cpu") is None
    row = {"work": "warp", "mode": "fwd", "size": "kitti", "shape": "s", "dtype": "fp32", "impl": "triton",
           "median_ms": 0.05, "peak_mem_mb": 1.0, "floor_bytes": None, "bandwidth_fraction": None,
           "host_ms": 0.125, "error": None}  # fmt: skip
    meta = json.loads(next((ROOT / "benchmarks" / "results").glob("*.json")).read_text())["meta"]
    table = report.markdown({"meta": meta, "rows": [row], "targets": []})
    assert "| warp | fwd | s | fp32 | triton | 1 | – | 0.125 | – |" in table


def test_quick_run_profiles_the_fused_calls_after_measuring_them(quick_result):
    path, data, _ = quick_result
    from fastdepth.benchmarks.run import profiled

    rows = [r for r in data["rows"] if profiled(r)]
    assert {r["impl"] for r in rows} >= {"cuda", "cuda-composed", "cuda-deterministic"}
    assert all(r["breakdown"] is None for r in data["rows"] if not profiled(r))
    for r in rows:
        b = r["breakdown"]
        assert isinstance(b, dict), (r["work"], r["impl"], b)
        # which ops make the 8 slowest depends on the machine at these tiny sizes (the depth losses'
        # launches fell behind autograd's own ops on an AMD EPYC): the fused launches are asserted
        # on the reprojection row below, whose 4 forwards outweigh the rest
        assert b["kernels"] and all(k["ms"] > 0 and k["calls"] >= 1 for k in b["kernels"]), (r["work"], b)
        assert b["total_ms"] == pytest.approx(sum(k["ms"] for k in b["kernels"]) + b["other_ms"])
    (reprojection,) = [r for r in rows if (r["work"], r["impl"]) == ("reprojection", "cuda")]
    ops = {k["name"]: k["calls"] for k in reprojection["breakdown"]["kernels"]}
    assert ops["fastdepth_ext::reprojection_forward"] == 4  # one launch per scale
    assert "where the time goes" in path.with_suffix(".md").read_text()


def test_kernel_breakdown_merges_cuda_kernels_by_their_short_names():
    from fastdepth.benchmarks.breakdown import short_name, summarize

    mangled = "void fastdepth::(anonymous namespace)::warp_bwd_kernel<float, true>(float const*, warp::Shape)"
    assert short_name(mangled) == "fastdepth::warp_bwd_kernel<float, true>"
    assert short_name("_reprojection_fwd_kernel") == "_reprojection_fwd_kernel"
    assert len(short_name("void at::native::elementwise_kernel<" + "x" * 200 + ">(int)")) == 80
    entries = [(mangled, 2, 300.0), (mangled.replace("float const*", "half const*"), 1, 100.0)]
    entries += [(f"k{i}", 1, float(i)) for i in range(1, 11)]
    b = summarize(entries, top=3)
    assert b["kernels"][0] == {"name": "fastdepth::warp_bwd_kernel<float, true>", "calls": 3, "ms": 0.4}
    assert [k["name"] for k in b["kernels"][1:]] == ["k10", "k9"]
    assert b["other_ms"] == pytest.approx(sum(range(1, 9)) / 1e3)
    assert b["total_ms"] == pytest.approx(0.4 + sum(range(1, 11)) / 1e3)


def test_a_failing_profiler_costs_no_measurement(monkeypatch, tmp_path):
    from fastdepth.benchmarks import run as runner

    jobs = runner.plan("cpu", ["small"], ["fp32"], ["warp"], quick=False, modes=["fwd+bwd"])
    jobs = [job for job in jobs if job[5] in ("torch", "cuda")]
    monkeypatch.setattr(runner, "_build", lambda job, device: lambda: None)
    monkeypatch.setattr(runner, "peak_memory_mb", lambda fn, device: 1.0)

    def fail(fn, device):
        raise RuntimeError("CUPTI unavailable")

    monkeypatch.setattr(runner, "kernel_breakdown", fail)
    rows = runner.measure_case(jobs, "cpu", quick=True, bandwidth=1e9)
    meta = json.loads(next((ROOT / "benchmarks" / "results").glob("*.json")).read_text())["meta"]
    result, path = {"meta": meta, "rows": rows}, tmp_path / "r.json"
    runner.add_breakdowns(result, jobs, "cpu", path)
    by_impl = {r["impl"]: r for r in rows}
    assert by_impl["cuda"]["breakdown"] == "RuntimeError: CUPTI unavailable" and by_impl["cuda"]["median_ms"]
    assert by_impl["torch"]["breakdown"] is None
    assert "profiler failed: RuntimeError: CUPTI unavailable" in path.with_suffix(".md").read_text()


def test_kernel_breakdown_on_a_gpu_sums_the_device_time_of_cuda_kernels(monkeypatch):
    import contextlib
    from types import SimpleNamespace

    from fastdepth.benchmarks import breakdown
    from torch.autograd import DeviceType

    def event(key, device_type, cpu_us, device_us):
        return SimpleNamespace(key=key, count=1, device_type=device_type, self_cpu_time_total=cpu_us,
                               self_device_time_total=device_us)  # fmt: skip

    events = [event("cudaLaunchKernel", DeviceType.CPU, 50.0, 0.0), event("_warp_fwd_kernel", DeviceType.CUDA, 0, 20.0)]
    events += [event("Memset (Device)", DeviceType.CUDA, 0, 2.0), event("idle", DeviceType.CUDA, 0, 0.0)]
    activities_seen = []

    @contextlib.contextmanager
    def fake_profile(activities):
        activities_seen.extend(activities)
        yield SimpleNamespace(key_averages=lambda: events)

    monkeypatch.setattr(breakdown, "profile", fake_profile)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    b = breakdown.kernel_breakdown(lambda: None, "cuda")
    assert [(k["name"], k["ms"]) for k in b["kernels"]] == [("_warp_fwd_kernel", 0.02), ("Memset", 0.002)]
    assert breakdown.ProfilerActivity.CUDA in activities_seen
    events[1:] = []
    with pytest.raises(RuntimeError, match="no CUDA kernel"):
        breakdown.kernel_breakdown(lambda: None, "cuda")


def test_kernel_breakdowns_come_before_the_torch_compile_cases_on_a_gpu(monkeypatch, tmp_path):
    from fastdepth.benchmarks import run as runner

    order = []

    def measure(case, device, quick, bandwidth):
        order.extend(job[5] for job in case)
        return [dict(runner._row(job), median_ms=1.0) for job in case]

    monkeypatch.setattr(runner, "cases", lambda jobs, device: [[job] for job in jobs])  # a GPU's cases
    monkeypatch.setattr(runner, "measure_case", measure)
    monkeypatch.setattr(runner, "copy_bandwidth", lambda device, quick: 1e9)
    monkeypatch.setattr(runner, "add_breakdowns", lambda result, jobs, device, path: order.append("profiling"))
    runner.run("cpu", ["small"], ["fp32"], ["warp"], False, tmp_path, modes=["fwd+bwd"], charts=False)
    assert order.index("profiling") == order.index("compile") - 1 and order[-1] == "compile"
    order.clear()
    runner.run("cpu", ["small"], ["fp32"], ["warp"], True, tmp_path, modes=["fwd+bwd"], charts=False)
    assert order[-1] == "profiling" and "compile" not in order  # a quick run does not compile


def test_the_warp_works_sample_inside_the_source_frames():
    """The warp and objective works warp the synthetic world with its true depth and poses: the
    samples land in the source frame, as a training step's do (random disparities sent 3/4 of them
    off the image, onto its border)."""
    x = warp.inputs(QUICK_SIZE, torch.float32, "cpu", False)
    _, valid = fastdepth.warp(x["image"], x["depth"], x["pose"], x["K"], return_mask=True, backend="torch")
    assert valid.float().mean() > 0.9
    x = objective.inputs(QUICK_SIZE, torch.float32, "cpu", False)
    for depth in full_resolution_depths(x["disps"], QUICK_SIZE.height, QUICK_SIZE.width):
        _, valid = fastdepth.warp(x["sources"], depth, x["poses"], x["K"], return_mask=True, backend="torch")
        assert valid.float().mean() > 0.85


def test_host_profile_lists_where_each_fused_calls_host_time_goes(capsys):
    # the campaign's last step; on the CPU the twin's (the Triton interpreter is no fused backend there)
    assert host_profile.main(["--device", "cpu", "--quick", "--calls", "2", "--rows", "4", "--works", "warp"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("== warp cuda B=1 3x24x80 fwd+bwd fp32: host ") and "ms / call (unprofiled)" in out
    listing = out.split("\n")[2:6]
    assert len(listing) == 4 and all(len(line.split()) >= 4 for line in listing), out
    assert "fastdepth/warp.py" in out or "fastdepth_ext" in out
    with pytest.raises(SystemExit):
        host_profile.main(["--works", "warps"])
