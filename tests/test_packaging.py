"""fastdepth installed from a wheel (``pip install .``, ``pip install git+...``) works as the checkout
does: the wheel holds every module and every C++/CUDA source the extension builds from, and the
installed package imports and runs from outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TREE = ("pyproject.toml", "README.md", "LICENSE", "fastdepth", "kernels", "csrc", "benchmarks")
# where each source folder lands in the wheel (pyproject.toml's package-dir)
INSTALLED_AS = {
    "fastdepth": "fastdepth",
    "kernels": "fastdepth/kernels",
    "csrc": "fastdepth/csrc",
    "benchmarks": "fastdepth/benchmarks",
}
CSRC_SUFFIXES = {".cu", ".cuh", ".cpp", ".h"}


def _pip(*args: str, cwd: Path) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"pip {' '.join(args)}:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline from a copy of the checkout's tree (the build writes beside its sources)."""
    tmp = tmp_path_factory.mktemp("wheel")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "results")
    for name in TREE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp / "src" / name, ignore=ignore)
        else:
            (tmp / "src").mkdir(exist_ok=True)
            shutil.copy(source, tmp / "src" / name)
    offline = ("--no-deps", "--no-build-isolation", "--no-index", "-q")
    _pip("wheel", *offline, "-w", str(tmp / "dist"), str(tmp / "src"), cwd=tmp)
    (built,) = (tmp / "dist").glob("fastdepth-*.whl")
    return built


def expected_files() -> set[str]:
    """Every module of the checkout's packages and every extension source, as the wheel names them."""
    expected = set()
    for folder, installed in INSTALLED_AS.items():
        for path in (ROOT / folder).rglob("*"):
            relative = path.relative_to(ROOT / folder)
            if "results" in relative.parts or "__pycache__" in relative.parts or not path.is_file():
                continue
            if path.suffix == ".py" or (folder == "csrc" and path.suffix in CSRC_SUFFIXES):
                expected.add(f"{installed}/{relative.as_posix()}")
    return expected


def test_the_wheel_holds_every_module_and_extension_source(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "fastdepth/csrc/warp.cu" in expected_files()
    assert "fastdepth/py.typed" in names  # PEP 561: type checkers read fastdepth's annotations
    missing = sorted(expected_files() - names)
    assert not missing, f"pyproject.toml leaves these out of the wheel: {missing}"


INSTALLED_RUN = textwrap.dedent(
    """
    import importlib, pkgutil, re, sys
    from pathlib import Path

    import torch
    import fastdepth
    from fastdepth import _cuda
    from fastdepth.benchmarks import report, run

    site = Path(sys.argv[1]).resolve()
    assert Path(fastdepth.__file__).resolve().is_relative_to(site), fastdepth.__file__
    for module in pkgutil.walk_packages(fastdepth.__path__, "fastdepth."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    assert _cuda.CSRC.resolve().is_relative_to(site), _cuda.CSRC
    sources = _cuda.cpu_sources() + _cuda.cuda_sources()
    included = {h for f in sources for h in re.findall(r'#include "([^"]+)"', (_cuda.CSRC / f).read_text())}
    missing = [f for f in (*sources, *included) if not (_cuda.CSRC / f).exists()]
    assert not missing, missing
    assert not report.IN_CHECKOUT and not report.RESULTS_DIR.is_absolute(), report.RESULTS_DIR
    assert run.git_revision() == "installed fastdepth " + fastdepth.__version__, run.git_revision()
    try:
        report.main(["--readme"])
        raise AssertionError("report --readme rewrote a README outside a checkout")
    except SystemExit as refused:
        assert refused.code == 2
    image, depth = torch.rand(1, 3, 8, 10), torch.full((1, 1, 8, 10), 2.0)
    warped = fastdepth.warp_frame_depth(image, depth, torch.eye(4)[None], torch.eye(3)[None])
    torch.testing.assert_close(warped, image)
    print("installed fastdepth ok")
    """
)


def test_installed_fastdepth_imports_and_runs_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    _pip("install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel), cwd=tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("FASTDEPTH_GIT_REVISION", "FASTDEPTH_BUILD_EXTENSION")}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", INSTALLED_RUN, str(site)], cwd=work, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "installed fastdepth ok" in result.stdout
