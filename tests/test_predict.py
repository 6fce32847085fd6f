"""``fastdepth predict``: a checkpoint's disparities for a KITTI split (a .npy stack, in the split's
order) or a folder of images (a .npy per image), which ``fastdepth eval`` then scores."""

import json
import re

import numpy as np
import pytest
import torch
from helpers import kitti_raw, write_frames

from fastdepth.cli import main
from fastdepth.train.evaluate import load_checkpoint, predict_depth
from fastdepth.train.folders import load_frame


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    argv = ["train", "--steps", "0", "--height", "64", "--width", "64", "--eval-images", "1", "--device", "cpu"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_split_gives_a_stack_that_eval_scores(run_dir, tmp_path, capsys):
    drive = kitti_raw(tmp_path / "kitti")
    (tmp_path / "test_files.txt").write_text(f"{drive} 0000000000 l\n{drive} 0000000004 r\n{drive} 2 l\n")
    code, out, err = cli(capsys, "predict", "--checkpoint", str(run_dir), "--data", str(tmp_path / "kitti"),
                         "--split", str(tmp_path / "test_files.txt"), "--out", str(tmp_path / "disps.npy"),
                         "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert "3 disparities (64 x 64, 1 / depth)" in out
    disps = np.load(tmp_path / "disps.npy")
    assert disps.shape == (3, 64, 64) and disps.dtype == np.float32
    # each is 1 / the network's depth of that frame, in the split's order
    depth_net, _ = load_checkpoint(run_dir, torch.device("cpu"))
    depth_net.eval()
    frames = ["image_02/data/0000000000.png", "image_03/data/0000000004.jpg", "image_02/data/0000000002.png"]
    for disp, frame in zip(disps, frames, strict=True):
        image = load_frame(tmp_path / "kitti" / drive / frame, 64, 64)[0]
        expected = 1 / predict_depth(depth_net, image[None])[0, 0]
        assert torch.allclose(torch.from_numpy(disp), expected, rtol=1e-5)
    assert 1 / 100 <= disps.min() and disps.max() <= 1 / 0.1
    # ground truth at KITTI's aspect, larger than the predictions: eval resizes, inverts and scores
    gt = np.stack([np.full((48, 160), 10.0 + i, dtype=np.float32) for i in range(3)])
    np.save(tmp_path / "gt.npy", gt)
    code, out, err = cli(capsys, "eval", "--predictions", str(tmp_path / "disps.npy"), "--ground-truth",
                         str(tmp_path / "gt.npy"), "--disparity", "--resize", "--crop", "garg", "--json")  # fmt: skip
    assert code == 0, err
    metrics = json.loads(out.splitlines()[-1])
    assert metrics["images"] == 3 and np.isfinite(metrics["abs_rel"])


def test_a_folder_gives_a_file_per_image(run_dir, tmp_path, capsys):
    write_frames(tmp_path / "images", count=2, size=(80, 40))
    code, out, err = cli(capsys, "predict", "--checkpoint", str(run_dir), "--data", str(tmp_path / "images"),
                         "--out", str(tmp_path / "pred"), "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["0000.npy", "0001.npy"]
    assert np.load(tmp_path / "pred" / "0001.npy").shape == (64, 64)


@pytest.mark.parametrize(
    "setup,extra,pattern",
    [
        (lambda t: write_frames(t / "images", count=1), ["--out", "{t}/disps"], r"is a file"),
        (lambda t: (t / "images").mkdir(), [], r"--data .*images holds no .png, .jpg, .jpeg image"),
        (lambda t: [write_frames(t / "images", count=1), write_frames(t / "images", count=1, suffix=".jpg")], [],
         r"images of the same stem would share a prediction file: 0000"),
        (lambda t: write_frames(t / "images", count=1), ["--split", "{t}/none.txt", "--out", "{t}/d.npy"],
         r"split file .*none\.txt does not exist"),
        (lambda t: write_frames(t / "images", count=1), ["--split", "{t}/none.txt", "--out", "{t}/d"],
         r"--out .*d: the disparities of a split are one .npy stack"),
    ],
)  # fmt: skip
def test_bad_predict_command_lines(setup, extra, pattern, run_dir, tmp_path, capsys):
    setup(tmp_path)
    (tmp_path / "disps").write_text("a file")
    argv = ["predict", "--checkpoint", str(run_dir), "--data", str(tmp_path / "images"), "--device", "cpu"]
    extra = [arg.format(t=tmp_path) for arg in extra]
    code, _, err = cli(capsys, *argv, *(extra if "--out" in extra else [*extra, "--out", str(tmp_path / "out")]))
    assert code == 2 and re.search(pattern, err), err
