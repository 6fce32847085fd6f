"""The fused photometric loss and min-reprojection kernels against the reference: forward,
backward, borders, ties, determinism, opcheck, torch.compile, and bad inputs."""

import pytest
import torch
from conftest import ALL, BACKEND_NAMES, FLOAT32_ONLY, FUSED
from helpers import grads, leaves, max_abs, max_rel, non_contiguous

import fastdepth
from fastdepth.compare import assert_close
from fastdepth.scenes import natural_images
from fastdepth.tolerances import tolerance


def image_pair(B, C, H, W, seed, dtype=torch.float32, device="cpu"):
    target = natural_images(B, C, H, W, seed=seed, dtype=dtype, device=device)
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(seed + 1)).to(device, dtype)
    return (target + 0.1 * noise).clamp(0, 1), target


# small: the interpreter runs the 3x3-of-3x3 backward stencil in Python
SHAPES = [(2, 3, 5, 7), (1, 1, 2, 2), (1, 3, 2, 9), (1, 1, 9, 2), (1, 3, 11, 35)]


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_photometric_float32_matches_reference(backend, device, shape, seed):
    pred, target = image_pair(*shape, seed, device=device)
    ours_in, ref_in = leaves(pred, target), leaves(pred, target, dtype=torch.float64)
    ours = fastdepth.photometric_loss(*ours_in, backend=backend)
    ref = fastdepth.photometric_loss(*ref_in, backend="torch")
    assert ours.shape == ref.shape == (shape[0], 1, *shape[2:]) and ours.dtype == torch.float32
    tol = tolerance("photometric", torch.float32, backend, device)
    assert_close(ours, ref, abs_tol=tol.forward, name="loss")
    g = torch.rand(ours.shape, dtype=torch.float64, device=device)
    for name, a, b in zip(("pred", "target"), grads(ours, ours_in, g), grads(ref, ref_in, g), strict=True):
        assert_close(a, b, rel_tol=tol.gradient, name=f"grad {name}")


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("alpha", [0.0, 1.0, 0.3])
def test_photometric_alpha(backend, device, alpha, seed):
    pred, target = image_pair(1, 2, 4, 6, seed, device=device)
    ours = fastdepth.photometric_loss(pred, target, alpha, backend=backend)
    ref = fastdepth.photometric_loss(pred.double(), target.double(), alpha, backend="torch")
    assert_close(ours, ref, abs_tol=tolerance("photometric", torch.float32, backend, device).forward, name="loss")


@pytest.mark.parametrize("backend,device", FUSED)
def test_photometric_non_contiguous(backend, device, seed):
    pred, target = image_pair(2, 3, 6, 5, seed, device=device)
    ours_in = [non_contiguous(t).requires_grad_() for t in (pred, target)]
    ref_in = leaves(pred, target, dtype=torch.float64)
    ours = fastdepth.photometric_loss(*ours_in, backend=backend)
    ref = fastdepth.photometric_loss(*ref_in, backend="torch")
    tol = tolerance("photometric", torch.float32, backend, device)
    assert_close(ours, ref, abs_tol=tol.forward, name="loss")
    for a, b in zip(grads(ours, ours_in, torch.ones_like(ours)), grads(ref, ref_in, torch.ones_like(ref)), strict=True):
        assert_close(a, b, rel_tol=tol.gradient, name="gradient")


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_photometric_half(backend, device, dtype, seed):
    pred, target = image_pair(1, 3, 6, 9, seed, dtype=dtype, device=device)
    ours_in, ref_in = leaves(pred, target), leaves(pred, target, dtype=torch.float64)
    ours = fastdepth.photometric_loss(*ours_in, backend=backend)
    ref = fastdepth.photometric_loss(*ref_in, backend="torch")
    assert ours.dtype == dtype
    tol = tolerance("photometric", dtype, backend, device)
    assert_close(ours, ref, abs_tol=tol.forward, name="loss")
    g = torch.rand(ours.shape, device=device).to(dtype)
    for a, b in zip(grads(ours, ours_in, g), grads(ref, ref_in, g.double()), strict=True):
        assert a.dtype == dtype
        assert_close(a, b, rel_tol=tol.gradient, name="gradient")


@pytest.mark.parametrize("backend,device", FUSED)
def test_photometric_only_requested_gradient(backend, device, seed):
    pred, target = image_pair(1, 3, 5, 6, seed, device=device)
    pred.requires_grad_(True)
    ours = fastdepth.photometric_loss(pred, target, backend=backend)
    (g,) = torch.autograd.grad(ours.sum(), [pred])
    ref_in = leaves(pred, dtype=torch.float64)
    ref = fastdepth.photometric_loss(ref_in[0], target.double(), backend="torch")
    tol = tolerance("photometric", torch.float32, backend, device)
    assert_close(g, torch.autograd.grad(ref.sum(), ref_in)[0], rel_tol=tol.gradient, name="grad pred")


