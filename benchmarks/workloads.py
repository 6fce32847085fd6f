"""What the benchmarks measure: sizes, inputs, every implementation of every work, floor traffic.

Shared by the runner (``run.py``) and the pytest-benchmark suites (``bench_*.py``). A *work* is
an op and a mode: ``fwd`` (no autograd) or ``fwd+bwd`` (forward, then gradients: to depth and
pose for the warp, to the prediction for the photometric loss, to the disparities and poses for
the objective, as in training). Each implementation is a factory: inputs -> a callable that runs
the work once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fastdepth.benchmarks import monodepth2

import fastdepth
from fastdepth import reference
from fastdepth.scenes import natural_images, warp_scene
from fastdepth.train.models import disp_to_depth


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
}
MAIN_SIZE = "kitti"
LARGEST_SIZE = "large"
QUICK_SIZE = Size(1, 3, 24, 80)
WORKS = ("warp", "photometric", "objective")
MODES = ("fwd", "fwd+bwd")
SCALES = 4
SOURCES = 2


def _inputs_warp(size: Size, dtype: torch.dtype, device: str, grad: bool) -> dict:
    scene = warp_scene(size.batch, 1, size.channels, size.height, size.width, image_dtype=dtype, device=device)
    depth = scene["depth"].requires_grad_(grad)
    pose = scene["pose"][:, 0].contiguous().requires_grad_(grad)
    image = scene["image"][:, 0].contiguous()
    grad_out = torch.randn(image.shape, device=device).to(dtype)
    return {"image": image, "depth": depth, "pose": pose, "K": scene["K"], "grad_out": grad_out}


def _inputs_photometric(size: Size, dtype: torch.dtype, device: str, grad: bool) -> dict:
    target = natural_images(size.batch, size.channels, size.height, size.width, dtype=dtype, device=device)
    pred = natural_images(size.batch, size.channels, size.height, size.width, seed=1, dtype=dtype, device=device)
    grad_out = torch.rand(size.batch, 1, size.height, size.width, device=device).to(dtype)
    return {"pred": pred.requires_grad_(grad), "target": target, "grad_out": grad_out}


def _inputs_objective(size: Size, dtype: torch.dtype, device: str, grad: bool) -> dict:
    B, C, H, W = size.batch, size.channels, size.height, size.width
    scene = warp_scene(B, SOURCES, C, H, W, image_dtype=dtype, device=device)
    gen = torch.Generator().manual_seed(0)
    disps = [torch.rand(B, 1, H >> s, W >> s, generator=gen).to(device).requires_grad_(grad) for s in range(SCALES)]
    target = natural_images(B, C, H, W, dtype=dtype, device=device)
    return {
        "target": target,
        "sources": scene["image"],
        "disps": disps,
        "poses": scene["pose"].requires_grad_(grad),
        "K": scene["K"],
    }


INPUTS = {"warp": _inputs_warp, "photometric": _inputs_photometric, "objective": _inputs_objective}


def make_inputs(work: str, size: Size, dtype: torch.dtype, device: str, mode: str) -> dict:
    return INPUTS[work](size, dtype, device, mode == "fwd+bwd")


def _run(mode: str, forward: Callable[[], torch.Tensor], wrt: list[torch.Tensor], grad_out=None):
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


# ---- warp ----


def _warp_impl(name: str) -> Callable:
    def make(x: dict, mode: str):
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
        else:
            forward = lambda: fastdepth.warp(
                image, depth, pose, K, padding_mode="border", align_corners=False, backend=name
            )
        return _run(mode, forward, [depth, pose], x["grad_out"])

    return make


# ---- photometric ----


def _photometric_impl(name: str) -> Callable:
    def make(x: dict, mode: str):
        pred, target = x["pred"], x["target"]
        if name == "monodepth2":
            forward = lambda: monodepth2.reprojection_loss(pred, target)
        elif name == "compile":
            compiled = torch.compile(reference.photometric_loss, dynamic=False)
            forward = lambda: compiled(pred, target)
        else:
            forward = lambda: fastdepth.photometric_loss(pred, target, backend=name)
        return _run(mode, forward, [pred], x["grad_out"])

    return make


# ---- the Monodepth2 objective for one step ----


def _full_res_depths(disps: list[torch.Tensor], height: int, width: int) -> list[torch.Tensor]:
    return [disp_to_depth(F.interpolate(d, [height, width], mode="bilinear", align_corners=False)) for d in disps]


def objective_eager(target, sources, disps, poses, K, warper) -> torch.Tensor:
    """Monodepth2's photometric objective, eager: per scale and source warp + SSIM/L1, identity losses."""
    H, W = target.shape[-2:]
    total = 0.0
    for depth in _full_res_depths(disps, H, W):
        reprojection = [
            monodepth2.reprojection_loss(warper(sources[:, s], depth, poses[:, s], K), target)
            for s in range(sources.shape[1])
        ]
        identity = [monodepth2.reprojection_loss(sources[:, s], target) for s in range(sources.shape[1])]
        identity = [loss + torch.randn_like(loss) * 1e-5 for loss in identity]
        to_optimise, _ = torch.min(torch.cat(identity + reprojection, 1), dim=1)
        total = total + to_optimise.mean()
    return total / len(disps)


