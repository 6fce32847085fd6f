"""The fused supervised depth losses against the reference: every option forward and backward, the
worked examples, degenerate images, what invalid pixels may hold, determinism, dtypes, opcheck,
torch.compile and bad inputs."""

import math

import pytest
import torch
from conftest import ALL, BACKEND_NAMES, FUSED, TWIN
from helpers import grads, leaves, non_contiguous

import fastdepth
from fastdepth.checks import run_one
from fastdepth.checks.depth_loss import CASES, inputs
from fastdepth.compare import assert_close
from fastdepth.tolerances import tolerance

LOSSES = {"si": fastdepth.scale_invariant_loss, "ssi": fastdepth.scale_shift_invariant_loss}
ALL_OPTIONS = [
    ("si", dict()),
    ("si", dict(lam=0.0, reduction="batch")),
    ("ssi", dict()),
    ("ssi", dict(residual="l2", reduction="batch")),
    ("ssi", dict(space="disparity")),
    ("ssi", dict(space="disparity", residual="l2")),
]
OPTION_IDS = [f"{name}-{'-'.join(map(str, kw.values())) or 'default'}" for name, kw in ALL_OPTIONS]


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("quick", [True, False], ids=["one-block", "13-blocks"])
def test_matches_the_reference(backend, device, case, quick):
    # the GPU campaign's cases: loss, gradient, bitwise-repeatable gradient, degenerate images
    result = run_one("depth_loss", case, backend, device, torch.float32, quick=quick)
    assert result.passed, result


@pytest.mark.skipif(not TWIN, reason="needs the CPU twin")
@pytest.mark.parametrize("name,options", ALL_OPTIONS, ids=OPTION_IDS)
def test_twin_float64_matches_the_reference(name, options, seed):
    pred, target, mask = inputs(3, 37, 53, seed, torch.float64, "cpu")
    ours_in, ref_in = leaves(pred), leaves(pred)
    ours = LOSSES[name](*ours_in, target, mask, **options, backend="cuda")
    ref = LOSSES[name](*ref_in, target, mask, **options, backend="torch")
    tol = tolerance("depth_loss", torch.float64, "cuda", "cpu")
    assert abs(ours.item() - ref.item()) <= tol.forward * max(1.0, abs(ref.item()))
    g = torch.tensor(float(pred.numel()), dtype=torch.float64)
    assert_close(grads(ours, ours_in, g)[0], grads(ref, ref_in, g)[0], rel_tol=tol.gradient, name="grad pred")


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("name,options", ALL_OPTIONS, ids=OPTION_IDS)
def test_every_option_matches_the_reference(backend, device, name, options, seed):
    pred, target, mask = inputs(2, 9, 13, seed, torch.float32, device)
    ours_in, ref_in = leaves(pred), leaves(pred, dtype=torch.float64)
    ours = LOSSES[name](*ours_in, target, mask, **options, backend=backend)
    ref = LOSSES[name](*ref_in, target.double(), mask, **options, backend="torch")
    assert ours.dtype == torch.float32 and ours.shape == ()
    tol = tolerance("depth_loss", torch.float32, backend, device)
    assert abs(ours.item() - ref.item()) <= tol.forward * max(1.0, abs(ref.item()))
    g = torch.tensor(float(pred.numel()), device=device)
    assert_close(grads(ours, ours_in, g)[0], grads(ref, ref_in, g)[0], rel_tol=tol.gradient, name="grad pred")


@pytest.mark.parametrize("backend,device", ALL)
@pytest.mark.parametrize("factor", [2.0, 1.5])
def test_worked_example_a_scaled_prediction(backend, device, factor, seed):
    # perfect shape, wrong scale: free with lam = 1; the plain squared log loss charges log(factor)²
    _, target, _ = inputs(2, 9, 13, seed, torch.float32, device)
    pred = factor * target.clamp(min=1.0)
    assert abs(fastdepth.scale_invariant_loss(pred, target, lam=1.0, backend=backend).item()) <= 1e-6
    plain = fastdepth.scale_invariant_loss(pred, target, lam=0.0, backend=backend).item()
    assert plain == pytest.approx(math.log(factor) ** 2, rel=1e-5)  # 0.48 for 2x, 0.16 for 1.5x


