"""The warp's benchmark work: Kornia's and Monodepth2's eager warps, torch.compile of the reference,
and fastdepth's backends (also with the deterministic image gradient); fwd+bwd computes the
gradients to the image, depth and pose (the image's is the scatter the deterministic variant replaces)."""

from __future__ import annotations

import torch
from fastdepth.benchmarks import monodepth2
from fastdepth.benchmarks.work import Size, Work, driving_frames, run_mode

import fastdepth
from fastdepth.reference import warp as reference


def inputs(size: Size, dtype: torch.dtype, device: str, grad: bool) -> dict:
    """The previous frame of the synthetic world (:func:`driving_frames`) warped onto the target with
    the target's true depth and pose."""
    frames = driving_frames(size, dtype, device)
    image = frames["sources"][:, 0].contiguous().requires_grad_(grad)
    depth = frames["depth"].requires_grad_(grad)
    pose = frames["poses"][:, 0].contiguous().requires_grad_(grad)
    grad_out = torch.randn(image.shape, device=device).to(dtype)
    return {"image": image, "depth": depth, "pose": pose, "K": frames["K"], "grad_out": grad_out}


def make(name: str, x: dict, mode: str):
    image, depth, pose, K = x["image"], x["depth"], x["pose"], x["K"]
    if name == "kornia":
        import kornia

        # Kornia samples in the image dtype and needs its geometry in that dtype too (bf16)
        dt = image.dtype
        forward = lambda: kornia.geometry.depth.warp_frame_depth(image, depth.to(dt), pose.to(dt), K.to(dt))
    elif name == "monodepth2":
        warper = monodepth2.Warper(image.shape[0], image.shape[2], image.shape[3], image.device)
        forward = lambda: warper(image, depth, pose, K)
    elif name == "compile":
        compiled = torch.compile(reference.warp, dynamic=False)
        forward = lambda: compiled(image[:, None], depth, pose[:, None], K, False, "border", False)[0][:, 0]
    else:  # a backend, or "<backend>-deterministic": the fixed-point image gradient
        backend, _, variant = name.partition("-")
        forward = lambda: fastdepth.warp(
            image, depth, pose, K, padding_mode="border", align_corners=False, backend=backend,
            deterministic=variant == "deterministic",
        )  # fmt: skip
    return run_mode(mode, forward, [image, depth, pose], x["grad_out"])


def floor_bytes(size: Size, dtype: torch.dtype, mode: str) -> int:
    """fwd: read image + depth, write the warped image; bwd: read grad, image, depth, write the image
    gradient (float32) and the depth gradient."""
    e = torch.finfo(dtype).bits // 8
    image = size.batch * size.channels * size.height * size.width
    plane = size.batch * size.height * size.width
    fwd = 2 * e * image + 4 * plane
    return fwd if mode == "fwd" else fwd + 2 * e * image + 4 * image + 4 * plane + 4 * plane


WORK = Work("warp", inputs, ("kornia", "monodepth2", "compile"), make, floor_bytes, variants=("deterministic",))
