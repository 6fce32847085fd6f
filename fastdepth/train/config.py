"""The options of ``fastdepth train`` (no torchvision needed to read them: the CLI builds its parser
from these defaults)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TrainConfig:
    steps: int = 300
    batch_size: int = 4
    height: int = 64
    width: int = 192
    device: str = "auto"
    backend: str = "auto"
    seed: int = 0
    out: str = "runs/fastdepth"
    lr: float = 3e-4
    amp: str = "auto"  # none | bf16 | fp16 | auto (bf16 on a GPU, none on the CPU)
    data: str | None = None  # an image-sequence folder; None: the synthetic world
    split: str | None = None  # with data: a split file of KITTI raw frames (Monodepth2's train_files.txt)
    val_data: str | None = None  # held-out image sequences for the validation loss (fastdepth.train.validate)
    val_split: str | None = None  # a split file of KITTI raw frames in val_data (default: data) to validate on
    val_every: int = 0  # also validate every this many steps (0: before and after training only)
    augment: bool = False  # Monodepth2's flips and colour jitter (fastdepth.train.augment)
    workers: int | None = None  # data-loading processes; None: 0 on the CPU, up to 8 on a GPU (loop.data_workers)
    scenes: int = 8
    frames: int = 24
    pretrained: bool = False
    monodepth2_sampling: bool = False
    objective: str = "fused"  # fused | composed: the same function, fastdepth.reprojection_loss or warp + min
    supervised: bool = False  # train on the synthetic world's ground-truth depth instead of photometrically
    loss: str = "si"  # with --supervised: si (scale-invariant log) | ssi (scale-and-shift-invariant, disparity)
    log_every: int = 10
    checkpoint_every: int = 100
    eval_images: int = 16
    resume: bool = False


def resolve_device(name: str, local_rank: int = 0, world: int = 1) -> torch.device:
    """``auto`` (a GPU when one is visible), ``cpu``, ``cuda`` or ``cuda:N``; ValueError otherwise."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(f"cuda:{local_rank}" if name == "cuda" and world > 1 else name)
    except RuntimeError as error:
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from error
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no GPU is visible to PyTorch")
    return device
