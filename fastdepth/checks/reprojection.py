"""Correctness cases of the reprojection op (the fused objective): the fused backends against the
float64 reference composition warp -> photometric maps -> minimum (see :mod:`fastdepth.checks`)."""

from __future__ import annotations

import torch

import fastdepth
from fastdepth.checks.case import CaseResult, grads, leaves
from fastdepth.compare import max_abs, max_rel
from fastdepth.scenes import WARP_EDGE_CASES, natural_images, warp_scene
from fastdepth.tolerances import tolerance

OPTIONS = {
    "kornia": dict(padding_mode="zeros", align_corners=True),
    "monodepth2": dict(padding_mode="border", align_corners=False),
}
#: sampling options; NaN depth; every warped source equal to an identity candidate (identity wins);
#: a training step's gradients (depth, poses, K only: the one-pass backward kernels; the other cases,
#: with gradients to the images too, run the three-pass backward)
CASES = (*OPTIONS, "nan_depth", "ties", "training")
SANITIZER_CASES = ("training",)  # both of the op's kernels
SELFCHECK_CASE = "monodepth2"


def run_case(name: str, backend: str, device: str, dtype: torch.dtype, quick: bool, seed: int = 0) -> CaseResult:
    """Loss, winners and the gradients to target, sources, depth, poses, K and identity maps (to
    depth, poses and K alone in the "training" case)."""
    result = CaseResult("reprojection", name, backend, device, str(dtype).removeprefix("torch."))
    options = OPTIONS.get(name, OPTIONS["monodepth2"])
    B, S, C, H, W = (1, 2, 2, 6, 9) if quick else (2, 2, 3, 37, 53)
    scene = warp_scene(B, S, C, H, W, seed=seed, image_dtype=dtype, translation=0.3)
    if name == "nan_depth":
        WARP_EDGE_CASES["nan_depth"](scene)
    if name == "ties":
        scene["pose"].copy_(torch.eye(4))  # the identity warp: every warped source equals its source
    target = natural_images(B, C, H, W, seed=seed, dtype=dtype)
    tensors = [t.to(device) for t in (target, scene["image"], scene["depth"], scene["pose"], scene["K"])]
    ours_in, ref_in = leaves(tensors), leaves(tensors, torch.float64)
    if name == "training":  # the images are data
        for t in (*ours_in[:2], *ref_in[:2]):
            t.requires_grad_(False)
    ours = _run(ours_in, backend, options)
    ref = _run(ref_in, "torch", options)
    tol = tolerance("reprojection", dtype, backend, device)
    result.forward_tol, result.gradient_tol = tol.forward, tol.gradient
    result.forward_error = max_abs(ours[0], ref[0])
    result.mismatches = int((ours[1] != ref[1]).sum())
    g = torch.rand(ours[0].shape, generator=torch.Generator().manual_seed(seed)).to(device)
    wrt = slice(2, None) if name == "training" else slice(None)
    pairs = zip(grads(ours[0], ours_in[wrt], g), grads(ref[0], ref_in[wrt], g.to(dtype).double()), strict=True)
    result.gradient_error = max(max_rel(a, b, tol.gradient_floor) for a, b in pairs)
    return result


def _run(inputs, backend, options):
    target, sources, depth, poses, K = inputs
    identity = fastdepth.identity_loss(target, sources, backend=backend)
    return fastdepth.reprojection_loss(target, sources, depth, poses, K, identity=identity, backend=backend, **options)
