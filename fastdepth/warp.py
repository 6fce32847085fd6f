"""The depth warp (view synthesis): ``warp_frame_depth`` (Kornia drop-in) and the general ``warp``.

Conventions (Kornia 0.9's ``kornia.geometry.depth.warp_frame_depth``):

* unproject: ``X = depth * [(u - cx) / fx, (v - cy) / fy, 1]`` at integer pixel centres (u column,
  v row); only fx, fy, cx, cy of K are read (skew and the last row get a zero gradient). With
  ``normalize_points=True`` the ray is scaled to unit length first (depth = ray length).
* transform: the full 4x4 ``src_trans_dst`` on ``(X, 1)``, then division by w; where
  ``|w| <= 1e-8`` the point is left undivided.
* project: division by z with the same ``|z| <= 1e-8`` rule, then ``u' = fx x + cx``,
  ``v' = fy y + cy``. (Monodepth2 divides by ``z + 1e-7``; fastdepth uses Kornia's rule everywhere.)
* sample: ``grid_sample(image, grid, "bilinear", padding_mode, align_corners)`` with ``grid`` the
  projected pixels normalised by ``(W - 1, H - 1)`` (a singleton axis: scale 1, offset 0), as Kornia
  and Monodepth2 build it. ``align_corners=False, padding_mode="border"`` is Monodepth2's sampling.
* a pixel whose depth is NaN or inf (or whose projection overflows) is 0 in the output, whatever
  the padding mode, and contributes no gradient. Zero and negative depths are ordinary values.
  NaN in the image reaches only the pixels that sample it.
* the validity mask is true where the depth is finite, the point lies in front of the source camera
  (``z > 1e-8``) and all four bilinear taps lie inside the source image (no padding was used).

Dtypes: image, depth, pose and intrinsics each float16, bfloat16, float32 or float64, in any mix.
The geometry is computed in float32 (float64 where any input is float64: on the reference and the
CPU twin; the GPU backends fall back to the reference for float64, with one warning), each gradient
comes back in its input's dtype and the warped image in the image's dtype. Fused kernels sample in
float32 and return the image dtype; the reference projects in float64 (then samples in the image's
compute dtype), so that as the oracle it is at least as accurate as the kernels, extreme depths
included. ``torch.autocast`` does not reach inside: every backend computes from the inputs' own
dtypes. Gradients flow to all four tensors; pose and intrinsics gradients of the fused kernels are
deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fastdepth import backends, dispatch, validation
from fastdepth.reference import warp as reference

PADDING_MODES = ("zeros", "border")


@dispatch.custom_op("fastdepth::warp")
def _forward_op(
    image: torch.Tensor,
    depth: torch.Tensor,
    pose: torch.Tensor,
    camera_matrix: torch.Tensor,
    normalize_points: bool,
    padding_mode: str,
    align_corners: bool,
    want_mask: bool,
    deterministic: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    return backends.launcher("warp", backend, "forward")(
        image, depth, pose, camera_matrix, normalize_points, padding_mode, align_corners, want_mask
    )


@_forward_op.register_fake
def _forward_fake(
    image, depth, pose, camera_matrix, normalize_points, padding_mode, align_corners, want_mask, deterministic, backend
):
    B, S, C, H, W = image.shape
    mask_shape = (B, S, 1, H, W) if want_mask else (0,)
    return torch.empty_like(image, memory_format=torch.contiguous_format), image.new_empty(mask_shape, dtype=torch.bool)


@dispatch.custom_op("fastdepth::warp_backward")
def _backward_op(
    grad_out: torch.Tensor,
    image: torch.Tensor,
    depth: torch.Tensor,
    pose: torch.Tensor,
    camera_matrix: torch.Tensor,
    normalize_points: bool,
    padding_mode: str,
    align_corners: bool,
    needs: Sequence[bool],
    deterministic: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return backends.launcher("warp", backend, "backward")(
        grad_out, image, depth, pose, camera_matrix, normalize_points, padding_mode, align_corners, list(needs),
        deterministic,
    )  # fmt: skip


@_backward_op.register_fake
def _backward_fake(
    grad_out, image, depth, pose, camera_matrix, normalize_points, padding_mode, align_corners, needs, deterministic,
    backend,
):  # fmt: skip
    shapes = [t.shape if need else (0,) for t, need in zip((image, depth, pose, camera_matrix), needs, strict=True)]
    return (
        image.new_empty(shapes[0]),
        depth.new_empty(shapes[1]),
        pose.new_empty(shapes[2]),
        camera_matrix.new_empty(shapes[3]),
    )


def _setup_context(ctx, inputs, output) -> None:
    image, depth, pose, camera_matrix, normalize_points, padding_mode, align_corners, _, deterministic, backend = inputs
    ctx.save_for_backward(image, depth, pose, camera_matrix)
    ctx.options = (normalize_points, padding_mode, align_corners)
    ctx.deterministic = deterministic
    ctx.backend = backend


def _backward(ctx, grad_out, grad_mask):
    image, depth, pose, camera_matrix = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:4])
    grads = _backward_op(
        grad_out, image, depth, pose, camera_matrix, *ctx.options, needs, ctx.deterministic, ctx.backend
    )
    return *(g if need else None for g, need in zip(grads, needs, strict=True)), *([None] * 6)


_forward_op.register_autograd(_backward, setup_context=_setup_context)


def geometry_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype the geometry is computed in: float64 where any input is float64, else float32
    (half-precision depth, pose or intrinsics are widened, as the kernels compute in float32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def check_camera(pose, camera_matrix, device, names=("src_trans_dst", "camera_matrix")) -> None:
    """The value checks of the geometry: finite pose and intrinsics, non-zero focal lengths, looked
    at together (few small kernels on a GPU: validation.check_values_at_once)."""
    if camera_matrix.shape[0] == 0:
        return
    pose_name, k_name = names
    focal = camera_matrix[:, :2, :2].diagonal(dim1=-2, dim2=-1)
    # 1 / focal in float64 is infinite where focal is 0 (and only there, short of |focal| < 1e-308)
    values = (pose.reshape(-1), camera_matrix.reshape(-1), focal.double().reciprocal().reshape(-1))
    validation.check_values_at_once(
        validation.all_finite(torch.cat(values)),
        {
            f"{pose_name} must be finite, but holds NaN or inf": lambda: torch.isfinite(pose).all(),
            f"{k_name} must be finite, but holds NaN or inf": lambda: torch.isfinite(camera_matrix).all(),
            f"{k_name}: fx and fy (K[:, 0, 0], K[:, 1, 1]) must be non-zero": lambda: (focal != 0).all(),
        },
        device,
    )


def _validate(
    image_src, depth_dst, src_trans_dst, camera_matrix, normalize_points, padding_mode, align_corners, return_mask
) -> bool:
    """Check every argument; returns whether the call is multi-source (5-D image)."""
    named = {
        "image_src": image_src,
        "depth_dst": depth_dst,
        "src_trans_dst": src_trans_dst,
        "camera_matrix": camera_matrix,
    }
    for name, t in named.items():
        validation.check_tensor(name, t)
    multi = image_src.dim() == 5
    if multi:
        validation.check_shape("image_src", image_src, ("B", "S", "C", "H", "W"))
        B, S, _, H, W = image_src.shape
        validation.check_shape("src_trans_dst", src_trans_dst, (B, S, 4, 4))
    else:
        validation.check_shape("image_src", image_src, ("B", "C", "H", "W"))
        B, _, H, W = image_src.shape
        validation.check_shape("src_trans_dst", src_trans_dst, (B, 4, 4))
    validation.check_shape("depth_dst", depth_dst, (B, 1, H, W))
    validation.check_shape("camera_matrix", camera_matrix, (B, 3, 3))
    for name, t in named.items():
        validation.check_dtype(name, t, validation.FLOAT_DTYPES)
    validation.check_same_device(named)
    validation.check_channels("image_src", image_src, -3)
    validation.check_index_range("image_src", image_src)
    validation.check_flag("normalize_points", normalize_points)
    validation.check_choice("padding_mode", padding_mode, PADDING_MODES)
    validation.check_flag("align_corners", align_corners)
    validation.check_flag("return_mask", return_mask)
    check_camera(src_trans_dst, camera_matrix, image_src.device)
    return multi


def warp(
    image_src: torch.Tensor,
    depth_dst: torch.Tensor,
    src_trans_dst: torch.Tensor,
    camera_matrix: torch.Tensor,
    normalize_points: bool = False,
    padding_mode: str = "zeros",
    align_corners: bool = True,
    return_mask: bool = False,
    backend: str | None = None,
    deterministic: bool | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Warp source images onto the destination view with the destination depth and relative poses.

    See the module docstring for the conventions. With the defaults it equals
    :func:`warp_frame_depth` (Kornia); ``padding_mode="border", align_corners=False`` is
    Monodepth2's sampling.

    Args:
        image_src: (B, C, H, W) one source image, or (B, S, C, H, W) S sources sharing one depth.
        depth_dst: (B, 1, H, W) depth of the destination view.
        src_trans_dst: (B, 4, 4) or (B, S, 4, 4): destination -> source transform of each source.
        camera_matrix: (B, 3, 3) intrinsics shared by both views.
        normalize_points: read depth as the Euclidean length of the ray instead of z.
        padding_mode: ``"zeros"`` or ``"border"``.
        align_corners: grid_sample's align_corners.
        return_mask: also return the validity mask, bool, (B, 1, H, W) or (B, S, 1, H, W).
        backend: ``"auto"``, ``"torch"``, ``"triton"`` or ``"cuda"`` (see :mod:`fastdepth.backends`).
        deterministic: the fused backends' image gradient, a scatter, in int64 fixed point: bitwise
            equal run to run (the other gradients always are); NaN everywhere if the upstream
            gradient is not finite. None (default): when ``torch.use_deterministic_algorithms(True)``
            is in force. The reference's image gradient is grid_sample's (deterministic on the CPU;
            on CUDA PyTorch refuses it in deterministic mode).

    Returns:
        The warped images, shaped like ``image_src`` in its dtype; and the mask if asked for.

    Raises:
        TypeError: a non-tensor argument, an unsupported dtype, a flag that is not a bool.
        ValueError: wrong shapes, no channel, mismatched devices, non-finite pose or intrinsics,
            zero focal length, an unknown padding mode, a size one GPU launch cannot hold.
    """
    multi = _validate(
        image_src, depth_dst, src_trans_dst, camera_matrix, normalize_points, padding_mode, align_corners, return_mask
    )
    image = image_src if multi else image_src.unsqueeze(1)
    pose = src_trans_dst if multi else src_trans_dst.unsqueeze(1)
    geometry = geometry_dtype(image, depth_dst, pose, camera_matrix)
    name = backends.resolve(backend, image.device, (image.dtype, geometry))
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    validation.check_flag("deterministic", deterministic)
    options = (normalize_points, padding_mode, align_corners, return_mask)
    with validation.no_autocast(image.device):
        # differentiable casts: each gradient comes back in its input's dtype
        depth, pose, K = (t.to(geometry) for t in (depth_dst, pose, camera_matrix))
        if name == "torch":
            out, mask = reference.warp(image, depth, pose, K, *options)
        else:
            out, mask = _forward_op(image, depth, pose, K, *options, deterministic, name)
    if not multi:
        out = out.squeeze(1)
        mask = mask.squeeze(1) if return_mask else mask
    return (out, mask) if return_mask else out


