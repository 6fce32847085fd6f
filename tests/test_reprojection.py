"""The fused objective against the reference composition: loss, winners and gradients to every
input, on every backend that runs here; float64 on the CPU twin; ties, NaN depth, no identity,
determinism, opcheck, torch.compile and bad inputs."""

import pytest
import torch
from conftest import ALL, BACKEND_NAMES, FUSED, TWIN
from helpers import grads, leaves

import fastdepth
from fastdepth import reprojection
from fastdepth.checks import reprojection as checks
from fastdepth.checks import run_one
from fastdepth.compare import assert_close
from fastdepth.scenes import natural_images, warp_scene
from fastdepth.tolerances import tolerance

MONODEPTH2 = dict(padding_mode="border", align_corners=False)


def problem(seed, device="cpu", dtype=torch.float32, B=2, S=2, C=3, H=7, W=10):
    scene = warp_scene(B, S, C, H, W, seed=seed, dtype=dtype, translation=0.3)
    target = natural_images(B, C, H, W, seed=seed, dtype=dtype)
    return [t.to(device) for t in (target, scene["image"], scene["depth"], scene["pose"], scene["K"])]


def run(inputs, backend, with_identity=True, **options):
    identity = fastdepth.identity_loss(inputs[0], inputs[1], backend=backend) if with_identity else None
    return fastdepth.reprojection_loss(*inputs, identity=identity, backend=backend, **options)


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("case", checks.CASES)
def test_matches_the_reference(backend, device, case):
    # the same cases as the GPU campaign: loss, winners, gradients to all six inputs (to the depth,
    # poses and K in "training": the one-pass backward)
    result = run_one("reprojection", case, backend, device, torch.float32, quick=True)
    assert result.passed, result


@pytest.mark.skipif(not TWIN, reason="needs the CPU twin")
@pytest.mark.parametrize("options", [dict(padding_mode="zeros", align_corners=True), MONODEPTH2], ids=["kornia", "md2"])
def test_twin_float64_matches_the_reference(options, seed):
    tensors = problem(seed, dtype=torch.float64)
    ours_in, ref_in = leaves(*tensors), leaves(*tensors)
    loss, index, automask = run(ours_in, "cuda", **options)
    ref_loss, ref_index, ref_automask = run(ref_in, "torch", **options)
    tol = tolerance("reprojection", torch.float64, "cuda", "cpu")
    assert_close(loss, ref_loss, abs_tol=tol.forward, name="loss")
    assert torch.equal(index, ref_index) and torch.equal(automask, ref_automask)
    g = torch.rand_like(loss)
    names = ("target", "sources", "depth", "poses", "K")
    for name, a, b in zip(names, grads(loss, ours_in, g), grads(ref_loss, ref_in, g), strict=True):
        assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name=f"grad {name}")


@pytest.mark.parametrize("backend,device", ALL)
def test_equals_warp_then_min_reprojection_on_the_same_backend(backend, device, seed):
    inputs = problem(seed, device)
    loss, index, automask = run(inputs, backend, **MONODEPTH2)
    warped = fastdepth.warp(*inputs[1:], backend=backend, **MONODEPTH2)
    expected = fastdepth.min_reprojection_loss(inputs[0], warped, inputs[1], backend=backend)
    tol = tolerance("reprojection", torch.float32, backend, device)
    assert_close(loss, expected[0], abs_tol=tol.forward, name="loss")
    assert torch.equal(index, expected[1]) and torch.equal(automask, expected[2])


@pytest.mark.parametrize("backend,device", ALL)
def test_without_identity_every_pixel_is_a_warped_source(backend, device, seed):
    loss, index, automask = run(problem(seed, device, S=1), backend, with_identity=False)
    assert automask.all() and (index == 0).all() and loss.shape == (2, 1, 7, 10)


