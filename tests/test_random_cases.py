"""Random cases of every op: sizes, options and non-finite values drawn from a seed per case, the
fused backends against the float64 reference, forward and every gradient. The CPU twin runs in
float64 (its 1e-10 level) on many cases; Triton, in its interpreter on a CPU, in float32 on a few
small ones. The seeds are fixed: a case that passes once passes every time."""

import random

import pytest
import torch
from conftest import FUSED, TWIN

import fastdepth
from fastdepth import registry
from fastdepth.compare import assert_close
from fastdepth.scenes import warp_scene
from fastdepth.tolerances import tolerance

TWIN_CASES = 200
TRITON_CASES = 4


def _sizes(rng: random.Random, small: bool) -> tuple[int, int, int, int, int]:
    B, S, C = rng.choice([1, 2, 3]), rng.choice([1, 2, 3]), rng.choice([1, 2, 3, 4])
    H = rng.choice([2, 3, 5, 8] if small else [2, 3, 5, 8, 13, 31, 34, 66])  # 34, 66: the twin's bands of 32 rows
    W = rng.choice([2, 3, 4, 7] if small else [2, 3, 4, 7, 17, 33, 130])
    return B, S, C, H, W


def _geometry(rng, B, S, C, H, W, seed, dtype):
    """A warp problem; half of the depth maps hold NaN, inf, zero or negative values at every third
    or fifth pixel."""
    scene = warp_scene(
        B, S, C, H, W, seed=seed, dtype=dtype, translation=rng.choice([0.05, 0.3, 1.0]), rotation=rng.choice([0, 0.3])
    )
    depth = scene["depth"].clone()
    bad = rng.choice([None, None, None, None, float("nan"), float("inf"), 0.0, -1.0])
    if bad is not None:
        depth.view(-1)[:: rng.choice([3, 5])] = bad
    return scene["image"], depth, scene["pose"], scene["K"]


def _sampling(rng) -> dict:
    """The warp's options; ``deterministic``: the sources' gradient in fixed point (fused backends)."""
    return dict(
        normalize_points=rng.random() < 0.3,
        padding_mode=rng.choice(["zeros", "border"]),
        align_corners=rng.random() < 0.5,
        deterministic=rng.random() < 0.5,
    )


def warp_case(rng, seed, dtype, small):
    B, S, C, H, W = _sizes(rng, small)
    options = dict(_sampling(rng), return_mask=rng.random() < 0.5)

    def run(image, depth, pose, K, backend):
        out = fastdepth.warp(image, depth, pose, K, **options, backend=backend)
        return out if isinstance(out, tuple) else (out,)

    return "warp", run, _geometry(rng, B, S, C, H, W, seed, dtype)


def photometric_case(rng, seed, dtype, small):
    B, _, C, H, W = _sizes(rng, small)
    gen = torch.Generator().manual_seed(seed)
    pred, target = (torch.rand(B, C, H, W, generator=gen, dtype=dtype) for _ in range(2))
    if rng.random() < 0.2:
        pred.view(-1)[:: rng.choice([7, 11])] = float("nan")
    alpha = rng.choice([0.0, 0.5, 0.85, 1.0])

    def run(pred, target, backend):
        return (fastdepth.photometric_loss(pred, target, alpha, backend=backend),)

    return "photometric", run, (pred, target)


def min_reprojection_case(rng, seed, dtype, small):
    B, S, C, H, W = _sizes(rng, small)
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(B, C, H, W, generator=gen, dtype=dtype)
    warped = torch.rand(B, S, C, H, W, generator=gen, dtype=dtype)
    identity = torch.rand(B, rng.choice([1, 2]), C, H, W, generator=gen, dtype=dtype)
    if dtype == torch.float64 and rng.random() < 0.3:
        warped = warped.round(decimals=1)  # exact ties: the lowest index wins
    if rng.random() < 0.15:
        warped.view(-1)[:: rng.choice([11, 13])] = float("nan")
    alpha = rng.choice([0.0, 0.85, 1.0])
    tensors = (target, warped, identity) if rng.random() < 0.6 else (target, warped)

    def run(*images, backend):
        return fastdepth.min_reprojection_loss(*images, alpha=alpha, backend=backend)

    return "photometric", run, tensors


def reprojection_case(rng, seed, dtype, small):
    B, S, C, H, W = _sizes(rng, small)
    sources, depth, poses, K = _geometry(rng, B, S, C, H, W, seed, dtype)
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(B, C, H, W, generator=gen, dtype=dtype)
    options = dict(_sampling(rng), alpha=rng.choice([0.0, 0.85, 1.0]))
    tensors = (target, sources, depth, poses, K)
    if rng.random() < 0.6:
        tensors += (torch.rand(B, rng.choice([1, 2, S]), H, W, generator=gen, dtype=dtype),)
    training = rng.random() < 0.5  # the images are data: the one-pass backward of the geometry

    def run(*args, backend):
        identity = args[5] if len(args) > 5 else None
        images = [t.detach() if training else t for t in args[:2]]
        return fastdepth.reprojection_loss(*images, *args[2:5], identity=identity, **options, backend=backend)

    return "reprojection", run, tensors


