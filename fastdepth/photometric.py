"""The SSIM + L1 photometric loss and Monodepth2's min-reprojection objective.

Conventions (Monodepth2's ``compute_reprojection_loss``):

* SSIM over a 3x3 box window (``AvgPool2d(3, 1)``) on ``ReflectionPad2d(1)``-padded inputs,
  ``C1 = 0.01**2``, ``C2 = 0.03**2``; per channel ``clamp((1 - SSIM_n / SSIM_d) / 2, 0, 1)``,
  then the mean over channels. Variances are ``E[x²] - E[x]²`` as in Monodepth2.
* ``l1 = mean over channels of |target - pred|``.
* ``loss = alpha * ssim + (1 - alpha) * l1``, a (B, 1, H, W) map.
* min-reprojection: the loss map of every identity (unwarped) source and every warped source
  against the target; per pixel the minimum, its index (identity sources first, then warped
  sources) and the auto-mask (a warped source won). Ties go to the lowest index, so an identity
  source beats a warped one of equal loss (``torch.min``'s rule; it replaces Monodepth2's random
  1e-5 noise). The gradient reaches only the winning candidate.

Dtypes: float16, bfloat16, float32 (float64 with ``backend="torch"``); all images share one dtype.
Arithmetic is float32 (float64 for float64 inputs); the loss map comes back in the input dtype.
``torch.autocast`` does not reach inside: the ops keep their inputs' dtypes. H and W must be at
least 2 (reflection padding). Values are not checked: NaN or inf in an image gives NaN at every
pixel whose 3x3 window holds it, on every backend (the clamp of the SSIM term keeps NaN, as
``torch.clamp`` does); a NaN loss wins the per-pixel minimum once and keeps it (``torch.min``'s
rule). The gradients are NaN where PyTorch's autograd makes them NaN: at every pixel of such a
window, of the target and of each candidate, whether or not it won (autograd multiplies the zero
gradient of a losing candidate or of the inactive clamp by the window's NaN terms).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fastdepth import backends, dispatch, validation
from fastdepth.reference import photometric as reference

#: the GPU backends' backward: "pixel" (each pixel recomputes the stat gradients of the 9 windows it
#: lies in: no scratch memory) or "tile" (a block computes each window's once into on-chip memory,
#: Triton: a per-block scratch that stays in L1/L2, then sums them at its tile's pixels). The same
#: numbers; the benchmark times both (:func:`backward_kernel`). The CPU twin computes each window
#: once either way.
BACKWARD = "pixel"
BACKWARDS = ("pixel", "tile")


def backward_kernel(name: str):
    """Run the GPU backends' backward as ``name`` (see BACKWARD) within the block."""
    return dispatch.kernel_choice(__name__, "BACKWARD", name, BACKWARDS, "backward")


