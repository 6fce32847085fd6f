"""The self-supervised validation of ``fastdepth train --val-data / --val-split`` (before and after
training, and every ``--val-every`` steps) and of ``fastdepth eval --checkpoint RUN --data DIR``: the
training objective, without its gradient, on held-out frame triplets of the user's own images. It
needs no ground truth (Monodepth2 reports the same losses on its validation split); the depth
metrics of a run on real data come from ``fastdepth predict`` + ``fastdepth eval --predictions``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from fastdepth.train import evaluate
from fastdepth.train.config import TrainConfig, resolve_device
from fastdepth.train.folders import ImageFolderSequences
from fastdepth.train.models import PoseNet
from fastdepth.train.objective import compute_loss, predict_poses, warp_sampling

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
) -> dict[str, float]:
    """The mean over ``samples`` of the training objective and its parts (VAL_PARTS), with the run's
    backend, objective and sampling, the networks in eval mode, in float32, ``cfg.batch_size``
    triplets at a time."""
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
        loss, parts = compute_loss(
            disps, poses, frames, K, cfg.backend, warp_sampling(cfg.monodepth2_sampling), cfg.objective
        )
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


def run(
    checkpoint: Path, device: str, data: str, split: str | None, images: int, as_json: bool, png: Path | None
) -> int:
    """``fastdepth eval --checkpoint RUN --data DIR [--split FILE]``: a saved run's validation on
    ``images`` held-out triplets, with its own options (sampling, objective; backend ``auto``), and
    the PNG of those frames."""
    dev = resolve_device(device)
    depth_net, state = evaluate.load_checkpoint(Path(checkpoint), dev)
    known = {field.name for field in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in state["config"].items() if k in known})
    if cfg.supervised:
        raise ValueError(f"{checkpoint} trained --supervised: it has no pose network to validate with")
    cfg.val_data, cfg.val_split, cfg.backend = data, split, "auto"
    pose_net = PoseNet()
    pose_net.load_state_dict(state["pose_net"])
    samples = validation_samples(validation_set(cfg), images)
    values = validate(depth_net, pose_net.to(dev), samples, dev, cfg)
    target = png or evaluate.run_folder(checkpoint) / "val.png"
    evaluate.write_png(depth_net, samples, dev, target)
    if as_json:
        print(json.dumps({"step": state["step"], "images": len(samples), **values, "png": str(target)}))
    else:
        held_out = data + (f" ({split})" if split else "")
        print(f"checkpoint {checkpoint} (step {state['step']}), {len(samples)} held-out triplets of {held_out}")
        print(format_losses({"val": values}))
        print(f"PNG: {target}")
    return 0