def candidate_set(seed, device, B=2, S=2, S_id=2, C=3, H=5, W=6, dtype=torch.float32):
    target = natural_images(B, C, H, W, seed=seed, dtype=dtype, device=device)
    gen = torch.Generator().manual_seed(seed + 1)
    warped = (target[:, None] + 0.2 * torch.randn(B, S, C, H, W, generator=gen).to(device, dtype)).clamp(0, 1)
    identity = (target[:, None] + 0.2 * torch.randn(B, S_id, C, H, W, generator=gen).to(device, dtype)).clamp(0, 1)
    return target, warped, identity


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("with_identity", [True, False])
def test_min_reprojection_matches_reference(backend, device, with_identity, seed):
    target, warped, identity = candidate_set(seed, device)
    ours_in = leaves(target, warped, identity)
    ref_in = leaves(target, warped, identity, dtype=torch.float64)
    if not with_identity:
        ours_in, ref_in = ours_in[:2], ref_in[:2]
    loss, index, automask = fastdepth.min_reprojection_loss(*ours_in, backend=backend)
    ref_loss, ref_index, ref_automask = fastdepth.min_reprojection_loss(*ref_in, backend="torch")
    tol = tolerance("photometric", torch.float32, backend, device)
    assert_close(loss, ref_loss, abs_tol=tol.forward, name="loss")
    # no ties in random data: the same winners
    assert torch.equal(index, ref_index) and torch.equal(automask, ref_automask)
    assert index.dtype == torch.int64 and automask.dtype == torch.bool
    g = torch.rand(loss.shape, dtype=torch.float64, device=device)
    for a, b in zip(grads(loss, ours_in, g), grads(ref_loss, ref_in, g), strict=True):
        assert_close(a, b, rel_tol=tol.gradient, name="gradient")


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("needs", ["warped", "identity", "target", "target+identity"])
def test_min_reprojection_gradient_of_some_inputs(backend, device, needs, seed):
    # the backward skips the candidates whose gradient no requested input needs (the identity
    # candidates of a training step, where only the warped sources need one)
    target, warped, identity = candidate_set(seed, device)
    inputs = {"target": target, "warped": warped, "identity": identity}
    ours_in = [t.clone().requires_grad_(name in needs.split("+")) for name, t in inputs.items()]
    ref_in = [t.detach().double().requires_grad_(t.requires_grad) for t in ours_in]
    loss, _, _ = fastdepth.min_reprojection_loss(*ours_in, backend=backend)
    ref_loss, _, _ = fastdepth.min_reprojection_loss(*ref_in, backend="torch")
    g = torch.rand(loss.shape, dtype=torch.float64, device=device)
    wanted = [t for t in ours_in if t.requires_grad]
    tol = tolerance("photometric", torch.float32, backend, device)
    ours = torch.autograd.grad(loss, wanted, g.to(loss.dtype))
    ref = torch.autograd.grad(ref_loss, [t for t in ref_in if t.requires_grad], g)
    for a, b in zip(ours, ref, strict=True):
        assert_close(a, b, rel_tol=tol.gradient, name="gradient")


@pytest.mark.parametrize("backend,device", FUSED)
def test_min_reprojection_ties_and_gradient_routing(backend, device, seed):
    target, warped, _ = candidate_set(seed, device)
    identity = warped.flip(1).clone()  # every warped source ties with an identity source
    inputs = leaves(target, warped, identity)
    loss, index, automask = fastdepth.min_reprojection_loss(*inputs, backend=backend)
    assert index.max() <= 1 and not automask.any()
    loss.sum().backward()
    assert torch.all(inputs[1].grad == 0)  # warped sources never won: no gradient
    assert inputs[2].grad.abs().sum() > 0


TILE_CASES = {
    # (B, S, S_id, C, H, W), the inputs that need a gradient, a NaN in warped source 0
    "photometric_loss": ((1, 1, 0, 2, 15, 31), "target+warped", False),  # 2 x 2 tiles, a pixel alone in the last
    "training_step": ((2, 2, 2, 3, 9, 13), "warped", False),  # the identity candidates skipped
    "every_input": ((1, 2, 1, 2, 16, 33), "target+warped+identity", False),
    "nan": ((1, 2, 1, 2, 7, 8), "target+warped+identity", True),
}


