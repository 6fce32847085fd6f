"""Depth evaluation on the synthetic world's held-out scenes, and the side-by-side PNG."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from fastdepth.train.config import resolve_device
from fastdepth.train.metrics import METRIC_NAMES, evaluate_image, median
from fastdepth.train.models import DepthNet
from fastdepth.train.objective import disp_to_depth
from fastdepth.train.synthetic import SyntheticWorld

#: the eval split's scenes are seeded apart from any training seed
EVAL_SEED_OFFSET = 10_000
EVAL_MAX_DEPTH = 80.0


def eval_split(seed: int, height: int, width: int, images: int) -> list[dict]:
    """``images`` held-out samples from two synthetic scenes (a scene of n frames holds n - 2 triplets)."""
    frames = (images + 1) // 2 + 2
    world = SyntheticWorld(seed=seed + EVAL_SEED_OFFSET, scenes=2, frames=frames, height=height, width=width)
    return [world[i] for i in range(images)]


@torch.no_grad()
def predict_depth(depth_net: DepthNet, images: torch.Tensor) -> torch.Tensor:
    disp = depth_net(images)[0]
    disp = F.interpolate(disp, images.shape[-2:], mode="bilinear", align_corners=False)
    return disp_to_depth(disp.float())


@torch.no_grad()
def evaluate(depth_net: DepthNet, samples: list[dict], device: torch.device) -> dict[str, float]:
    """Mean over images of Monodepth2's metrics (per-image median scaling) and the silog loss."""
    was_training = depth_net.training
    depth_net.eval()
    totals: dict[str, float] = {}
    for sample in samples:
        pred = predict_depth(depth_net, sample["frames"][1][None].to(device))[0, 0].cpu()
        for name, value in evaluate_image(sample["depth"][0], pred, max_depth=EVAL_MAX_DEPTH).items():
            totals[name] = totals.get(name, 0.0) + value / len(samples)
    depth_net.train(was_training)
    return totals


def write_png(depth_net: DepthNet, samples: list[dict], device: torch.device, path: Path, rows: int = 3) -> Path:
    """Input, predicted depth (median-scaled) and ground truth side by side, one row per image;
    input and predicted depth (its 2nd to 98th percentile) for samples without ground truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    was_training = depth_net.training
    depth_net.eval()
    chosen = samples[:: max(1, len(samples) // rows)][:rows]
    columns = 3 if "depth" in chosen[0] else 2
    fig, axes = plt.subplots(len(chosen), columns, figsize=(4 * columns, 1.6 * len(chosen) + 0.4), squeeze=False)
    for row, sample in zip(axes, chosen, strict=True):
        pred = predict_depth(depth_net, sample["frames"][1][None].to(device))[0, 0].cpu()
        pictures = [(sample["frames"][1].permute(1, 2, 0), "input", {})]
        if columns == 3:
            gt = sample["depth"][0]
            pred = pred * median(gt) / median(pred)
            vmax = min(gt.max().item(), EVAL_MAX_DEPTH)
            shown = {"cmap": "magma", "vmin": 1 / vmax, "vmax": 1 / gt.min().item()}
            pictures.append((1 / pred.clamp(min=0.1), "predicted depth (shown as 1/depth)", shown))
            pictures.append((1 / gt.clamp(min=0.1), "ground truth (1/depth)", shown))
        else:
            low, high = torch.quantile(1 / pred, torch.tensor([0.02, 0.98])).tolist()
            shown = {"cmap": "magma", "vmin": low, "vmax": high}
            pictures.append((1 / pred, "predicted depth (shown as 1/depth)", shown))
        for ax, (picture, title, kwargs) in zip(row, pictures, strict=True):
            ax.imshow(picture.numpy(), **kwargs)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    depth_net.train(was_training)
    return path


def format_metrics(rows: dict[str, dict[str, float]]) -> str:
    """A table of metric rows (e.g. before / after) with Monodepth2's names plus silog."""
    names = (*METRIC_NAMES, "silog")
    lines = [f"{'':8}" + "".join(f"{n:>10}" for n in names)]
    for label, metrics in rows.items():
        lines.append(f"{label:8}" + "".join(f"{metrics[n]:10.4f}" for n in names))
    return "\n".join(lines)


CHECKPOINT_KEYS = ("step", "depth_net", "pose_net", "optimizer", "config")


def read_checkpoint(file: Path, map_location) -> dict:
    """The state saved by ``fastdepth train``; ValueError naming the file when it is anything else
    (empty, truncated, garbage, a saved tensor, another program's checkpoint)."""
    try:
        state = torch.load(file, map_location=map_location, weights_only=False)
    except Exception as error:  # torch.load raises many kinds on a damaged file
        raise ValueError(f"cannot read checkpoint {file}: {type(error).__name__}: {error}") from error
    if not isinstance(state, dict) or not all(key in state for key in CHECKPOINT_KEYS):
        raise ValueError(f"{file} is not a fastdepth training checkpoint (a dict with {', '.join(CHECKPOINT_KEYS)})")
    return state


def run_folder(checkpoint: Path) -> Path:
    """The folder of a run given as its directory or its checkpoint file (where its PNGs go)."""
    checkpoint = Path(checkpoint)
    return checkpoint if checkpoint.is_dir() else checkpoint.parent


def load_checkpoint(path: Path, device: torch.device) -> tuple[DepthNet, dict]:
    """The DepthNet and the training config of a checkpoint file or run directory."""
    path = Path(path)
    file = path / "checkpoint.pt" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no checkpoint at {file}")
    state = read_checkpoint(file, "cpu")
    depth_net = DepthNet()
    depth_net.load_state_dict(state["depth_net"])
    return depth_net.to(device), state


def run_eval(checkpoint: Path, device: str, images: int, as_json: bool, png: Path | None) -> int:
    """``fastdepth eval``: metrics of a checkpoint on the synthetic eval split, and the PNG."""
    dev = resolve_device(device)
    depth_net, state = load_checkpoint(Path(checkpoint), dev)
    cfg = state["config"]
    samples = eval_split(cfg["seed"], cfg["height"], cfg["width"], images)
    metrics = evaluate(depth_net, samples, dev)
    target = png or run_folder(checkpoint) / "eval.png"
    write_png(depth_net, samples, dev, target)
    if as_json:
        print(json.dumps({"step": state["step"], **metrics, "png": str(target)}))
    else:
        print(f"checkpoint {checkpoint} (step {state['step']}), {len(samples)} synthetic images")
        print(format_metrics({"eval": metrics}))
        print(f"PNG: {target}")
    return 0