@pytest.mark.parametrize("backend,device", FUSED)
def test_gradient_reaches_only_the_winner(backend, device, seed):
    inputs = leaves(*problem(seed, device))
    identity = fastdepth.identity_loss(inputs[0].detach(), inputs[1].detach(), backend=backend).requires_grad_()
    loss, index, _ = fastdepth.reprojection_loss(*inputs, identity=identity, backend=backend)
    loss.sum().backward()
    won = index == torch.arange(2, device=device).view(1, 2, 1, 1)
    assert torch.equal(identity.grad != 0, won)


@pytest.mark.parametrize("backend,device", FUSED)
def test_deterministic_gradients(backend, device, seed):
    inputs = leaves(*problem(seed, device))
    identity = fastdepth.identity_loss(inputs[0], inputs[1], backend=backend)
    runs = []
    for _ in range(3):
        loss = fastdepth.reprojection_loss(*inputs, identity=identity, backend=backend, deterministic=True)[0]
        runs.append(torch.autograd.grad(loss.sum(), inputs, retain_graph=True))
    assert all(torch.equal(a, b) for run in runs[1:] for a, b in zip(run, runs[0], strict=True))


def geometry_grads(inputs, backend, passes, **options):
    """A training step's gradients (the images are data): depth, poses, K and the identity maps."""
    target, sources, depth, poses, K = inputs
    identity = fastdepth.identity_loss(target, sources, backend=backend).requires_grad_()
    wrt = [t.detach().requires_grad_() for t in (depth, poses, K)] + [identity]
    with reprojection.backward_passes(passes):
        loss = fastdepth.reprojection_loss(target, sources, *wrt[:3], identity=wrt[3], backend=backend, **options)[0]
        g = torch.rand(loss.shape, generator=torch.Generator().manual_seed(0)).to(loss)
        return torch.autograd.grad(loss, wrt, g)


def edge_problem(seed, device, edge, **size):
    """problem() with every 7th depth NaN ("nan_depth") or the identity pose, whose warped losses
    tie with the identity maps ("ties")."""
    inputs = problem(seed, device, **size)
    if edge == "nan_depth":
        inputs[2].view(-1)[::7] = float("nan")
    if edge == "ties":
        inputs[3].copy_(torch.eye(4))
    return inputs


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("edge", [None, "nan_depth", "ties"])
def test_one_pass_backward_equals_the_three_pass(backend, device, edge, seed):
    # several tiles of the one-pass kernels (12 x 28 pixels), NaN depth, exact ties with identity
    size = dict(B=1, C=2, H=13, W=30) if backend == "triton" else dict(H=33, W=61)  # the interpreter is slow
    inputs = edge_problem(seed, device, edge, **size)
    one = geometry_grads(inputs, backend, "one_pass", **MONODEPTH2)
    three = geometry_grads(inputs, backend, "three_pass", **MONODEPTH2)
    # the same sums per pixel; the one-pass backward takes the pose and intrinsics partials over
    # other groups of pixels (tiles, the twin's bands), whose order changes the float32 rounding
    assert torch.equal(one[0], three[0]) and torch.equal(one[3], three[3])
    for name, a, b in zip(("poses", "K"), one[1:3], three[1:3], strict=True):
        assert_close(a, b, rel_tol=1e-4, floor=1e-2, name=f"grad {name}")  # sums that cancel: 1e-6 apart


@pytest.mark.parametrize("backend,device", FUSED)
def test_depth_gradient_keeps_its_precision_far_beyond_the_translation(backend, device, seed):
    # depth 1e4 to 1e5, translations of 0.3: the depth gradient along the ray cancels there
    # (tests/test_warp.py: test_gradients_keep_their_precision_far_beyond_the_translation); the
    # one-pass backward kernels
    inputs = problem(seed, device, B=1, H=9, W=12)
    inputs[2] = inputs[2] * 1e4
    ours = geometry_grads(inputs, backend, "one_pass", **MONODEPTH2)
    ref = geometry_grads([t.double() for t in inputs], "torch", "one_pass", **MONODEPTH2)
    assert_close(ours[0], ref[0], rel_tol=1e-4, name="grad depth")
    assert torch.all(ours[1][..., 3, :] == 0)


