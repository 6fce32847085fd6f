"""patch_kornia swaps Kornia's warp_frame_depth for fastdepth's, as a call or a context manager."""

import kornia
import torch

import fastdepth
from fastdepth.scenes import warp_scene


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
