"""The fused cost volume against the reference composition: every reduction and sampling option,
forward and gradients to all five inputs, the mask, dtypes, opcheck, torch.compile and bad inputs."""

import importlib
import itertools

import pytest
import torch
from conftest import ALL, BACKEND_NAMES, FUSED, TWIN
from helpers import grads, leaves

import fastdepth
from fastdepth import projection
from fastdepth.checks import run_one
from fastdepth.checks.cost_volume import CASES, OPTIONS, SWEEP_PLANES, inputs
from fastdepth.compare import assert_close
from fastdepth.cost_volume import projections
from fastdepth.reference import cost_volume as reference
from fastdepth.reference import warp as reference_warp
from fastdepth.tolerances import tolerance


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("case", CASES)
def test_matches_the_reference(backend, device, case):
    # the GPU campaign's cases: the cost and the gradients to features, hypotheses, poses and K
    result = run_one("cost_volume", case, backend, device, torch.float32, quick=True)
    assert result.passed, result


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
def test_the_sweep_cases_hold_runs_of_the_same_taps_and_breaks(quick):
    # the sweep backward scatters once per run of hypotheses with the same taps: its cases need both
    B, S, C, h, w, D = (1, 2, 10, 5, 7, 3) if quick else (2, 2, 10, 13, 19, 6)
    for seed in range(3):
        ft, fs, planes, poses, K = inputs(B, S, C, h, w, D, seed, torch.float32, "cpu", planes=SWEEP_PLANES)
        u, v = projections(planes, poses, K, h, w, torch.float32, "torch")  # (B, S, D, h, w)
        x0, y0 = u.floor(), v.floor()
        sampled = u.isfinite() & v.isfinite() & (x0 >= -1) & (x0 < w) & (y0 >= -1) & (y0 < h)
        both = sampled[:, :, 1:] & sampled[:, :, :-1]  # hypotheses d and d + 1
        same = both & (x0[:, :, 1:] == x0[:, :, :-1]) & (y0[:, :, 1:] == y0[:, :, :-1])
        assert same.any() and (both & ~same).any(), seed


@pytest.mark.skipif(not TWIN, reason="needs the CPU twin")
@pytest.mark.parametrize("case", CASES)
def test_twin_float64_matches_the_reference(case, seed):
    tensors = inputs(2, 2, 4, 9, 13, 5, seed, torch.float64, "cpu", per_pixel=case == "per_pixel")
    ours_in, ref_in = leaves(*tensors, dtype=torch.float64), leaves(*tensors, dtype=torch.float64)
    ours = fastdepth.cost_volume(*ours_in, **OPTIONS[case], backend="cuda")
    ref = fastdepth.cost_volume(*ref_in, **OPTIONS[case], backend="torch")
    tol = tolerance("cost_volume", torch.float64, "cuda", "cpu")
    assert_close(ours, ref, abs_tol=tol.forward, name="cost")
    g = torch.rand_like(ours)
    names = ("features_target", "features_source", "depth_hypotheses", "poses", "K")
    for name, a, b in zip(names, grads(ours, ours_in, g), grads(ref, ref_in, g), strict=True):
        assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name=f"grad {name}")


@pytest.mark.parametrize("backend,device", FUSED)
def test_l1_has_no_gradient_where_the_features_are_equal(backend, device, seed):
    # ReLU features are often exactly 0, and so is a sample outside the source (zeros padding): where
    # the warped feature equals the target's, |t - x| has no gradient (torch.abs's), not ±1
    ft, fs, hypotheses, poses, K = inputs(2, 2, 4, 9, 13, 5, seed, torch.float32, device)
    ft, fs = (ft - 0.5).clamp_min(0.0), (fs - 0.5).clamp_min(0.0)
    ours_in, ref_in = leaves(ft, fs), leaves(ft, fs, dtype=torch.float64)
    ours = fastdepth.cost_volume(*ours_in, hypotheses, poses, K, backend=backend)
    ref = fastdepth.cost_volume(*ref_in, *(t.double() for t in (hypotheses, poses, K)), backend="torch")
    assert (ref == 0).any()  # ties: both features 0 in every channel
    tol = tolerance("cost_volume", torch.float32, backend, device)
    g = torch.rand_like(ref)
    names = ("features_target", "features_source")
    for name, a, b in zip(names, grads(ours, ours_in, g.float()), grads(ref, ref_in, g), strict=True):
        assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name=f"grad {name}")


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("case", CASES)
def test_non_finite_features_reach_only_the_costs_that_sample_them(backend, device, case, seed):
    # a corner outside the source is never read: inf at the source's first pixel, where masked
    # corners of projections off the image would land if they were read at a clamped address
    ft, fs, hypotheses, poses, K = inputs(2, 2, 4, 9, 13, 5, seed, torch.float32, device, per_pixel=case == "per_pixel")
    fs, ft = fs.clone(), ft.clone()
    fs[0, 0, :, 0, 0] = float("inf")
    fs[1, 1, 1, 4, 12] = float("nan")
    ft[0, 2, 3, 3] = float("nan")
    ours = fastdepth.cost_volume(ft, fs, hypotheses, poses, K, **OPTIONS[case], backend=backend)
    ref = fastdepth.cost_volume(*(t.double() for t in (ft, fs, hypotheses, poses, K)), **OPTIONS[case], backend="torch")
    assert ref.isnan().any()
    assert torch.equal(ours.isinf(), ref.isinf()) and torch.equal(ours.isnan(), ref.isnan())
    finite = ref.isfinite()
    tol = tolerance("cost_volume", torch.float32, backend, device).forward
    assert_close(ours.double()[finite], ref[finite], abs_tol=tol)