@pytest.mark.parametrize("backend,device", ALL)
@pytest.mark.parametrize("space", ["depth", "disparity"])
def test_an_affine_prediction_costs_nothing(backend, device, space, seed):
    _, target, _ = inputs(2, 9, 13, seed, torch.float32, device)
    t = target if space == "depth" else 1.0 / target.clamp(min=1.0)
    pred = ((t - 0.3) / 2.5).requires_grad_()
    for residual in ("l1", "l2"):
        loss = fastdepth.scale_shift_invariant_loss(pred, target, space=space, residual=residual, backend=backend)
        assert abs(loss.item()) <= 1e-5, residual
        shifted = fastdepth.scale_shift_invariant_loss(
            pred + 0.1, target, space=space, residual=residual, backend=backend
        )
        assert abs(shifted.item() - loss.item()) <= 1e-5, residual


@pytest.mark.parametrize("backend,device", ALL)
def test_an_exactly_zero_residual_has_no_l1_slope(backend, device):
    # |r| has slope 0 at r = 0 (torch.abs's), not 1. Small integers make the fit exact: the target is
    # pred - e with e orthogonal to pred and to 1, so a = 1, b = 0 and r = e, 0 at the middle pixel.
    # By hand (reduction "image", n = 5): d loss / d p_i = (sign(r_i) - 2 da/dp_i) / 5, with
    # da/dp_i = (5 t_i - 10 p_i + 20) / 50
    pred = torch.tensor([[2.0, 3.0, 4.0, 5.0, 6.0]], device=device, requires_grad=True)
    target = torch.tensor([[1.0, 5.0, 4.0, 3.0, 7.0]], device=device)
    loss = fastdepth.scale_shift_invariant_loss(pred, target, backend=backend)
    assert loss.item() == pytest.approx(6.0 / 5.0, rel=1e-6)
    (grad,) = torch.autograd.grad(loss, pred)
    expected = torch.tensor([[0.16, -0.32, 0.0, 0.32, -0.16]], device=device)
    assert_close(grad, expected, abs_tol=1e-6, name="grad pred")


@pytest.mark.parametrize("backend,device", ALL)
@pytest.mark.parametrize("name,options", ALL_OPTIONS[::2], ids=OPTION_IDS[::2])
def test_what_invalid_pixels_hold_is_ignored(backend, device, name, options, seed):
    pred, target, mask = inputs(2, 9, 13, seed, torch.float32, device)
    invalid = (target <= 0) | ~mask
    garbage = torch.where(invalid, torch.tensor(float("nan"), device=device), pred).requires_grad_()
    clean = torch.where(invalid, -1.0, pred).requires_grad_()
    losses = [LOSSES[name](p, target, mask, **options, backend=backend) for p in (garbage, clean)]
    assert torch.isfinite(losses[0]) and losses[0].item() == losses[1].item()
    g_garbage, g_clean = (torch.autograd.grad(loss, p)[0] for loss, p in zip(losses, (garbage, clean), strict=True))
    assert torch.equal(g_garbage, g_clean) and (g_garbage[invalid] == 0).all()


@pytest.mark.parametrize("backend,device", ALL)
@pytest.mark.parametrize("name,options", ALL_OPTIONS[::2], ids=OPTION_IDS[::2])
def test_a_target_not_positive_and_finite_is_missing_ground_truth(backend, device, name, options, seed):
    pred, target, mask = inputs(2, 9, 13, seed, torch.float32, device)
    odd, missing = target.clone(), target.clone()
    odd[0, 0, 0, :5] = torch.tensor([float("inf"), float("nan"), -2.0, -float("inf"), -0.0])
    missing[0, 0, 0, :5] = 0.0
    preds = leaves(pred, pred)
    losses = [LOSSES[name](p, t, mask, **options, backend=backend) for p, t in zip(preds, (odd, missing), strict=True)]
    assert torch.isfinite(losses[0]) and losses[0].item() == losses[1].item()
    g_odd, g_missing = (torch.autograd.grad(loss, p)[0] for loss, p in zip(losses, preds, strict=True))
    assert torch.equal(g_odd, g_missing)


@pytest.mark.parametrize("backend,device", ALL)
def test_an_image_without_ground_truth_does_not_count(backend, device, seed):
    pred, target, _ = inputs(2, 9, 13, seed, torch.float32, device)
    target[1] = 0.0
    for loss in LOSSES.values():
        both = loss(pred, target, backend=backend)
        alone = loss(pred[:1], target[:1], backend=backend)
        assert both.item() == pytest.approx(alone.item(), rel=1e-6)