@dispatch.custom_op("fastdepth::photometric")
def _forward_op(
    target: torch.Tensor,
    warped: torch.Tensor,
    identity: torch.Tensor | None,
    alpha: float,
    want_index: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    return backends.launcher("photometric", backend, "forward")(target, warped, identity, alpha, want_index)


@_forward_op.register_fake
def _forward_fake(target, warped, identity, alpha, want_index, backend):
    B, _, C, H, W = warped.shape
    index_shape = (B, 1, H, W) if want_index else (0,)
    return target.new_empty((B, 1, H, W)), target.new_empty(index_shape, dtype=torch.int64)


@dispatch.custom_op("fastdepth::photometric_backward")
def _backward_op(
    grad: torch.Tensor,
    index: torch.Tensor | None,
    target: torch.Tensor,
    warped: torch.Tensor,
    identity: torch.Tensor | None,
    alpha: float,
    needs: Sequence[bool],
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return backends.launcher("photometric", backend, "backward")(
        grad, index, target, warped, identity, alpha, list(needs), BACKWARD == "tile"
    )


@_backward_op.register_fake
def _backward_fake(grad, index, target, warped, identity, alpha, needs, backend):
    need_target, need_warped, need_identity = needs
    return (
        torch.empty_like(target) if need_target else target.new_empty(0),
        torch.empty_like(warped) if need_warped else warped.new_empty(0),
        torch.empty_like(identity) if need_identity and identity is not None else warped.new_empty(0),
    )


def _setup_context(ctx, inputs, output) -> None:
    target, warped, identity, alpha, want_index, backend = inputs
    index = output[1] if want_index else None
    ctx.save_for_backward(target, warped, identity, index)
    ctx.alpha = alpha
    ctx.backend = backend


def _backward(ctx, grad_loss, grad_index):
    target, warped, identity, index = ctx.saved_tensors
    needs = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
    g_target, g_warped, g_identity = _backward_op(
        grad_loss, index, target, warped, identity, ctx.alpha, needs, ctx.backend
    )
    return (
        g_target if needs[0] else None,
        g_warped if needs[1] else None,
        g_identity if needs[2] else None,
        None,
        None,
        None,
    )


_forward_op.register_autograd(_backward, setup_context=_setup_context)


def check_image(name: str, t: object, shape: Sequence[int | str]) -> torch.Tensor:
    validation.check_tensor(name, t)
    validation.check_shape(name, t, shape)
    validation.check_dtype(name, t, validation.FLOAT_DTYPES)
    validation.check_channels(name, t, -3)
    if t.shape[-1] < 2 or t.shape[-2] < 2:
        raise ValueError(f"{name}: H and W must be at least 2 (reflection padding), got {tuple(t.shape[-2:])}")
    validation.check_index_range(name, t)
    return t


def check_alpha(alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


def photometric_loss(
    pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.85, backend: str | None = None
) -> torch.Tensor:
    """Per-pixel SSIM + L1 photometric loss, Monodepth2's ``compute_reprojection_loss``.

    Args:
        pred: (B, C, H, W) the reconstruction (e.g. a warped source frame); H, W >= 2.
        target: (B, C, H, W) the frame it should match; same dtype and device as ``pred``.
        alpha: weight of the SSIM term (Monodepth2: 0.85).
        backend: ``"auto"``, ``"torch"``, ``"triton"`` (see :mod:`fastdepth.backends`).

    Returns:
        (B, 1, H, W) loss map in the input dtype. Gradients flow to ``pred`` and ``target``.
    """
    check_image("pred", pred, ("B", "C", "H", "W"))
    check_image("target", target, pred.shape)
    validation.check_same_dtype({"pred": pred, "target": target})
    validation.check_same_device({"pred": pred, "target": target})
    alpha = check_alpha(alpha)
    name = backends.resolve(backend, pred.device, (pred.dtype,))
    with validation.no_autocast(pred.device):
        if name == "torch":
            return reference.photometric_loss(pred, target, alpha)
        return _forward_op(target, pred[:, None], None, alpha, False, name)[0]


def _as_sources(name: str, value: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} must hold at least one source")
        for i, t in enumerate(value):
            validation.check_tensor(f"{name}[{i}]", t)
            if t.shape != value[0].shape:
                raise ValueError(
                    f"{name}[{i}] has shape {tuple(t.shape)} but {name}[0] has {tuple(value[0].shape)}: "
                    "the sources must share one shape"
                )
        return torch.stack(list(value), dim=1)
    return validation.check_tensor(name, value)


def min_reprojection_loss(
    target: torch.Tensor,
    warped: torch.Tensor | Sequence[torch.Tensor],
    identity: torch.Tensor | Sequence[torch.Tensor] | None = None,
    alpha: float = 0.85,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Monodepth2's per-pixel minimum reprojection loss with identity auto-masking, for one scale.

    Args:
        target: (B, C, H, W) the frame being reconstructed; H, W >= 2.
        warped: (B, S, C, H, W) the S source frames warped onto the target (or a list of S
            (B, C, H, W) tensors).
        identity: (B, S', C, H, W) the unwarped source frames for auto-masking (or a list), or None.
        alpha: weight of the SSIM term.
        backend: ``"auto"``, ``"torch"``, ``"triton"``.

    Returns:
        ``(loss, index, automask)``, each (B, 1, H, W): the per-pixel minimum (input dtype), the
        int64 index of the winning candidate (identity sources first, then warped sources; ties go
        to the lowest index) and the bool mask of pixels where a warped source won. Monodepth2's
        training loss is ``loss.mean()``.
    """
    check_image("target", target, ("B", "C", "H", "W"))
    B, C, H, W = target.shape
    warped = check_image("warped", _as_sources("warped", warped), (B, "S", C, H, W))
    named = {"target": target, "warped": warped}
    if identity is not None:
        identity = check_image("identity", _as_sources("identity", identity), (B, "S'", C, H, W))
        named["identity"] = identity
    for name, t in named.items():
        if t.dim() == 5 and t.shape[1] == 0:
            raise ValueError(f"{name} must hold at least one source, got shape {tuple(t.shape)}")
    validation.check_same_dtype(named)
    validation.check_same_device(named)
    alpha = check_alpha(alpha)
    name = backends.resolve(backend, target.device, (target.dtype,))
    with validation.no_autocast(target.device):
        if name == "torch":
            return reference.min_reprojection_loss(target, warped, identity, alpha)
        loss, index = _forward_op(target, warped, identity, alpha, True, name)
    n_identity = 0 if identity is None else identity.shape[1]
    return loss, index, index >= n_identity
