"""Correctness cases of the cost volume (see :mod:`fastdepth.checks`): the fused backends against the
float64 reference composition (the warp at every hypothesis, then the reduction)."""

from __future__ import annotations

import torch

import fastdepth
from fastdepth.checks.case import CaseResult, grads, leaves
from fastdepth.compare import max_abs, max_rel
from fastdepth.scenes import warp_scene
from fastdepth.tolerances import tolerance

#: name -> options; every case but ``per_pixel`` sweeps planes shared by all pixels
OPTIONS = {
    "l1": dict(reduction="l1"),
    "dot": dict(reduction="dot", padding_mode="border", align_corners=False),
    "group_dot": dict(reduction="group_dot", groups=2),
    "variance": dict(reduction="variance", padding_mode="border", align_corners=False),
    "per_pixel": dict(reduction="l1"),
    "buffers": dict(reduction="l1"),
}
CASES = tuple(OPTIONS)
#: the cases whose hypotheses, poses and K are buffers (ManyDepth's): gradients to the features only,
#: the projections by the fused backends' projection kernel
BUFFER_CASES = ("buffers",)
SANITIZER_CASES = ("l1", "buffers")
SELFCHECK_CASE = "buffers"  # every kernel of the op: the projection, forward and backward


def inputs(B, S, C, h, w, D, seed, dtype, device, per_pixel=False):
    """Features in [0, 1], random rigid poses and D hypotheses in [0.5, 8] (some project outside)."""
    scene = warp_scene(B, S, C, h, w, seed=seed, image_dtype=dtype, translation=0.3)
    gen = torch.Generator().manual_seed(seed + 1)
    target = torch.rand(B, C, h, w, generator=gen).to(dtype)
    planes = torch.linspace(0.5, 8.0, D).repeat(B, 1)
    hypotheses = 0.5 + 7.5 * torch.rand(B, D, h, w, generator=gen) if per_pixel else planes
    tensors = (target, scene["image"], hypotheses, scene["pose"], scene["K"])
    return [t.to(device) for t in tensors]


def run_case(name: str, backend: str, device: str, dtype: torch.dtype, quick: bool, seed: int = 0) -> CaseResult:
    """The cost and the gradients to both feature maps, the hypotheses, the poses and K (to the
    feature maps only in :data:`BUFFER_CASES`)."""
    result = CaseResult("cost_volume", name, backend, device, str(dtype).removeprefix("torch."))
    B, S, C, h, w, D = (1, 2, 4, 5, 7, 3) if quick else (2, 2, 8, 13, 19, 6)
    tensors = inputs(B, S, C, h, w, D, seed, dtype, device, per_pixel=name == "per_pixel")
    n = 2 if name in BUFFER_CASES else len(tensors)
    ours_in, ref_in = leaves(tensors[:n]), leaves(tensors[:n], torch.float64)
    geometry = tensors[n:]
    ours = fastdepth.cost_volume(*ours_in, *geometry, **OPTIONS[name], backend=backend)
    ref = fastdepth.cost_volume(*ref_in, *(t.double() for t in geometry), **OPTIONS[name], backend="torch")
    tol = tolerance("cost_volume", dtype, backend, device)
    result.forward_tol, result.gradient_tol = tol.forward, tol.gradient
    result.forward_error = max_abs(ours, ref)
    g = torch.rand(ours.shape, generator=torch.Generator().manual_seed(seed)).to(device)
    pairs = zip(grads(ours, ours_in, g), grads(ref, ref_in, g.to(dtype).double()), strict=True)
    result.gradient_error = max(max_rel(a, b, tol.gradient_floor) for a, b in pairs)
    return result
