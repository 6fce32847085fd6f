"""The benchmark works: one per op of :mod:`fastdepth.registry` (``works/<op>.py``; the
reprojection op's is the whole training-step objective, fused), plus the same objective composed of
the warp and photometric ops (``works/objective.py``)."""

from __future__ import annotations

import importlib

from fastdepth import registry

COMPOSED = ("objective",)


def all_works() -> dict:
    """name -> Work, the ops first (registry order), then the composed works."""
    names = [*registry.OPS, *COMPOSED]
    return {name: importlib.import_module(f"fastdepth.benchmarks.works.{name}").WORK for name in names}
