"""The ``fastdepth`` command line."""

import subprocess
import sys

from conftest import FUSED
from helpers import subprocess_env


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fastdepth", *args], capture_output=True, text=True, timeout=600, env=subprocess_env()
    )


def test_info_reports_versions_backends_and_passing_self_checks():
    # as a user runs it: without TRITON_INTERPRET in the environment (info sets it itself on a
    # machine without a GPU, before any Triton import)
    env = subprocess_env()
    env.pop("TRITON_INTERPRET", None)
    result = subprocess.run(
        [sys.executable, "-m", "fastdepth", "info"], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for expected in ("torch", "triton", "backends:", "self-check", "warp", "photometric"):
        assert expected in result.stdout
    checks = [line for line in result.stdout.splitlines() if line.strip().startswith(("warp", "photometric"))]
    fused = {backend for backend, _ in FUSED}  # each checks the warp and the photometric loss
    assert len(checks) >= 2 * len(fused) >= 2 and all(line.endswith("pass") for line in checks)


def test_unknown_command_fails():
    assert run_cli("frobnicate").returncode != 0


def test_info_and_bench_work_without_torchvision(tmp_path):
    # only training needs torchvision (the "train" extra); a blocked import stands for its absence
    code = (
        "import sys; sys.modules['torchvision'] = None\n"
        "from fastdepth.cli import main\n"
        "assert main(['bench', '--quick', '--device', 'cpu', '--works', 'warp', '--modes', 'fwd', '--no-charts', "
        f"'--out', {str(tmp_path)!r}]) == 0\n"
        "assert main(['train', '--steps', '0']) == 2\n"
        "import fastdepth.selfcheck  # fastdepth info\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fastdepth train needs torchvision" in result.stderr
    assert list(tmp_path.glob("*.json"))
