"""Monodepth2's photometric objective of one training step (2 sources, 4 scales upsampled to full
size, identity auto-masking), composed of the warp and the photometric op: Monodepth2 eager,
torch.compile of the reference and fastdepth's backends, all through the training loop's
:func:`fastdepth.train.objective.photometric_term`; gradients to the disparities and poses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fastdepth.benchmarks import monodepth2
from fastdepth.benchmarks.work import Size, Work, driving_frames, run_mode
from fastdepth.benchmarks.works import photometric

import fastdepth
from fastdepth.reference import photometric as reference_photometric
from fastdepth.reference import warp as reference_warp
from fastdepth.train.objective import depth_to_disp, full_resolution_depths, photometric_term

SCALES = 4
SOURCES = 2  # the previous and next frames (driving_frames)
MONODEPTH2_SAMPLING = dict(padding_mode="border", align_corners=False)


def inputs(size: Size, dtype: torch.dtype, device: str, grad: bool) -> dict:
    """A training step's inputs from the synthetic world (:func:`driving_frames`): the target, its
    previous and next frames, the true poses and, at each scale, the disparity of the true depth
    (area-downsampled), as a trained network would predict them."""
    frames = driving_frames(size, dtype, device)
    disparity = depth_to_disp(frames["depth"])
    disps = [
        F.adaptive_avg_pool2d(disparity, (size.height >> s, size.width >> s)).requires_grad_(grad)
        for s in range(SCALES)
    ]
    return {
        "target": frames["target"],
        "sources": frames["sources"],
        "disps": disps,
        "poses": frames["poses"].requires_grad_(grad),
        "K": frames["K"],
    }


def monodepth2_min_reprojection(target, sources, depth, poses, K, warper):
    """Eager Monodepth2 at one scale: a warp and a loss per source, 1e-5 noise on the identity losses."""
    reprojection = [
        monodepth2.reprojection_loss(warper(sources[:, s], depth, poses[:, s], K), target)
        for s in range(sources.shape[1])
    ]
    identity = [monodepth2.reprojection_loss(sources[:, s], target) for s in range(sources.shape[1])]
    identity = [loss + torch.randn_like(loss) * 1e-5 for loss in identity]
    loss, index = torch.min(torch.cat(identity + reprojection, 1), dim=1, keepdim=True)
    return loss, index >= len(identity)


def reference_min_reprojection(target, sources, depth, poses, K):
    warped, _ = reference_warp.warp(sources, depth, poses, K, False, "border", False)
    return reference_photometric.min_reprojection_loss(target, warped, sources)[::2]


def fastdepth_min_reprojection(target, sources, depth, poses, K, backend):
    warped = fastdepth.warp(sources, depth, poses, K, **MONODEPTH2_SAMPLING, backend=backend)
    return fastdepth.min_reprojection_loss(target, warped, sources, backend=backend)[::2]


def objective(target, sources, disps, poses, K, min_reprojection) -> torch.Tensor:
    depths = full_resolution_depths(disps, *target.shape[-2:])
    total, _ = photometric_term(depths, lambda depth: min_reprojection(target, sources, depth, poses, K))
    return total / len(disps)


def make(name: str, x: dict, mode: str):
    args = (x["target"], x["sources"], x["disps"], x["poses"], x["K"])
    if name == "monodepth2":
        B, _, H, W = x["target"].shape
        warper = monodepth2.Warper(B, H, W, x["target"].device)
        forward = lambda: objective(*args, lambda *a: monodepth2_min_reprojection(*a, warper))
    elif name == "compile":
        compiled = torch.compile(lambda *a: objective(*a, reference_min_reprojection), dynamic=False)
        forward = lambda: compiled(*args)
    else:
        backend, _, variant = name.partition("-")
        forward = lambda: objective(*args, lambda *a: fastdepth_min_reprojection(*a, backend))
        step = run_mode(mode, forward, [*x["disps"], x["poses"]])
        return photometric.tile_backward(step) if variant == "tile" else step
    return run_mode(mode, forward, [*x["disps"], x["poses"]])


def floor_bytes(size: Size, dtype: torch.dtype, mode: str) -> int:
    """The step's inputs read once and its output written once: fwd reads the target, the sources
    and every scale's disparity (float32) and writes one loss; bwd reads them again and writes the
    disparities' gradients (the poses' are a few bytes)."""
    e = torch.finfo(dtype).bits // 8
    B, C, H, W = size.batch, size.channels, size.height, size.width
    images = (1 + SOURCES) * B * C * H * W
    disparities = sum(B * (H >> s) * (W >> s) for s in range(SCALES))
    fwd = e * images + 4 * disparities
    return fwd if mode == "fwd" else 2 * fwd + 4 * disparities


class Traffic:
    """The bytes of the tensors fastdepth's kernels of one scale read or write (size, image dtype):
    images and maps in the image dtype, depth float32, the winner's index int64."""

    def __init__(self, size: Size, dtype: torch.dtype):
        e = torch.finfo(dtype).bits // 8
        plane = size.batch * size.height * size.width
        self.image, self.sources = e * size.channels * plane, e * SOURCES * size.channels * plane
        self.map, self.depth, self.index = e * plane, 4 * plane, 8 * plane
        # warp forward: the sources (and depth) in, the warped images out; photometric backward of
        # the warped candidates: gradient, index, target and warped images in, their gradient out;
        # warp backward: that gradient, the sources and depth in, the depth's gradient out
        self.warp_fwd = self.sources + self.depth + self.sources
        self.photometric_bwd = self.map + self.index + self.image + 2 * self.sources
        self.warp_bwd = 2 * self.sources + 2 * self.depth
        # the fused op's one-pass backward of the geometry: gradient, index, target, sources and
        # depth in, the depth's gradient out (the tiles' halos and the partial sums left out)
        self.one_pass_bwd = self.map + self.index + self.image + self.sources + 2 * self.depth


def kernel_bytes(impl: str, size: Size, dtype: torch.dtype, mode: str) -> int | None:
    """The composed ops (fastdepth's backends here) at every scale, as designed: the warp, then the
    minimum over the identity images and the warped ones; the backward of both (see Traffic).
    ``<backend>-tile`` as much (the tile backward's halos and scratch left out)."""
    if impl.removesuffix("-tile") not in ("triton", "cuda"):
        return None
    t = Traffic(size, dtype)
    fwd = t.warp_fwd + t.image + 2 * t.sources + t.map + t.index
    bwd = t.photometric_bwd + t.warp_bwd
    return SCALES * (fwd if mode == "fwd" else fwd + bwd)


WORK = Work(
    "objective", inputs, ("monodepth2", "compile"), make, floor_bytes, kernel_bytes=kernel_bytes, gpu_variants=("tile",)
)