def test_the_reference_computes_in_float64(seed):
    # as the fused backends sum: a valid target of 1e38 overflowed its float32 sums to NaN
    pred, target, _ = inputs(2, 9, 13, seed, torch.float32, "cpu")
    target[0, 0, 4, 5] = 1e38
    loss = fastdepth.scale_shift_invariant_loss(pred, target, backend="torch")
    expected = fastdepth.scale_shift_invariant_loss(pred.double(), target.double(), backend="torch")
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("backend,device", ALL)
@pytest.mark.parametrize("name,options", ALL_OPTIONS[::2], ids=OPTION_IDS[::2])
def test_the_target_gets_no_gradient_on_any_backend(backend, device, name, options, seed):
    pred, target, mask = inputs(2, 9, 13, seed, torch.float32, device)
    pred, target = leaves(pred, target)
    loss = LOSSES[name](pred, target, mask, **options, backend=backend)
    g_pred, g_target = torch.autograd.grad(loss, [pred, target], allow_unused=True)
    assert g_target is None and g_pred.abs().sum() > 0


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision(backend, device, dtype):
    for case in ("scale_invariant", "scale_shift"):
        result = run_one("depth_loss", case, backend, device, dtype, quick=True)
        assert result.passed, result


@pytest.mark.parametrize("backend,device", ALL)
def test_mixed_dtypes_read_in_the_wider_one(backend, device, seed):
    pred, target, _ = inputs(1, 5, 6, seed, torch.float32, device)
    half = pred.half().requires_grad_()
    loss = fastdepth.scale_shift_invariant_loss(half, target, backend=backend)
    expected = fastdepth.scale_shift_invariant_loss(half.detach().float(), target, backend=backend)
    assert loss.dtype == torch.float32 and loss.item() == expected.item()
    loss.backward()
    assert half.grad.dtype == torch.float16


@pytest.mark.parametrize("backend,device", ALL)
def test_non_contiguous_inputs(backend, device, seed):
    pred, target, mask = inputs(2, 7, 6, seed, torch.float32, device)
    expected = fastdepth.scale_shift_invariant_loss(pred, target, mask, backend=backend)
    strided = [non_contiguous(t) for t in (pred, target, mask)]
    assert fastdepth.scale_shift_invariant_loss(*strided, backend=backend).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("backend,device", ALL)
def test_autocast_does_not_reach_inside(backend, device, seed):
    pred, target, _ = inputs(1, 5, 6, seed, torch.float32, device)
    expected = fastdepth.scale_invariant_loss(pred, target, backend=backend)
    with torch.autocast(device, dtype=torch.bfloat16):
        assert torch.equal(fastdepth.scale_invariant_loss(pred, target, backend=backend), expected)


@pytest.mark.parametrize("backend,device", FUSED)
def test_opcheck(backend, device, seed):
    pred, target, mask = inputs(2, 3, 4, seed, torch.float32, device)
    pred, target, mask = pred.reshape(2, -1).requires_grad_(), target.reshape(2, -1), mask.reshape(2, -1)
    op = torch.ops.fastdepth.depth_loss.default
    torch.library.opcheck(op, (pred, target, mask, "scale_invariant", 0.85, False, False, True, backend))
    torch.library.opcheck(op, (pred, target, None, "scale_shift_invariant", 0.0, True, True, False, backend))


@pytest.mark.parametrize("backend,device", FUSED)
def test_torch_compile_fullgraph(backend, device, seed):
    pred, target, mask = inputs(2, 5, 6, seed, torch.float32, device)

    def objective(pred):
        return fastdepth.scale_invariant_loss(pred, target, mask, backend=backend) + (
            fastdepth.scale_shift_invariant_loss(pred, target, mask, space="disparity", backend=backend)
        )

    eager_in, compiled_in = leaves(pred), leaves(pred)
    eager = objective(*eager_in)
    compiled = torch.compile(objective, fullgraph=True)(*compiled_in)
    eager.backward()
    compiled.backward()
    assert abs(compiled.item() - eager.item()) <= 1e-6
    assert torch.allclose(compiled_in[0].grad, eager_in[0].grad, rtol=1e-5, atol=0)


def args(**changes):
    values = {"pred": torch.rand(2, 1, 4, 5) + 0.5, "target": torch.rand(2, 1, 4, 5) + 0.5}
    values.update(changes)
    return values


