"""The fused objective: warp, SSIM + L1 and the per-pixel minimum with auto-masking in one op.

``reprojection_loss(target, sources, depth, poses, K)`` gives the same numbers as
``min_reprojection_loss(target, warp(sources, depth, poses, K), identity)``, without ever writing
the warped images to memory in the forward:

* the forward kernels warp the 3x3 reflected neighbourhood of every pixel on the fly (the
  reflection at the image border applies to the warped image, as in the composed ops) and keep
  only the per-pixel minimum and its index;
* the backward of the geometry (depth, poses, K: a training step) is one pass too: each tile of
  pixels warps the sources again over the tile and a halo of 2 (the windows of its neighbours),
  keeps the warped plane and the windows' SSIM gradients in a scratch of its own (shared memory on
  CUDA, a small global buffer that stays in cache on Triton) and applies the warp's backward at
  once: neither the warped images nor their gradient are written. Where the target or the sources
  need a gradient, the backward recomputes the warped images into memory and applies the
  photometric and warp backward launchers of the same backend (the CPU twin's one pass works on
  bands of rows rather than tiles);
* auto-masking takes the identity losses as maps, ``identity`` (B, S', H, W), typically
  ``identity_loss(target, sources)``: they do not depend on depth, so a training step computes them
  once and passes them to every scale.

Conventions: those of :func:`fastdepth.warp` (Kornia's projection and sampling by default,
``padding_mode="border", align_corners=False`` for Monodepth2's) and of
:func:`fastdepth.min_reprojection_loss` (SSIM over a 3x3 reflected window, ``alpha * SSIM +
(1 - alpha) * L1`` averaged over channels, identity candidates first, ties to the lowest index, NaN
wins once and stays). Non-finite depth warps to 0, as in the warp. Gradients reach the target,
the sources, the depth, the poses, the intrinsics and the identity maps (only the winner's).

Dtypes: target and sources share float16, bfloat16 or float32 (float64 on the reference and the
CPU twin); depth, poses and K any float dtype, computed in float32 (float64 where an input is
float64); the loss map comes back in the images' dtype. Half images are sampled and compared in
float32, and every gradient is that float32 computation's, rounded to its input's dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fastdepth import backends, dispatch, photometric, validation
from fastdepth.reference import reprojection as reference
from fastdepth.warp import PADDING_MODES, check_camera, geometry_dtype

#: the fused backends' backward where only the depth, poses and K need a gradient: "one_pass" (the
#: op's backward kernels: each tile warps its sources again with a halo and never writes the warped
#: images or their gradient) or "three_pass" (the warp recomputed into memory, then the photometric
#: and warp backward launchers, as with a gradient to the target or the sources). The benchmark times
#: both (:func:`backward_passes`), on the CPU twin too.
BACKWARD = "one_pass"
BACKWARDS = ("one_pass", "three_pass")
#: the GPU backends' forward: "tile" (each block of pixels and its halo of 1 warped once per source
#: and channel, the windows read from on-chip memory) or "window" (each pixel warps its 3x3 window
#: again: no scratch memory). The same numbers; the benchmark times both (:func:`forward_kernel`):
#: on an H200 (benchmarks/results/nvidia-h200-2026-11-28.md, then with the window forward the
#: default and the tile forward the "<backend>-tile" variant) a training step's objective was
#: faster with the tile forward on both backends, fp32 and bf16. The CPU twin warps bands of rows
#: once either way.
FORWARD = "tile"
FORWARDS = ("tile", "window")


def backward_passes(name: str):
    """Run the fused backends' backward as ``name`` (see BACKWARD) within the block."""
    return dispatch.kernel_choice(__name__, "BACKWARD", name, BACKWARDS, "backward")


def forward_kernel(name: str):
    """Run the GPU backends' forward as ``name`` (see FORWARD) within the block."""
    return dispatch.kernel_choice(__name__, "FORWARD", name, FORWARDS, "forward")


