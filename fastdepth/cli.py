"""The ``fastdepth`` command (also ``python -m fastdepth``)."""

from __future__ import annotations

import argparse
import os
import sys


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

    return runner.main(args.runner_args, progress=lambda jobs: tqdm(jobs, desc="benchmarks", unit="case"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastdepth", description="Fused GPU kernels for self-supervised depth.")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, usable backends and a self-check of each")
    info.set_defaults(func=_info)
    bench = sub.add_parser(
        "bench",
        help="benchmark every implementation against its peers (--quick --device --sizes --dtypes --works --out)",
        add_help=False,
    )
    bench.set_defaults(func=_bench, passes_through=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "passes_through", False):
        args.runner_args = rest  # the subcommand parses its own options
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
