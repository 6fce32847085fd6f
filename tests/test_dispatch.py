"""fastdepth.dispatch: a plain eager call runs an op through its autograd.Function, anything the
custom op exists for (compiling, fake and meta tensors, dispatch modes, torch.func) through the
custom op; both paths give the same numbers, bit for bit."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import fastdepth
from fastdepth import dispatch
from fastdepth.scenes import warp_scene

warp_module = importlib.import_module("fastdepth.warp")


def _scene(grad: bool):
    x = warp_scene(2, 2, 3, 6, 9, seed=0)
    image, depth, pose = (x[k].clone().requires_grad_(grad) for k in ("image", "depth", "pose"))
    return image, depth, pose, x["K"]


def test_eager_call_runs_the_function_and_matches_the_custom_op():
    image, depth, pose, K = _scene(True)
    out = fastdepth.warp(image, depth, pose, K, backend="cuda")
    assert type(out.grad_fn).__name__ == "warp_functionBackward"
    go = torch.randn_like(out)
    grads = torch.autograd.grad(out, (image, depth, pose), go)
    # the same call through the custom op: its own autograd registration, the same numbers
    options = (False, "zeros", True, False, False, "cuda")
    via_op, _ = torch.ops.fastdepth.warp.default(image, depth, pose, K, *options)
    assert type(via_op.grad_fn).__name__ != "warp_functionBackward"
    assert torch.equal(out, via_op)
    for a, b in zip(grads, torch.autograd.grad(via_op, (image, depth, pose), go), strict=True):
        assert torch.equal(a, b)


def test_photometric_paths_agree():
    g = torch.Generator().manual_seed(1)
    target, warped = torch.rand(2, 3, 5, 7, generator=g), torch.rand(2, 2, 3, 5, 7, generator=g).requires_grad_()
    loss = fastdepth.min_reprojection_loss(target, warped, backend="cuda")[0]
    assert type(loss.grad_fn).__name__ == "photometric_functionBackward"
    via_op, _ = torch.ops.fastdepth.photometric.default(target, warped, None, 0.85, True, "cuda")
    assert torch.equal(loss, via_op)
    go = torch.rand_like(loss)
    assert torch.equal(torch.autograd.grad(loss, warped, go)[0], torch.autograd.grad(via_op, warped, go)[0])


def test_a_second_derivative_is_refused_not_zero():
    image, depth, pose, K = _scene(True)
    out = fastdepth.warp(image, depth, pose, K, backend="cuda")
    with pytest.raises(RuntimeError, match="fastdepth::warp is differentiable once"):
        torch.autograd.grad(out.sum(), depth, create_graph=True)
    assert torch.autograd.grad(out.sum(), depth)[0].shape == depth.shape  # first order as before


def test_plain_tensors_are_eager():
    assert dispatch.eager((torch.ones(2), 1.5, "zeros", None, torch.nn.Parameter(torch.ones(1))))


def test_meta_tensors_take_the_custom_op():
    assert not dispatch.eager((torch.ones(2), torch.empty(2, device="meta")))


def test_fake_tensors_take_the_custom_op():
    with FakeTensorMode():
        fake = torch.empty(2)
    assert not dispatch.eager((fake,))


def test_a_dispatch_mode_takes_the_custom_op():
    class Passthrough(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    with Passthrough():
        assert not dispatch.eager((torch.ones(2),))


@pytest.mark.parametrize("transform", ["vmap", "grad"])
def test_functorch_transforms_take_the_custom_op(transform):
    seen = []

    def f(x):
        seen.append(dispatch.eager((x,)))
        return x.sum()

    if transform == "vmap":
        torch.func.vmap(f)(torch.ones(3, 2))
    else:
        torch.func.grad(f)(torch.ones(2))
    assert seen == [False]


def test_jit_tracing_takes_the_custom_op():
    image, depth, pose, K = _scene(False)
    traced = torch.jit.trace(lambda *a: fastdepth.warp(*a, backend="cuda"), (image, depth, pose, K))
    assert "fastdepth::warp" in str(traced.graph)
    assert torch.equal(traced(image, depth, pose, K), fastdepth.warp(image, depth, pose, K, backend="cuda"))


def test_fake_mode_call_of_an_op_reaches_its_fake():
    image, depth, pose, K = _scene(False)
    with FakeTensorMode(allow_non_fake_inputs=True):
        out = warp_module._forward_op(image, depth, pose, K, False, "zeros", True, True, False, "cuda")
    assert out[0].shape == image.shape and out[1].shape == (2, 2, 1, 6, 9)
