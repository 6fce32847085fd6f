"""Correctness cases of the cost volume (see :mod:`fastdepth.checks`): the fused backends against the
float64 reference composition (the warp at every hypothesis, then the reduction)."""

from __future__ import annotations

import contextlib

import torch

import fastdepth
from fastdepth.checks.case import KINK_TOL, CaseResult, gradient_error, grads, leaves, output_error
from fastdepth.checks.warp import fragile_samples
from fastdepth.cost_volume import backward_kernel
from fastdepth.reference import warp as warp_reference
from fastdepth.reference.cost_volume import hypothesis_maps
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
    "sweep": dict(reduction="l1"),
}
CASES = tuple(OPTIONS)
#: the cases whose hypotheses, poses and K are buffers (ManyDepth's): gradients to the features only,
#: the projections by the fused backends' projection kernel
BUFFER_CASES = ("buffers",)
#: the cases run through the GPU backends' sweep backward (fastdepth.cost_volume.BACKWARD = "sweep"),
#: with 10 channels (two full chunks of 4 and a partial one) and planes dense enough that runs of
#: hypotheses sample the same taps, and others do not (tests/test_cost_volume.py checks both occur)
SWEEP_CASES = ("sweep",)
SWEEP_PLANES = (2.0, 2.6)
SANITIZER_CASES = ("l1", "buffers", "sweep")
SELFCHECK_CASE = "buffers"  # every kernel of the op: the projection, forward and backward


def inputs(B, S, C, h, w, D, seed, dtype, device, per_pixel=False, planes=(0.5, 8.0)):
    """Features in [0, 1], random rigid poses and D hypotheses (some project outside): per pixel,
    uniform in [0.5, 8], or planes evenly spaced across ``planes``."""
    scene = warp_scene(B, S, C, h, w, seed=seed, image_dtype=dtype, translation=0.3)
    gen = torch.Generator().manual_seed(seed + 1)
    target = torch.rand(B, C, h, w, generator=gen).to(dtype)
    even = torch.linspace(*planes, D).repeat(B, 1)
    hypotheses = 0.5 + 7.5 * torch.rand(B, D, h, w, generator=gen) if per_pixel else even
    tensors = (target, scene["image"], hypotheses, scene["pose"], scene["K"])
    return [t.to(device) for t in tensors]


def run_case(name: str, backend: str, device: str, dtype: torch.dtype, quick: bool, seed: int = 0) -> CaseResult:
    """The cost and the gradients to both feature maps, the hypotheses, the poses and K (to the
    feature maps only in :data:`BUFFER_CASES`; in :data:`SWEEP_CASES` through the sweep backward).
    Left out of the comparisons: the hypotheses with a fragile sample in any source
    (:func:`~fastdepth.checks.warp.fragile_samples`) and, of the gradients of ``l1``, those with a
    warped feature within KINK_TOL of the target's (the kink of the absolute difference)."""
    result = CaseResult("cost_volume", name, backend, device, str(dtype).removeprefix("torch."))
    B, S, C, h, w, D = (1, 2, 4, 5, 7, 3) if quick else (2, 2, 8, 13, 19, 6)
    sweep = name in SWEEP_CASES
    C = 10 if sweep else C
    planes = SWEEP_PLANES if sweep else (0.5, 8.0)
    tensors = inputs(B, S, C, h, w, D, seed, dtype, device, per_pixel=name == "per_pixel", planes=planes)
    n = 2 if name in BUFFER_CASES else len(tensors)
    ours_in, ref_in = leaves(tensors[:n]), leaves(tensors[:n], torch.float64)
    geometry = tensors[n:]
    ours = fastdepth.cost_volume(*ours_in, *geometry, **OPTIONS[name], backend=backend)
    ref = fastdepth.cost_volume(*ref_in, *(t.double() for t in geometry), **OPTIONS[name], backend="torch")
    tol = tolerance("cost_volume", dtype, backend, device)
    result.forward_tol, result.gradient_tol = tol.forward, tol.gradient
    with torch.no_grad():
        fragile, l1_kinks = _left_out([t.double() for t in tensors], OPTIONS[name])
    if ours.dim() == 5:  # (B, G or C, D, h, w)
        fragile, l1_kinks = fragile[:, None], l1_kinks[:, None]
    result.forward_error, out_where = output_error(ours.masked_fill(fragile, 0.0), ref.masked_fill(fragile, 0.0))
    g = torch.rand(ours.shape, generator=torch.Generator().manual_seed(seed)).to(device)
    g = g.masked_fill(fragile | l1_kinks, 0.0)
    names = ("features_target", "features_source", "depth_hypotheses", "poses", "K")[:n]
    with backward_kernel("sweep") if sweep else contextlib.nullcontext():
        ours_grads = grads(ours, ours_in, g)
    result.gradient_error, grad_where = gradient_error(
        names, ours_grads, grads(ref, ref_in, g.to(dtype).double()), tol.gradient_floor
    )
    result.where = f"{out_where}; {grad_where}"
    return result


def _left_out(tensors, options) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, D, h, w) twice: the hypotheses with a fragile sample in any source, and (reduction l1)
    those with a warped feature at the kink of the absolute difference."""
    target, source, hypotheses, poses, K = tensors
    maps = hypothesis_maps(hypotheses, *target.shape[-2:])
    align_corners = options.get("align_corners", True)
    fragile, kinks = [], []
    for d in range(maps.shape[1]):
        depth = maps[:, d : d + 1]
        fragile.append(fragile_samples(depth, poses, K, False, align_corners).any(1))
        warped, _ = warp_reference.warp(
            source, depth, poses, K, False, options.get("padding_mode", "zeros"), align_corners
        )
        kinks.append(((target[:, None] - warped).abs() <= KINK_TOL).flatten(1, 2).any(1))
    l1 = options["reduction"] == "l1"
    return torch.stack(fragile, 1), torch.stack(kinks, 1) & l1