@pytest.mark.parametrize("backend,device", [bd for bd in FUSED if bd != ("cuda", "cpu")])
@pytest.mark.parametrize("edge", [None, "nan_depth", "ties"])
def test_tile_forward_equals_the_window_forward(backend, device, edge, seed):
    # several blocks of the tile kernels (14 x 30 pixels), a pixel alone in the last block's row and
    # column; not the CPU twin, which warps its bands either way (tests/test_cuda_kernels_on_host.py
    # runs the CUDA tile kernel's phases on the host)
    size = dict(B=1, C=2, H=15, W=31) if backend == "triton" else dict(H=29, W=61)  # the interpreter is slow
    inputs = edge_problem(seed, device, edge, **size)
    with reprojection.forward_kernel("window"):
        window = run(inputs, backend, **MONODEPTH2)
    tile = run(inputs, backend, **MONODEPTH2)  # the default
    if device == "cpu":  # the same operations in the same order
        assert torch.equal(tile[0], window[0]) and torch.equal(tile[1], window[1])
    else:  # compiled separately, the kernels may contract other multiply-adds
        assert_close(tile[0], window[0], abs_tol=tolerance("reprojection", torch.float32, backend, device).forward)


def test_forward_kernels_are_named():
    with pytest.raises(ValueError, match="forward must be one of"):
        with reprojection.forward_kernel("tiles"):
            pass
    assert reprojection.FORWARD == "tile"


