"""Helpers shared by the test modules: comparisons, leaves, the environment of subprocesses, and
image folders on disk."""

import os

import torch
from PIL import Image

from fastdepth.compare import max_abs, max_rel  # noqa: F401 (the tests import them from here)


def grads(outputs: torch.Tensor, inputs: list[torch.Tensor], grad_output: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(outputs, inputs, grad_output.to(outputs.dtype)))


def leaves(*tensors: torch.Tensor, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """Fresh leaf copies that require grad (optionally cast)."""
    return [t.detach().to(dtype or t.dtype).clone().requires_grad_(True) for t in tensors]


def non_contiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values with non-trivial strides (a transposed copy, transposed back)."""
    out = t.detach().transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not out.is_contiguous() or t.shape[-1] == 1 or t.shape[-2] == 1
    return out.requires_grad_(t.requires_grad)


def subprocess_env(threads: int | None = None, **extra: str) -> dict[str, str]:
    """This process's environment for a subprocess, with its OpenMP thread count set explicitly:
    two busy processes with 2 threads each on 2 cores slow each other tenfold. The test waits for
    the subprocess, so by default it gets this process's threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads or torch.get_num_threads())}
    env.update(extra)
    return env


def write_frames(folder, count=4, size=(48, 40), digits=4, suffix=".png", blue=200):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", size, color=(10 * i, 100, blue)).save(folder / f"{i:0{digits}d}{suffix}")


KITTI_CALIBRATION = (
    "calib_time: x\n"
    "P_rect_02: 7.2e+02 0 6.0e+02 4.4e+01 0 7.2e+02 1.7e+02 0 0 0 1 0\n"
    "P_rect_03: 7.0e+02 0 6.1e+02 -3.3e+02 0 7.0e+02 1.8e+02 0 0 0 1 0\n"
)


def kitti_raw(root, drive="2011_09_26_drive_0001_sync"):
    """Two cameras of one drive: left frames .png (blue 200), right frames .jpg (blue 50)."""
    date = root / "2011_09_26"
    write_frames(date / drive / "image_02" / "data", count=5, size=(64, 48), digits=10)
    write_frames(date / drive / "image_03" / "data", count=5, size=(64, 48), digits=10, suffix=".jpg", blue=50)
    (date / "calib_cam_to_cam.txt").write_text(KITTI_CALIBRATION)
    return f"2011_09_26/{drive}"
