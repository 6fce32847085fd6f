"""The training loop on the CPU: learning, exact resume, background data loading, DDP with gloo, the CLI
(--steps 0, eval --json)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import subprocess_env

from fastdepth.train.loop import TrainConfig, train
from fastdepth.train.metrics import METRIC_NAMES

TINY = dict(height=64, width=64, batch_size=2, eval_images=2, checkpoint_every=1000, device="cpu")
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def test_short_run_lowers_loss_and_abs_rel(tmp_path):
    # measured on the development CPU: loss 0.065 -> 0.034, abs rel 0.331 -> 0.324 after 60 steps
    cfg = TrainConfig(
        steps=60, height=64, width=128, eval_images=8, out=str(tmp_path), checkpoint_every=1000, device="cpu"
    )
    summary = train(cfg, progress=False)
    losses = summary["losses"]
    assert sum(losses[-10:]) < sum(losses[:10])
    assert summary["metrics_after"]["abs_rel"] < summary["metrics_before"]["abs_rel"]
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "eval.png").is_file()
    assert summary["images_per_s"] > 0
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*")) or not HAS_TENSORBOARD


def test_resume_continues_the_same_run(tmp_path):
    whole = train(TrainConfig(steps=4, out=str(tmp_path / "whole"), **TINY), progress=False)["losses"]
    train(TrainConfig(steps=2, out=str(tmp_path / "split"), **TINY), progress=False)
    resumed = train(TrainConfig(steps=4, out=str(tmp_path / "split"), resume=True, **TINY), progress=False)["losses"]
    assert len(resumed) == 4
    assert resumed[:2] == pytest.approx(whole[:2], rel=1e-6)
    assert resumed[2:] == pytest.approx(whole[2:], rel=1e-5)


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(TrainConfig(steps=1, out=str(tmp_path), resume=True, **TINY), progress=False)


def cli(*args, timeout=600):
    command = [sys.executable, "-m", "fastdepth", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=subprocess_env())


def test_steps_zero_then_eval_json(tmp_path):
    result = cli(
        "train", "--steps", "0", "--height", "64", "--width", "64", "--eval-images", "2", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "checkpoint.pt").is_file()
    assert "before" in result.stdout and "after" in result.stdout
    result = cli("eval", "--checkpoint", str(tmp_path), "--device", "cpu", "--images", "2", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    (line,) = [text for text in result.stdout.splitlines() if text.startswith("{")]
    metrics = json.loads(line)
    assert set(METRIC_NAMES) | {"silog", "step"} <= set(metrics) and metrics["step"] == 0
    assert (tmp_path / "eval.png").is_file()


def test_eval_reports_a_missing_checkpoint(tmp_path):
    result = cli("eval", "--checkpoint", str(tmp_path / "none"))
    assert result.returncode != 0 and "no checkpoint at" in result.stderr


def test_ddp_two_gloo_processes_keep_replicas_equal(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "fastdepth", "train", "--steps", "3", "--batch-size", "1", "--height", "64", "--width", "64",
               "--eval-images", "2", "--device", "cpu", "--out", str(tmp_path)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=subprocess_env(threads=1))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world size 2" in result.stdout and "replicas equal: True" in result.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("backend", ["triton", "cuda", "kornia"])
def test_gpu_training_steps(tmp_path, backend):
    cfg = TrainConfig(steps=3, out=str(tmp_path), backend=backend, **{**TINY, "device": "cuda"})
    summary = train(cfg, progress=False)
    assert len(summary["losses"]) == 3 and all(0 < loss < 1 for loss in summary["losses"])


@pytest.mark.parametrize("loss", ["si", "ssi"])
def test_supervised_training_learns(tmp_path, loss):
    # measured on the development CPU (40 steps, 64x128): abs rel 0.331 -> 0.224 (si), 0.221 (ssi)
    cfg = TrainConfig(
        steps=40, height=64, width=128, eval_images=8, out=str(tmp_path), checkpoint_every=1000, device="cpu",
        supervised=True, loss=loss,
    )  # fmt: skip
    summary = train(cfg, progress=False)
    before, after = summary["metrics_before"]["abs_rel"], summary["metrics_after"]["abs_rel"]
    assert after < 0.9 * before, (before, after)


def test_data_workers_load_the_same_batches(tmp_path):
    # background loading changes where the batches are made, not which: the same losses
    from fastdepth.train.loop import StepBatches, batch_indices

    cfg = TrainConfig(steps=3, out=str(tmp_path / "main"), workers=0, **TINY)
    batches = list(StepBatches(cfg, 40, range(1, 3), 1, 0))
    assert [[i for i, _ in batch] for batch in batches] == [batch_indices(cfg, 40, s, 1, 0) for s in (1, 2)]
    assert len({seed for batch in batches for _, seed in batch}) == 2 * cfg.batch_size  # a seed per sample
    in_main = train(cfg, progress=False)["losses"]
    cfg = TrainConfig(steps=3, out=str(tmp_path / "workers"), workers=2, **TINY)
    assert train(cfg, progress=False)["losses"] == in_main


def test_data_workers_by_default():
    from fastdepth.train.loop import data_workers

    cfg = TrainConfig()
    assert data_workers(cfg, torch.device("cpu"), 1) == 0
    cores = os.cpu_count() or 1
    assert data_workers(cfg, torch.device("cuda"), 1) == max(0, min(8, cores - 1))
    assert data_workers(cfg, torch.device("cuda"), cores) == 0
    cfg.workers = 3
    assert data_workers(cfg, torch.device("cpu"), 1) == 3
