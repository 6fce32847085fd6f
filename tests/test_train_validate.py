"""``fastdepth train --val-data / --val-split``: the training objective on held-out triplets of the
user's own images, before and after training."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import kitti_raw
from PIL import Image

from fastdepth.cli import main
from fastdepth.train import validate
from fastdepth.train.folders import ImageFolderSequences
from fastdepth.train.loop import TrainConfig, train
from fastdepth.train.models import DepthNet, PoseNet
from fastdepth.train.objective import compute_loss, predict_poses

TINY = ["--height", "64", "--width", "64", "--batch-size", "2", "--device", "cpu", "--checkpoint-every", "1000"]


def write_textured(folder, count=5, static=False, seed=0):
    """``count`` noise frames 64 x 48 sliding one pixel a frame (or all the same: ``static``)."""
    folder.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).integers(0, 256, (48, 64 + count, 3), dtype=np.uint8)
    for i in range(count):
        shift = 0 if static else i
        Image.fromarray(noise[:, shift : shift + 64]).save(folder / f"{i:04d}.png")
    (folder / "intrinsics.txt").write_text("50 50 32 24")


def test_spread_picks_distinct_evenly_spaced_indices():
    assert validate.spread(10, 4) == [0, 2, 5, 7]
    assert validate.spread(3, 16) == [0, 1, 2]
    assert validate.spread(7, 7) == list(range(7))


def test_validate_is_the_mean_objective_over_the_samples(tmp_path):
    for seed in range(2):
        write_textured(tmp_path / f"seq{seed}", count=4, seed=seed)
    dataset = ImageFolderSequences(tmp_path, 64, 64)
    samples = [dataset[i] for i in range(len(dataset))]
    assert len(samples) == 4
    torch.manual_seed(0)
    depth_net, pose_net = DepthNet(), PoseNet()
    cfg = TrainConfig(batch_size=3, backend="torch")  # batches of 3 and 1: weighted by their sizes
    got = validate.validate(depth_net, pose_net, samples, torch.device("cpu"), cfg)
    assert depth_net.training and pose_net.training
    depth_net.eval()
    pose_net.eval()
    with torch.no_grad():
        single = []
        for s in samples:
            frames, K = s["frames"][None], s["K"][None]
            loss, parts = compute_loss(depth_net(frames[:, 1]), predict_poses(pose_net, frames), frames, K, "torch")
            single.append({"loss": float(loss), **{k: float(v) for k, v in parts.items()}})
    for name in validate.VAL_PARTS:
        expected = sum(s[name] for s in single) / len(single)
        assert got[name] == pytest.approx(expected, rel=1e-5), name
    assert len({round(s["photometric"], 6) for s in single}) > 1  # the samples differ: weighting matters


def test_training_validates_on_the_held_out_frames(tmp_path, capsys):
    write_textured(tmp_path / "train" / "seq")
    write_textured(tmp_path / "val" / "seq", static=True)
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "train"), "--val-data", str(tmp_path / "val"), "--steps", "2"]
    assert main([*argv, "--eval-images", "2", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert f"validation on 2 held-out triplets of {tmp_path / 'val'}" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_images"] == 2
    for when in ("val_before", "val_after"):
        # static frames: the identity wins everywhere with a loss of 0, only the smoothness is left
        assert summary[when]["photometric"] == 0 and summary[when]["automask"] == 0
        assert summary[when]["loss"] == pytest.approx(summary[when]["smoothness"])
        assert f"{summary[when]['smoothness']:13.5f}" in printed
    assert summary["losses"][0] > 1e-2  # the training frames move
    assert Image.open(out / "eval.png").size == (800, 360)  # 2 rows: input and prediction of the held-out frames


def test_val_split_takes_kitti_frames_and_validates_every_n_steps_across_a_resume(tmp_path):
    drive = kitti_raw(tmp_path / "kitti")
    (tmp_path / "train_files.txt").write_text(f"{drive} 1 l\n{drive} 2 l\n")
    (tmp_path / "val_files.txt").write_text(f"{drive} 3 l\n{drive} 3 r\n{drive} 2 r\n")
    cfg = TrainConfig(steps=1, height=64, width=64, batch_size=2, eval_images=8, checkpoint_every=1000, device="cpu")
    cfg.data, cfg.split, cfg.out = str(tmp_path / "kitti"), str(tmp_path / "train_files.txt"), str(tmp_path / "run")
    cfg.val_split, cfg.val_every = str(tmp_path / "val_files.txt"), 1
    summary = train(cfg, progress=False)
    assert summary["val_images"] == 3
    assert all(0 < summary[when]["photometric"] < 1 for when in ("val_before", "val_after"))
    assert summary["val_curve"] == [{"step": 1, **summary["val_after"]}]
    cfg.steps, cfg.resume = 3, True
    resumed = train(cfg, progress=False)
    assert "val_before" not in resumed and resumed["val_after"]["photometric"] > 0
    assert [v["step"] for v in resumed["val_curve"]] == [1, 2, 3]
    assert resumed["val_curve"][0] == summary["val_curve"][0] and resumed["val_curve"][2]["step"] == 3
    assert resumed["val_curve"][2] == {"step": 3, **resumed["val_after"]}


def test_eval_validates_a_checkpoint_on_held_out_frames(tmp_path, capsys):
    write_textured(tmp_path / "train" / "seq")
    write_textured(tmp_path / "val" / "seq", seed=1)
    out, val = tmp_path / "run", str(tmp_path / "val")
    argv = ["train", "--data", str(tmp_path / "train"), "--val-data", val, "--steps", "1", "--eval-images", "2"]
    assert main([*argv, "--out", str(out), *TINY]) == 0
    after = json.loads((out / "summary.json").read_text())["val_after"]
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--data", val, "--images", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["step"] == 1 and printed["images"] == 2 and Path(printed["png"]) == out / "val.png"
    for name in validate.VAL_PARTS:
        assert printed[name] == pytest.approx(after[name], rel=1e-6), name
    assert main(["eval", "--checkpoint", str(out), "--data", val, "--images", "1"]) == 0
    assert f"1 held-out triplets of {val}" in capsys.readouterr().out


def test_eval_refuses_to_validate_a_supervised_run(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--supervised", "--steps", "0", "--eval-images", "1", "--out", out, *TINY]) == 0
    write_textured(tmp_path / "val" / "seq")
    assert main(["eval", "--checkpoint", out, "--data", str(tmp_path / "val")]) == 2
    assert "trained --supervised: it has no pose network to validate with" in capsys.readouterr().err
