"""fastdepth.mvsnet.plane_sweep against the MVSNet family's ``homo_warping`` and its variance and
group-wise correlation volumes as written from their formulas (``fastdepth.benchmarks.mvsnet``)."""

import pytest
import torch
from fastdepth.benchmarks import mvsnet as peer
from helpers import max_rel

from fastdepth.mvsnet import plane_sweep
from fastdepth.scenes import axis_angle_to_matrix

B, S, C, H, W, D, G = 2, 2, 8, 12, 20, 5, 4


def projection(K, axis_angle, t):
    P = torch.eye(4, dtype=torch.float64).repeat(B, 1, 1)
    P[:, :3, :3] = K @ axis_angle_to_matrix(axis_angle)
    P[:, :3, 3] = (K @ t[..., None])[..., 0]
    return P


def views(dtype, per_pixel):
    """Reference and source views of one camera rig, each with intrinsics of its own."""
    g = torch.Generator().manual_seed(5)
    ref = torch.rand(B, C, H, W, generator=g, dtype=dtype)
    srcs = [torch.rand(B, C, H, W, generator=g, dtype=dtype) for _ in range(S)]

    def K(f):
        return torch.tensor([[f * W, 0, 0.5 * W], [0, f * W, 0.45 * H], [0, 0, 1]], dtype=torch.float64).repeat(B, 1, 1)

    motion = lambda scale: torch.randn(B, 3, generator=g, dtype=torch.float64) * scale
    ref_proj = projection(K(1.0), motion(0.02), motion(0.1))
    src_projs = [projection(K(1.0 + 0.05 * i), motion(0.05), motion(0.3)) for i in range(1, S + 1)]
    depth = torch.linspace(2.0, 8.0, D, dtype=torch.float64).repeat(B, 1)
    if per_pixel:  # CasMVSNet's later stages: hypotheses around a per-pixel estimate
        depth = depth[..., None, None] * (1 + 0.1 * torch.rand(B, 1, H, W, generator=g, dtype=torch.float64))
    geometry = torch.float64 if dtype == torch.float64 else torch.float32
    return ref, srcs, ref_proj.to(geometry), [p.to(geometry) for p in src_projs], depth.to(geometry)


CASES = [(torch.float64, "torch", 1e-10), (torch.float64, "cuda", 1e-10), (torch.float32, "cuda", 2e-5)]
MAPPINGS = [(False, True), (False, False), (True, True)]  # (per-pixel hypotheses, align_corners)
# Triton's interpreter takes seconds a case: every reduction once
TRITON = [(torch.float32, "triton", 2e-5, reduction, False, True) for reduction in ("variance", "group_dot")]


@pytest.mark.parametrize(
    "dtype,backend,rtol,reduction,per_pixel,align_corners",
    [(*case, reduction, *mapping) for case in CASES for reduction in ("variance", "group_dot") for mapping in MAPPINGS]
    + TRITON,
)
def test_plane_sweep_is_the_familys(dtype, backend, rtol, reduction, per_pixel, align_corners):
    ref, srcs, ref_proj, src_projs, depth = views(dtype, per_pixel)
    ref.requires_grad_(True)
    if reduction == "variance":
        theirs = peer.variance_volume(ref, srcs, ref_proj, src_projs, depth, align_corners)
    else:
        theirs = peer.group_correlation(ref, srcs, ref_proj, src_projs, depth, G, align_corners)
    ours = plane_sweep(
        ref, srcs, ref_proj, src_projs, depth, reduction=reduction, groups=G if reduction == "group_dot" else None,
        align_corners=align_corners, backend=backend,
    )  # fmt: skip
    assert ours.shape == theirs.shape == (B, C if reduction == "variance" else G, D, H, W)
    assert theirs.abs().amax() > 0.05 and (theirs == 0).float().mean() < 0.9  # sources seen, some planes outside
    assert max_rel(ours, theirs) <= rtol
    grad = torch.rand(theirs.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    (their_grad,) = torch.autograd.grad(theirs, [ref], grad)
    (our_grad,) = torch.autograd.grad(ours, [ref], grad)
    assert max_rel(our_grad, their_grad) <= 10 * rtol


def test_tensors_or_lists_of_views():
    ref, srcs, ref_proj, src_projs, depth = views(torch.float64, False)
    from_lists = plane_sweep(ref, srcs, ref_proj, src_projs, depth, backend="torch")
    stacked = plane_sweep(ref, torch.stack(srcs, 1), ref_proj, torch.stack(src_projs, 1), depth, backend="torch")
    assert torch.equal(from_lists, stacked)


def test_bad_projection_matrices():
    ref, srcs, ref_proj, src_projs, depth = views(torch.float64, False)
    with pytest.raises(ValueError, match=r"ref_proj must have shape"):
        plane_sweep(ref, srcs, ref_proj[:, :3], src_projs, depth)
    with pytest.raises(ValueError, match=r"src_projs must have shape \(2, S, 4, 4\)"):
        plane_sweep(ref, srcs, ref_proj, [p[:1] for p in src_projs], depth)
