"""``fastdepth predict``: a trained DepthNet's disparities for images on disk, saved as
``fastdepth eval --predictions`` (and Monodepth2's evaluation) reads them.

The images: the target frames that a KITTI split file names (KITTI raw as ``data`` with ``split``,
such as Monodepth2's ``splits/eigen/test_files.txt``), or every ``.png``/``.jpg`` of the folder
``data`` in name order. Each is resized to the run's training size as in training (bilinear,
antialiased) and the network's finest disparity is saved as inverse depth, ``1 / depth`` with depth
in [0.1, 100] (Monodepth2's scaled disparity), at the training size: a ``.npy`` stack (N x H x W) in
the split's order, or a ``<stem>.npy`` per image of a folder. Evaluate them with
``fastdepth eval --predictions OUT --ground-truth GT --disparity --resize`` (and ``--crop garg`` on
KITTI's Eigen split, as Monodepth2).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from fastdepth.train.config import resolve_device
from fastdepth.train.evaluate import load_checkpoint, predict_depth
from fastdepth.train.folders import IMAGE_SUFFIXES, dataset_folder, image_files, kitti_split_frames, load_frame
from fastdepth.train.models import DepthNet


def images_to_predict(data: Path, split: Path | None) -> list[Path]:
    """The split's target frames, or the images of the folder ``data`` (ValueError if none, or if two
    share a stem, whose predictions would overwrite each other)."""
    if split is not None:
        return kitti_split_frames(data, split)
    images = image_files(dataset_folder(data))
    if not images:
        raise ValueError(f"--data {data} holds no {', '.join(IMAGE_SUFFIXES)} image")
    shared = sorted(stem for stem, count in Counter(p.stem for p in images).items() if count > 1)
    if shared:
        raise ValueError(f"--data {data}: images of the same stem would share a prediction file: {', '.join(shared)}")
    return images


def predicted_disparities(
    depth_net: DepthNet, images: list[Path], height: int, width: int, device: torch.device, batch_size: int = 8
) -> Iterator[torch.Tensor]:
    """(height, width) float32 inverse depth of every image, in order."""
    depth_net.eval()
    for first in range(0, len(images), batch_size):
        batch = torch.stack([load_frame(path, height, width)[0] for path in images[first : first + batch_size]])
        yield from (1.0 / predict_depth(depth_net, batch.to(device))[:, 0]).float().cpu()


def run(args) -> int:
    """The CLI: write the disparities, say where."""
    out = Path(args.out)
    if args.split is not None and out.suffix != ".npy":
        raise ValueError(f"--out {out}: the disparities of a split are one .npy stack")
    if args.split is None and out.is_file():
        raise ValueError(f"--out {out} is a file: the disparities of a folder are a folder of .npy files")
    images = images_to_predict(Path(args.data), None if args.split is None else Path(args.split))
    device = resolve_device(args.device)
    depth_net, state = load_checkpoint(Path(args.checkpoint), device)
    height, width = state["config"]["height"], state["config"]["width"]
    disparities = predicted_disparities(depth_net, images, height, width, device)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.split is not None:
        np.save(out, np.stack([d.numpy() for d in disparities]))
    else:
        out.mkdir(exist_ok=True)
        for path, disparity in zip(images, disparities, strict=True):
            np.save(out / f"{path.stem}.npy", disparity.numpy())
    print(f"{len(images)} disparities ({height} x {width}, 1 / depth) -> {out}")
    return 0
