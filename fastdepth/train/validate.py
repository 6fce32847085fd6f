"""The self-supervised validation of ``fastdepth train --val-data / --val-split``: the training
objective, without its gradient, on held-out frame triplets of the user's own images, before and
after training. It needs no ground truth (Monodepth2 reports the same losses on its validation
split); the depth metrics of a run on real data come from ``fastdepth predict`` + ``fastdepth eval``.
"""

from __future__ import annotations

import torch

from fastdepth.train.config import TrainConfig
from fastdepth.train.folders import ImageFolderSequences
from fastdepth.train.objective import compute_loss, predict_poses

#: the validation's numbers: the objective and its parts (compute_loss)
VAL_PARTS = ("loss", "photometric", "smoothness", "automask")


def validation_set(cfg: TrainConfig) -> ImageFolderSequences | None:
    """The held-out triplets of ``--val-data`` (default: ``--data``) with ``--val-split``; None
    without either option."""
    if cfg.val_data is None and cfg.val_split is None:
        return None
    return ImageFolderSequences(cfg.val_data or cfg.data, cfg.height, cfg.width, cfg.val_split)


def spread(length: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(length)`` from 0; all of them when count >= length."""
    if count >= length:
        return list(range(length))
    return [i * length // count for i in range(count)]


def validation_samples(dataset: ImageFolderSequences, count: int) -> list[dict]:
    return [dataset[i] for i in spread(len(dataset), count)]


@torch.no_grad()
def validate(
    depth_net: torch.nn.Module,
    pose_net: torch.nn.Module,
    samples: list[dict],
    device: torch.device,
    cfg: TrainConfig,
    sampling: dict,
) -> dict[str, float]:
    """The mean over ``samples`` of the training objective and its parts (VAL_PARTS), the networks
    in eval mode, in float32, ``cfg.batch_size`` triplets at a time."""
    modes = depth_net.training, pose_net.training
    depth_net.eval()
    pose_net.eval()
    totals = dict.fromkeys(VAL_PARTS, 0.0)
    for start in range(0, len(samples), cfg.batch_size):
        chunk = samples[start : start + cfg.batch_size]
        frames = torch.stack([s["frames"] for s in chunk]).to(device)
        K = torch.stack([s["K"] for s in chunk]).to(device)
        disps = depth_net(frames[:, 1])
        poses = predict_poses(pose_net, frames)
        loss, parts = compute_loss(disps, poses, frames, K, cfg.backend, sampling, cfg.objective)
        for name, value in {"loss": loss, **parts}.items():
            totals[name] += float(value) * len(chunk) / len(samples)  # batch means, weighted by size
    depth_net.train(modes[0])
    pose_net.train(modes[1])
    return totals


def format_losses(rows: dict[str, dict[str, float]]) -> str:
    """A table of validation rows (e.g. before / after)."""
    lines = [f"{'':8}" + "".join(f"{n:>13}" for n in VAL_PARTS)]
    for label, values in rows.items():
        lines.append(f"{label:8}" + "".join(f"{values[n]:13.5f}" for n in VAL_PARTS))
    return "\n".join(lines)
