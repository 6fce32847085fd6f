"""The benchmark works: one per op of :mod:`fastdepth.registry` (``works/<op>.py``; the
reprojection op's is the whole training-step objective, fused), plus compositions of the ops: the
same objective composed of the warp and photometric ops (``works/objective.py``), and the ways in
from ManyDepth (``works/match_features.py``) and the MVSNet family (``works/plane_sweep.py``)
against the code they replace."""

from __future__ import annotations

import importlib

from fastdepth import registry

COMPOSED = ("objective", "match_features", "plane_sweep")


def all_works() -> dict:
    """name -> Work, the ops first (registry order), then the composed works."""
    names = [*registry.OPS, *COMPOSED]
    return {name: importlib.import_module(f"fastdepth.benchmarks.works.{name}").WORK for name in names}