def cost_volume_case(rng, seed, dtype, small):
    B, S, C = rng.choice([1, 2]), rng.choice([1, 2]), rng.choice([1, 2, 4, 6])
    h, w, D = rng.choice([2, 3, 7, 12]), rng.choice([2, 5, 9, 20]), rng.choice([1, 2, 5])
    scene = warp_scene(B, S, C, h, w, seed=seed, dtype=dtype, translation=rng.choice([0.05, 0.3]))
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(B, C, h, w, generator=gen, dtype=dtype)
    planes = (B, D, h, w) if rng.random() < 0.3 else (B, D)
    hypotheses = 0.5 + 7.5 * torch.rand(planes, generator=gen, dtype=dtype)
    reduction = rng.choice(["l1", "dot", "group_dot", "variance"])
    groups = rng.choice([g for g in range(1, C + 1) if C % g == 0]) if reduction == "group_dot" else None
    options = dict(
        reduction=reduction,
        groups=groups,
        padding_mode=rng.choice(["zeros", "border"]),
        align_corners=rng.random() < 0.5,
        return_mask=rng.random() < 0.4,
    )

    def run(*args, backend):
        out = fastdepth.cost_volume(*args, **options, backend=backend)
        return out if isinstance(out, tuple) else (out,)

    return "cost_volume", run, (target, scene["image"], hypotheses, scene["pose"], scene["K"])


def depth_loss_case(rng, seed, dtype, small):
    B, H, W = rng.choice([1, 2, 3]), rng.choice([1, 2, 5, 17]), rng.choice([1, 3, 33])
    gen = torch.Generator().manual_seed(seed)
    pred, target = (0.1 + torch.rand(B, 1, H, W, generator=gen, dtype=dtype) for _ in range(2))
    mask = torch.rand(B, 1, H, W, generator=gen) < 0.7 if rng.random() < 0.5 else None
    if mask is not None:
        mask.view(-1)[0] = True  # a batch without a valid pixel is an error
    reduction = rng.choice(["image", "batch"])
    if rng.random() < 0.5:
        lam = rng.choice([0.0, 0.5, 0.85, 1.0])
        loss = lambda p, backend: fastdepth.scale_invariant_loss(p, target, mask, lam, reduction, backend=backend)
    else:
        space, residual = rng.choice(["depth", "disparity"]), rng.choice(["l1", "l2"])
        loss = lambda p, backend: fastdepth.scale_shift_invariant_loss(
            p, target, mask, space, residual, reduction, backend=backend
        )
    return "depth_loss", lambda p, backend: (loss(p, backend),), (pred,)


CASES = {
    "warp": warp_case,
    "photometric": photometric_case,
    "min_reprojection": min_reprojection_case,
    "reprojection": reprojection_case,
    "cost_volume": cost_volume_case,
    "depth_loss": depth_loss_case,
}


def _run(fn, tensors, backend, dtype):
    leaves = [t.detach().to(dtype).requires_grad_(True) for t in tensors]
    outs = fn(*leaves, backend=backend)
    floats = [o for o in outs if o.is_floating_point()]
    gen = torch.Generator().manual_seed(len(floats))
    weights = [torch.rand(o.shape, generator=gen, dtype=torch.float64).to(o.dtype) for o in floats]
    total = sum((o * w).nan_to_num(0.0).sum() for o, w in zip(floats, weights, strict=True))
    return outs, torch.autograd.grad(total, leaves, allow_unused=True)


def _compare(name, ours, ref, **tolerance):
    if ours is None or ref is None:
        assert ours is None and ref is None, f"{name}: a gradient on one side only"
    elif ref.is_floating_point():
        assert_close(ours.double(), ref, name=name, **tolerance)
    else:
        assert torch.equal(ours, ref), f"{name}: {(ours != ref).sum().item()} of {ref.numel()} differ"


def _check(case, index, backend, dtype, small):
    seed = 1000 * index + list(CASES).index(case)
    rng = random.Random(seed)
    op, fn, tensors = CASES[case](rng, seed, dtype, small)  # in dtype: the reference reads them in float64
    outs, grads = _run(fn, tensors, backend, dtype)
    ref_outs, ref_grads = _run(fn, tensors, "torch", torch.float64)
    tol = tolerance(op, dtype, backend, "cpu")
    for k, (a, b) in enumerate(zip(outs, ref_outs, strict=True)):
        _compare(f"{case} {seed}: output {k}", a, b, abs_tol=tol.forward)
    for k, (a, b) in enumerate(zip(grads, ref_grads, strict=True)):
        # relative to each element, or to a thousandth of the largest, or to 1e-4, where the element
        # is smaller (a gradient that cancels to 1e-16 has no relative precision)
        floor = max(tol.gradient_floor, 1e-4, 1e-3 * b.nan_to_num(0, 0, 0).abs().max().item()) if b is not None else 0
        _compare(f"{case} {seed}: gradient {k}", a, b, rel_tol=tol.gradient, floor=floor)


@pytest.mark.skipif(not TWIN, reason="needs the CPU twin")
@pytest.mark.parametrize("case", CASES)
def test_twin_float64_on_random_cases(case):
    for index in range(TWIN_CASES):
        _check(case, index, "cuda", torch.float64, small=False)


@pytest.mark.skipif(("triton", "cpu") not in FUSED, reason="needs Triton's interpreter")
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("index", range(TRITON_CASES))
def test_triton_on_random_cases(case, index):
    _check(case, index, "triton", torch.float32, small=True)


def test_every_op_has_random_cases():
    ops = {CASES[case](random.Random(0), 0, torch.float64, True)[0] for case in CASES}
    assert ops == set(registry.OPS)