@pytest.mark.parametrize("backend,device", [bd for bd in FUSED if bd != ("cuda", "cpu")])
@pytest.mark.parametrize("case", TILE_CASES)
def test_tile_backward_equals_the_pixel_backward(backend, device, case, seed):
    # blocks of 16 x 32 positions, tiles of 14 x 30 pixels; not the CPU twin, which computes each
    # window once either way (tests/test_cuda_kernels_on_host.py runs the CUDA tile kernel's phases)
    (B, S, S_id, C, H, W), needs, nan = TILE_CASES[case]
    target, warped, identity = candidate_set(seed, device, B=B, S=S, S_id=S_id, C=C, H=H, W=W)
    if nan:
        warped[0, 0, 1, 2, 3] = float("nan")
    inputs = {"target": target, "warped": warped, "identity": identity if S_id else None}
    wanted = needs.split("+")

    def run():
        x = {name: None if t is None else t.clone().requires_grad_(name in wanted) for name, t in inputs.items()}
        if case == "photometric_loss":
            loss = fastdepth.photometric_loss(x["warped"][:, 0], x["target"], backend=backend)
        else:
            loss = fastdepth.min_reprojection_loss(x["target"], x["warped"], x["identity"], backend=backend)[0]
        g = torch.rand(loss.shape, generator=torch.Generator().manual_seed(seed)).to(device)
        return torch.autograd.grad(loss, [x[name] for name in wanted], g)

    pixel = run()
    with fastdepth.photometric.backward_kernel("tile"):
        tile = run()
    for name, a, b in zip(wanted, tile, pixel, strict=True):
        if device == "cpu":  # the same operations in the same order
            assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0)), name
            assert torch.equal(a.isnan(), b.isnan()), name
        else:  # compiled separately, the kernels may contract other multiply-adds
            tol = tolerance("photometric", torch.float32, backend, device)
            assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name=name)


def test_backward_kernels_are_named():
    with pytest.raises(ValueError, match="backward must be one of"):
        with fastdepth.photometric.backward_kernel("tiles"):
            pass
    assert fastdepth.photometric.BACKWARD == "pixel"


