"""Correctness cases of the warp op (see :mod:`fastdepth.checks`)."""

from __future__ import annotations

import torch

import fastdepth
from fastdepth.checks.case import KINK_TOL, CaseResult, gradient_error, grads, leaves, output_error
from fastdepth.conventions import DIVIDE_EPS
from fastdepth.reference import warp as reference
from fastdepth.scenes import WARP_EDGE_CASES, warp_scene
from fastdepth.tolerances import tolerance

NAMES = ("image", "depth", "pose", "K")
REPEATS = 5


def _sample_positions(depth, pose, K, normalize_points, align_corners):
    """``(iu, iv, z, finite)``, each (B, S, H, W) in float64 (bool): where every pixel samples each
    source, and whether its depth and projection are finite (else it warps to 0 whatever they are)."""
    depth, pose, K = (t.detach().double() for t in (depth, pose, K))
    H, W = depth.shape[-2:]
    u, v, z, finite = reference.project(depth, pose, K, normalize_points)
    return reference.sample_position(u, W, align_corners), reference.sample_position(v, H, align_corners), z, finite


def near_mask_edge(depth, pose, K, normalize_points, align_corners, tol=1e-4) -> torch.Tensor:
    """(B, S, 1, H, W): pixels whose float64 sample position lies within ``tol`` of the image edge
    (or whose z lies within ``tol`` of the divide threshold): float32 rounding may put those on
    either side, so the validity mask is not compared there."""
    iu, iv, z, _ = _sample_positions(depth, pose, K, normalize_points, align_corners)
    H, W = depth.shape[-2:]
    near = torch.zeros_like(iu, dtype=torch.bool)
    for pos, edge in ((iu, 0), (iu, W - 1), (iv, 0), (iv, H - 1), (z, DIVIDE_EPS)):
        near |= (pos - edge).abs() <= tol
    return near[:, :, None]


#: |z| in the source frame below which a sample counts as near the source camera's plane
NEAR_PLANE = 0.1


def fragile_samples(depth, pose, K, normalize_points, align_corners, tol=KINK_TOL) -> torch.Tensor:
    """(B, S, H, W): samples that float32 rounding alone moves by more than the bounds allow, left
    out of the comparisons (their outputs are not compared, their upstream gradient is 0):

    * near a kink of the warp, where its derivative jumps: a float64 sample position within ``tol``
      of an integer column or row (the bilinear taps change; the border clamp and the validity edge
      are integers too). Rounding puts about one position in 10^5 on the other side (seen: 2.2e-6
      px from an integer column), and the gradient there jumps by a finite amount;
    * near the source camera's plane (``|z| < NEAR_PLANE``, for the cases' depths of 0.5 to 10):
      x / z and y / z lose digits, and the float32 position moves by up to 1e-2 px (seen at
      |z| = 0.013, with border padding, which clamps the other coordinate onto the image: the warped
      value 2.2e-4 off).

    A pixel of non-finite depth is never fragile: it warps to 0. In 30 seeds of the cases at most
    0.7% of the warp's samples are fragile, 8.7% of the cost volume's hypotheses (0.5 to 8 deep,
    some near the plane).
    """
    iu, iv, z, finite = _sample_positions(depth, pose, K, normalize_points, align_corners)
    near = ((iu - iu.round()).abs() <= tol) | ((iv - iv.round()).abs() <= tol) | (z.abs() < NEAR_PLANE)
    return near & finite


OPTIONS = {
    "kornia": dict(padding_mode="zeros", align_corners=True),
    "monodepth2": dict(padding_mode="border", align_corners=False),
    "zeros_half_pixel": dict(padding_mode="zeros", align_corners=False),
    "border_normalized": dict(padding_mode="border", align_corners=True, normalize_points=True),
}


EDGES = ("nan_depth", "behind_camera", "off_image")
#: every case: the sampling options, edge cases of the scene (with Kornia's sampling), and the
#: deterministic (fixed-point) image gradient, bitwise equal over REPEATS runs like the others
CASES = (*OPTIONS, *EDGES, "deterministic")
SANITIZER_CASES = ("kornia", "nan_depth")
SELFCHECK_CASE = "monodepth2"


def run_case(name: str, backend: str, device: str, dtype: torch.dtype, quick: bool, seed: int = 0) -> CaseResult:
    """Forward, mask and all four gradients against the float64 reference; geometry gradients (all
    four in the ``deterministic`` case) bitwise equal over REPEATS backward runs."""
    result = CaseResult("warp", name, backend, device, str(dtype).removeprefix("torch."))
    options = OPTIONS.get(name, OPTIONS["kornia"])
    # S = 2 sources; the full size is not a multiple of any block size
    shape = (2, 2, 3, 9, 13) if quick else (2, 2, 3, 37, 53)
    scene = warp_scene(*shape, seed=seed, image_dtype=dtype, rotation=0.1, translation=0.5)
    if name in EDGES:
        WARP_EDGE_CASES[name](scene)
    tensors = [scene[n].to(device) for n in NAMES]
    ours_in, ref_in = leaves(tensors), leaves(tensors, torch.float64)
    deterministic = name == "deterministic"
    out, mask = fastdepth.warp(*ours_in, **options, return_mask=True, backend=backend, deterministic=deterministic)
    ref, ref_mask = fastdepth.warp(*ref_in, **options, return_mask=True, backend="torch")
    fragile = fragile_samples(*tensors[1:], options.get("normalize_points", False), options["align_corners"])
    fragile = fragile[:, :, None]
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(device)
    g = g.masked_fill(fragile, 0.0)
    ours_g = grads(out, ours_in, g)
    ref_g = grads(ref, ref_in, g.to(out.dtype).double())
    tol = tolerance("warp", dtype, backend, device)
    result.mismatches = int(((mask != ref_mask) & ~fragile).sum())  # the image edges are integers too
    result.forward_error, out_where = output_error(out.masked_fill(fragile, 0.0), ref.masked_fill(fragile, 0.0))
    result.gradient_error, grad_where = gradient_error(NAMES, ours_g, ref_g, tol.gradient_floor)
    result.where = f"{out_where}; {grad_where}"
    result.forward_tol, result.gradient_tol = tol.forward, tol.gradient
    checked = slice(0, 4) if deterministic else slice(1, 4)  # the float-atomic image gradient is not
    again = [
        grads(fastdepth.warp(*ours_in, **options, backend=backend, deterministic=deterministic), ours_in, g)
        for _ in range(REPEATS - 1)
    ]
    result.deterministic = all(
        torch.equal(a, b) for run in again for a, b in zip(run[checked], ours_g[checked], strict=True)
    )
    return result
