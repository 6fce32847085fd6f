"""Image-sequence folders: the generic layout, KITTI raw, and clear errors for bad folders and intrinsics."""

import pytest
import torch
from PIL import Image

from fastdepth.train.folders import ImageFolderSequences, find_sequences


def write_frames(folder, count=4, size=(48, 40)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", size, color=(10 * i, 100, 200)).save(folder / f"{i:04d}.png")


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