@dispatch.custom_op("fastdepth::reprojection")
def _forward_op(
    target: torch.Tensor,
    sources: torch.Tensor,
    depth: torch.Tensor,
    poses: torch.Tensor,
    K: torch.Tensor,
    identity: torch.Tensor | None,
    alpha: float,
    normalize_points: bool,
    padding_mode: str,
    align_corners: bool,
    deterministic: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    tile = FORWARD == "tile"
    return backends.launcher("reprojection", backend, "forward")(
        target, sources, depth, poses, K, identity, alpha, normalize_points, padding_mode, align_corners, tile
    )


@_forward_op.register_fake
def _forward_fake(target, sources, depth, poses, K, identity, alpha, *options):
    B, _, H, W = target.shape
    return target.new_empty((B, 1, H, W)), target.new_empty((B, 1, H, W), dtype=torch.int64)


@dispatch.custom_op("fastdepth::reprojection_backward")
def _backward_op(
    grad: torch.Tensor,
    index: torch.Tensor,
    target: torch.Tensor,
    sources: torch.Tensor,
    depth: torch.Tensor,
    poses: torch.Tensor,
    K: torch.Tensor,
    identity: torch.Tensor | None,
    alpha: float,
    normalize_points: bool,
    padding_mode: str,
    align_corners: bool,
    needs: Sequence[bool],
    deterministic: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The op's one-pass backward launcher where only the geometry needs a gradient (a training step),
    else (or with BACKWARD == "three_pass") the warp recomputed, then the photometric and warp backward
    launchers of ``backend``."""
    need_target, need_sources, need_depth, need_poses, need_k, need_identity = needs
    s_id = 0 if identity is None else identity.shape[1]
    g_identity = target.new_empty(0)
    if need_identity and identity is not None:
        won = index == torch.arange(s_id, device=index.device).view(1, s_id, 1, 1)
        g_identity = torch.where(won, grad, torch.zeros_like(grad)).to(identity.dtype)
    warp_needs = [need_sources, need_depth, need_poses, need_k]
    g_target = target.new_empty(0)
    g_warp = [target.new_empty(0) for _ in warp_needs]  # the outputs of a custom op never alias
    options = (normalize_points, padding_mode, align_corners)
    if not (need_target or need_sources) and BACKWARD == "one_pass":
        if any(warp_needs):
            g_warp[1:] = backends.launcher("reprojection", backend, "backward")(
                grad, index, target, sources, depth, poses, K, s_id, alpha, *options, warp_needs[1:]
            )
    elif need_target or any(warp_needs):
        # half images in float32: the forward sampled them and compared in float32, and this is that
        # forward's gradient (warped images rounded to half would move the SSIM gradient of a
        # low-contrast window by tens of epsilons)
        compute = torch.promote_types(target.dtype, torch.float32)
        target_c, sources_c = target.to(compute), sources.to(compute)
        warped, _ = backends.launcher("warp", backend, "forward")(sources_c, depth, poses, K, *options, False)
        # the warped sources are candidates 0.. of the photometric op: identity winners match none
        photometric_needs, tile = [need_target, any(warp_needs), False], photometric.BACKWARD == "tile"
        g_target, g_warped, _ = backends.launcher("photometric", backend, "backward")(
            grad.to(compute), index - s_id, target_c, warped, None, alpha, photometric_needs, tile
        )
        g_target = g_target.to(target.dtype)
        if any(warp_needs):
            g_sources, *g_warp[1:] = backends.launcher("warp", backend, "backward")(
                g_warped, sources_c, depth, poses, K, *options, warp_needs, deterministic
            )
            g_warp[0] = g_sources.to(sources.dtype)
    return g_target, *g_warp, g_identity


@_backward_op.register_fake
def _backward_fake(grad, index, target, sources, depth, poses, K, identity, alpha, *rest):
    needs = rest[3]
    tensors = (target, sources, depth, poses, K, identity)
    return tuple(
        torch.empty_like(t) if need and t is not None else target.new_empty(0)
        for t, need in zip(tensors, needs, strict=True)
    )


def _setup_context(ctx, inputs, output) -> None:
    target, sources, depth, poses, K, identity, alpha, *options, deterministic, backend = inputs
    ctx.save_for_backward(target, sources, depth, poses, K, identity, output[1])
    ctx.options = (alpha, *options)
    ctx.deterministic = deterministic
    ctx.backend = backend


def _backward(ctx, grad_loss, grad_index):
    target, sources, depth, poses, K, identity, index = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:6])
    grads = _backward_op(
        grad_loss.contiguous(), index, target, sources, depth, poses, K, identity, *ctx.options, needs,
        ctx.deterministic, ctx.backend,
    )  # fmt: skip
    return *(g if need else None for g, need in zip(grads, needs, strict=True)), *([None] * 6)


_forward_op.register_autograd(_backward, setup_context=_setup_context)


def _validate(target, sources, depth, poses, K, identity) -> None:
    for name, t in (("target", target), ("sources", sources), ("depth", depth), ("poses", poses), ("K", K)):
        validation.check_tensor(name, t)
        validation.check_dtype(name, t, validation.FLOAT_DTYPES)
    photometric.check_image("target", target, ("B", "C", "H", "W"))
    B, C, H, W = target.shape
    photometric.check_image("sources", sources, (B, "S", C, H, W))
    if sources.shape[1] == 0:
        raise ValueError(f"sources must hold at least one source, got shape {tuple(sources.shape)}")
    S = sources.shape[1]
    validation.check_shape("depth", depth, (B, 1, H, W))
    validation.check_shape("poses", poses, (B, S, 4, 4))
    validation.check_shape("K", K, (B, 3, 3))
    named = {"target": target, "sources": sources, "depth": depth, "poses": poses, "K": K}
    if identity is not None:
        validation.check_tensor("identity", identity)
        validation.check_shape("identity", identity, (B, "S'", H, W))
        validation.check_dtype("identity", identity, validation.FLOAT_DTYPES)
        named["identity"] = identity
    validation.check_same_dtype({"target": target, "sources": sources})
    validation.check_same_device(named)


def identity_loss(target: torch.Tensor, sources: torch.Tensor, alpha: float = 0.85, backend: str | None = None):
    """The photometric map of every unwarped source against the target, for auto-masking.

    Args:
        target: (B, C, H, W); sources: (B, S, C, H, W), same dtype; H, W >= 2.

    Returns:
        (B, S, H, W) in the images' dtype: compute it once per batch and pass it as ``identity``
        to :func:`reprojection_loss` at every scale. Gradients flow to both inputs.
    """
    photometric.check_image("target", target, ("B", "C", "H", "W"))
    B, C, H, W = target.shape
    photometric.check_image("sources", sources, (B, "S", C, H, W))
    S = sources.shape[1]
    pred = sources.reshape(B * S, C, H, W)
    expanded = target[:, None].expand(B, S, C, H, W).reshape(B * S, C, H, W)
    return photometric.photometric_loss(pred, expanded, alpha, backend=backend).reshape(B, S, H, W)


def reprojection_loss(
    target: torch.Tensor,
    sources: torch.Tensor,
    depth: torch.Tensor,
    poses: torch.Tensor,
    K: torch.Tensor,
    *,
    identity: torch.Tensor | None = None,
    alpha: float = 0.85,
    normalize_points: bool = False,
    padding_mode: str = "zeros",
    align_corners: bool = True,
    backend: str | None = None,
    deterministic: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Monodepth2's per-pixel minimum reprojection loss of one scale, fused with the warp.

    Args:
        target: (B, C, H, W) the frame being reconstructed; H, W >= 2.
        sources: (B, S, C, H, W) the source frames, warped onto the target with ``depth``.
        depth: (B, 1, H, W) the target's depth (e.g. one scale's disparity upsampled and converted).
        poses: (B, S, 4, 4) target -> source transforms.
        K: (B, 3, 3) intrinsics.
        identity: (B, S', H, W) identity (unwarped) loss maps for auto-masking, from
            :func:`identity_loss`; None: no auto-masking.
        alpha: weight of the SSIM term.
        normalize_points, padding_mode, align_corners: the warp's sampling (see :func:`fastdepth.warp`).
        backend: ``"auto"``, ``"torch"``, ``"triton"`` or ``"cuda"``.
        deterministic: the sources' gradient in fixed point (see :func:`fastdepth.warp`).

    Returns:
        ``(loss, index, automask)``, each (B, 1, H, W): the per-pixel minimum (images' dtype), the
        int64 index of the winner (identity maps first, then the sources) and the bool mask of
        pixels where a warped source won. ``loss.mean()`` is Monodepth2's loss of the scale.
    """
    _validate(target, sources, depth, poses, K, identity)
    alpha = photometric.check_alpha(alpha)
    validation.check_flag("normalize_points", normalize_points)
    validation.check_choice("padding_mode", padding_mode, PADDING_MODES)
    validation.check_flag("align_corners", align_corners)
    check_camera(poses, K, target.device, names=("poses", "K"))
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    validation.check_flag("deterministic", deterministic)
    geometry = geometry_dtype(target, depth, poses, K)
    name = backends.resolve(backend, target.device, (target.dtype, geometry))
    options = (alpha, normalize_points, padding_mode, align_corners)
    with validation.no_autocast(target.device):
        depth, poses, K = (t.to(geometry) for t in (depth, poses, K))
        if name == "torch":
            loss, index = reference.reprojection_loss(target, sources, depth, poses, K, identity, *options)
        else:
            loss, index = _forward_op(target, sources, depth, poses, K, identity, *options, deterministic, name)
    n_identity = 0 if identity is None else identity.shape[1]
    return loss, index, index >= n_identity
