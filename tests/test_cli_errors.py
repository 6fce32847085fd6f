"""Bad command lines: one line naming the option or file, a non-zero exit code, no traceback.

Each case runs ``fastdepth.cli.main`` in this process (no subprocess start-up per case)."""

import re

import pytest
import torch
from PIL import Image

from fastdepth.cli import main

TINY = ["--height", "64", "--width", "64", "--batch-size", "2", "--eval-images", "2", "--device", "cpu"]
ONE_SAMPLE = ["--steps", "1", "--height", "64", "--width", "64", "--batch-size", "1", "--eval-images", "1"]


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's own errors: a usage line and one error line
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.err


def write_sequence(folder, broken: str | None = None):
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (64, 64), color=(40 * i, 90, 160)).save(folder / f"{i:04d}.png")
    (folder / "intrinsics.txt").write_text("40 0 32\n0 40 32\n0 0 1\n")
    if broken == "truncated":
        data = (folder / "0001.png").read_bytes()
        (folder / "0001.png").write_bytes(data[: len(data) // 2])
    elif broken == "corrupt":
        (folder / "0001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 10)


def checkpoint_file(tmp_path, kind: str):
    path = tmp_path / f"{kind}.pt"
    if kind == "garbage":
        path.write_bytes(b"this is not a checkpoint" * 10)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "truncated":
        torch.save({"step": 0, "weights": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:200])
    return path


BAD_COMMAND_LINES = [
    # (name, argv builder (tmp_path -> argv), exit code, pattern of the one error line)
    ("negative_steps", lambda t: ["train", "--steps", "-5", *TINY], 2, r"--steps must be at least 0, got -5"),
    ("negative_batch", lambda t: ["train", "--batch-size", "-2"], 2, r"--batch-size must be at least 1, got -2"),
    ("zero_batch", lambda t: ["train", "--batch-size", "0"], 2, r"--batch-size must be at least 1, got 0"),
    ("zero_checkpoint_every", lambda t: ["train", "--checkpoint-every", "0"], 2, r"--checkpoint-every must be at"),
    ("zero_log_every", lambda t: ["train", "--log-every", "0"], 2, r"--log-every must be at least 1"),
    ("zero_eval_images", lambda t: ["train", "--eval-images", "0"], 2, r"--eval-images must be at least 1"),
    ("negative_workers", lambda t: ["train", "--workers", "-1"], 2, r"--workers must be at least 0, got -1"),
    ("eval_zero_images", lambda t: ["eval", "--checkpoint", str(t), "--images", "0"], 2, r"--images must be at"),
    ("no_gpu", lambda t: ["train", "--device", "cuda", "--steps", "0"], 2, r"--device cuda: no GPU is visible"),
    ("unknown_device", lambda t: ["train", "--device", "tpu9", "--steps", "0"], 2, r"--device must be auto, cpu"),
    ("eval_unknown_device", lambda t: ["eval", "--checkpoint", str(t), "--device", "tpu9"], 2, r"--device must"),
    ("out_is_a_file", lambda t: ["train", "--out", str(t / "file.txt"), "--steps", "0"], 2, r"--out .* is a file"),
    ("unknown_backend", lambda t: ["train", "--backend", "fast"], 2, r"invalid choice: 'fast'"),
    ("bench_unknown_size", lambda t: ["bench", "--sizes", "huge"], 2,
     r"fastdepth bench: error: unknown sizes: huge \(choose from kitti, "),
    ("missing_checkpoint", lambda t: ["eval", "--checkpoint", str(t / "none")], 2, r"no checkpoint at"),
    ("garbage_checkpoint", lambda t: ["eval", "--checkpoint", str(checkpoint_file(t, "garbage"))], 2,
     r"cannot read checkpoint .*garbage\.pt"),
    ("empty_checkpoint", lambda t: ["eval", "--checkpoint", str(checkpoint_file(t, "empty"))], 2,
     r"cannot read checkpoint .*empty\.pt"),
    ("truncated_checkpoint", lambda t: ["eval", "--checkpoint", str(checkpoint_file(t, "truncated"))], 2,
     r"cannot read checkpoint .*truncated\.pt"),
    ("tensor_checkpoint", lambda t: ["eval", "--checkpoint", str(checkpoint_file(t, "tensor"))], 2,
     r"tensor\.pt is not a fastdepth training checkpoint"),
    ("resume_garbage", lambda t: ["train", "--resume", "--out", str(t / "run"), *TINY], 2,
     r"cannot read checkpoint .*checkpoint\.pt"),
    ("truncated_png", lambda t: ["train", "--data", str(t / "seq"), *ONE_SAMPLE], 2, r"cannot read image .*0001\.png"),
    ("corrupt_png", lambda t: ["train", "--data", str(t / "seq"), *ONE_SAMPLE], 2, r"cannot read image .*0001\.png"),
    ("corrupt_png_in_a_worker", lambda t: ["train", "--data", str(t / "seq"), "--workers", "1", *ONE_SAMPLE], 2,
     r"error: cannot read image .*0001\.png"),
    ("split_without_data", lambda t: ["train", "--split", str(t / "file.txt"), "--steps", "0", *TINY], 2,
     r"--split names KITTI raw frames: give the KITTI raw folder as --data"),
    ("missing_split", lambda t: ["train", "--data", str(t), "--split", str(t / "none.txt"), *ONE_SAMPLE], 2,
     r"split file .*none\.txt does not exist"),
    ("val_split_without_data", lambda t: ["train", "--val-split", str(t / "file.txt"), "--steps", "0", *TINY], 2,
     r"--val-split names KITTI raw frames: give the KITTI raw folder as --val-data or --data"),
    ("val_data_missing", lambda t: ["train", "--val-data", str(t / "none"), "--steps", "0", *TINY], 2,
     r"dataset folder .*none does not exist"),
    ("eval_predictions_with_data", lambda t: ["eval", "--predictions", str(t), "--ground-truth", str(t), "--data",
     str(t)], 2, r"--data and --split validate a --checkpoint, not --predictions"),
    ("eval_split_without_data", lambda t: ["eval", "--checkpoint", str(t), "--split", str(t / "file.txt")], 2,
     r"--split names KITTI raw frames: give the KITTI raw folder as --data"),
    ("val_every_without_val_data", lambda t: ["train", "--val-every", "5", "--steps", "0", *TINY], 2,
     r"--val-every validates on held-out frames: give them as --val-data or --val-split"),
    ("val_every_negative", lambda t: ["train", "--val-every", "-1", "--steps", "0", *TINY], 2,
     r"--val-every must be at least 0, got -1"),
    ("val_data_supervised", lambda t: ["train", "--val-data", str(t), "--supervised", "--steps", "0", *TINY], 2,
     r"--supervised trains no pose network"),
    ("triton_without_interpreter", lambda t: ["train", "--backend", "triton", "--steps", "0", *TINY], 2,
     r"--backend triton: backend='triton' on CPU tensors needs TRITON_INTERPRET=1"),
]  # fmt: skip


@pytest.mark.parametrize("name,argv,code,pattern", BAD_COMMAND_LINES, ids=[case[0] for case in BAD_COMMAND_LINES])
def test_bad_command_line(name, argv, code, pattern, tmp_path, capsys, monkeypatch):
    (tmp_path / "file.txt").write_text("x")
    if name.startswith(("truncated_png", "corrupt_png")):
        write_sequence(tmp_path / "seq" / "a", broken=name.split("_")[0])
    if name == "resume_garbage":
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "checkpoint.pt").write_bytes(b"garbage")
    if name == "triton_without_interpreter":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
    exit_code, err = run(capsys, *argv(tmp_path))
    assert exit_code == code, err
    assert re.search(pattern, err), err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1, err


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(ValueError, match="--steps must be at least 0"):
        main(["--debug", "train", "--steps", "-1"])
    with pytest.raises(ValueError, match="--steps must be at least 0"):
        main(["train", "--steps", "-1", "--debug"])


def test_resume_refuses_another_run(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert run(capsys, "train", "--steps", "0", "--out", out, *TINY)[0] == 0
    code, err = run(capsys, "train", "--steps", "1", "--resume", "--seed", "1", "--out", out, *TINY)
    assert code == 2 and "--resume continues the same run" in err and "seed 1 (the run has 0)" in err
    code, err = run(capsys, "train", "--steps", "1", "--resume", "--out", out, *TINY[:4], "--batch-size", "1")
    assert code == 2 and "batch_size 1 (the run has 2)" in err
