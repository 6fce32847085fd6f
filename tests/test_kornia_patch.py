"""patch_kornia swaps Kornia's warp_frame_depth for fastdepth's, as a call or a context manager."""

import warnings

import kornia
import pytest
import torch
from conftest import BACKEND_NAMES, FUSED
from helpers import leaves, max_abs, max_rel

import fastdepth
from fastdepth.scenes import warp_scene
from fastdepth.tolerances import tolerance

FUSED_AND_REFERENCE = [("torch", "cpu"), *FUSED]


def test_context_manager_patches_and_restores(seed):
    original = kornia.geometry.depth.warp_frame_depth
    scene = warp_scene(1, 1, 3, 6, 8, seed=seed)
    args = (scene["image"][:, 0], scene["depth"], scene["pose"][:, 0], scene["K"])
    expected = original(*args)
    with fastdepth.patch_kornia():
        assert kornia.geometry.depth.warp_frame_depth is fastdepth.warp_frame_depth
        assert kornia.geometry.warp_frame_depth is fastdepth.warp_frame_depth
        assert torch.allclose(kornia.geometry.depth.warp_frame_depth(*args), expected, atol=2e-5)
    assert kornia.geometry.depth.warp_frame_depth is original
    assert kornia.geometry.warp_frame_depth is original


def test_call_patches_until_restore():
    original = kornia.geometry.depth.warp_frame_depth
    patch = fastdepth.patch_kornia()
    try:
        assert kornia.geometry.depth.warp_frame_depth is fastdepth.warp_frame_depth
    finally:
        patch.restore()
    assert kornia.geometry.depth.warp_frame_depth is original


def test_nested_patches_restored_in_any_order():
    original = kornia.geometry.depth.warp_frame_depth
    first, second = fastdepth.patch_kornia(), fastdepth.patch_kornia()
    first.restore()
    assert kornia.geometry.depth.warp_frame_depth is fastdepth.warp_frame_depth  # the second is still active
    second.restore()
    second.restore()  # restoring twice changes nothing
    assert kornia.geometry.depth.warp_frame_depth is original
    assert kornia.geometry.warp_frame_depth is original


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_kornia_gradcheck_under_the_patch(backend, monkeypatch, seed):
    # Kornia's own gradcheck of warp_frame_depth (float64) passes with the patch on every backend:
    # the CPU twin computes float64, Triton falls back to the reference (one warning per process)
    monkeypatch.setenv("FASTDEPTH_BACKEND", backend)
    scene = warp_scene(1, 1, 2, 4, 5, seed=seed, dtype=torch.float64, translation=0.3)
    inputs = leaves(scene["image"][:, 0], scene["depth"], scene["pose"][:, 0], scene["K"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with fastdepth.patch_kornia():
            assert torch.autograd.gradcheck(kornia.geometry.depth.warp_frame_depth, inputs, eps=1e-6, atol=1e-6)


# max |fastdepth - Kornia| measured with all four inputs at the dtype (2x12x16, 1 seed): Kornia computes
# its geometry in that dtype, fastdepth in float32, so fastdepth is the closer to the float64 truth
# (fp16: 2.3e-3 against Kornia's 9.6e-3; bf16: 2.7e-2 against 9.6e-2)
HALF_AGAINST_KORNIA = {torch.float16: 0.0088, torch.bfloat16: 0.116}


@pytest.mark.parametrize("backend,device", FUSED_AND_REFERENCE)
@pytest.mark.parametrize("dtype", list(HALF_AGAINST_KORNIA))
def test_half_precision_kornia_calls(backend, device, dtype, seed):
    scene = warp_scene(2, 1, 3, 12, 16, seed=seed, rotation=0.1, translation=0.3)
    args = [t.to(dtype) for t in (scene["image"][:, 0], scene["depth"], scene["pose"][:, 0], scene["K"])]
    theirs = kornia.geometry.depth.warp_frame_depth(*args)
    inputs = leaves(*(a.to(device) for a in args))
    ours = fastdepth.warp_frame_depth(*inputs, backend=backend)
    assert ours.dtype == theirs.dtype == dtype
    truth = fastdepth.warp_frame_depth(*(a.double().to(device) for a in args), backend="torch")
    assert max_abs(ours, truth) <= 2 * tolerance("warp", dtype, backend, device).forward
    assert max_abs(ours.cpu(), theirs) <= 2 * HALF_AGAINST_KORNIA[dtype]
    gradients = torch.autograd.grad(ours, inputs, torch.ones_like(ours))
    assert [g.dtype for g in gradients] == [dtype] * 4 and all(torch.isfinite(g).all() for g in gradients)


@pytest.mark.parametrize("backend,device", FUSED_AND_REFERENCE)
def test_amp_mix_of_dtypes(backend, device, seed):
    # what an AMP loop produces: a bf16 (or fp16) image and depth, float32 pose and intrinsics
    half = torch.float16 if backend == "triton" and device == "cpu" else torch.bfloat16
    scene = warp_scene(2, 2, 3, 9, 11, seed=seed, translation=0.3)
    tensors = [scene["image"].to(half), scene["depth"].to(half), scene["pose"], scene["K"]]
    inputs = leaves(*(t.to(device) for t in tensors))
    out = fastdepth.warp(*inputs, backend=backend)
    reference = leaves(*(t.double().to(device) for t in tensors))
    expected = fastdepth.warp(*reference, backend="torch")
    tol = tolerance("warp", half, backend, device)
    assert out.dtype == half and max_abs(out, expected) <= tol.forward
    g = torch.randn(out.shape, device=device)
    ours = torch.autograd.grad(out, inputs, g.to(half))
    theirs = torch.autograd.grad(expected, reference, g.to(half).double())
    assert [t.dtype for t in ours] == [half, half, torch.float32, torch.float32]
    for name, a, b in zip(("image", "depth", "pose", "K"), ours, theirs, strict=True):
        # depth and image gradients are rounded to the half dtype, pose and K are float32
        bound = (
            tol.gradient if name in ("image", "depth") else tolerance("warp", torch.float32, backend, device).gradient
        )
        assert max_rel(a, b, 0.1) <= bound, name


@pytest.mark.parametrize("backend,device", FUSED_AND_REFERENCE)
def test_float32_depth_gradient_far_beyond_the_translation(backend, device, seed):
    # depth 1e4 to 1e5, translation 0.3: the depth gradient along the ray cancels; Kornia's float32
    # gradient is 2.9e-3 off its float64 one there (max-norm relative, 10 seeds), fastdepth's 1.5e-6
    scene = warp_scene(1, 1, 3, 12, 16, seed=seed, dtype=torch.float64, rotation=0.05, translation=0.3)
    scene["depth"] = scene["depth"] * 1e4
    args = (scene["image"][:, 0], scene["depth"], scene["pose"][:, 0], scene["K"])
    g = torch.rand(1, 3, 12, 16, dtype=torch.float64)
    truth = leaves(*args)
    (expected,) = torch.autograd.grad(kornia.geometry.depth.warp_frame_depth(*truth), truth[1], g)
    inputs = leaves(*(a.float().to(device) for a in args))
    (ours,) = torch.autograd.grad(fastdepth.warp_frame_depth(*inputs, backend=backend), inputs[1], g.float().to(device))
    assert max_rel(ours.cpu(), expected) <= 1e-4