@pytest.mark.parametrize("backend,device", FUSED)
def test_min_reprojection_is_deterministic(backend, device, seed):
    target, warped, identity = candidate_set(seed, device, S=1, S_id=1, H=4, W=5)
    results = []
    for _ in range(2):
        inputs = leaves(target, warped, identity)
        loss, index, _ = fastdepth.min_reprojection_loss(*inputs, backend=backend)
        results.append([loss, index, *grads(loss, inputs, torch.ones_like(loss))])
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend,device", FUSED)
def test_min_reprojection_accepts_lists(backend, device, seed):
    target, warped, identity = candidate_set(seed, device)
    as_lists = fastdepth.min_reprojection_loss(
        target, list(warped.unbind(1)), list(identity.unbind(1)), backend=backend
    )
    as_tensors = fastdepth.min_reprojection_loss(target, warped, identity, backend=backend)
    for a, b in zip(as_lists, as_tensors, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend,device", FUSED)
def test_opcheck(backend, device, seed):
    # tiny: opcheck runs each op and its backward many times, slow in the interpreter
    target, warped, identity = candidate_set(seed, device, B=1, S=1, S_id=1, C=2, H=3, W=4)
    target, warped, identity = leaves(target, warped, identity)
    op = torch.ops.fastdepth.photometric.default
    torch.library.opcheck(op, (target, warped, identity, 0.85, True, backend))
    torch.library.opcheck(op, (target, warped, None, 0.5, False, backend))
    grad = torch.rand(1, 1, 3, 4, device=device)
    index = torch.randint(0, 2, (1, 1, 3, 4), device=device)
    torch.library.opcheck(
        torch.ops.fastdepth.photometric_backward.default,
        (grad, index, target.detach(), warped.detach(), identity.detach(), 0.85, [True, True, False], backend),
    )


@pytest.mark.parametrize("backend,device", FUSED)
def test_torch_compile_fullgraph(backend, device, seed):
    target, warped, identity = candidate_set(seed, device, B=1, S=2, S_id=1, C=2, H=4, W=5)

    def objective(target, warped, identity):
        loss, _, automask = fastdepth.min_reprojection_loss(target, warped, identity, backend=backend)
        return loss.mean() + fastdepth.photometric_loss(warped[:, 0], target, backend=backend).mean()

    eager_in, compiled_in = leaves(target, warped, identity), leaves(target, warped, identity)
    eager = objective(*eager_in)
    compiled = torch.compile(objective, fullgraph=True)(*compiled_in)
    eager.backward()
    compiled.backward()
    assert max_abs(compiled, eager) <= 1e-6
    for a, b in zip(compiled_in, eager_in, strict=True):
        assert max_rel(a.grad, b.grad) <= 1e-5


def pair(**changes):
    args = {"pred": torch.rand(2, 3, 4, 5), "target": torch.rand(2, 3, 4, 5)}
    args.update(changes)
    return args


BAD_PAIRS = [
    (pair(pred=torch.rand(2, 3, 4)), ValueError, r"pred must have shape \(B, C, H, W\)"),
    (pair(target=torch.rand(2, 3, 4, 6)), ValueError, r"target must have shape \(2, 3, 4, 5\), got \(2, 3, 4, 6\)"),
    (pair(pred=torch.rand(2, 3, 1, 5), target=torch.rand(2, 3, 1, 5)), ValueError, r"H and W must be at least 2"),
    (pair(pred=torch.rand(2, 3, 4, 1), target=torch.rand(2, 3, 4, 1)), ValueError, r"H and W must be at least 2"),
    (pair(target=torch.rand(2, 3, 4, 5).double()), TypeError, r"target has dtype torch.float64 but pred"),
    (pair(pred=torch.randint(0, 255, (2, 3, 4, 5))), TypeError, r"pred must have dtype in"),
    (pair(target=torch.rand(2, 3, 4, 5, device="meta")), ValueError, r"target is on meta but pred is on cpu"),
    (pair(target=None), TypeError, r"target must be a torch.Tensor, got NoneType"),
    (pair(alpha=1.5), ValueError, r"alpha must be a number in \[0, 1\]"),
    (pair(alpha="0.5"), ValueError, r"alpha must be a number in \[0, 1\], got '0.5'"),
    (
        pair(pred=torch.rand(2, 0, 4, 5), target=torch.rand(2, 0, 4, 5)),
        ValueError,
        r"pred must have at least one channel",
    ),
]


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("args,error,pattern", BAD_PAIRS)
def test_photometric_bad_inputs(backend, args, error, pattern):
    with pytest.raises(error, match=pattern):
        fastdepth.photometric_loss(**args, backend=backend)


@pytest.mark.parametrize(
    "warped,identity,error,pattern",
    [
        (torch.rand(2, 0, 3, 4, 5), None, ValueError, r"warped must hold at least one source"),
        ([], None, ValueError, r"warped must hold at least one source"),
        (torch.rand(2, 2, 1, 4, 5), None, ValueError, r"warped must have shape \(2, S, 3, 4, 5\)"),
        (torch.rand(2, 2, 3, 4, 5), torch.rand(1, 2, 3, 4, 5), ValueError, r"identity must have shape \(2, S', 3"),
        (torch.rand(2, 2, 3, 4, 5), [torch.rand(2, 3, 4, 5), "x"], TypeError, r"identity\[1\] must be a torch.Tensor"),
        (torch.rand(2, 2, 3, 4, 5).half(), None, TypeError, r"warped has dtype torch.float16 but target"),
        ([torch.rand(2, 3, 4, 5), torch.rand(2, 3, 4, 6)], None, ValueError, r"warped\[1\] has shape \(2, 3, 4, 6\)"),
        (torch.rand(2, 2, 0, 4, 5), None, ValueError, r"warped must have shape \(2, S, 3, 4, 5\)"),
    ],
)
@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_min_reprojection_bad_inputs(warped, identity, error, pattern, backend):
    with pytest.raises(error, match=pattern):
        fastdepth.min_reprojection_loss(torch.rand(2, 3, 4, 5), warped, identity, backend=backend)


@pytest.mark.parametrize("backend,device", FLOAT32_ONLY)
def test_fused_falls_back_to_the_reference_for_float64(backend, device, monkeypatch):
    from fastdepth import backends

    monkeypatch.setattr(backends, "_warned_float64", set())
    pred, target = torch.rand(1, 1, 3, 3, device=device).double(), torch.rand(1, 1, 3, 3, device=device).double()
    with pytest.warns(UserWarning, match=r"computes in float32"):
        loss = fastdepth.photometric_loss(pred, target, backend=backend)
    assert torch.equal(loss, fastdepth.photometric_loss(pred, target, backend="torch"))


@pytest.mark.parametrize("backend,device", ALL)
def test_empty_batch(backend, device):
    pred, target = leaves(torch.rand(0, 3, 4, 5, device=device), torch.rand(0, 3, 4, 5, device=device))
    loss = fastdepth.photometric_loss(pred, target, backend=backend)
    assert loss.shape == (0, 1, 4, 5)
    loss.sum().backward()
    assert pred.grad.shape == pred.shape


@pytest.mark.parametrize("backend,device", ALL)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf_reach_the_whole_window(backend, device, bad, seed):
    # one behaviour on every backend: the clamp of the SSIM term keeps NaN (as torch.clamp)
    pred, target = image_pair(1, 2, 6, 7, seed, device=device)
    pred[0, 1, 2, 3] = bad
    loss = fastdepth.photometric_loss(pred, target, backend=backend)
    expected = torch.zeros(6, 7, dtype=torch.bool, device=device)
    expected[1:4, 2:5] = True
    assert torch.equal(torch.isnan(loss[0, 0]), expected)
    assert torch.isnan(fastdepth.photometric_loss(pred * 1e30, target, backend=backend)).all()


@pytest.mark.parametrize("backend,device", ALL)
def test_nan_wins_the_minimum_as_in_the_reference(backend, device, seed):
    target, warped, identity = candidate_set(seed, device)
    warped[0, 1, 0, 2, 3] = float("nan")
    loss, index, _ = fastdepth.min_reprojection_loss(target, warped, identity, backend=backend)
    ref_loss, ref_index, _ = fastdepth.min_reprojection_loss(target, warped, identity, backend="torch")
    assert torch.equal(torch.isnan(loss), torch.isnan(ref_loss)) and torch.isnan(loss).sum() == 9
    assert torch.equal(index, ref_index)


@pytest.mark.parametrize("backend,device", FUSED)
def test_non_finite_gradients_as_in_the_reference(backend, device, seed):
    # PyTorch's autograd multiplies the clamp's zero gradient by the window's NaN terms: NaN reaches
    # every pixel of a window that holds NaN or inf, whether or not its candidate won. Warped source
    # 0 holds a NaN (it wins those windows); source 1 a NaN where source 0's NaN already won (it
    # loses: its gradient there is 0 times NaN); the identity an inf
    target, warped, identity = candidate_set(seed, device, S_id=1, C=2, H=7, W=8)
    warped[0, 0, 1, 2, 3] = float("nan")
    warped[0, 1, 0, 3, 3] = float("nan")
    identity[1, 0, 0, 0, 7] = float("inf")
    ours_in, ref_in = leaves(target, warped, identity), leaves(target, warped, identity, dtype=torch.float64)
    ours = fastdepth.min_reprojection_loss(*ours_in, backend=backend)[0]
    ref = fastdepth.min_reprojection_loss(*ref_in, backend="torch")[0]
    g = torch.rand(ours.shape, generator=torch.Generator().manual_seed(seed)).to(device)
    tol = tolerance("photometric", torch.float32, backend, device)
    pairs = zip(("target", "warped", "identity"), grads(ours, ours_in, g), grads(ref, ref_in, g), strict=True)
    for name, a, b in pairs:
        assert torch.isnan(b).any(), name
        assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name=name)  # NaN where b has NaN


