"""The CPU twin's A/B runner (benchmarks/twin_ab.py): two revisions' builds in one process, each
running its own code, and the committed A/B results as the runner wrote them."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from fastdepth.benchmarks import twin_ab

from fastdepth.tolerances import tolerance

ROOT = Path(__file__).resolve().parent.parent
#: the last revision whose SSIM means divided by 9 (the next multiplies by 1/9): its outputs differ
#: from any later one's in the last bits
DIVIDING = "cb5c2fa"


def _has_history() -> bool:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return False
    return subprocess.run(["git", "cat-file", "-e", f"{DIVIDING}^{{commit}}"], cwd=ROOT).returncode == 0


@pytest.mark.skipif(not _has_history(), reason="needs the git history of the repository")
def test_each_side_runs_its_own_revision(tmp_path):
    assert twin_ab.main(["--base", DIVIDING, "--head", "HEAD", "--rounds", "1", "--quick", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*.json")
    data = json.loads(path.read_text())
    assert set(data["summary"]["base"]) == {*twin_ab.KERNELS, "fused", "composed"}
    assert all(t > 0 for side in data["summary"].values() for row in side.values() for t in row.values())
    # the same objective, rounded differently (within the twin's float32 bound, SSIM's cancellation
    # amplifying the last bits): had one build's kernels run for both, nothing would differ
    differences = data["differences"]
    bound = tolerance("reprojection", torch.float32, "cuda", "cpu").forward
    assert 0 < differences["loss"] <= bound and differences["grad_depth"] > 0, differences
    assert path.with_suffix(".md").read_text() == twin_ab.markdown(data)


def test_committed_ab_results_are_runner_output():
    for path in (ROOT / "benchmarks" / "results" / "twin-ab").glob("*.json"):
        data = json.loads(path.read_text())
        assert data["meta"]["base"] and data["meta"]["head"] and data["meta"]["device"], path
        assert path.with_suffix(".md").read_text() == twin_ab.markdown(data), f"{path.name}: .md edited by hand?"
