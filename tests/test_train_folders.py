"""Image-sequence folders: the generic layout, KITTI raw, and clear errors for bad folders and intrinsics."""

import pytest
import torch
from helpers import KITTI_CALIBRATION, kitti_raw, write_frames

from fastdepth.train.folders import ImageFolderSequences, find_sequences, kitti_split_triplets


def test_generic_layout_loads_triplets_and_scales_intrinsics(tmp_path):
    write_frames(tmp_path / "seq_a")
    (tmp_path / "seq_a" / "intrinsics.txt").write_text("40 0 24\n0 40 20\n0 0 1\n")
    write_frames(tmp_path / "seq_b", count=3)
    (tmp_path / "intrinsics.txt").write_text("20 30 24 20")
    data = ImageFolderSequences(tmp_path, height=64, width=64)
    assert len(data) == 2 + 1
    item = data[0]
    assert item["frames"].shape == (3, 3, 64, 64) and 0 <= item["frames"].min() and item["frames"].max() <= 1
    expected = torch.tensor([[40 * 64 / 48, 0, 24 * 64 / 48], [0, 40 * 64 / 40, 20 * 64 / 40], [0, 0, 1]])
    assert torch.allclose(item["K"], expected)
    # "fx fy cx cy"
    expected = torch.tensor([[20 * 64 / 48, 0, 24 * 64 / 48], [0, 30 * 64 / 40, 20 * 64 / 40], [0, 0, 1]])
    assert torch.allclose(data[2]["K"], expected)


def test_kitti_raw_layout(tmp_path):
    drive = tmp_path / "2011_09_26" / "2011_09_26_drive_0001_sync" / "image_02" / "data"
    write_frames(drive)
    p = "P_rect_02: 7.2e+02 0 6.0e+02 4.4e+01 0 7.2e+02 1.7e+02 0 0 0 1 0"
    (tmp_path / "2011_09_26" / "calib_cam_to_cam.txt").write_text(f"calib_time: x\n{p}\n")
    ((frames, K),) = find_sequences(tmp_path)
    assert len(frames) == 4 and K[0, 0] == 720 and K[0, 2] == 600 and K[1, 2] == 170


@pytest.mark.parametrize(
    "content,pattern",
    [
        ("1 2 3", r"expected 9 numbers \(K\) or 4"),
        ("fx fy cx cy", r"bad intrinsics in .*could not convert"),
        ("0 30 24 20", r"focal lengths must be positive"),
        ("nan 30 24 20", r"not finite"),
    ],
)
def test_bad_intrinsics(tmp_path, content, pattern):
    write_frames(tmp_path / "seq")
    (tmp_path / "seq" / "intrinsics.txt").write_text(content)
    with pytest.raises(ValueError, match=pattern):
        ImageFolderSequences(tmp_path, 64, 64)


def test_missing_intrinsics(tmp_path):
    write_frames(tmp_path / "seq")
    with pytest.raises(FileNotFoundError, match=r"missing intrinsics file .*intrinsics.txt"):
        ImageFolderSequences(tmp_path, 64, 64)


def test_missing_kitti_calibration(tmp_path):
    write_frames(tmp_path / "2011_09_26" / "drive" / "image_02" / "data")
    with pytest.raises(FileNotFoundError, match=r"missing KITTI calibration .*calib_cam_to_cam.txt"):
        ImageFolderSequences(tmp_path, 64, 64)


