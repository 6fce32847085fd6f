"""The GPU campaign: its CPU rehearsal runs every line of benchmarks/gpu_campaign.sh and respects the
device's file limits; the pieces that only matter on a GPU are checked here without one."""

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from conftest import FUSED, TWIN
from fastdepth.benchmarks import kernel_profile, workloads
from fastdepth.benchmarks import run as runner
from helpers import subprocess_env

from fastdepth import checks, registry, validation
from fastdepth.conventions import GRID_Y_LIMIT, check_grid
from fastdepth.warp import check_camera

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("env", "build", "checks", "bench", "sanitizer", "host", "kernels")


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("campaign")
    env = subprocess_env(PYTHON=sys.executable)
    env.pop("FASTDEPTH_BUILD_EXTENSION", None)
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_campaign.sh"), str(out), "--rehearse"],
        capture_output=True,
        text=True,
        env=env,
        timeout=2400,
    )
    return out, result


def test_rehearsal_runs_every_step(rehearsal):
    out, result = rehearsal
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = (out / "summary.txt").read_text().splitlines()
    assert [line.split()[2].rstrip(":") for line in summary] == list(STEPS)
    assert all(": ok in " in line for line in summary), summary
    with tarfile.open(out / "logs.tar.gz") as logs:
        names = sorted(Path(n).name for n in logs.getnames() if n.endswith(".log"))
    assert names == [f"{i}-{step}.log" for i, step in enumerate(STEPS, 1)]


def test_steps_pass_the_time_they_leave_on(tmp_path):
    # a stub Python that returns at once: every step finishes in about 0 s of its limit
    stub = tmp_path / "python"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_campaign.sh"), str(tmp_path / "out"), "--rehearse"],
        capture_output=True,
        text=True,
        env=subprocess_env(PYTHON=str(stub)),
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    limits = [int(n) for n in re.findall(r"== step \d \w+ \(limit (\d+) s\)", result.stdout)]
    nominal = (120, 600, 600, 600, 300, 300, 300)  # the rehearsal's own limits
    assert len(limits) == len(nominal) and limits[0] == nominal[0]
    for i in range(1, len(nominal)):
        assert limits[i - 1] + nominal[i] - 2 <= limits[i] <= limits[i - 1] + nominal[i], limits


def test_rehearsal_fits_the_device_file_limits(rehearsal):
    out, _ = rehearsal
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8, files
    assert all(len(p.relative_to(out).parts) <= 3 for p in files), files  # at most 2 folders down


def test_rehearsal_checks_and_bench_results(rehearsal):
    out, _ = rehearsal
    rows = json.loads((out / "checks.json").read_text())
    fused = {backend for backend, device in FUSED if device == "cpu"}  # those usable here: all, in CI
    assert {(r["op"], r["backend"]) for r in rows} >= {(op, b) for op in ("warp", "photometric") for b in fused}
    assert all(r["passed"] for r in rows), [r for r in rows if not r["passed"]]
    assert all(r["deterministic"] for r in rows if r["op"] == "warp")
    (result,) = (out / "results").glob("*.json")
    data = json.loads(result.read_text())
    assert {r["mode"] for r in data["rows"]} == {"fwd+bwd"}
    assert all(r["median_ms"] for r in data["rows"]), [r for r in data["rows"] if r["error"]]
    assert result.with_suffix(".md").exists()


@pytest.mark.skipif(not TWIN, reason="needs the CPU twin")
def test_campaign_check_fails_on_a_wrong_kernel(monkeypatch):
    # a check that cannot fail is no check: a deliberately wrong forward must be reported
    import fastdepth

    original = fastdepth.warp
    monkeypatch.setattr(fastdepth, "warp", lambda *a, **k: _shifted(original(*a, **k), k.get("backend")))
    result = checks.run_one("warp", "kornia", "cuda", "cpu", torch.float32, quick=True)
    assert not result.passed and result.forward_error > result.forward_tol


def test_checks_default_to_the_backends_that_run(monkeypatch, capsys):
    from fastdepth import backends

    monkeypatch.setattr(backends, "triton_usable_on", lambda device: "no interpreter here")
    chosen = checks.usable_backends(torch.device("cpu"))
    assert "triton" not in chosen and ("cuda" in chosen) == TWIN
    assert "skipped backend triton: no interpreter here" in capsys.readouterr().out


def _shifted(output, backend):
    if backend == "torch":
        return output
    if isinstance(output, tuple):
        return output[0] + 1e-3, output[1]
    return output + 1e-3


def test_benchmark_timing_is_the_median(monkeypatch):
    import triton.testing

    seen = {}
    monkeypatch.setattr(triton.testing, "do_bench", lambda fn, **kw: seen.update(kw) or 1.0)
    runner.time_ms(lambda: None, "cuda", quick=False)
    assert seen["return_mode"] == "median"


def test_benchmark_plan_puts_torch_compile_last_in_fp32_only():
    jobs = runner.plan("cuda", ["kitti"], ["fp32", "bf16"], list(workloads.WORKS), False, ("fwd+bwd",))
    impls = [job[5] for job in jobs]
    first_compile = impls.index("compile")
    assert all(impl == "compile" for impl in impls[first_compile:])
    assert {job[4] for job in jobs if job[5] == "compile"} == {"fp32"}
    assert {job[1] for job in jobs} == {"fwd+bwd"}
    dtypes = [job[4] for job in jobs[:first_compile]]  # every work in fp32 before any in bf16
    assert dtypes == sorted(dtypes, key=["fp32", "bf16"].index)
    assert {job[0] for job in jobs if job[4] == "fp32"} == set(workloads.WORKS)


