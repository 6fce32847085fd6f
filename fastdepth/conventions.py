"""Conventions shared by the reference and every fused backend, below both (imports only torch).

* Kornia's homogeneous division rule: ``w`` and ``z`` are not divided by where ``|.| <= DIVIDE_EPS``.
* The sampling grid: Kornia normalises projected pixels by ``size - 1`` (a singleton axis: scale 1,
  offset 0) and ``grid_sample`` unnormalises with or without ``align_corners``; composed, the
  sample position is an affine map of the projected pixel (:func:`sample_affine`).
* Monodepth2's SSIM stabilisers for images in [0, 1].
* The limits of a GPU launch grid: fused launchers fold the batch into grid dimension 0.
* The deterministic scatter: gradient contributions as int64 fixed point (integer addition is
  associative, so the sum does not depend on the order of the atomics), with a scale derived from
  the upstream gradient so that no sum can overflow.

The CUDA C++ side repeats these numbers in ``csrc/warp.cuh`` and ``csrc/photometric.cuh``.
"""

from __future__ import annotations

import torch

#: Kornia's threshold below which the homogeneous ``w`` and the camera ``z`` are not divided by.
DIVIDE_EPS = 1e-8
#: the largest finite float32: depth or a projection beyond it counts as non-finite
FLOAT32_MAX = 3.4028234663852886e38
#: SSIM stabilisers of Monodepth2 (for images in [0, 1])
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
#: pixel offsets within one image plane are int32 in the kernels: H * W must stay below this
INDEX_LIMIT = 2**31
#: CUDA's limits on the number of blocks (programs) per grid dimension
GRID_X_LIMIT = 2**31 - 1
GRID_Y_LIMIT = 65535
#: fixed point: every |sum| of contributions stays below 2**62 (int64 holds 2**63 - 1)
FIXED_POINT_RANGE = 2.0**62
#: the largest scale, kept finite in float32 (2**127 is its largest power of two)
FIXED_POINT_MAX_SCALE = 2.0**100


def grid_scale(size: int) -> tuple[float, float]:
    """Kornia's pixel -> [-1, 1] map ``scale * p + offset``; a singleton axis uses scale 1, offset 0."""
    return (1.0, 0.0) if size == 1 else (2.0 / (size - 1), -1.0)


def sample_affine(size: int, align_corners: bool) -> tuple[float, float]:
    """(a, b) with ``sample position = a * projected pixel + b``, for one axis of ``size`` pixels."""
    s, o = grid_scale(size)
    # grid_sample: align_corners -> (g + 1) / 2 * (size - 1); else ((g + 1) * size - 1) / 2
    if align_corners:
        half = (size - 1) / 2.0
        return s * half, (o + 1.0) * half
    return s * size / 2.0, ((o + 1.0) * size - 1.0) / 2.0


def check_grid(name: str, grid: tuple[int, ...]) -> None:
    """Raise ValueError naming the argument whose size needs a launch grid beyond CUDA's limits."""
    limits = (GRID_X_LIMIT, GRID_Y_LIMIT, GRID_Y_LIMIT)
    for dim, (blocks, limit) in enumerate(zip(grid, limits, strict=False)):
        if blocks > limit:
            raise ValueError(
                f"{name} is too large for one launch: it needs {blocks} blocks in grid dimension {dim}, "
                f"above CUDA's limit of {limit} (split the batch or the image)"
            )


def fixed_point_scale(plane_mass: torch.Tensor) -> torch.Tensor:
    """The scale of the deterministic scatter, a 1-element float32 tensor (computed on the device,
    no synchronisation): ``FIXED_POINT_RANGE / bound``, where ``bound`` is the largest total
    ``|contribution|`` that can land in one output plane (``plane_mass``, one value per plane), at
    most ``FIXED_POINT_MAX_SCALE`` (also where nothing is scattered, bound 0: every contribution is
    0 at any scale); 0 where the bound is not finite (see :func:`from_fixed_point`). Each
    contribution is scaled in the kernel's compute dtype and rounded to an integer (within that
    dtype's own rounding plus ``2**-62`` of the bound), then summed exactly. Three small kernels on a
    GPU after the bound: a NaN bound stays NaN through the clamp, an infinite one gives 0.
    """
    if plane_mass.numel() == 0:
        return torch.ones(1, dtype=torch.float32, device=plane_mass.device)
    bound = plane_mass.float().amax().reshape(1)
    return (FIXED_POINT_RANGE / bound).clamp(max=FIXED_POINT_MAX_SCALE).nan_to_num(nan=0.0)


def from_fixed_point(total: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """float32 sums from the int64 fixed-point ones; NaN everywhere when the scale is 0 (the
    upstream gradient was not finite)."""
    values = (total / scale.double()).float()  # int64 / float64: the division converts each sum exactly as .double()
    return torch.where(scale > 0, values, float("nan"))
