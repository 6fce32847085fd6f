"""``fastdepth eval --predictions``: depth maps saved by any model against ground truth of the same
file stem, after the alignment the model needs.

Formats (by suffix): ``.npy`` (a 2-D array, or 1 x H x W / H x W x 1), ``.pfm`` (a one-channel
Portable Float Map) and 16-bit ``.png`` (value / ``png_scale``: 256 is KITTI's convention).
Instead of two folders, two stacks of maps matched by their order: ``.npy`` (N x H x W or
N x 1 x H x W, or an object array of 2-D maps) or ``.npz`` (its array ``data``, or its only one),
such as Monodepth2's saved disparities (``--save_pred_disps``) and its ``gt_depths.npz``, whose
object arrays are read with pickle (only files you trust).

A prediction of another size than its ground truth is an error, or with ``resize`` resized to it
bilinearly with pixel centres at half-integers (as Monodepth2's ``cv2.resize`` of its disparities;
no antialiasing). With ``disparity`` the predictions are inverse depth: each value becomes
1 / value after the resize (as Monodepth2 inverts its resized disparities; a value <= 0 is no
depth). Ground truth 0 (or outside ``(min_depth, max_depth)``) is invalid, and so is every pixel
outside the crop: ``garg`` (Garg et al., ECCV 2016: the crop of Monodepth2's KITTI Eigen-split
evaluation) or ``eigen`` (Eigen et al., NIPS 2014), each a fraction of the ground truth's rows and
columns, truncated to whole pixels.

Alignments, fitted per image on the valid pixels:

* ``median``: ``pred * median(gt) / median(pred)`` (Monodepth2, NumPy's median; relative depth);
* ``scale-shift``: the least-squares ``a * pred + b`` to the ground-truth depth (affine-invariant depth);
* ``scale-shift-inverse``: the least-squares ``a * pred + b`` to the ground-truth *inverse* depth,
  then inverted: for models that output relative inverse depth (disparity), as MiDaS and Depth
  Anything align;
* ``none``: metric depth as it is.

The aligned prediction is clamped to ``(min_depth, max_depth)``, then Monodepth2's metrics and the
scale-invariant log loss are averaged over images.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from fastdepth.train.metrics import METRIC_NAMES, evaluate_image, median

SUFFIXES = (".npy", ".pfm", ".png")
ALIGNMENTS = ("median", "scale-shift", "scale-shift-inverse", "none")
#: (top, bottom, left, right) of each crop, as fractions of the ground truth's height and width
CROPS = {
    "none": (0.0, 1.0, 0.0, 1.0),
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}


def read_pfm(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        header = f.readline().strip()
        if header != b"Pf":
            raise ValueError(f"{path}: not a one-channel PFM (header {header[:8]!r}, expected b'Pf')")
        width, height = (int(v) for v in f.readline().split())
        scale = float(f.readline().strip())
        data = np.fromfile(f, dtype="<f4" if scale < 0 else ">f4")
    if data.size != width * height:
        raise ValueError(f"{path}: {data.size} values for {width} x {height}")
    return np.flipud(data.reshape(height, width)).astype(np.float32)  # PFM rows run bottom to top


def write_pfm(path: Path, depth: np.ndarray) -> None:
    height, width = depth.shape
    with open(path, "wb") as f:
        f.write(f"Pf\n{width} {height}\n-1.0\n".encode())
        np.flipud(depth).astype("<f4").tofile(f)


def read_depth(path: Path, png_scale: float = 256.0) -> torch.Tensor:
    """(H, W) float32 depth from ``.npy``, ``.pfm`` or 16-bit ``.png``; ValueError naming the file."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            data = np.load(path)
        elif path.suffix == ".pfm":
            data = read_pfm(path)
        elif path.suffix == ".png":
            from PIL import Image

            with Image.open(path) as image:
                if image.mode not in ("I;16", "I;16B", "I"):
                    raise ValueError(f"a 16-bit depth PNG, got mode {image.mode}")
                data = np.asarray(image, dtype=np.float64) / png_scale
        else:
            raise ValueError(f"unknown depth format {path.suffix!r} (use {', '.join(SUFFIXES)})")
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read depth map {path}: {error}") from error
    data = np.squeeze(np.asarray(data, dtype=np.float32))
    if data.ndim != 2:
        raise ValueError(f"{path}: a depth map must be 2-D, got shape {data.shape}")
    return torch.from_numpy(data.copy())


