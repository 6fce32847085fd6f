"""Random bad inputs for every public op: one argument of a valid call changed at a time (a size, a
dimension, the dtype, the layout, a Python object for a tensor, a non-finite or out-of-range value,
the meta device). Each call either runs, and then its backward runs too, or raises ValueError,
TypeError or RuntimeError with a message: never another exception, a crash or a hang. The seeds are
fixed."""

import random

import pytest
import torch
from conftest import BACKEND_NAMES

import fastdepth
from fastdepth.scenes import warp_scene

#: calls per op and backend; Triton's interpreter runs the calls that pass slowly
CALLS_PER_OP = {"torch": 150, "cuda": 150, "triton": 6}
CLEAR = (ValueError, TypeError, RuntimeError)


B, S, C, H, W = 2, 2, 3, 6, 7
#: each public function -> (image, depth, pose, K, target) -> the args and keywords of a valid call
VALID_CALLS = {
    fastdepth.warp: lambda i, d, p, K, t: ([i, d, p, K], {}),
    fastdepth.photometric_loss: lambda i, d, p, K, t: ([t, torch.rand(B, C, H, W)], {}),
    fastdepth.min_reprojection_loss: lambda i, d, p, K, t: ([t, i, i], {}),
    fastdepth.identity_loss: lambda i, d, p, K, t: ([t, i], {}),
    fastdepth.reprojection_loss: lambda i, d, p, K, t: ([t, i, d, p, K], {"identity": torch.rand(B, S, H, W)}),
    fastdepth.cost_volume: lambda i, d, p, K, t: ([t, i, torch.linspace(1, 5, 4).repeat(B, 1), p, K], {}),
    fastdepth.scale_invariant_loss: lambda i, d, p, K, t: ([0.1 + torch.rand(B, 1, H, W), d], {}),
    fastdepth.scale_shift_invariant_loss: lambda i, d, p, K, t: ([torch.rand(B, 1, H, W), d], {}),
}


def valid_call(fn):
    scene = warp_scene(B, S, C, H, W)
    return VALID_CALLS[fn](scene["image"], scene["depth"], scene["pose"], scene["K"], torch.rand(B, C, H, W))


def mutate(rng: random.Random, x: torch.Tensor):
    kind = rng.choice(["size", "drop", "add", "dtype", "layout", "object", "value", "meta"])
    if kind == "size":
        shape = list(x.shape)
        i = rng.randrange(len(shape))
        shape[i] = rng.choice([0, 1, shape[i] - 1, shape[i] + 1])
        return torch.rand(shape)
    if kind == "drop":
        return x[0]
    if kind == "add":
        return x[None]
    if kind == "dtype":
        return x.to(rng.choice([torch.int64, torch.bool, torch.uint8, torch.complex64, torch.float16, torch.float64]))
    if kind == "layout":
        return rng.choice([x.transpose(-1, -2).contiguous().transpose(-1, -2), x[:1].expand_as(x)])
    if kind == "object":
        return rng.choice([None, 1.0, "x", x.tolist(), x.numpy()])
    if kind == "value":
        y = x.clone()
        y.view(-1)[rng.randrange(y.numel())] = rng.choice([float("nan"), float("inf"), 0.0, -1.0, 1e38])
        return y
    return x.to("meta")


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("fn", VALID_CALLS, ids=lambda fn: fn.__name__)
def test_bad_inputs_raise_clearly_or_run(fn, backend):
    rng = random.Random(fn.__name__)
    for call in range(CALLS_PER_OP[backend]):
        args, keywords = valid_call(fn)
        names = [*range(len(args)), *keywords]
        which = rng.choice(names)
        if isinstance(which, int):
            args[which] = mutate(rng, args[which])
        else:
            keywords[which] = mutate(rng, keywords[which])
        args = [a.requires_grad_() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
        try:
            out = fn(*args, **keywords, backend=backend)
        except CLEAR as error:
            assert len(str(error)) > 20, f"call {call}, argument {which}: {error!r}"
            continue
        outs = [o for o in (out if isinstance(out, tuple) else (out,)) if o.is_floating_point()]
        if outs[0].device.type != "meta":
            sum(o.float().nan_to_num().sum() for o in outs).backward()
