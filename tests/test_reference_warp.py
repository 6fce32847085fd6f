"""The reference warp against Kornia 0.9 and the Monodepth2 pipeline, and fp64 gradcheck."""

import kornia
import pytest
import torch
from fastdepth.benchmarks import monodepth2
from helpers import grads, leaves, max_abs, max_rel, non_contiguous

from fastdepth.reference import warp as reference
from fastdepth.scenes import WARP_EDGE_CASES, warp_scene

kornia_warp = kornia.geometry.depth.warp_frame_depth


def kornia_vs_reference(scene, normalize_points, dtype):
    """Forward outputs and grads (image, depth, pose, K) of Kornia and of the reference, per source."""
    image, depth, pose, K = leaves(scene["image"], scene["depth"], scene["pose"], scene["K"], dtype=dtype)
    ours, _ = reference.warp(image, depth, pose, K, normalize_points)
    theirs = torch.stack(
        [kornia_warp(image[:, s], depth, pose[:, s], K, normalize_points) for s in range(image.shape[1])], 1
    )
    g = torch.randn(ours.shape, dtype=torch.float64).to(dtype)
    return ours, theirs, grads(ours, [image, depth, pose, K], g), grads(theirs, [image, depth, pose, K], g)


SHAPES = [
    # (B, S, C, H, W)
    (1, 1, 3, 6, 8),
    (3, 2, 1, 5, 7),
    (2, 1, 5, 9, 4),
    (2, 2, 3, 1, 9),
    (2, 1, 2, 7, 1),
    (1, 1, 3, 17, 64),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("normalize_points", [False, True])
def test_matches_kornia_float64(shape, normalize_points, seed):
    scene = warp_scene(*shape, seed=seed, dtype=torch.float64, rotation=0.1, translation=0.5)
    ours, theirs, g_ours, g_theirs = kornia_vs_reference(scene, normalize_points, torch.float64)
    assert max_abs(ours, theirs) <= 1e-10
    for name, a, b in zip(("image", "depth", "pose", "K"), g_ours, g_theirs, strict=True):
        assert max_abs(a, b) <= 1e-10 * max(1.0, b.abs().max().item()), name


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("normalize_points", [False, True])
def test_matches_kornia_float32(shape, normalize_points, seed):
    # measured over 5 seeds: forward <= 9.5e-6 abs, gradients <= 4.3e-6 relative (W <= 64)
    scene = warp_scene(*shape, seed=seed, dtype=torch.float32, rotation=0.1, translation=0.5)
    ours, theirs, g_ours, g_theirs = kornia_vs_reference(scene, normalize_points, torch.float32)
    assert max_abs(ours, theirs) <= 2e-5
    for name, a, b in zip(("image", "depth", "pose", "K"), g_ours, g_theirs, strict=True):
        assert max_rel(a, b) <= 1e-4, name


def _edge_scene(case, seed):
    scene = warp_scene(2, 1, 3, 8, 10, seed=seed, dtype=torch.float64)
    WARP_EDGE_CASES[case](scene)
    return scene


# Kornia propagates NaN depth into the output, fastdepth gives 0 there: not compared ("nan_depth")
EDGE_CASES = [case for case in WARP_EDGE_CASES if case != "nan_depth"]


@pytest.mark.parametrize("case", EDGE_CASES)
def test_matches_kornia_edge_cases(case, seed):
    scene = _edge_scene(case, seed)
    ours, theirs, g_ours, g_theirs = kornia_vs_reference(scene, False, torch.float64)
    assert max_abs(ours, theirs) <= 1e-10
    for a, b in zip(g_ours, g_theirs, strict=True):
        assert max_abs(a, b) <= 1e-10 * max(1.0, b.abs().max().item())


def test_matches_kornia_non_contiguous(seed):
    scene = warp_scene(2, 1, 3, 8, 11, seed=seed, dtype=torch.float64)
    image, depth = non_contiguous(scene["image"][:, 0]), non_contiguous(scene["depth"])
    pose, K = non_contiguous(scene["pose"][:, 0]), non_contiguous(scene["K"])
    ours, _ = reference.warp(image[:, None], depth, pose[:, None], K)
    assert max_abs(ours[:, 0], kornia_warp(image, depth, pose, K)) <= 1e-10


@pytest.mark.parametrize("eps,tol", [(0.0, 1e-10), (1e-7, 1e-5)])
def test_border_matches_monodepth2(eps, tol, seed):
    # eps = 1e-7 is Monodepth2's own z + 1e-7; fastdepth divides by z exactly (Kornia's rule)
    scene = warp_scene(2, 1, 3, 10, 14, seed=seed, dtype=torch.float64, translation=0.5)
    image, depth, pose, K = leaves(scene["image"][:, 0], scene["depth"], scene["pose"][:, 0], scene["K"])
    ours, _ = reference.warp(image[:, None], depth, pose[:, None], K, padding_mode="border", align_corners=False)
    B, _, H, W = depth.shape
    theirs = monodepth2.Warper(B, H, W, "cpu", torch.float64, eps)(image, depth, pose, K)
    assert max_abs(ours[:, 0], theirs) <= tol
    g = torch.randn_like(theirs)
    for a, b in zip(grads(ours[:, 0], [image, depth, pose], g), grads(theirs, [image, depth, pose], g), strict=True):
        assert max_rel(a, b) <= tol * 10


@pytest.mark.parametrize("padding_mode,align_corners", [("zeros", True), ("border", False)])
@pytest.mark.parametrize("normalize_points", [False, True])
def test_gradcheck(padding_mode, align_corners, normalize_points, seed):
    scene = warp_scene(1, 2, 2, 4, 5, seed=seed, dtype=torch.float64, translation=0.3)
    inputs = leaves(scene["image"], scene["depth"], scene["pose"], scene["K"])

    def fn(image, depth, pose, K):
        return reference.warp(image, depth, pose, K, normalize_points, padding_mode, align_corners)[0]

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def test_mask_definition(seed):
    scene = _edge_scene("off_image", seed)
    u, v, z, finite = reference.project(scene["depth"], scene["pose"], scene["K"])
    _, mask = reference.warp(scene["image"], scene["depth"], scene["pose"], scene["K"])
    H, W = scene["depth"].shape[-2:]
    expected = finite & (z > 1e-8) & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    assert mask.dtype == torch.bool and mask.shape == (2, 1, 1, H, W)
    assert torch.equal(mask[:, :, 0], expected)
    assert 0 < mask.sum() < mask.numel()


@pytest.mark.parametrize("depth", [1e30, 3e38])
def test_float32_reference_holds_at_extreme_depth(depth, seed):
    # the oracle projects in float64: at depths where float32 arithmetic overflows or cancels its
    # gradients stay finite and its K and pose gradients (rows of R and t) match the float64 inputs'
    scene = warp_scene(1, 1, 3, 6, 8, seed=seed)
    scene["depth"].fill_(depth)
    scene["pose"][..., :3, 3] = 0.0  # a rotation: a finite projection at any depth
    results = []
    for dtype in (torch.float32, torch.float64):
        inputs = leaves(scene["image"], scene["depth"], scene["pose"], scene["K"], dtype=dtype)
        out, _ = reference.warp(*inputs)
        results.append(grads(out, inputs, torch.ones_like(out)))
    for name, gradient in zip(("image", "depth", "pose", "K"), results[0], strict=True):
        assert torch.isfinite(gradient).all(), name
    assert max_rel(results[0][3], results[1][3]) <= 1e-5
    assert max_rel(results[0][2][..., :3, :], results[1][2][..., :3, :]) <= 1e-5