def test_missing_folder_and_no_sequences(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset folder .*nowhere does not exist"):
        ImageFolderSequences(tmp_path / "nowhere", 64, 64)
    write_frames(tmp_path / "short", count=2)
    with pytest.raises(ValueError, match=r"no image sequence of 3 or more frames"):
        ImageFolderSequences(tmp_path, 64, 64)


def test_size_must_be_a_multiple_of_32(tmp_path):
    with pytest.raises(ValueError, match="multiples of 32 and at least 64"):
        ImageFolderSequences(tmp_path, 30, 64)


def test_a_split_file_names_kitti_frames_of_either_camera(tmp_path):
    # Monodepth2's split lines: the target frame, the frames before and after it, the side's K
    drive = kitti_raw(tmp_path / "kitti")
    (tmp_path / "train_files.txt").write_text(f"{drive} 1 l\n\n{drive} 3 r\n")
    data = ImageFolderSequences(tmp_path / "kitti", height=64, width=64, split=tmp_path / "train_files.txt")
    assert len(data) == 2
    left, right = data[0], data[1]
    # the frames' red channel is 10 * index / 255; blue: 200 left, 50 right (JPEG: within a few levels)
    assert torch.allclose(left["frames"][:, 0, 32, 32], torch.tensor([0.0, 10.0, 20.0]) / 255, atol=1e-6)
    assert torch.allclose(right["frames"][:, 0, 32, 32], torch.tensor([20.0, 30.0, 40.0]) / 255, atol=3 / 255)
    assert torch.allclose(left["frames"][:, 2, 32, 32], torch.full((3,), 200 / 255))
    assert torch.allclose(right["frames"][:, 2, 32, 32], torch.full((3,), 50 / 255), atol=3 / 255)
    assert left["K"][0, 0] == pytest.approx(720 * 64 / 64) and left["K"][1, 2] == pytest.approx(170 * 64 / 48)
    assert right["K"][0, 0] == pytest.approx(700) and right["K"][0, 2] == pytest.approx(610)


@pytest.mark.parametrize(
    "line,pattern",
    [
        ("{drive} 0 l", r"train_files\.txt:1: frame 0 has no frame before it"),
        ("{drive} 4 r", r"train_files\.txt:1: no frame 0000000005\.png or \.jpg in .*image_03"),
        ("{drive} 2 x", r"train_files\.txt:1: expected '<date>/<drive> <frame> <l\|r>', got"),
        ("{drive} two l", r"expected '<date>/<drive> <frame> <l\|r>'"),
        ("{drive} 2", r"expected '<date>/<drive> <frame> <l\|r>'"),
        ("", r"split file .*train_files\.txt names no frame"),
    ],
)
def test_bad_split_lines(line, pattern, tmp_path):
    drive = kitti_raw(tmp_path)
    (tmp_path / "train_files.txt").write_text(line.format(drive=drive) + "\n")
    with pytest.raises(ValueError, match=pattern):
        kitti_split_triplets(tmp_path, tmp_path / "train_files.txt")


def test_a_split_needs_the_calibration_of_its_camera(tmp_path):
    drive = kitti_raw(tmp_path)
    (tmp_path / "2011_09_26" / "calib_cam_to_cam.txt").write_text(KITTI_CALIBRATION.split("P_rect_03")[0])
    (tmp_path / "train_files.txt").write_text(f"{drive} 1 l\n{drive} 1 r\n")
    with pytest.raises(ValueError, match=r"calib_cam_to_cam\.txt: no P_rect_03 line"):
        kitti_split_triplets(tmp_path, tmp_path / "train_files.txt")


def test_training_takes_the_frames_of_a_split(tmp_path):
    from fastdepth.train.loop import TrainConfig, train

    drive = kitti_raw(tmp_path / "kitti")
    (tmp_path / "train_files.txt").write_text(f"{drive} 1 l\n{drive} 2 r\n{drive} 3 l\n")
    cfg = TrainConfig(steps=2, height=64, width=64, batch_size=2, eval_images=1, checkpoint_every=1000, device="cpu")
    cfg.data, cfg.split, cfg.out = str(tmp_path / "kitti"), str(tmp_path / "train_files.txt"), str(tmp_path / "run")
    losses = train(cfg, progress=False)["losses"]
    assert len(losses) == 2 and all(0 < loss < 1 for loss in losses)