@pytest.mark.parametrize("backend,device", ALL)
@pytest.mark.parametrize(
    "reduction,groups,shape", [("l1", None, (1, 3)), ("group_dot", 2, (1, 2, 3)), ("variance", None, (1, 4, 3))]
)
def test_output_shapes_and_mask(backend, device, reduction, groups, shape, seed):
    tensors = inputs(1, 2, 4, 5, 6, 3, seed, torch.float32, device)
    cost, mask = fastdepth.cost_volume(*tensors, reduction=reduction, groups=groups, return_mask=True, backend=backend)
    assert cost.shape == (*shape, 5, 6) and cost.dtype == torch.float32
    _, ref_mask = fastdepth.cost_volume(*tensors, reduction="l1", return_mask=True, backend="torch")
    assert mask.shape == (1, 3, 5, 6) and mask.dtype == torch.bool and torch.equal(mask, ref_mask)
    assert mask.any() and not mask.all()  # some hypotheses project outside a source


@pytest.mark.parametrize("backend,device", ALL)
def test_per_pixel_hypotheses_equal_to_planes_give_the_planes_cost(backend, device, seed):
    ft, fs, planes, poses, K = inputs(1, 1, 3, 5, 6, 4, seed, torch.float32, device)
    per_pixel = planes[:, :, None, None].expand(1, 4, 5, 6).contiguous()
    a = fastdepth.cost_volume(ft, fs, planes, poses, K, backend=backend)
    b = fastdepth.cost_volume(ft, fs, per_pixel, poses, K, backend=backend)
    assert torch.equal(a, b)


@pytest.mark.parametrize("backend,device", FUSED)
def test_only_the_features_need_a_gradient(backend, device, seed):
    # ManyDepth's hypotheses are buffers: no projection gradient is computed or kept
    ft, fs, planes, poses, K = inputs(1, 1, 3, 5, 6, 3, seed, torch.float32, device)
    ours_in, ref_in = leaves(ft, fs), leaves(ft, fs, dtype=torch.float64)
    ours = fastdepth.cost_volume(*ours_in, planes, poses, K, backend=backend)
    ref = fastdepth.cost_volume(*ref_in, planes.double(), poses.double(), K.double(), backend="torch")
    g = torch.rand_like(ours)
    tol = tolerance("cost_volume", torch.float32, backend, device)
    for a, b in zip(grads(ours, ours_in, g), grads(ref, ref_in, g.double()), strict=True):
        assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name="gradient")


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision_features(backend, device, dtype):
    for case in ("l1", "variance", "sweep"):
        result = run_one("cost_volume", case, backend, device, dtype, quick=True)
        assert result.passed, result


