"""The plane-sweep cost volume of ManyDepth and the MVSNet family: every source's features warped
into the target view at D depth hypotheses and compared with the target's features, the warped
feature volume never stored.

Conventions:

* features_target (B, C, h, w), features_source (B, S, C, h, w), one float dtype; poses (B, S, 4, 4)
  target -> source; K (B, 3, 3) at the features' resolution; depth_hypotheses (B, D), one depth per
  hypothesis for every pixel (fronto-parallel planes, as ManyDepth), or (B, D, h, w) per pixel (as
  cascade MVS refines them).
* The warp of each source at each hypothesis is :func:`fastdepth.warp`'s (Kornia's projection,
  ``grid_sample``'s bilinear sampling with ``padding_mode`` and ``align_corners``): the cost volume
  equals ``warp`` at every hypothesis followed by the reduction.
* Reductions (over channels, and the mean over sources where S > 1):
  ``"l1"`` (ManyDepth): the mean of ``|f_target - f_warped|``, (B, D, h, w);
  ``"dot"`` (correlation): the mean of ``f_target * f_warped``, (B, D, h, w);
  ``"group_dot"`` (group-wise correlation): the same mean within each of ``groups`` groups of C /
  groups consecutive channels, (B, groups, D, h, w);
  ``"variance"`` (MVSNet): per channel the variance ``mean(x²) - mean(x)²`` of the S + 1 views, the
  target included, (B, C, D, h, w).
* ``return_mask=True`` also returns the (B, D, h, w) bool mask of hypotheses that project inside
  every source (the warp's validity: in front of the camera, all four taps inside).
* Gradients flow to both feature maps, the hypotheses, the poses and K. The fused backends compute
  each hypothesis' projected pixels (u, v) with a kernel of their own (the warp's projection, one
  launch), or in plain PyTorch where the geometry needs a gradient (:mod:`fastdepth.projection`,
  whose backward is the warp kernels' geometry backward), then one kernel samples and reduces (its
  backward writes the features' gradients and the gradient of u and v). What stays in memory
  between forward and backward is u and v (and, with a geometry gradient, the mask of finite
  projections): 2 * B * S * D * h * w values, against the B * S * C * D * h * w of an eager warped
  volume.

Dtypes: features float16, bfloat16, float32 (float64 on the reference and the CPU twin); the
geometry is computed in float32 (float64 where an input is float64); the cost comes back in the
features' dtype. Poses, K and the hypotheses must be finite.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fastdepth import backends, dispatch, projection, validation
from fastdepth.reference import cost_volume as reference
from fastdepth.reference import warp as reference_warp
from fastdepth.warp import PADDING_MODES, check_camera, geometry_dtype

REDUCTIONS = reference.REDUCTIONS
#: the GPU backends' backward where the reduction is not the variance: "hypothesis" (one thread per
#: target pixel and hypothesis, every channel: it scatters the target's gradient with atomics, from
#: D threads to each pixel, and the source's at each hypothesis) or "sweep" (one thread per target
#: pixel and chunk of 4 channels, every hypothesis: it keeps the target's gradient in registers and
#: writes it once, scatters the source's once per run of hypotheses that sample the same four
#: pixels, and adds the projections' with atomics). The same numbers up to the order of float sums;
#: the benchmark times both (:func:`backward_kernel`). The variance always runs the first; the CPU
#: twin has one backward.
BACKWARD = "hypothesis"
BACKWARDS = ("hypothesis", "sweep")


def backward_kernel(name: str):
    """Run the GPU backends' backward as ``name`` (see BACKWARD) within the block."""
    return dispatch.kernel_choice(__name__, "BACKWARD", name, BACKWARDS, "backward")


def output_shape(B: int, C: int, D: int, h: int, w: int, reduction: str, groups: int) -> tuple[int, ...]:
    """The kernels' (B, G, D, h, w) output: G = 1 (l1, dot), groups (group_dot) or C (variance)."""
    G = {"l1": 1, "dot": 1, "group_dot": groups, "variance": C}[reduction]
    return B, G, D, h, w


@dispatch.custom_op("fastdepth::cost_volume")
def _forward_op(
    features_target: torch.Tensor,
    features_source: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    reduction: str,
    groups: int,
    padding_mode: str,
    align_corners: bool,
    backend: str,
) -> torch.Tensor:
    return backends.launcher("cost_volume", backend, "forward")(
        features_target, features_source, u, v, reduction, groups, padding_mode, align_corners
    )


@_forward_op.register_fake
def _forward_fake(features_target, features_source, u, v, reduction, groups, padding_mode, align_corners, backend):
    B, S, C, h, w = features_source.shape
    return features_target.new_empty(output_shape(B, C, u.shape[2], h, w, reduction, groups))


