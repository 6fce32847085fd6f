"""Every Triton kernel of every op, forward and backward, as a GPU may run it and Triton's
interpreter by itself does not (tests/triton_gpu.py): no two lanes of a program reach an element
between barriers with a store; the programs of every grid run in the reverse order give the same
outputs and gradients bit for bit (those summed with float atomics: to float32 rounding); with a
GPU's rounding the correctness cases that cover every kernel stay within the GPU's bounds. Sizes
span several programs along every grid axis the kernels use; on a GPU the interpreter does not
run, and neither do these tests."""

from __future__ import annotations

import pytest
import torch
from conftest import INTERPRETED, TRITON_DEVICES
from helpers import grads, leaves

import fastdepth
from fastdepth import registry
from fastdepth.checks import cost_volume as volume_checks
from fastdepth.checks import depth_loss as depth_loss_checks
from fastdepth.checks import op_cases
from fastdepth.compare import assert_close
from fastdepth.cost_volume import backward_kernel as volume_backward_kernel
from fastdepth.reprojection import backward_passes, forward_kernel
from fastdepth.scenes import natural_images, warp_scene
from fastdepth.tolerances import TABLE

pytestmark = pytest.mark.skipif(
    not (INTERPRETED and "cpu" in TRITON_DEVICES), reason="needs Triton's interpreter on the CPU"
)
triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

from triton_gpu import BarrierRaces, gpu_rounding, programs_in_reverse  # noqa: E402 (needs Triton)


def _outputs(out, inputs, names, seed):
    """The op's outputs and the gradients of a random weighting of its first output."""
    outs = out if isinstance(out, tuple) else (out,)
    g = torch.randn(outs[0].shape, generator=torch.Generator().manual_seed(seed), dtype=outs[0].dtype)
    outputs = {f"out{i}": o.detach() for i, o in enumerate(outs)}
    return outputs | {f"grad {n}": t for n, t in zip(names, grads(outs[0], inputs, g), strict=True)}


def _warp(deterministic, padding_mode, align_corners):
    scene = warp_scene(2, 2, 3, 13, 45, seed=1)  # 585 pixels: 5 programs of 128 per image and source
    x = leaves(scene["image"], scene["depth"], scene["pose"], scene["K"])
    out = fastdepth.warp(
        *x, padding_mode=padding_mode, align_corners=align_corners, deterministic=deterministic, backend="triton"
    )
    return _outputs(out, x, ["image", "depth", "pose", "K"], 2)


def _min_reprojection(H=9, W=33):
    """9 x 33: 2 x 2 programs of 8 x 32 pixels per image (photometric_loss: the same kernels); the
    tile backward at 20 x 40: 2 x 2 programs of 14 x 30 pixels, whose halos reach inside the image."""
    target = natural_images(2, 1, H, W, seed=6)
    warped, identity = natural_images(2, 1, H, W, seed=7)[:, None], natural_images(2, 1, H, W, seed=8)[:, None]
    x = leaves(target, warped, identity)
    out = fastdepth.min_reprojection_loss(*x, backend="triton")
    return _outputs(out, x, ["target", "warped", "identity"], 9)


def _min_reprojection_tile_backward():
    with fastdepth.photometric.backward_kernel("tile"):
        return _min_reprojection(20, 40)


def _reprojection(forward: str):
    """20 x 40: 3 x 2 programs of the window forward (8 x 32 pixels), 2 x 2 of the tile forward (14 x
    30) and of the one-pass backward (12 x 28), whose halos reach pixels inside the image, not only
    its edge."""
    scene = warp_scene(2, 2, 2, 20, 40, seed=10)
    target = natural_images(2, 2, 20, 40, seed=11)
    sources = torch.stack([natural_images(2, 2, 20, 40, seed=12 + s) for s in range(2)], 1)
    identity = fastdepth.identity_loss(target, sources, backend="triton")
    geometry = leaves(scene["depth"], scene["pose"], scene["K"])
    with forward_kernel(forward), backward_passes("one_pass"):
        out = fastdepth.reprojection_loss(target, sources, *geometry, identity=identity, backend="triton")
        return _outputs(out, geometry, ["depth", "pose", "K"], 14)


def _cost_volume(reduction, per_pixel, backward="hypothesis"):
    """The sweep backward with 10 channels (3 chunks of 4 along its grid, the last partial) and
    dense planes (runs of hypotheses with the same taps)."""
    sweep = backward == "sweep"
    C, planes = (10, volume_checks.SWEEP_PLANES) if sweep else (4, (0.5, 8.0))
    x = leaves(*volume_checks.inputs(1, 2, C, 9, 30, 3, 15, torch.float32, "cpu", per_pixel, planes))
    groups = 2 if reduction == "group_dot" else None
    with volume_backward_kernel(backward):
        out = fastdepth.cost_volume(*x, reduction=reduction, groups=groups, backend="triton")
        return _outputs(out, x, ["target", "source", "hypotheses", "pose", "K"], 17)


def _depth_losses():
    pred, target, mask = depth_loss_checks.inputs(3, 30, 50, 18, torch.float32, "cpu")
    (p,) = leaves(pred)
    losses = fastdepth.scale_invariant_loss(p, target, mask, backend="triton") + fastdepth.scale_shift_invariant_loss(
        p, target, mask, space="disparity", backend="triton"
    )
    return _outputs(losses, [p], ["pred"], 19)


