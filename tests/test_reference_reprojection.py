"""The reference of the fused objective is the composition it replaces: warp, then the photometric
maps and the per-pixel minimum (min_reprojection_loss with the unwarped sources for auto-masking)."""

import pytest
import torch
from helpers import grads, leaves

from fastdepth.reference import photometric, reprojection, warp
from fastdepth.scenes import natural_images, warp_scene


def composed(target, sources, depth, poses, K, options):
    warped, _ = warp.warp(sources, depth, poses, K, False, options["padding_mode"], options["align_corners"], False)
    return photometric.min_reprojection_loss(target, warped, sources)[:2]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "options", [dict(padding_mode="zeros", align_corners=True), dict(padding_mode="border", align_corners=False)]
)
def test_equals_warp_then_min_reprojection(dtype, options, seed):
    scene = warp_scene(2, 2, 3, 7, 9, seed=seed, dtype=dtype, translation=0.3)
    target = natural_images(2, 3, 7, 9, seed=seed, dtype=dtype)
    inputs = leaves(target, scene["image"], scene["depth"], scene["pose"], scene["K"])
    identity = reprojection.identity_loss(inputs[0], inputs[1])
    loss, index = reprojection.reprojection_loss(*inputs, identity, 0.85, False, *options.values())
    inputs2 = leaves(target, scene["image"], scene["depth"], scene["pose"], scene["K"])
    expected, expected_index = composed(*inputs2, options)
    assert torch.equal(loss, expected) and torch.equal(index, expected_index)
    g = torch.rand_like(loss)
    for a, b in zip(grads(loss, inputs, g), grads(expected, inputs2, g), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-6)


def test_identity_loss_is_the_photometric_map_of_each_source(seed):
    target = natural_images(2, 3, 5, 6, seed=seed, dtype=torch.float64)
    sources = torch.rand(2, 3, 3, 5, 6, dtype=torch.float64)
    maps = reprojection.identity_loss(target, sources)
    assert maps.shape == (2, 3, 5, 6)
    for s in range(3):
        assert torch.equal(maps[:, s], photometric.photometric_loss(sources[:, s], target)[:, 0])