BAD = [
    ("si", args(pred=torch.rand(4)), ValueError, r"pred must have shape \(B, ...\) with at least 2 dimensions"),
    ("ssi", args(target=torch.rand(2, 1, 4, 6)), ValueError, r"target must have shape \(2, 1, 4, 5\), got"),
    ("si", args(mask=torch.ones(2, 1, 4, 4, dtype=torch.bool)), ValueError, r"mask must have shape \(2, 1, 4, 5\)"),
    ("ssi", args(mask=torch.ones(2, 1, 4, 5)), TypeError, r"mask must have dtype in \(bool\)"),
    ("si", args(pred=torch.ones(2, 1, 4, 5, dtype=torch.int64)), TypeError, r"pred must have dtype in"),
    ("ssi", args(target=None), TypeError, r"target must be a torch.Tensor, got NoneType"),
    ("si", args(target=torch.rand(2, 1, 4, 5, device="meta")), ValueError, r"target is on meta but pred is on cpu"),
    ("si", args(lam=1.5), ValueError, r"lam must be a number in \[0, 1\]"),
    ("si", args(reduction="mean"), ValueError, r"reduction must be one of \('image', 'batch'\)"),
    ("ssi", args(space="inverse"), ValueError, r"space must be one of \('depth', 'disparity'\)"),
    ("ssi", args(residual="huber"), ValueError, r"residual must be one of \('l1', 'l2'\)"),
    # values: no valid pixel at all, and predictions a log (or any arithmetic) cannot take
    ("si", args(target=torch.zeros(2, 1, 4, 5)), ValueError, r"no valid pixel in the batch"),
    ("ssi", args(mask=torch.zeros(2, 1, 4, 5, dtype=torch.bool)), ValueError, r"no valid pixel in the batch"),
    ("si", args(pred=torch.zeros(0, 1, 4, 5), target=torch.zeros(0, 1, 4, 5)), ValueError, r"no valid pixel"),
    ("si", args(pred=-torch.rand(2, 1, 4, 5)), ValueError, r"pred must be positive and finite where the target"),
    ("si", args(pred=torch.zeros(2, 1, 4, 5)), ValueError, r"pred must be positive and finite"),
    ("ssi", args(pred=torch.full((2, 1, 4, 5), float("inf"))), ValueError, r"pred must be finite where the target"),
    ("ssi", args(pred=torch.full((2, 1, 4, 5), float("nan"))), ValueError, r"pred must be finite where the target"),
]


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("name,kwargs,error,pattern", BAD)
def test_bad_inputs(backend, name, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        LOSSES[name](**kwargs, backend=backend)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("at", [(0, 0), (1, 7), (3, 19)], ids=["first", "mid-vector", "last"])
def test_one_bad_prediction_among_valid_pixels_is_found(backend, at):
    # the twin takes its logs 8 pixels at a time (csrc/cpu_math.h): one lane's NaN must reach the sums
    pred, target = torch.rand(2, 1, 4, 20) + 1, torch.rand(2, 1, 4, 20) + 1
    target[0, 0, 0, 1:4] = 0  # invalid pixels beside it hold what they like
    pred[1, 0, at[0], at[1]] = -0.5
    with pytest.raises(ValueError, match=r"pred must be positive and finite where the target"):
        fastdepth.scale_invariant_loss(pred, target, backend=backend)


def test_a_negative_prediction_is_fine_where_no_log_is_taken():
    pred = torch.rand(2, 1, 4, 5) - 0.5
    assert torch.isfinite(fastdepth.scale_shift_invariant_loss(pred, torch.rand(2, 1, 4, 5) + 0.5))


@pytest.mark.skipif(not TWIN, reason="needs the C++ extension")
def test_raw_extension_op_checks_what_it_reads():
    from fastdepth import _cuda

    lib = _cuda.library()
    pred, target = torch.rand(2, 6), torch.rand(2, 6)
    with pytest.raises(ValueError, match=r"target has shape \[2, 5\]"):
        lib.depth_loss_forward(pred, torch.rand(2, 5), None, None, "log_moments", False, False)
    with pytest.raises(TypeError, match=r"mask must be bool"):
        lib.depth_loss_forward(pred, target, torch.ones(2, 6), None, "log_moments", False, False)
    with pytest.raises(ValueError, match=r"stage must be"):
        lib.depth_loss_forward(pred, target, None, None, "moments", False, False)
    with pytest.raises(ValueError, match=r"coeffs \(the alignment's moments\) are for the residual stage"):
        lib.depth_loss_forward(pred, target, None, None, "residual", False, False)
    with pytest.raises(ValueError, match=r"coeffs has shape \[2, 2\]"):  # the moments: 5 columns
        lib.depth_loss_forward(pred, target, None, torch.zeros(2, 2, dtype=torch.float64), "residual", False, False)
    with pytest.raises(ValueError, match=r"coeffs has shape \[2, 6\]"):
        lib.depth_loss_backward(
            torch.zeros(2, 6, dtype=torch.float64), pred, target, None, "scale_invariant", False, False
        )
    with pytest.raises(ValueError, match=r"coeffs has shape \[2, 8\]"):  # the ten sums, weight and gradient: 12
        lib.depth_loss_backward(
            torch.zeros(2, 8, dtype=torch.float64), pred, target, None, "scale_shift_invariant", False, False
        )
