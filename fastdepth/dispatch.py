"""How an op's public function reaches its implementation: the ``torch.library`` custom op, or, in a
plain eager call, the same implementation through a ``torch.autograd.Function``.

torch.compile, torch.export, torch.jit.trace, fake and meta tensors, dispatch modes, torch.func
transforms and ``torch.library.opcheck`` need the custom op (``fastdepth::<op>``, with its fake and autograd
registrations). A plain eager call does not, and the custom op's Python dispatch (its schema
binding, default filling and autograd wrapper, forward and backward) takes more host time than the
launches themselves: on a GPU, where a kernel of a training step takes tens of microseconds, that
host time is what the step waits for. Either way the same forward, ``setup_context`` and backward
run, so the two paths give the same numbers; the Function also refuses a backward asked for a graph
(``create_graph=True``), where the custom op's would let a second derivative come out 0.

    @dispatch.custom_op("fastdepth::warp")
    def _forward_op(...): ...          # the implementation: launches one backend's kernels
    _forward_op.register_fake(...)     # as torch.library's
    _forward_op.register_autograd(backward, setup_context=...)
    _forward_op(*args)                 # the Function in eager calls, else the custom op
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

_PLAIN_TENSORS = (torch.Tensor, torch.nn.Parameter)
_EAGER_DEVICES = ("cpu", "cuda")
_is_functorch_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda t: False)


def eager(args: tuple) -> bool:
    """Whether a call with ``args`` may bypass the custom op: not compiling, tracing or under a
    dispatch mode, and every tensor a plain CPU or CUDA tensor (no fake, meta, subclass or functorch
    wrapper)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or _get_current_dispatch_mode() is not None:
        return False
    for a in args:
        if isinstance(a, torch.Tensor) and (
            type(a) not in _PLAIN_TENSORS or a.device.type not in _EAGER_DEVICES or _is_functorch_wrapped(a)
        ):
            return False
    return True


class CustomOp:
    """A ``torch.library`` custom op (``.custom_op``) that eager calls reach without its dispatch."""

    def __init__(self, qualname: str, fn: Callable):
        self.custom_op = torch.library.custom_op(qualname, fn, mutates_args=())
        self.qualname = qualname
        self.impl = fn
        self.function: type[torch.autograd.Function] | None = None
        self.register_fake = self.custom_op.register_fake

    def register_autograd(self, backward: Callable, *, setup_context: Callable) -> None:
        """As ``torch.library``'s, and the same three functions as a ``torch.autograd.Function``."""
        self.custom_op.register_autograd(backward, setup_context=setup_context)
        impl = self.impl

        def forward(ctx, *args):  # ctx first: a separate setup_context would bind the arguments by signature
            output = impl(*args)
            setup_context(ctx, args, output)
            return output

        qualname = self.qualname

        def backward_once(ctx, *grads):  # in grad mode only when create_graph=True
            if torch.is_grad_enabled():
                raise RuntimeError(
                    f"{qualname} is differentiable once: create_graph=True asks for a graph of its gradients, "
                    "which its kernels compute without one (a second derivative through it would be 0)"
                )
            return backward(ctx, *grads)

        name = qualname.split("::")[-1] + "_function"  # its grad_fn: <name>_functionBackward
        members = {"forward": staticmethod(forward), "backward": staticmethod(backward_once)}
        self.function = type(name, (torch.autograd.Function,), members)

    def __call__(self, *args):
        if not eager(args):
            return self.custom_op(*args)
        return self.impl(*args) if self.function is None else self.function.apply(*args)


def custom_op(qualname: str) -> Callable[[Callable], CustomOp]:
    """Decorator: the function becomes the implementation of the custom op ``qualname`` (no
    mutated arguments) and of its eager Function."""
    return lambda fn: CustomOp(qualname, fn)


@contextlib.contextmanager
def kernel_choice(module: str, variable: str, name: str, names: tuple[str, ...], what: str) -> Iterator[None]:
    """Set the choice ``variable`` of the module named ``module`` (one of its kernels, read by its
    custom op at each call) to ``name``, one of ``names``, within the block."""
    if name not in names:
        raise ValueError(f"{what} must be one of {names}, got {name!r}")
    owner = sys.modules[module]
    previous = getattr(owner, variable)
    setattr(owner, variable, name)
    try:
        yield
    finally:
        setattr(owner, variable, previous)
