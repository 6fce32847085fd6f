"""Correctness cases of the reprojection op (the fused objective): the fused backends against the
float64 reference composition warp -> photometric maps -> minimum (see :mod:`fastdepth.checks`)."""

from __future__ import annotations

import contextlib

import torch

import fastdepth
from fastdepth.checks.case import KINK_TOL, CaseResult, gradient_error, grads, leaves, output_error, winner_mismatches
from fastdepth.checks.warp import fragile_samples
from fastdepth.reference import reprojection as reference
from fastdepth.reference import warp as warp_reference
from fastdepth.reprojection import forward_kernel
from fastdepth.scenes import WARP_EDGE_CASES, natural_images, warp_scene
from fastdepth.tolerances import tie_tolerance, tolerance

NAMES = ("target", "sources", "depth", "poses", "K", "identity")
OPTIONS = {
    "kornia": dict(padding_mode="zeros", align_corners=True),
    "monodepth2": dict(padding_mode="border", align_corners=False),
}
#: sampling options; NaN depth; exact ties (source 1 a copy of source 0 under the same pose: its
#: identity map and its warped loss equal source 0's bit for bit, so source 1 never wins); a training
#: step's gradients (depth, poses, K only: the one-pass backward kernels; the other cases, with
#: gradients to the images too, run the three-pass backward); the window forward (FORWARD = "window";
#: the other cases run the default, the tile forward)
CASES = (*OPTIONS, "nan_depth", "ties", "training", "window")
SANITIZER_CASES = ("training", "window")  # every kernel of the op
SELFCHECK_CASE = "monodepth2"


def run_case(name: str, backend: str, device: str, dtype: torch.dtype, quick: bool, seed: int = 0) -> CaseResult:
    """Loss, winners and the gradients to target, sources, depth, poses, K and the identity maps (to
    depth, poses and K alone in the "training" case).

    The identity maps are an input: computed once by the backend in the images' dtype and given to
    both. Left out of the comparisons: the windows that hold a fragile sample
    (:func:`~fastdepth.checks.warp.fragile_samples`; at most 1.6% of the pixels in 30 seeds); of the
    winners, near-ties (:func:`~fastdepth.checks.case.winner_mismatches`); of the gradients, also
    the near-ties and the pixels whose L1 term sits at its kink (a warped value within KINK_TOL of
    the target's).
    """
    result = CaseResult("reprojection", name, backend, device, str(dtype).removeprefix("torch."))
    options = OPTIONS.get(name, OPTIONS["monodepth2"])
    B, S, C, H, W = (1, 2, 2, 6, 9) if quick else (2, 2, 3, 37, 53)
    scene = warp_scene(B, S, C, H, W, seed=seed, image_dtype=dtype, translation=0.3)
    if name == "nan_depth":
        WARP_EDGE_CASES["nan_depth"](scene)
    if name == "ties":
        scene["image"][:, 1] = scene["image"][:, 0]
        scene["pose"][:, 1] = scene["pose"][:, 0]
    target = natural_images(B, C, H, W, seed=seed, dtype=dtype)
    tensors = [t.to(device) for t in (target, scene["image"], scene["depth"], scene["pose"], scene["K"])]
    tensors.append(fastdepth.identity_loss(*tensors[:2], backend=backend).detach())
    ours_in, ref_in = leaves(tensors), leaves(tensors, torch.float64)
    if name == "training":  # the images and the identity maps are data
        for t in (*ours_in[:2], ours_in[5], *ref_in[:2], ref_in[5]):
            t.requires_grad_(False)
    with forward_kernel("window") if name == "window" else contextlib.nullcontext():
        ours = _run(ours_in, backend, options)
    ref = _run(ref_in, "torch", options)
    tol = tolerance("reprojection", dtype, backend, device)
    result.forward_tol, result.gradient_tol = tol.forward, tol.gradient
    with torch.no_grad():
        maps, warped = _candidate_maps(ref_in, options)
        fragile = fragile_samples(*tensors[2:5], False, options["align_corners"]).any(1, keepdim=True)
        fragile = torch.nn.functional.max_pool2d(fragile.double(), 3, stride=1, padding=1) > 0
        l1_kinks = ((ref_in[0][:, None] - warped).abs() <= KINK_TOL).flatten(1, 2).any(1, keepdim=True)
    result.forward_error, out_where = output_error(ours[0].masked_fill(fragile, 0.0), ref[0].masked_fill(fragile, 0.0))
    result.mismatches, near_ties = winner_mismatches(
        maps, ours[1], ref[1], tie_tolerance("reprojection", backend, device), ignore=fragile
    )
    g = torch.rand(ours[0].shape, generator=torch.Generator().manual_seed(seed)).to(device)
    g = g.masked_fill(fragile | near_ties | l1_kinks, 0.0)
    wrt = [i for i, t in enumerate(ours_in) if t.requires_grad]
    result.gradient_error, grad_where = gradient_error(
        [NAMES[i] for i in wrt],
        grads(ours[0], [ours_in[i] for i in wrt], g),
        grads(ref[0], [ref_in[i] for i in wrt], g.to(dtype).double()),
        tol.gradient_floor,
    )
    result.where = f"{out_where}; {grad_where}"
    return result


def _run(inputs, backend, options):
    target, sources, depth, poses, K, identity = inputs
    return fastdepth.reprojection_loss(target, sources, depth, poses, K, identity=identity, backend=backend, **options)


def _candidate_maps(inputs, options) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's loss of every candidate (B, S' + S, H, W), the identity maps first, and its
    warped sources (B, S, C, H, W)."""
    target, sources, depth, poses, K, identity = inputs
    warped, _ = warp_reference.warp(sources, depth, poses, K, False, options["padding_mode"], options["align_corners"])
    return torch.cat([identity, reference.identity_loss(target, warped)], dim=1), warped