#: "<op>: <variant>" -> (the run, the outputs summed with float atomics); every op of the registry
CASES = {
    "warp: deterministic zeros": (lambda: _warp(True, "zeros", True), ()),
    "warp: atomics border": (lambda: _warp(False, "border", False), ("grad image",)),
    "photometric: min_reprojection_loss": (_min_reprojection, ()),
    "photometric: tile backward": (_min_reprojection_tile_backward, ()),
    "reprojection: window one_pass": (lambda: _reprojection("window"), ()),
    "reprojection: tile one_pass": (lambda: _reprojection("tile"), ()),
    "cost_volume: l1 planes": (lambda: _cost_volume("l1", False), ("grad target", "grad source")),
    "cost_volume: variance per_pixel": (lambda: _cost_volume("variance", True), ("grad target", "grad source")),
    "cost_volume: group_dot planes": (lambda: _cost_volume("group_dot", False), ("grad target", "grad source")),
    "cost_volume: sweep group_dot planes": (
        lambda: _cost_volume("group_dot", False, "sweep"),
        ("grad source", "grad hypotheses", "grad pose", "grad K"),
    ),
    "depth_loss: both losses": (_depth_losses, ()),
}


def test_every_op_has_a_case():
    assert {name.split(":")[0] for name in CASES} == set(registry.OPS)


@pytest.mark.parametrize("case", CASES)
def test_no_barrier_races_and_the_same_results_in_reverse_program_order(case):
    run, atomic = CASES[case]
    with BarrierRaces() as recorded:
        usual = run()
    assert not recorded.races, "\n".join(map(str, recorded.races))
    with programs_in_reverse():
        reverse = run()
    for name, value in usual.items():
        if name in atomic:
            assert_close(reverse[name], value, rel_tol=1e-5, name=name)  # of the max-norm: sums may cancel
        else:
            assert torch.equal(reverse[name].nan_to_num(7.0), value.nan_to_num(7.0)), name


@pytest.mark.parametrize("op", registry.OPS)
def test_the_cases_of_every_kernel_stay_within_the_gpu_bounds_with_a_gpus_rounding(op):
    # the compute-sanitizer cases: together they launch every kernel of the op
    module = op_cases(op)
    bound = TABLE[(op, "float32", "gpu")]
    for name in module.SANITIZER_CASES:
        with gpu_rounding():
            r = module.run_case(name, "triton", "cpu", torch.float32, quick=True)
        assert r.error is None, r.error
        assert r.forward_error <= bound.forward and r.gradient_error <= bound.gradient, (name, r.where)
        assert r.mismatches == 0 and r.deterministic is not False, (name, r.where)


# ---- the emulations themselves: each finds what it is for in a kernel made to have it ----


@triton.jit
def _shift_kernel(x_ptr, scratch_ptr, out_ptr, BARRIER: tl.constexpr, N: tl.constexpr):
    """Each program stores its block in its scratch and reads it back shifted by one lane."""
    pid = tl.program_id(0)
    lanes = tl.arange(0, N)
    tl.store(scratch_ptr + pid * N + lanes, tl.load(x_ptr + pid * N + lanes))
    if BARRIER:
        tl.debug_barrier()
    tl.store(out_ptr + pid * N + lanes, tl.load(scratch_ptr + pid * N + (lanes + 1) % N))


@triton.jit
def _overlap_kernel(out_ptr, N: tl.constexpr):
    """Each program writes its id into its block and the first element of the next block."""
    pid = tl.program_id(0)
    offsets = tl.arange(0, 2 * N)
    tl.store(out_ptr + pid * N + offsets, tl.zeros([2 * N], tl.float32) + pid, mask=offsets <= N)


@pytest.mark.parametrize("barrier", [False, True])
def test_a_read_of_another_lanes_store_before_a_barrier_is_a_race(barrier):
    x = torch.arange(12.0)
    scratch, out = torch.zeros(12), torch.zeros(12)
    with BarrierRaces() as recorded:
        _shift_kernel[(3,)](x, scratch, out, BARRIER=barrier, N=4)
    assert torch.equal(out, x.view(3, 4).roll(-1, 1).flatten())  # the interpreter alone cannot tell
    if barrier:
        assert recorded.races == []
    else:
        assert [r.program for r in recorded.races] == [(0, 0, 0), (1, 0, 0), (2, 0, 0)]
        assert all("_shift_kernel" in r.first and r.elements == 4 for r in recorded.races)


def test_programs_in_reverse_runs_the_last_program_first():
    usual, reverse = torch.zeros(13), torch.zeros(13)
    _overlap_kernel[(3,)](usual, N=4)
    with programs_in_reverse():
        _overlap_kernel[(3,)](reverse, N=4)
    assert usual[4].item() == 1 and reverse[4].item() == 0  # element 4: program 0 and program 1 write it
    assert torch.equal(usual[[0, 5, 9, 12]], reverse[[0, 5, 9, 12]])


@triton.jit
def _divide_kernel(a_ptr, b_ptr, out_ptr, N: tl.constexpr):
    offsets = tl.arange(0, N)
    tl.store(out_ptr + offsets, tl.load(a_ptr + offsets) / tl.load(b_ptr + offsets))


def test_gpu_rounding_moves_quotients_by_at_most_2_ulp_the_same_for_the_same_operands():
    a, b = torch.rand(2, 256, generator=torch.Generator().manual_seed(0)) + 0.5
    a[128:], b[128:] = a[:128], b[:128]
    exact, rounded = torch.empty(256), torch.empty(256)
    _divide_kernel[(1,)](a, b, exact, N=256)
    with gpu_rounding():
        _divide_kernel[(1,)](a, b, rounded, N=256)
    ulps = (rounded.view(torch.int32) - exact.view(torch.int32)).abs()
    assert ulps.max() == 2 and (ulps == 0).any() and (ulps == 1).any()
    assert torch.equal(rounded[:128], rounded[128:])