def test_git_revision_from_the_environment(monkeypatch):
    monkeypatch.setenv("FASTDEPTH_GIT_REVISION", "abc1234-dirty")
    assert runner.git_revision() == "abc1234-dirty"


def test_value_checks_on_a_gpu_do_not_synchronise(monkeypatch):
    # on CUDA tensors the checks are device-side asserts: no read-back; shown here with CPU tensors
    queued = []
    monkeypatch.setattr(torch, "_assert_async", lambda ok, message: queued.append((bool(ok), message)))
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: pytest.fail("value check read back"))
    validation.check_values({"must hold": torch.tensor(False)}, torch.device("cuda"))
    assert queued == [(False, "must hold")]
    monkeypatch.setenv("FASTDEPTH_CHECK_VALUES", "sync")
    assert validation.value_check_mode(torch.device("cuda")) == "raise"


def test_camera_checks_on_a_gpu_queue_one_assertion(monkeypatch):
    queued = []
    monkeypatch.setattr(torch, "_assert_async", lambda ok, message: queued.append((bool(ok), message)))
    monkeypatch.setattr(torch.Tensor, "item", lambda self: pytest.fail("value check read back"))
    for fy, holds in ((5.0, True), (0.0, False), (float("nan"), False)):
        queued.clear()
        K = torch.tensor([[[5.0, 0, 2], [0, fy, 2], [0, 0, 1]]])
        check_camera(torch.eye(4)[None], K, torch.device("cuda"))
        assert len(queued) == 1 and queued[0][0] == holds
    assert "fx and fy" in queued[0][1] and "camera_matrix must be finite" in queued[0][1]


def test_oversized_launch_grids_are_refused():
    check_grid("target", (10, GRID_Y_LIMIT, 7))
    with pytest.raises(ValueError, match=r"target is too large for one launch.*grid dimension 1"):
        check_grid("target", (10, GRID_Y_LIMIT + 1))
    from fastdepth.kernels import photometric

    with pytest.raises(ValueError, match=r"target is too large .* grid dimension 2"):
        photometric._grid(GRID_Y_LIMIT + 1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"\(C - 1\) \* H \* W = .* must be below 2\*\*31"):
        photometric._grid(1, 3, 32768, 32768)


STUB_SANITIZER = """#!/usr/bin/env bash
# records each run's options, fails the tool named by $STUB_FAIL, then runs the command
if [ "$1" = --help ]; then [ -n "${STUB_FILTER:-}" ] && echo "  --kernel-name arg"; exit 0; fi
options=()
while [ "$1" != --target-processes ]; do options+=("$1"); shift; done
shift 2
echo "${options[*]} | ${*: -2}" >>"$STUB_LOG"
"$@" >/dev/null || exit 1
[ "${options[1]}" = "${STUB_FAIL:-}" ] && exit 1
exit 0
"""


@pytest.mark.skipif(not TWIN, reason="needs the CPU twin")
@pytest.mark.parametrize("kernel_filter", [True, False], ids=["filtered", "unfiltered"])
def test_sanitizer_runs_cover_every_kernel(tmp_path, kernel_filter):
    # compute-sanitizer is stubbed: the runs it is asked for, their filters and the cases they run
    stub, log = tmp_path / "compute-sanitizer", tmp_path / "runs.log"
    stub.write_text(STUB_SANITIZER)
    stub.chmod(0o755)
    env = subprocess_env(COMPUTE_SANITIZER=str(stub), STUB_LOG=str(log), STUB_FILTER="1" if kernel_filter else "")
    args = ["--device", "cpu", "--quick", "--backends", "cuda", "--sanitizer"]
    script = str(ROOT / "benchmarks" / "sanitize.sh")
    result = subprocess.run(["bash", script, sys.executable, *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = log.read_text().splitlines()
    proj_ops = ",".join(name for name, op in registry.OPS.items() if "proj" in op.passes)
    if kernel_filter:
        assert runs == [
            "--tool memcheck --kernel-name kns=wd_kernel --error-exitcode 1 | cuda --sanitizer",
            "--tool racecheck --kernel-name kns=wd_kernel --error-exitcode 1 | cuda --sanitizer",
            f"--tool memcheck --kernel-name kns=proj_kernel --error-exitcode 1 | --ops {proj_ops}",
        ]
    else:
        assert runs == [f"--tool {tool} --error-exitcode 1 | cuda --sanitizer" for tool in ("memcheck", "racecheck")]
    # every kernel of every op is named so that one of the filters takes it
    assert all(k.endswith(("wd_kernel", "proj_kernel")) for op in registry.OPS.values() for k in op.kernels)
    if kernel_filter:  # one failed run fails the step
        env["STUB_FAIL"] = "racecheck"
        failed = subprocess.run(["bash", script, sys.executable, *args], capture_output=True, text=True, env=env)
        assert failed.returncode == 1


def test_kernel_profile_filter_takes_the_objective_kernels_only():
    # the campaign's ncu step profiles 4 launches: each backend's forward and backward of the
    # fused objective, and no kernel of the other ops (the reference computes the identity maps)
    pattern = re.compile(kernel_profile.KERNELS)
    taken = [k for op in registry.OPS.values() for k in op.kernels if pattern.search(k)]
    assert sorted(taken) == sorted(registry.OPS["reprojection"].kernels)