@dispatch.custom_op("fastdepth::cost_volume_backward")
def _backward_op(
    grad: torch.Tensor,
    features_target: torch.Tensor,
    features_source: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    reduction: str,
    groups: int,
    padding_mode: str,
    align_corners: bool,
    needs: Sequence[bool],
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return backends.launcher("cost_volume", backend, "backward")(
        grad, features_target, features_source, u, v, reduction, groups, padding_mode, align_corners, list(needs),
        BACKWARD == "sweep",
    )  # fmt: skip


@_backward_op.register_fake
def _backward_fake(grad, features_target, features_source, u, v, *options):
    need_features, need_geometry = options[-2]
    empty = features_target.new_empty(0)
    return (
        torch.empty_like(features_target) if need_features else empty,
        torch.empty_like(features_source) if need_features else empty,
        torch.empty_like(u) if need_geometry else u.new_empty(0),
        torch.empty_like(v) if need_geometry else v.new_empty(0),
    )


def _setup_context(ctx, inputs, output) -> None:
    features_target, features_source, u, v, *options, backend = inputs
    ctx.save_for_backward(features_target, features_source, u, v)
    ctx.options = options
    ctx.backend = backend


def _backward(ctx, grad):
    features_target, features_source, u, v = ctx.saved_tensors
    need_features = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
    need_geometry = ctx.needs_input_grad[2] or ctx.needs_input_grad[3]
    g_t, g_s, g_u, g_v = _backward_op(
        grad, features_target, features_source, u, v, *ctx.options, [need_features, need_geometry], ctx.backend
    )
    return (
        g_t if ctx.needs_input_grad[0] else None,
        g_s if ctx.needs_input_grad[1] else None,
        g_u if need_geometry else None,
        g_v if need_geometry else None,
        None,
        None,
        None,
        None,
        None,
    )


_forward_op.register_autograd(_backward, setup_context=_setup_context)


def _project(depth_hypotheses, poses, K, h: int, w: int, dtype: torch.dtype):
    """The warp's projection at every hypothesis: ``(u, v, z, finite)``, each (B * D, S, h, w)."""
    B, D = depth_hypotheses.shape[:2]
    maps = reference.hypothesis_maps(depth_hypotheses, h, w).reshape(B * D, 1, h, w)
    return reference_warp.project(maps, poses.repeat_interleave(D, 0), K.repeat_interleave(D, 0), dtype=dtype)


def _projections(depth_hypotheses, poses, K, h: int, w: int, dtype: torch.dtype):
    B, D, S = depth_hypotheses.shape[0], depth_hypotheses.shape[1], poses.shape[1]
    maps = reference.hypothesis_maps(depth_hypotheses, h, w).reshape(B * D, 1, h, w)
    repeated = (poses.repeat_interleave(D, 0), K.repeat_interleave(D, 0))
    u, v, finite = projection.project(*(t.to(dtype) for t in (maps, *repeated)))
    nan = torch.tensor(float("nan"), dtype=dtype, device=u.device)
    u, v = (torch.where(finite, t, nan).reshape(B, D, S, h, w).transpose(1, 2) for t in (u, v))
    return u.contiguous(), v.contiguous()


@dispatch.custom_op("fastdepth::cost_volume_projection")
def _projection_op(
    depth_hypotheses: torch.Tensor, poses: torch.Tensor, K: torch.Tensor, height: int, width: int, backend: str
) -> tuple[torch.Tensor, torch.Tensor]:
    return backends.launcher("cost_volume", backend, "projection")(depth_hypotheses, poses, K, height, width)


@_projection_op.register_fake
def _projection_fake(depth_hypotheses, poses, K, height, width, backend):
    B, D = depth_hypotheses.shape[:2]
    u = depth_hypotheses.new_empty((B, poses.shape[1], D, height, width))
    return u, torch.empty_like(u)


def projections(depth_hypotheses, poses, K, h: int, w: int, dtype: torch.dtype, backend: str):
    """The projected source pixels ``(u, v)``, each (B, S, D, h, w) in ``dtype``, of every target
    pixel at every hypothesis (NaN where the projection does not exist): in plain PyTorch where the
    geometry needs a gradient (:mod:`fastdepth.projection`: the warp kernels' gradient) or the
    backend is ``"torch"``, else by the projection kernel of the fused ``backend``, one launch."""
    geometry = (depth_hypotheses, poses, K)
    if backend == "torch" or (torch.is_grad_enabled() and any(t.requires_grad for t in geometry)):
        return _projections(*geometry, h, w, dtype)
    return _projection_op(*(t.detach().to(dtype) for t in geometry), h, w, backend)


def _validate(features_target, features_source, depth_hypotheses, poses, K, reduction, groups, padding_mode):
    validation.check_tensor("features_target", features_target)
    validation.check_shape("features_target", features_target, ("B", "C", "h", "w"))
    B, C, h, w = features_target.shape
    validation.check_tensor("features_source", features_source)
    validation.check_shape("features_source", features_source, (B, "S", C, h, w))
    validation.check_tensor("depth_hypotheses", depth_hypotheses)
    if depth_hypotheses.dim() == 2:
        validation.check_shape("depth_hypotheses", depth_hypotheses, (B, "D"))
    else:
        validation.check_shape("depth_hypotheses", depth_hypotheses, (B, "D", h, w))
    S, D = features_source.shape[1], depth_hypotheses.shape[1]
    validation.check_tensor("poses", poses)
    validation.check_shape("poses", poses, (B, S, 4, 4))
    validation.check_tensor("K", K)
    validation.check_shape("K", K, (B, 3, 3))
    for name, t in (("features_target", features_target), ("features_source", features_source)):
        validation.check_dtype(name, t, validation.FLOAT_DTYPES)
    for name, t in (("depth_hypotheses", depth_hypotheses), ("poses", poses), ("K", K)):
        validation.check_dtype(name, t, validation.FLOAT_DTYPES)
    validation.check_same_dtype({"features_target": features_target, "features_source": features_source})
    named = {"features_target": features_target, "features_source": features_source}
    named.update(depth_hypotheses=depth_hypotheses, poses=poses, K=K)
    device = validation.check_same_device(named)
    for name, size in (("features_source", S), ("depth_hypotheses", D)):
        if size == 0:
            raise ValueError(f"{name} must hold at least one {'source' if name == 'features_source' else 'hypothesis'}")
    validation.check_channels("features_target", features_target, 1)
    validation.check_index_range("features_target", features_target)
    validation.check_choice("reduction", reduction, REDUCTIONS)
    validation.check_choice("padding_mode", padding_mode, PADDING_MODES)
    if reduction == "group_dot":
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or C % groups:
            raise ValueError(f"groups must be a positive divisor of the {C} channels, got {groups!r}")
    elif groups is not None:
        raise ValueError(f"groups is for reduction='group_dot' only, got groups={groups!r} with {reduction!r}")
    check_camera(poses, K, device, names=("poses", "K"))
    validation.check_values(
        {"depth_hypotheses must be finite, but hold NaN or inf": validation.all_finite(depth_hypotheses)}, device
    )


def cost_volume(
    features_target: torch.Tensor,
    features_source: torch.Tensor,
    depth_hypotheses: torch.Tensor,
    poses: torch.Tensor,
    K: torch.Tensor,
    *,
    reduction: str = "l1",
    groups: int | None = None,
    padding_mode: str = "zeros",
    align_corners: bool = True,
    return_mask: bool = False,
    backend: str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The plane-sweep cost volume (see the module docstring for the conventions).

    Args:
        features_target: (B, C, h, w) features of the target view.
        features_source: (B, S, C, h, w) features of the S source views.
        depth_hypotheses: (B, D) depth planes, or (B, D, h, w) per-pixel hypotheses.
        poses: (B, S, 4, 4) target -> source transforms.
        K: (B, 3, 3) intrinsics at the features' resolution.
        reduction: ``"l1"``, ``"dot"``, ``"group_dot"`` (with ``groups``) or ``"variance"``.
        groups: the number of channel groups of ``"group_dot"`` (a divisor of C).
        padding_mode: ``"zeros"`` or ``"border"``; align_corners: as ``grid_sample``'s.
        return_mask: also return the mask of hypotheses that project inside every source.
        backend: ``"auto"``, ``"torch"``, ``"triton"``, ``"cuda"`` (see :mod:`fastdepth.backends`).

    Returns:
        cost (B, D, h, w) (``l1``, ``dot``), (B, groups, D, h, w) (``group_dot``) or (B, C, D, h, w)
        (``variance``) in the features' dtype; with ``return_mask`` also the (B, D, h, w) bool mask.
    """
    _validate(features_target, features_source, depth_hypotheses, poses, K, reduction, groups, padding_mode)
    validation.check_flag("align_corners", align_corners)
    validation.check_flag("return_mask", return_mask)
    groups = groups or 1
    dtype = geometry_dtype(features_target, depth_hypotheses, poses, K)
    name = backends.resolve(backend, features_target.device, (features_target.dtype, dtype))
    with validation.no_autocast(features_target.device):
        if name == "torch":
            cost, mask = reference.cost_volume(
                features_target, features_source, depth_hypotheses, poses, K, reduction, groups, padding_mode,
                align_corners, return_mask,
            )  # fmt: skip
            return (cost, mask) if return_mask else cost
        B, S, C, h, w = features_source.shape
        u, v = projections(depth_hypotheses, poses, K, h, w, dtype, name)
        cost = _forward_op(features_target, features_source, u, v, reduction, groups, padding_mode, align_corners, name)
    cost = cost.squeeze(1) if reduction in ("l1", "dot") else cost  # a view: its backward copies nothing
    if not return_mask:
        return cost
    return cost, _inside_every_source(depth_hypotheses, poses, K, h, w, align_corners)


def _inside_every_source(depth_hypotheses, poses, K, h, w, align_corners) -> torch.Tensor:
    """(B, D, h, w): the warp's validity at every hypothesis, in every source, projected in float64
    as the reference decides it (a float32 projection can move a pixel across the border)."""
    B, D = depth_hypotheses.shape[:2]
    with torch.no_grad():
        u, v, z, finite = _project(depth_hypotheses, poses, K, h, w, torch.float64)
        valid = reference_warp.validity(u, v, z, finite, h, w, align_corners)
    return valid.all(1).reshape(B, D, h, w)
