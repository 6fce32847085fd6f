"""fastdepth.manydepth.match_features against ManyDepth's ``ResnetEncoderMatching.match_features``
as written from its formulas (``fastdepth.benchmarks.manydepth``, dividing by z: ``eps=0``)."""

import re
import sys
import types
from pathlib import Path

import pytest
import torch
from fastdepth.benchmarks import manydepth as peer
from helpers import max_rel

from fastdepth.manydepth import match_features
from fastdepth.scenes import axis_angle_to_matrix

README = Path(__file__).resolve().parents[1] / "README.md"
B, S, C, h, w, D = 2, 2, 8, 12, 20, 6


def inputs(dtype):
    g = torch.Generator().manual_seed(3)
    current = torch.rand(B, C, h, w, generator=g, dtype=dtype)
    lookup = torch.rand(B, S, C, h, w, generator=g, dtype=dtype)
    poses = torch.eye(4, dtype=torch.float64).repeat(B, S, 1, 1)
    poses[..., :3, :3] = axis_angle_to_matrix(torch.randn(B, S, 3, generator=g, dtype=torch.float64) * 0.05)
    poses[..., :3, 3] = torch.randn(B, S, 3, generator=g, dtype=torch.float64) * 0.3
    poses[1, 1] = 0  # batch element 1 lacks its second lookup frame
    K = torch.tensor([[0.6 * w, 0, 0.5 * w, 0], [0, 1.9 * h, 0.5 * h, 0], [0, 0, 1, 0], [0, 0, 0, 1]]).repeat(B, 1, 1)
    bins = 1 / torch.linspace(1 / 0.5, 1 / 20, D, dtype=torch.float64)
    geometry = torch.float64 if dtype == torch.float64 else torch.float32
    return current, lookup, poses.to(geometry), K.to(geometry), bins.to(geometry)


CASES = [(torch.float64, "torch", 1e-10), (torch.float64, "cuda", 1e-10)]
CASES += [(torch.float32, backend, 1e-5) for backend in ("cuda", "triton")]


@pytest.mark.parametrize("set_missing_to_max", [True, False])
@pytest.mark.parametrize("dtype,backend,rtol", CASES)
def test_match_features_is_manydepths(dtype, backend, rtol, set_missing_to_max):
    current, lookup, poses, K, bins = inputs(dtype)
    current.requires_grad_(True)
    theirs, their_mask = peer.match_features(current, lookup, poses, K, torch.linalg.inv(K), bins, set_missing_to_max)
    ours, our_mask = match_features(
        current, lookup, poses, K, bins, set_missing_to_max=set_missing_to_max, backend=backend
    )
    assert ours.shape == our_mask.shape == (B, D, h, w) and ours.dtype == their_mask.dtype
    assert torch.equal(our_mask, their_mask)
    assert 0.1 < their_mask.mean() < 0.9  # planes that count and planes that are missing
    assert max_rel(ours, theirs) <= rtol
    grad = torch.rand(B, D, h, w, generator=torch.Generator().manual_seed(0), dtype=dtype)
    (their_grad,) = torch.autograd.grad(theirs, [current], grad)
    (our_grad,) = torch.autograd.grad(ours, [current], grad)
    assert max_rel(our_grad, their_grad) <= 10 * rtol


def test_3x3_intrinsics_and_one_set_of_bins_per_batch_element():
    current, lookup, poses, K, bins = inputs(torch.float64)
    expected = match_features(current, lookup, poses, K, bins, backend="torch")
    got = match_features(current, lookup, poses, K[:, :3, :3], bins.expand(B, D), backend="torch")
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


@pytest.mark.parametrize(
    "change,pattern",
    [
        (lambda a: {**a, "K": a["K"][:, :2]}, r"K must be \(B, 3, 3\) or \(B, 4, 4\), got \(2, 2, 4\)"),
        (lambda a: {**a, "depth_bins": a["depth_bins"].view(1, 1, D)}, r"depth_bins must be \(D,\) or \(B, D\)"),
        (lambda a: {**a, "relative_poses": a["relative_poses"][:, :, :3]}, r"poses"),
    ],
)
def test_bad_inputs(change, pattern):
    names = ("current_feats", "lookup_feats", "relative_poses", "K", "depth_bins")
    arguments = change(dict(zip(names, inputs(torch.float64), strict=True)))
    with pytest.raises(ValueError, match=pattern):
        match_features(**arguments, backend="torch")


def test_the_readme_swaps_it_into_manydepth(monkeypatch):
    block = re.search(r"<!-- manydepth-match-features -->\s*```python\n(.+?)\n```", README.read_text(), re.S)
    assert block, "README.md has no Python block after <!-- manydepth-match-features -->"

    class ResnetEncoderMatching:  # the attributes of ManyDepth's that the swap reads
        set_missing_to_max = True

    networks = types.ModuleType("manydepth.networks")
    networks.ResnetEncoderMatching = ResnetEncoderMatching
    monkeypatch.setitem(sys.modules, "manydepth", types.ModuleType("manydepth"))
    monkeypatch.setitem(sys.modules, "manydepth.networks", networks)
    exec(compile(block.group(1), "README.md", "exec"), {})
    current, lookup, poses, K, bins = inputs(torch.float64)
    encoder = ResnetEncoderMatching()
    encoder.depth_bins = bins
    got = encoder.match_features(current, lookup, poses, K, torch.linalg.inv(K))
    expected = peer.match_features(current, lookup, poses, K, torch.linalg.inv(K), bins, True)
    assert all(max_rel(a, b) <= 1e-10 for a, b in zip(got, expected, strict=True))