@pytest.mark.parametrize("backend,device", FUSED)
def test_opcheck(backend, device, seed):
    ft, fs, planes, poses, K = inputs(1, 1, 2, 3, 4, 2, seed, torch.float32, device)
    u, v = projections(planes, poses, K, 3, 4, torch.float32, backend)
    ft, fs, u, v = leaves(ft, fs, u, v)
    op = torch.ops.fastdepth.cost_volume.default
    torch.library.opcheck(op, (ft, fs, u, v, "l1", 1, "zeros", True, backend))
    torch.library.opcheck(op, (ft, fs, u, v, "variance", 1, "border", False, backend))


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("with_geometry", [True, False], ids=["geometry", "buffers"])
def test_torch_compile_fullgraph(backend, device, with_geometry, seed):
    # buffers: the projections come from the projection kernel's custom op
    tensors = inputs(1, 1, 2, 4, 5, 3, seed, torch.float32, device)
    n = len(tensors) if with_geometry else 2

    def objective(ft, fs, planes, poses, K):
        return fastdepth.cost_volume(ft, fs, planes, poses, K, backend=backend).mean()

    eager_in, compiled_in = leaves(*tensors[:n]), leaves(*tensors[:n])
    eager = objective(*eager_in, *tensors[n:])
    compiled = torch.compile(objective, fullgraph=True)(*compiled_in, *tensors[n:])
    eager.backward()
    compiled.backward()
    assert abs(compiled.item() - eager.item()) <= 1e-6
    for a, b in zip(compiled_in, eager_in, strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7)


NAMES = ("features_target", "features_source", "depth_hypotheses", "poses", "K")


def args(**changes):
    values = dict(zip(NAMES, inputs(1, 2, 4, 5, 6, 3, 0, torch.float32, "cpu"), strict=True))
    values.update(changes)
    return values


BAD = [
    (args(features_target=torch.rand(1, 4, 5)), ValueError, r"features_target must have shape \(B, C, h, w\)"),
    (args(features_source=torch.rand(1, 2, 3, 5, 6)), ValueError, r"features_source must have shape \(1, S, 4, 5, 6\)"),
    (args(features_source=torch.rand(1, 0, 4, 5, 6), poses=torch.rand(1, 0, 4, 4)), ValueError, r"at least one source"),
    (args(depth_hypotheses=torch.rand(1, 0)), ValueError, r"depth_hypotheses must hold at least one hypothesis"),
    (args(depth_hypotheses=torch.rand(1, 3, 5, 5)), ValueError, r"depth_hypotheses must have shape \(1, D, 5, 6\)"),
    (args(poses=torch.rand(1, 1, 4, 4)), ValueError, r"poses must have shape \(1, 2, 4, 4\)"),
    (args(K=torch.rand(1, 4, 4)), ValueError, r"K must have shape \(1, 3, 3\)"),
    (args(features_source=torch.rand(1, 2, 4, 5, 6).double()), TypeError, r"features_source has dtype torch.float64"),
    (args(reduction="mean"), ValueError, r"reduction must be one of"),
    (args(reduction="group_dot", groups=3), ValueError, r"groups must be a positive divisor of the 4 channels"),
    (args(reduction="group_dot"), ValueError, r"groups must be a positive divisor"),
    (args(groups=2), ValueError, r"groups is for reduction='group_dot' only"),
    (args(padding_mode="reflection"), ValueError, r"padding_mode must be one of"),
    (args(align_corners=1), TypeError, r"align_corners must be True or False"),
    (args(depth_hypotheses=torch.tensor([[1.0, float("nan"), 2.0]])), ValueError, r"depth_hypotheses must be finite"),
    (args(poses=torch.full((1, 2, 4, 4), float("inf"))), ValueError, r"poses must be finite"),
    (args(K=torch.zeros(1, 3, 3)), ValueError, r"K: fx and fy"),
    (args(K=None), TypeError, r"K must be a torch.Tensor, got NoneType"),
]


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("kwargs,error,pattern", BAD)
def test_bad_inputs(backend, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        fastdepth.cost_volume(**kwargs, backend=backend)


@pytest.mark.skipif(not TWIN, reason="needs the C++ extension")
def test_raw_extension_op_checks_what_it_reads():
    from fastdepth import _cuda

    lib = _cuda.library()
    ft, fs, u = torch.rand(1, 4, 5, 6), torch.rand(1, 2, 4, 5, 6), torch.rand(1, 2, 3, 5, 6)
    with pytest.raises(ValueError, match=r"v has shape \[1, 2, 2, 5, 6\]"):
        lib.cost_volume_forward(ft, fs, u, torch.rand(1, 2, 2, 5, 6), "l1", 1, "zeros", True)
    with pytest.raises(ValueError, match=r"reduction must be"):
        lib.cost_volume_forward(ft, fs, u, u, "mean", 1, "zeros", True)
    with pytest.raises(ValueError, match=r"groups must divide"):
        lib.cost_volume_forward(ft, fs, u, u, "group_dot", 3, "zeros", True)
    with pytest.raises(ValueError, match=r"grad has shape"):
        lib.cost_volume_backward(torch.rand(1, 1, 2, 5, 6), ft, fs, u, u, "l1", 1, "zeros", True, [True, True], False)


def _projection_inputs(per_pixel: bool, dtype: torch.dtype, device: str, seed: int):
    """Hypotheses, poses and K with the projection's named edge cases: a non-finite hypothesis (NaN
    coordinates), points behind the camera, w = 0 (undivided), z = 0 in a source (undivided) under a
    projective last row and a projection that overflows (NaN)."""
    _, _, hyp, poses, K = inputs(2, 2, 3, 5, 6, 7, seed, torch.float64, "cpu", per_pixel=per_pixel)
    hyp[0, 1] = float("nan")
    hyp[1, 2] = -hyp[1, 2]
    hyp[1, 5] = 1e36
    depth_3 = hyp[1, 3].flatten()[0].item()
    poses[1, 1, 3] = torch.tensor([0.0, 0.0, -1.0 / depth_3, 1.0])  # w = 0 at hypothesis 3 (at pixel 0)
    poses[0, 1, 2] = torch.tensor([0.0, 0.0, 0.0, 0.0])  # z = 0 everywhere in source 1 of image 0,
    poses[0, 1, 3] = torch.tensor([0.01, -0.02, 0.03, 1.0])  # under a projective last row (w divided)
    poses[1, 0, 0] = 1e30  # source 0 of image 1: x overflows float32 at hypothesis 5 only
    return [t.to(device, dtype) for t in (hyp, poses, K)]


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("per_pixel", [False, True], ids=["planes", "per_pixel"])
def test_projection_kernel_matches_the_differentiable_projection(backend, device, per_pixel, seed):
    # without a gradient to the geometry, u and v come from the fused backend's projection kernel
    cost_volume = importlib.import_module("fastdepth.cost_volume")  # the module (fastdepth.cost_volume is the op)
    hyp, poses, K = _projection_inputs(per_pixel, torch.float32, device, seed)
    ours = cost_volume.projections(hyp, poses, K, 5, 6, torch.float32, backend)
    with torch.enable_grad():
        ref = cost_volume.projections(hyp, poses.requires_grad_(), K, 5, 6, torch.float32, backend)
    for a, b in zip(ours, ref, strict=True):
        assert a.dtype == torch.float32 and a.shape == (2, 2, 7, 5, 6)
        # NaN where the projection is not finite: the NaN hypothesis and the overflow
        assert a[0, :, 1].isnan().all() and a[1, 0, 5].isnan().all() and not a[1, 1, 5].isnan().any()
        assert torch.equal(a.isnan(), b.isnan())
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-4, equal_nan=True)


