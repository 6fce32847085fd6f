"""The ``fastdepth`` command line."""

import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastdepth", *args], capture_output=True, text=True, timeout=600)


def test_info_reports_versions_backends_and_passing_self_checks():
    result = run_cli("info")
    assert result.returncode == 0, result.stdout + result.stderr
    for expected in ("torch", "triton", "backends:", "self-check", "warp", "min_reproj"):
        assert expected in result.stdout
    checks = [line for line in result.stdout.splitlines() if line.strip().startswith(("warp", "min_reproj"))]
    assert len(checks) >= 4 and all(line.endswith("pass") for line in checks)


def test_unknown_command_fails():
    assert run_cli("frobnicate").returncode != 0
