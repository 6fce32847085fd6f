"""The ``fastdepth`` command (also ``python -m fastdepth``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _info(args: argparse.Namespace) -> int:
    import torch

    if not torch.cuda.is_available() and "TRITON_INTERPRET" not in os.environ:
        # no GPU: check the Triton kernels in Triton's CPU interpreter (before they are defined)
        os.environ["TRITON_INTERPRET"] = "1"
    from fastdepth import selfcheck

    text, ok = selfcheck.report()
    print(text)
    return 0 if ok else 1


def _bench(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fastdepth.benchmarks import run as runner

    return runner.main(
        args.runner_args, progress=lambda jobs: tqdm(jobs, desc="benchmarks", unit="case"), prog="fastdepth bench"
    )


def _needs_torchvision(command: str) -> None:
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        raise ValueError(f"fastdepth {command} needs torchvision: pip install 'fastdepth[train]'")


def _train(args: argparse.Namespace) -> int:
    _needs_torchvision("train")
    from fastdepth.train import evaluate
    from fastdepth.train.loop import TrainConfig, train

    fields = {f: getattr(args, f) for f in TrainConfig.__dataclass_fields__ if hasattr(args, f)}
    summary = train(TrainConfig(**fields))
    if "metrics_after" not in summary:  # not the main process of a distributed run
        return 0
    rows = {"before": summary["metrics_before"]} if "metrics_before" in summary else {}
    rows["after"] = summary["metrics_after"]
    losses = summary["losses"]
    print(f"\n{len(losses)} steps on {summary['device']} (backend {args.backend}, world size {summary['world_size']})")
    if losses:
        print(f"loss: first {losses[0]:.4f}, last {losses[-1]:.4f}")
    if summary["images_per_s"]:
        print(f"throughput: {summary['images_per_s']:.1f} images/s")
    if "replicas_equal" in summary:
        print(f"replicas equal: {summary['replicas_equal']}")
    print(f"depth metrics on {args.eval_images} held-out synthetic images (median-scaled):")
    print(evaluate.format_metrics(rows))
    if "val_after" in summary:
        from fastdepth.train import validate

        held_out = f"{args.val_data or args.data}" + (f" ({args.val_split})" if args.val_split else "")
        print(f"validation on {summary['val_images']} held-out triplets of {held_out}: the objective, no gradient")
        val_rows = {"before": summary["val_before"]} if "val_before" in summary else {}
        print(validate.format_losses({**val_rows, "after": summary["val_after"]}))
    print(f"PNG: {summary['png']}\ncheckpoint: {args.out}/checkpoint.pt")
    return 0


def _eval(args: argparse.Namespace) -> int:
    if args.predictions is not None or args.ground_truth is not None:
        if args.predictions is None or args.ground_truth is None or args.checkpoint is not None:
            raise ValueError("evaluate either --checkpoint, or --predictions with --ground-truth")
        if args.data is not None or args.split is not None:
            raise ValueError("--data and --split validate a --checkpoint, not --predictions")
        from fastdepth.train import predictions

        return predictions.run(args)
    if args.checkpoint is None:
        raise ValueError("evaluate either --checkpoint, or --predictions with --ground-truth")
    _needs_torchvision("eval")
    if args.images < 1:
        raise ValueError(f"--images must be at least 1, got {args.images}")
    if args.data is not None:
        from fastdepth.train import validate

        return validate.run(args.checkpoint, args.device, args.data, args.split, args.images, args.json, args.png)
    if args.split is not None:
        raise ValueError("--split names KITTI raw frames: give the KITTI raw folder as --data")
    from fastdepth.train.evaluate import run_eval

    return run_eval(args.checkpoint, args.device, args.images, args.json, args.png)


def _predict(args: argparse.Namespace) -> int:
    _needs_torchvision("predict")
    from fastdepth.train import predict

    return predict.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastdepth", description="Fused GPU kernels for self-supervised depth.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, usable backends and a self-check of each")
    info.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show a failure's traceback")
    info.set_defaults(func=_info)
    bench = sub.add_parser(
        "bench",
        help="benchmark every implementation against its peers (--quick --device --sizes --dtypes --works --out)",
        add_help=False,
    )
    bench.set_defaults(func=_bench, passes_through=True)

    from fastdepth.train.config import TrainConfig

    d = TrainConfig()
    train = sub.add_parser("train", help="self-supervised DepthNet training (synthetic world by default)")
    train.add_argument("--steps", type=int, default=d.steps, help="optimiser steps (0: write the untrained model)")
    train.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    train.add_argument("--height", type=int, default=d.height, help="multiple of 32")
    train.add_argument("--width", type=int, default=d.width, help="multiple of 32")
    train.add_argument("--device", default=d.device, help="auto | cpu | cuda")
    train.add_argument("--backend", default=d.backend, choices=["kornia", "torch", "triton", "cuda", "auto"])
    train.add_argument("--seed", type=int, default=d.seed)
    train.add_argument("--out", default=d.out, help="run directory: checkpoint, TensorBoard logs, PNG")
    train.add_argument("--lr", type=float, default=d.lr)
    train.add_argument("--amp", default=d.amp, choices=["auto", "none", "bf16", "fp16"])
    train.add_argument("--data", default=d.data, help="image-sequence folder (default: the synthetic world)")
    train.add_argument("--split", default=d.split, help="with --data: KITTI raw frames of a split file (Monodepth2's)")
    train.add_argument("--val-data", default=d.val_data, help="held-out image sequences: validation loss before/after")
    train.add_argument("--val-split", default=d.val_split, help="KITTI raw frames of --val-data (or --data)")
    train.add_argument("--val-every", type=int, default=d.val_every, help="also validate every N steps (TensorBoard)")
    train.add_argument("--augment", action="store_true", help="Monodepth2's flips and colour jitter")
    train.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help="data-loading processes (default: 0 on the CPU, up to 8 on a GPU)",
    )
    train.add_argument("--scenes", type=int, default=d.scenes, help="synthetic scenes")
    train.add_argument("--frames", type=int, default=d.frames, help="frames per synthetic scene")
    train.add_argument("--pretrained", action="store_true", help="ImageNet encoder weights (downloaded)")
    train.add_argument(
        "--monodepth2-sampling", action="store_true", help="warp with border padding, align_corners=False"
    )
    train.add_argument(
        "--objective",
        default=d.objective,
        choices=["fused", "composed"],
        help="fused: fastdepth.reprojection_loss per scale; composed: warp then min_reprojection_loss",
    )
    train.add_argument(
        "--supervised", action="store_true", help="train on the synthetic world's ground-truth depth (see --loss)"
    )
    train.add_argument(
        "--loss",
        default=d.loss,
        choices=["si", "ssi"],
        help="with --supervised: scale-invariant | scale-shift-invariant",
    )
    train.add_argument("--log-every", type=int, default=d.log_every)
    train.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    train.add_argument(
        "--eval-images", type=int, default=d.eval_images, help="held-out images before/after (synthetic, --val-data)"
    )
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show a failure's traceback")
    train.set_defaults(func=_train)

    ev = sub.add_parser(
        "eval",
        help="depth metrics of a checkpoint on held-out synthetic images, or of saved predictions, or a checkpoint's "
        "validation on held-out frames (--data), and a PNG",
    )
    ev.add_argument("--checkpoint", default=None, help="a run directory or a checkpoint file")
    ev.add_argument(
        "--predictions", type=Path, default=None, help="a folder of depth maps (.npy, .pfm, 16-bit .png) or a stack"
    )
    ev.add_argument("--ground-truth", type=Path, default=None, help="ground truth of the same file stems, or a stack")
    ev.add_argument(
        "--data", default=None, help="with --checkpoint: validate on these image sequences (no ground truth)"
    )
    ev.add_argument("--split", default=None, help="with --data: KITTI raw frames of a split file (Monodepth2's)")
    ev.add_argument("--align", default="median", choices=["median", "scale-shift", "scale-shift-inverse", "none"])
    ev.add_argument("--crop", default="none", choices=["none", "garg", "eigen"], help="KITTI's evaluation crops")
    ev.add_argument("--resize", action="store_true", help="resize predictions bilinearly to their ground truth")
    ev.add_argument("--disparity", action="store_true", help="the predictions are inverse depth")
    ev.add_argument("--png-scale", type=float, default=256.0, help="16-bit PNG value per metre (KITTI: 256)")
    ev.add_argument("--min-depth", type=float, default=1e-3)
    ev.add_argument("--max-depth", type=float, default=80.0)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--images", type=int, default=16, help="at least 1")
    ev.add_argument("--png", type=Path, default=None, help="where to write the PNG (default: beside the checkpoint)")
    ev.add_argument("--json", action="store_true", help="print one JSON line of metrics")
    ev.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show a failure's traceback")
    ev.set_defaults(func=_eval)

    pr = sub.add_parser("predict", help="a checkpoint's disparities for images on disk, for fastdepth eval")
    pr.add_argument("--checkpoint", required=True, help="a run directory or a checkpoint file")
    pr.add_argument("--data", type=Path, required=True, help="a folder of images, or KITTI raw with --split")
    pr.add_argument("--split", type=Path, default=None, help="a split file of KITTI raw frames (Monodepth2's)")
    pr.add_argument("--out", type=Path, required=True, help="a .npy stack for a split, else a folder")
    pr.add_argument("--device", default="auto", help="auto | cpu | cuda")
    pr.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show a failure's traceback")
    pr.set_defaults(func=_predict)
    return parser


def _first_line(error: Exception) -> str:
    """The error's message in one line: a data-loading worker's error is re-raised with its
    traceback as the message, whose last line is the worker's own message."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    prefix = f"{type(error).__name__}: "
    if lines[0].startswith("Caught ") and "DataLoader worker" in lines[0] and lines[-1].startswith(prefix):
        return lines[-1][len(prefix) :]
    return lines[0]


def main(argv: list[str] | None = None) -> int:
    """Every failure is one line naming the option or file, with a non-zero exit code: 2 for bad
    input (options, paths, data), 1 for anything else; ``--debug`` shows the traceback instead."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "passes_through", False):
        args.runner_args = rest  # the subcommand parses its own options
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.func(args)
    except Exception as error:
        if args.debug:
            raise
        bad_input = isinstance(error, (FileNotFoundError, NotADirectoryError, ValueError, TypeError))
        detail = _first_line(error)
        kind = "" if bad_input else f"{type(error).__name__}: "
        print(f"fastdepth {args.command}: error: {kind}{detail} (--debug shows the traceback)", file=sys.stderr)
        return 2 if bad_input else 1


if __name__ == "__main__":
    sys.exit(main())
