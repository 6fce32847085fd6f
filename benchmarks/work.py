"""What a benchmark work is: an op (or a composition of ops) measured in one mode on one size.

A *work* has inputs built per size and dtype, peers (the implementations fastdepth replaces),
an implementation factory (inputs, mode -> a callable that runs the work once) and the floor of
its memory traffic. Modes: ``fwd`` (no autograd) or ``fwd+bwd`` (forward, then the gradients a
training step needs). Each op's work lives in ``benchmarks/works/<op>.py`` (``WORK``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from fastdepth.train.synthetic import frame_batch


@dataclass(frozen=True)
class Size:
    batch: int
    channels: int
    height: int
    width: int

    @property
    def label(self) -> str:
        return f"B={self.batch} {self.channels}x{self.height}x{self.width}"


#: Monodepth2's KITTI default first: the size every target is stated for
SIZES = {
    "kitti": Size(12, 3, 192, 640),
    "mid": Size(4, 3, 320, 1024),
    "large": Size(8, 3, 384, 1280),
    "small": Size(1, 3, 96, 320),
    # the KITTI size at a batch a 2-core CPU measures in minutes, not hours
    "kitti_b2": Size(2, 3, 192, 640),
}
MAIN_SIZE = "kitti"
LARGEST_SIZE = "large"
QUICK_SIZE = Size(1, 3, 24, 80)
MODES = ("fwd", "fwd+bwd")


@dataclass(frozen=True)
class Work:
    name: str
    #: (size, dtype, device, needs_grad) -> the inputs, a dict
    inputs: Callable[[Size, torch.dtype, str, bool], dict]
    #: the implementations fastdepth replaces, measured beside it
    peers: tuple[str, ...]
    #: (implementation name, inputs, mode) -> a callable running the work once
    make: Callable[[str, dict, str], Callable]
    #: (size, dtype, mode) -> the fewest bytes the work must move, or None where not defined
    floor_bytes: Callable[[Size, torch.dtype, str], int | None] = lambda size, dtype, mode: None
    #: options of fastdepth's backends measured as implementations of their own, "<backend>-<variant>"
    variants: tuple[str, ...] = ()
    #: variants measured on a GPU only: on the CPU twin they run the same code as the default
    gpu_variants: tuple[str, ...] = ()
    #: (implementation name, size, dtype, mode) -> the bytes that implementation's kernels read and
    #: write by their design (a count of the launches, not a measurement), or None where not counted
    kernel_bytes: Callable[[str, Size, torch.dtype, str], int | None] = lambda impl, size, dtype, mode: None
    #: size -> the shape the work runs at, as the results show it (a work whose tensors are not the
    #: size's images says what they are)
    shape: Callable[[Size], str] = lambda size: size.label


def run_mode(mode: str, forward: Callable[[], torch.Tensor], wrt: list[torch.Tensor], grad_out=None) -> Callable:
    """A callable running the forward, and in fwd+bwd mode the gradients w.r.t. ``wrt``."""
    if mode == "fwd":

        def run_forward():
            with torch.no_grad():
                return forward()

        return run_forward

    def run_both():
        out = forward()
        return torch.autograd.grad(out, wrt, grad_out if grad_out is not None else None)

    return run_both


def within(step: Callable, context: Callable) -> Callable:
    """``step`` run inside ``context()``: a kernel choice, as ``fastdepth.photometric.backward_kernel("tile")``."""

    def run():
        with context():
            return step()

    return run


@functools.lru_cache(maxsize=1)
def _rendered(batch: int, height: int, width: int) -> dict[str, torch.Tensor]:
    return frame_batch(batch, height, width)


def driving_frames(size: Size, dtype: torch.dtype, device: str) -> dict[str, torch.Tensor]:
    """The synthetic world's frame triplets at ``size`` (:func:`fastdepth.train.synthetic.frame_batch`,
    rendered once per size): what a training step warps, with the true depth and poses, so that the
    samples land where a trained network's would (inside the source frame, near their pixel). Fresh
    tensors on ``device``: ``target`` (B, C, H, W) and ``sources`` (B, 2, C, H, W) in ``dtype`` (C <=
    3: the first of the RGB channels), ``depth`` (B, 1, H, W), ``poses`` (B, 2, 4, 4), ``K`` float32."""
    if not 1 <= size.channels <= 3:
        raise ValueError(f"the synthetic world renders 3 channels, asked for {size.channels}")
    frames = _rendered(size.batch, size.height, size.width)
    images = {"target": frames["target"][:, : size.channels], "sources": frames["sources"][:, :, : size.channels]}
    geometry = {name: frames[name] for name in ("depth", "poses", "K")}
    return {
        **{name: t.to(device=device, dtype=dtype, copy=True) for name, t in images.items()},
        **{name: t.to(device=device, copy=True) for name, t in geometry.items()},
    }