def objective_reference(target, sources, disps, poses, K) -> torch.Tensor:
    """The same objective with fastdepth's reference ops (torch.compile peer)."""
    H, W = target.shape[-2:]
    total = 0.0
    for depth in _full_res_depths(disps, H, W):
        warped, _ = reference.warp(sources, depth, poses, K, False, "border", False)
        loss, _, _ = reference.min_reprojection_loss(target, warped, sources)
        total = total + loss.mean()
    return total / len(disps)


def objective_fastdepth(target, sources, disps, poses, K, backend: str) -> torch.Tensor:
    """The same objective with fastdepth's fused ops: one multi-source warp and one fused min per scale."""
    H, W = target.shape[-2:]
    total = 0.0
    for depth in _full_res_depths(disps, H, W):
        warped = fastdepth.warp(sources, depth, poses, K, padding_mode="border", align_corners=False, backend=backend)
        loss, _, _ = fastdepth.min_reprojection_loss(target, warped, sources, backend=backend)
        total = total + loss.mean()
    return total / len(disps)


def _objective_impl(name: str) -> Callable:
    def make(x: dict, mode: str):
        args = (x["target"], x["sources"], x["disps"], x["poses"], x["K"])
        if name == "monodepth2":
            B, _, H, W = x["target"].shape
            warper = monodepth2.Warper(B, H, W, x["target"].device)
            forward = lambda: objective_eager(*args, warper)
        elif name == "compile":
            compiled = torch.compile(objective_reference, dynamic=False)
            forward = lambda: compiled(*args)
        else:
            forward = lambda: objective_fastdepth(*args, backend=name)
        return _run(mode, forward, [*x["disps"], x["poses"]])

    return make


PEERS = {
    "warp": ("kornia", "monodepth2", "compile"),
    "photometric": ("monodepth2", "compile"),
    "objective": ("monodepth2", "compile"),
}
FACTORIES = {"warp": _warp_impl, "photometric": _photometric_impl, "objective": _objective_impl}


def implementations(work: str, device: str) -> list[str]:
    """Every implementation of ``work`` measured on ``device``: the peers, then fastdepth's.

    On the CPU fastdepth's are the reference (``torch``) and the CPU twin (``cuda``); Triton runs
    there only in its interpreter, which is not a performance path.
    """
    ours = ("triton", "cuda") if device == "cuda" else ("torch", "cuda")
    return [*PEERS[work], *ours]


def make_impl(work: str, name: str, inputs: dict, mode: str) -> Callable:
    return FACTORIES[work](name)(inputs, mode)


def floor_bytes(work: str, size: Size, dtype: torch.dtype, mode: str) -> int | None:
    """Minimum memory traffic: every input read once, every output written once (None: not defined)."""
    e = torch.finfo(dtype).bits // 8
    image = size.batch * size.channels * size.height * size.width
    plane = size.batch * size.height * size.width
    if work == "warp":  # read image + depth, write the warped image; bwd: read grad, image, depth, write grad depth
        fwd = 2 * e * image + 4 * plane
        return fwd if mode == "fwd" else fwd + 2 * e * image + 4 * plane + 4 * plane
    if work == "photometric":  # read pred + target, write the map; bwd: read grad, pred, target, write grad pred
        fwd = 2 * e * image + e * plane
        return fwd if mode == "fwd" else fwd + e * plane + 3 * e * image
    return None
