"""One table of how far each fused implementation may stray from the float64 reference.

Keyed by op, image dtype and where the kernels run: ``"interpreter"`` (Triton's CPU interpreter,
which evaluates the kernels in numpy float32), ``"twin"`` (the CUDA kernels' math on the CPU),
``"gpu"`` (compiled Triton or CUDA: approximate division and square root, fused multiply-adds) and
``"reference"`` (the plain-PyTorch reference in float32 against the float64 formulas of Kornia and
Monodepth2).
Each bound states what it was set from. The forward bound is on the max absolute error of the
outputs (images in [0, 1]); the gradient bound on the max error relative to each expected
gradient's max-norm (at least ``gradient_floor``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    forward: float
    gradient: float
    measured: str
    gradient_floor: float = 1e-30


_HALF = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}  # machine epsilon of each image dtype


def _on_h200(forward: str, gradients: str) -> str:
    """How a GPU bound was set, with the largest errors of the first GPU campaign."""
    return (
        "the CPU bound x2.5 (forward) and x5 (gradients), set before a GPU ran: with a GPU's rounding emulated"
        " on the CPU (the twin built with contracted multiply-adds, 10 seeds of the checks; the interpreter"
        " with tests/triton_gpu.py's gpu_rounding, 3 seeds of the quick checks) every op stayed within its CPU"
        " bound; on an H200 (the campaign's checks, 1 seed, both backends: benchmarks/results/campaigns/"
        f"nvidia-h200-2026-11-28/checks.json) forward {forward}, gradients {gradients}"
    )


TABLE: dict[tuple[str, str, str], Tolerance] = {
    ("warp", "float32", "reference"): Tolerance(
        2e-5, 1e-4, "against Kornia, 5 seeds, W <= 64: forward 9.5e-6, gradients 4.3e-6", gradient_floor=1e-30
    ),
    ("warp", "float32", "interpreter"): Tolerance(
        2e-5, 1e-4, "3 seeds x 25 cases: forward 7.8e-6, gradients 1e-5", gradient_floor=0.1
    ),
    ("warp", "float32", "twin"): Tolerance(
        2e-5,
        1e-4,
        "30 seeds of the checks' 2x2x3x37x53, fragile samples left out: forward 1.7e-5, gradients 2.7e-5",
        gradient_floor=0.1,
    ),
    ("warp", "float32", "gpu"): Tolerance(5e-5, 5e-4, _on_h200("7.4e-6", "5.2e-6"), gradient_floor=0.1),
    ("warp", "float64", "twin"): Tolerance(1e-10, 1e-10, "first check: about 1e-15", gradient_floor=1.0),
    # SSIM's E[x²] - E[x]² cancels in float32: the loss of a low-contrast window is off by up to
    # about eps * E[x²] / C2 (the plain float32 reference as much as the kernels)
    ("photometric", "float32", "reference"): Tolerance(
        4e-5, 4e-4, "against the float64 formulas, 30 seeds of the checks' 2x3x37x53: forward 1.9e-5, gradients 1.9e-4"
    ),
    ("photometric", "float32", "interpreter"): Tolerance(4e-5, 4e-4, "as the twin (the same float32 math)"),
    ("photometric", "float32", "twin"): Tolerance(
        4e-5, 4e-4, "30 seeds of the checks' 2x3x37x53: forward 1.4e-5, gradients 1.5e-4"
    ),
    ("photometric", "float32", "gpu"): Tolerance(1e-4, 2e-3, _on_h200("1.1e-5", "5.4e-5")),
    ("photometric", "float64", "twin"): Tolerance(1e-10, 1e-10, "first check: about 1e-15", gradient_floor=1.0),
    # the reprojection op composes the warp and the photometric loss: the photometric bounds
    ("reprojection", "float32", "reference"): Tolerance(
        4e-5, 4e-4, "30 seeds of the checks' 2x2x3x37x53: loss 1.4e-5, gradients 1.1e-4"
    ),
    ("reprojection", "float32", "interpreter"): Tolerance(
        4e-5, 4e-4, "as the twin (the same float32 math)", gradient_floor=0.1
    ),
    ("reprojection", "float32", "twin"): Tolerance(
        4e-5, 4e-4, "30 seeds of the checks' 2x2x3x37x53: loss 1.8e-5, gradients 9.6e-5", 0.1
    ),
    ("reprojection", "float32", "gpu"): Tolerance(1e-4, 2e-3, _on_h200("6.6e-6", "2.4e-5"), gradient_floor=0.1),
    ("reprojection", "float64", "twin"): Tolerance(
        1e-10, 1e-10, "first check: loss 1.3e-15, gradients 1e-13", gradient_floor=1.0
    ),
    # the forward bound is on the loss relative to max(|loss|, 1) (fastdepth.checks.depth_loss)
    ("depth_loss", "float32", "reference"): Tolerance(
        1e-5, 1e-4, "float32 reference against float64, 3x1x37x53 depths in [1, 11]: loss 1.5e-7, gradients 3e-7"
    ),
    ("depth_loss", "float32", "interpreter"): Tolerance(
        1e-5, 1e-5, "first check, 3x1x37x53, both losses, all options: loss 1.5e-7, gradients 3.1e-7"
    ),
    ("depth_loss", "float32", "twin"): Tolerance(1e-5, 1e-5, "as the interpreter (float32 terms, float64 sums)"),
    ("depth_loss", "float32", "gpu"): Tolerance(2.5e-5, 5e-5, _on_h200("4.3e-8", "4.1e-7")),
    ("depth_loss", "float64", "twin"): Tolerance(1e-10, 1e-10, "first check: loss 2.7e-15, gradients 6.4e-14"),
    ("cost_volume", "float32", "reference"): Tolerance(
        1e-5, 1e-4, "as the warp's reference (the same projection in float64, grid_sample in float32)"
    ),
    # the variance's E[x²] - E[x]² cancels in float32 as SSIM's does
    ("cost_volume", "float32", "interpreter"): Tolerance(
        1e-5, 1e-4, "first check, 2x2x4x9x13, D=5, all reductions: cost 4.9e-7, gradients 7e-6", gradient_floor=0.1
    ),
    ("cost_volume", "float32", "twin"): Tolerance(
        1e-5, 1e-4, "30 seeds of the checks' 2x2x8x13x19, D=6: cost 9.5e-7, gradients 4.9e-5 (variance)", 0.1
    ),
    ("cost_volume", "float32", "gpu"): Tolerance(2.5e-5, 5e-4, _on_h200("7.7e-7", "9.6e-6"), gradient_floor=0.1),
    ("cost_volume", "float64", "twin"): Tolerance(1e-10, 1e-10, "first check: cost 7e-16, gradients 6e-15", 1.0),
}


def where(backend: str, device: str | torch.device) -> str:
    """``"gpu"``, ``"twin"`` or ``"interpreter"``: where ``backend`` runs its kernels on ``device``."""
    if backend == "torch":
        return "reference"
    if torch.device(device).type == "cuda":
        return "gpu"
    return "twin" if backend == "cuda" else "interpreter"


def tolerance(op: str, dtype: torch.dtype, backend: str, device: str | torch.device) -> Tolerance:
    """The bound for ``op`` with images of ``dtype`` on ``backend`` / ``device``.

    Half-precision images: the output is rounded to the image dtype (forward: one epsilon) and so
    is the image gradient (gradients: two epsilons relative); geometry stays float32.
    """
    if dtype in _HALF:
        eps = _HALF[dtype]
        base = TABLE[(op, "float32", where(backend, device))]
        return Tolerance(eps, 2 * eps, f"rounding to {dtype}", base.gradient_floor)
    return TABLE[(op, str(dtype).removeprefix("torch."), where(backend, device))]


def tie_tolerance(op: str, backend: str, device: str | torch.device) -> float:
    """How far apart two candidates' float64 losses may be and still be ordered either way by ``op``
    on ``backend`` / ``device``: its float32 forward bound, whatever the images' dtype (the kernels
    compute every candidate's loss in float32 and compare before rounding to the images' dtype)."""
    return TABLE[(op, "float32", where(backend, device))].forward