@pytest.mark.skipif(not TWIN, reason="needs the CPU twin")
@pytest.mark.parametrize("per_pixel", [False, True], ids=["planes", "per_pixel"])
def test_twin_float64_projection_matches_the_differentiable_one(per_pixel, seed):
    cost_volume = importlib.import_module("fastdepth.cost_volume")
    hyp, poses, K = _projection_inputs(per_pixel, torch.float64, "cpu", seed)
    ours = cost_volume.projections(hyp, poses, K, 5, 6, torch.float64, "cuda")
    with torch.enable_grad():
        ref = cost_volume.projections(hyp, poses.requires_grad_(), K, 5, 6, torch.float64, "cuda")
    for a, b in zip(ours, ref, strict=True):
        assert a.dtype == torch.float64 and torch.equal(a.isnan(), b.isnan()) and a[0, :, 1].isnan().all()
        assert_close(a.nan_to_num(), b.detach().nan_to_num(), rel_tol=1e-12, floor=1e-10, name="projection")


@pytest.mark.parametrize("backend,device", FUSED)
def test_projection_opcheck(backend, device, seed):
    _, _, planes, poses, K = inputs(1, 2, 2, 3, 4, 2, seed, torch.float32, device)
    op = torch.ops.fastdepth.cost_volume_projection.default
    torch.library.opcheck(op, (planes, poses, K, 3, 4, backend))
    torch.library.opcheck(op, (torch.rand(1, 2, 3, 4, device=device) + 1, poses, K, 3, 4, backend))