def fit_affine(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares ``(a, b)`` with ``a * x + b ~ y`` (1-D float64); a constant ``x`` gives a = 0."""
    n = x.numel()
    sx, sy, sxx, sxy = x.sum(), y.sum(), (x * x).sum(), (x * y).sum()
    det = n * sxx - sx * sx
    a = torch.where(det.abs() > 1e-12 * max(n * sxx.item(), 1e-300), (n * sxy - sx * sy) / det, torch.zeros_like(det))
    return a, (sy - a * sx) / n


def crop_mask(height: int, width: int, crop: str) -> torch.Tensor:
    """(height, width) bool: true inside the crop (CROPS), its bounds truncated to whole pixels."""
    if crop not in CROPS:
        raise ValueError(f"--crop must be one of {tuple(CROPS)}, got {crop!r}")
    top, bottom, left, right = CROPS[crop]
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[int(top * height) : int(bottom * height), int(left * width) : int(right * width)] = True
    return mask


def resized(pred: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``pred`` (H, W) resized bilinearly to ``shape``, pixel centres at half-integers (cv2.resize)."""
    return torch.nn.functional.interpolate(pred[None, None], tuple(shape), mode="bilinear", align_corners=False)[0, 0]


def align(pred: torch.Tensor, gt: torch.Tensor, mode: str) -> torch.Tensor:
    """The prediction on the valid pixels (1-D, float64), aligned to the ground truth ``gt``."""
    if mode == "median":
        return pred * (median(gt) / median(pred))
    if mode == "scale-shift":
        a, b = fit_affine(pred, gt)
        return a * pred + b
    if mode == "scale-shift-inverse":
        a, b = fit_affine(pred, 1.0 / gt)
        return 1.0 / (a * pred + b)
    return pred


def pairs(predictions: Path, ground_truth: Path) -> list[tuple[Path, Path]]:
    """(prediction, ground truth) files of the same stem; ValueError listing what does not match."""
    found = {}
    for folder, label in ((predictions, "--predictions"), (ground_truth, "--ground-truth")):
        found[label] = {p.stem: p for p in sorted(Path(folder).iterdir()) if p.suffix in SUFFIXES}
    preds, gts = found["--predictions"], found["--ground-truth"]
    missing = sorted(set(preds) - set(gts))
    if missing:
        raise ValueError(
            f"no ground truth for {len(missing)} prediction(s) in {ground_truth}: {', '.join(missing[:5])}"
        )
    if not preds:
        raise ValueError(f"--predictions {predictions} holds no {', '.join(SUFFIXES)} file")
    return [(preds[stem], gts[stem]) for stem in sorted(preds)]


def read_stack(path: Path) -> list[torch.Tensor]:
    """The (H, W) float32 maps of a ``.npy`` or ``.npz`` stack, in order; ValueError naming the file.
    Pickles written by Python 2 are read as Monodepth2 reads its ground truth (latin-1 strings)."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=True, encoding="latin1") as arrays:
                names = list(arrays.keys())
                if "data" not in names and len(names) != 1:
                    raise ValueError(f"a .npz stack holds an array 'data' or only one array, got {names}")
                stack = arrays["data" if "data" in names else names[0]]
        elif path.suffix == ".npy":
            stack = np.load(path, allow_pickle=True, encoding="latin1")
            if not isinstance(stack, np.ndarray):
                raise ValueError("not a .npy array")
        else:
            raise ValueError(f"a stack of maps is a .npy or .npz file, got {path.suffix!r}")
        if stack.dtype != object and stack.ndim < 3:
            raise ValueError(f"a stack of maps is N x H x W, got shape {stack.shape}")
        maps = [np.squeeze(np.asarray(m, dtype=np.float32)) for m in stack]
    except (OSError, ValueError, TypeError, EOFError, pickle.UnpicklingError) as error:
        raise ValueError(f"cannot read {path}: {error}") from error
    for i, m in enumerate(maps):
        if m.ndim != 2:
            raise ValueError(f"{path}[{i}]: a depth map must be 2-D, got shape {m.shape}")
    return [torch.from_numpy(m.copy()) for m in maps]


def samples(
    predictions: Path, ground_truth: Path, png_scale: float
) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, prediction, ground truth) of every image: the files of the same stem in two folders
    (named by it), or the maps of two stacks (read_stack) in order (named by their index)."""
    folders = [Path(p).is_dir() for p in (predictions, ground_truth)]
    if all(folders):
        for pred_path, gt_path in pairs(predictions, ground_truth):
            yield pred_path.stem, read_depth(pred_path, png_scale), read_depth(gt_path, png_scale)
        return
    for path, label in ((predictions, "--predictions"), (ground_truth, "--ground-truth")):
        if not Path(path).exists():
            raise ValueError(f"{label} {path} does not exist")
    if any(folders):
        raise ValueError("--predictions and --ground-truth are both folders, or both stacks (.npy or .npz files)")
    preds, gts = read_stack(predictions), read_stack(ground_truth)
    if len(preds) != len(gts) or not preds:
        raise ValueError(f"{predictions} holds {len(preds)} maps but {ground_truth} holds {len(gts)}")
    width = len(str(len(preds) - 1))
    for i, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
        yield f"{i:0{width}d}", pred, gt


def evaluate_predictions(
    predictions: Path,
    ground_truth: Path,
    alignment: str = "median",
    png_scale: float = 256.0,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    crop: str = "none",
    resize: bool = False,
    disparity: bool = False,
) -> tuple[dict[str, float], list[dict]]:
    """The mean metrics and each image's (name, metrics, and the maps for the PNG)."""
    if alignment not in ALIGNMENTS:
        raise ValueError(f"--align must be one of {ALIGNMENTS}, got {alignment!r}")
    if disparity and alignment == "scale-shift-inverse":
        raise ValueError("--disparity: --align scale-shift-inverse takes the predictions as disparities already")
    per_image = []
    for name, pred, gt in samples(Path(predictions), Path(ground_truth), png_scale):
        if pred.shape != gt.shape and resize:
            pred = resized(pred, gt.shape)
        elif pred.shape != gt.shape:
            raise ValueError(
                f"prediction {name} is {tuple(pred.shape)} but its ground truth is {tuple(gt.shape)}"
                " (--resize resizes it)"
            )
        if disparity:
            pred = torch.where(pred > 0, 1.0 / pred, torch.nan)
        valid = (gt > min_depth) & (gt < max_depth) & torch.isfinite(pred) & crop_mask(*gt.shape, crop)
        if alignment in ("median", "none"):  # depth as it is: only positive values are depths
            valid &= pred > 0
        if not valid.any():
            raise ValueError(f"{name}: no valid pixel (ground truth in ({min_depth}, {max_depth}))")
        aligned = align(pred[valid].double(), gt[valid].double(), alignment).clamp(min_depth, max_depth)
        metrics = evaluate_image(gt[valid], aligned, min_depth, max_depth, median_scaling=False)
        full = torch.zeros_like(gt, dtype=torch.float64)
        full[valid] = aligned
        per_image.append({"name": name, "metrics": metrics, "pred": full, "gt": gt})
    names = [*METRIC_NAMES, "silog"]
    means = {n: sum(item["metrics"][n] for item in per_image) / len(per_image) for n in names}
    return means, per_image


def write_worst_png(per_image: list[dict], path: Path, rows: int = 3) -> Path:
    """The images with the largest abs rel: aligned prediction and ground truth (as 1 / depth)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worst = sorted(per_image, key=lambda item: item["metrics"]["abs_rel"], reverse=True)[:rows]
    fig, axes = plt.subplots(len(worst), 2, figsize=(8, 1.8 * len(worst) + 0.4), squeeze=False)
    for row, item in zip(axes, worst, strict=True):
        gt = item["gt"]
        valid_gt = gt[gt > 0]
        vmin, vmax = 1 / valid_gt.max().item(), 1 / valid_gt.min().item()
        for ax, depth, title in ((row[0], item["pred"], "aligned prediction"), (row[1], gt, "ground truth")):
            ax.imshow((1 / depth.clamp(min=1e-3)).numpy(), cmap="magma", vmin=vmin, vmax=vmax)
            ax.set_title(f"{item['name']}: {title} (abs rel {item['metrics']['abs_rel']:.3f})", fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(args) -> int:
    """The CLI: metrics (a table, or one JSON line) and the PNG of the worst images."""
    means, per_image = evaluate_predictions(
        args.predictions, args.ground_truth, args.align, args.png_scale, args.min_depth, args.max_depth,
        crop=args.crop, resize=args.resize, disparity=args.disparity,
    )  # fmt: skip
    source = Path(args.predictions)
    png = write_worst_png(
        per_image, args.png or source.parent / f"{source.stem if source.is_file() else source.name}-worst.png"
    )
    if args.json:
        print(json.dumps({"images": len(per_image), "align": args.align, "crop": args.crop, **means, "png": str(png)}))
    else:
        print(f"{len(per_image)} images, alignment {args.align}, crop {args.crop}")
        print("  ".join(f"{name} {value:.4f}" for name, value in means.items()))
        print(f"PNG: {png}")
    return 0