@pytest.mark.skipif(not TWIN, reason="needs the CPU twin")
@pytest.mark.parametrize("H,W", [(2, 2), (33, 5), (65, 3)], ids=str)
def test_twin_bands_whatever_the_threads(H, W, seed):
    # the twin works through bands of rows (at least 8 (element, band) pairs where the rows allow),
    # the forward with a halo of 1 row, the one-pass backward with 2 (and its pose and K partial
    # sums per band): at B=2, one band of 2 rows, bands of 9, 9, 9 and 6 rows, of 17, 17, 17 and 14;
    # over more threads than (element, band) pairs too
    inputs = problem(seed, dtype=torch.float64, H=H, W=W)
    expected = geometry_grads(inputs, "torch", "one_pass", **MONODEPTH2)
    tol = tolerance("reprojection", torch.float64, "cuda", "cpu")
    previous = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 5, 16):
            torch.set_num_threads(threads)
            loss = run(inputs, "cuda", **MONODEPTH2)[0]
            runs.append((loss, *geometry_grads(inputs, "cuda", "one_pass", **MONODEPTH2)))
    finally:
        torch.set_num_threads(previous)
    assert_close(runs[0][0], run(inputs, "torch", **MONODEPTH2)[0], abs_tol=tol.forward, name="loss")
    for name, a, b in zip(("depth", "poses", "K", "identity"), runs[0][1:], expected, strict=True):
        assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name=f"grad {name}")
    assert all(torch.equal(a, b) for run_ in runs[1:] for a, b in zip(run_, runs[0], strict=True))


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_images_get_the_gradient_of_their_float32_forward(backend, device, dtype, seed):
    # the forward samples half images and compares the losses in float32; the backward that reaches
    # the images too (three passes) must differentiate that forward, not one whose warped images were
    # rounded to half first (27 epsilons off at a low-contrast window of the campaign's checks)
    size = dict(B=1, C=2, H=9, W=13) if backend == "triton" else dict(H=37, W=53)
    half = [t.to(dtype) if i < 2 else t for i, t in enumerate(problem(seed, device, **size))]
    identity = fastdepth.identity_loss(*half[:2], backend=backend).detach()
    g = torch.rand(half[2].shape, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    got = grads_to_all(half, identity, g, backend)
    exact = grads_to_all([t.float() for t in half], identity.float(), g.float(), backend)  # the same values
    eps = torch.finfo(dtype).eps
    for name, a, b in zip(("target", "sources", "depth", "poses", "K"), got, exact, strict=True):
        assert_close(a.float(), b, rel_tol=eps if a.dtype == dtype else 1e-5, floor=1e-3, name=f"grad {name}")


def grads_to_all(inputs, identity, g, backend):
    wrt = leaves(*inputs)
    loss = fastdepth.reprojection_loss(*wrt, identity=identity, backend=backend, **MONODEPTH2)[0]
    return torch.autograd.grad(loss, wrt, g)


def test_backward_passes_are_named():
    with pytest.raises(ValueError, match="backward must be one of"):
        with reprojection.backward_passes("two_pass"):
            pass
    assert reprojection.BACKWARD == "one_pass"


@pytest.mark.parametrize("backend,device", FUSED)
def test_deterministic_geometry_gradients(backend, device, seed):
    inputs = problem(seed, device)
    runs = [geometry_grads(inputs, backend, "one_pass") for _ in range(2)]
    assert all(torch.equal(a, b) for run in runs[1:] for a, b in zip(run, runs[0], strict=True))


@pytest.mark.parametrize("backend,device", FUSED)
def test_opcheck(backend, device, seed):
    target, sources, depth, poses, K = leaves(*problem(seed, device, B=1, S=1, C=2, H=3, W=4))
    identity = torch.rand(1, 1, 3, 4, device=device, requires_grad=True)
    options = (0.85, False, "border", False, False, backend)
    for images in ((target, sources), (target.detach(), sources.detach())):  # three-pass, one-pass backward
        torch.library.opcheck(torch.ops.fastdepth.reprojection.default, (*images, depth, poses, K, identity, *options))


@pytest.mark.parametrize("backend,device", FUSED)
def test_torch_compile_fullgraph(backend, device, seed):
    def objective(target, sources, depth, poses, K):
        identity = fastdepth.identity_loss(target, sources, backend=backend)
        return fastdepth.reprojection_loss(target, sources, depth, poses, K, identity=identity, backend=backend)[
            0
        ].mean()

    tensors = problem(seed, device, B=1, S=2, C=2, H=4, W=5)
    eager_in, compiled_in = leaves(*tensors), leaves(*tensors)
    eager = objective(*eager_in)
    compiled = torch.compile(objective, fullgraph=True)(*compiled_in)
    eager.backward()
    compiled.backward()
    assert torch.allclose(compiled, eager, rtol=0, atol=1e-6)
    for a, b in zip(compiled_in, eager_in, strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def bad(**changes):
    target, sources, depth, poses, K = problem(0)
    args = dict(target=target, sources=sources, depth=depth, poses=poses, K=K)
    args.update(changes)
    return args


BAD_INPUTS = [
    ("sources_4d", bad(sources=torch.rand(2, 3, 7, 10)), ValueError, r"sources must have shape \(2, S, 3, 7, 10\)"),
    ("no_source", bad(sources=torch.rand(2, 0, 3, 7, 10)), ValueError, r"sources must hold at least one source"),
    ("poses_count", bad(poses=torch.eye(4).expand(2, 3, 4, 4)), ValueError, r"poses must have shape \(2, 2, 4, 4\)"),
    ("depth_size", bad(depth=torch.rand(2, 1, 7, 9)), ValueError, r"depth must have shape \(2, 1, 7, 10\)"),
    ("dtype_mix", bad(sources=torch.rand(2, 2, 3, 7, 10).half()), TypeError, r"sources has dtype torch.float16"),
    ("no_channel", bad(target=torch.rand(2, 0, 7, 10)), ValueError, r"target must have at least one channel"),
    ("identity_size", dict(bad(), identity=torch.rand(2, 1, 7, 9)), ValueError, r"identity must have shape"),
    ("nan_pose", bad(poses=torch.full((2, 2, 4, 4), float("nan"))), ValueError, r"poses must be finite"),
    ("alpha", dict(bad(), alpha=2.0), ValueError, r"alpha must be a number in \[0, 1\]"),
    ("padding", dict(bad(), padding_mode="reflection"), ValueError, r"padding_mode must be one of"),
]


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("name,args,error,pattern", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_inputs(backend, name, args, error, pattern):
    with pytest.raises(error, match=pattern):
        fastdepth.reprojection_loss(**args, backend=backend)