@pytest.mark.skipif(not TWIN, reason="needs the C++ extension")
def test_raw_projection_op_checks_what_it_reads():
    from fastdepth import _cuda

    project = _cuda.library().cost_volume_projection
    planes, poses, K = torch.rand(1, 3), torch.rand(1, 2, 4, 4), torch.rand(1, 3, 3)
    with pytest.raises(ValueError, match=r"depth_hypotheses must be \(B, D\) or \(B, D, H, W\)"):
        project(torch.rand(1, 3, 5), poses, K, 5, 6)
    with pytest.raises(ValueError, match=r"depth_hypotheses has shape \[1, 3, 5, 5\]"):
        project(torch.rand(1, 3, 5, 5), poses, K, 5, 6)
    with pytest.raises(ValueError, match=r"poses has shape"):
        project(planes, torch.rand(2, 2, 4, 4), K, 5, 6)
    with pytest.raises(ValueError, match=r"K has shape"):
        project(planes, poses, torch.rand(1, 4, 4), 5, 6)
    with pytest.raises(TypeError, match=r"K must be a float tensor"):
        project(planes, poses, torch.ones(1, 3, 3, dtype=torch.int32), 5, 6)
    with pytest.raises(ValueError, match=r"height and width must be positive"):
        project(planes, poses, K, 0, 6)


@pytest.mark.parametrize("per_pixel", [False, True], ids=["planes", "per_pixel"])
def test_projection_gradient_equals_autograds_through_the_reference(per_pixel, seed):
    # float64: the projection's own backward against autograd through the reference's, on the named
    # edge cases: w = 0 and z = 0 (undivided), a non-finite hypothesis. Not the hypothesis at 1e36,
    # where the reference's gradient of the pose's last row is the rounding of a cancellation, 1e51
    # (the projection's: 0, its exact value), and dwarfs every other.
    hyp, poses, K = _projection_inputs(per_pixel, torch.float64, "cpu", seed)
    B, D = hyp.shape[:2]
    args = (reference.hypothesis_maps(hyp, 5, 6).reshape(B * D, 1, 5, 6), poses.repeat_interleave(D, 0))
    args += (K.repeat_interleave(D, 0),)

    def projected(project, inputs):
        u, v, *_, finite = project(*inputs)
        return torch.where(finite, u, 0.0), torch.where(finite, v, 0.0)

    ours_in, ref_in = leaves(*args), leaves(*args)
    ours = projected(projection.project, ours_in)
    ref = projected(lambda *t: reference_warp.project(*t, dtype=torch.float64), ref_in)
    g = [torch.rand_like(t).index_fill(0, torch.tensor([1 * D + 5]), 0.0) for t in ours]
    ours_g, ref_g = torch.autograd.grad(ours, ours_in, g), torch.autograd.grad(ref, ref_in, g)
    # each hypothesis map (and pose) against its own max norm: the overflowing source's gradients
    # (1e31) would otherwise dwarf every other. The pose's last row where z is divided: 0 here (its
    # exact value), the rounding of a cancellation in the reference (up to 2e-9 of a pose's gradient)
    for name, a, b in zip(("depth", "poses", "K"), ours_g, ref_g, strict=True):
        for index in itertools.product(*map(range, a.shape[: 2 if name == "poses" else 1])):
            bound = 1e-8 if name == "poses" else 1e-10
            assert_close(a[index], b[index], rel_tol=bound, name=f"grad {name} at {index}")


@pytest.mark.parametrize("backend,device", FUSED)
def test_geometry_gradients_far_beyond_the_translation(backend, device, seed):
    # hypotheses 5e3 to 8e4, translations of 0.3: autograd's float32 hypothesis gradient was 5e-3
    # off (the warp's cancellation, tests/test_warp.py), the projection's backward avoids it
    ft, fs, hyp, poses, K = inputs(1, 1, 4, 6, 8, 4, seed, torch.float32, device)
    hyp = hyp * 1e4
    ours_in, ref_in = leaves(hyp, poses), leaves(hyp, poses, dtype=torch.float64)
    ours = fastdepth.cost_volume(ft, fs, *ours_in, K, backend=backend)
    ref = fastdepth.cost_volume(ft.double(), fs.double(), *ref_in, K.double(), backend="torch")
    g = torch.rand_like(ref)
    for name, a, b in zip(("hypotheses", "poses"), grads(ours, ours_in, g), grads(ref, ref_in, g), strict=True):
        assert_close(a, b, rel_tol=1e-4, name=f"grad {name}")