@pytest.mark.parametrize("backend,device", ALL)
def test_autocast_does_not_reach_inside(backend, device, seed):
    target, warped, identity = candidate_set(seed, device, B=1, S=1, S_id=1, C=2, H=4, W=5)
    expected = fastdepth.min_reprojection_loss(target, warped, identity, backend=backend)
    with torch.autocast(device, dtype=torch.bfloat16):
        under = fastdepth.min_reprojection_loss(target, warped, identity, backend=backend)
        single = fastdepth.photometric_loss(warped[:, 0], target, backend=backend)
    for a, b in zip(under, expected, strict=True):
        assert torch.equal(a, b)
    assert single.dtype == torch.float32


@pytest.mark.skipif("cuda" not in BACKEND_NAMES, reason="needs the C++ extension")
@pytest.mark.parametrize(
    "args,pattern",
    [
        ((torch.rand(2, 3, 4, 5), torch.rand(2, 1, 3, 4, 4), None, 0.85, True), r"warped has shape \[2, 1, 3, 4, 4\]"),
        ((torch.rand(2, 3, 4, 5), torch.rand(2, 1, 3, 4, 5), torch.rand(1, 1, 3, 4, 5), 0.85, True), r"identity has"),
        ((torch.rand(2, 3, 1, 5), torch.rand(2, 1, 3, 1, 5), None, 0.85, True), r"H and W must be at least 2"),
    ],
)
def test_raw_extension_op_checks_what_it_reads(args, pattern):
    from fastdepth import _cuda

    with pytest.raises(ValueError, match=pattern):
        _cuda.library().photometric_forward(*args)
    grad = torch.rand(1, 1, 4, 5)  # the wrong batch for any of the cases above
    with pytest.raises(ValueError):
        _cuda.library().photometric_backward(grad, None, *args[:4], [True, True, False], False)