def warp_frame_depth(
    image_src: torch.Tensor,
    depth_dst: torch.Tensor,
    src_trans_dst: torch.Tensor,
    camera_matrix: torch.Tensor,
    normalize_points: bool = False,
    *,
    backend: str | None = None,
    deterministic: bool | None = None,
) -> torch.Tensor:
    """Drop-in for ``kornia.geometry.depth.warp_frame_depth``: same signature, shapes and numbers.

    Args:
        image_src: (B, C, H, W) image in the source frame.
        depth_dst: (B, 1, H, W) depth in the destination frame.
        src_trans_dst: (B, 4, 4) transform from destination to source.
        camera_matrix: (B, 3, 3) intrinsics.
        normalize_points: read depth as the Euclidean ray length (Kornia's flag).
        backend, deterministic: keyword only, fastdepth's additions (see :func:`warp`).

    Returns:
        (B, C, H, W) ``image_src`` resampled onto the destination pixel grid (bilinear,
        ``align_corners=True``, zeros padding).
    """
    validation.check_tensor("image_src", image_src)
    if image_src.dim() != 4:
        raise ValueError(f"image_src must have shape (B, C, H, W), got {tuple(image_src.shape)}")
    return warp(
        image_src,
        depth_dst,
        src_trans_dst,
        camera_matrix,
        normalize_points,
        backend=backend,
        deterministic=deterministic,
    )
