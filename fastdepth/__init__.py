"""fastdepth: fused GPU kernels for self-supervised monocular depth training.

Public ops (each documents its conventions): :func:`warp_frame_depth` (Kornia drop-in),
:func:`warp` (multi-source, padding and mask options), :func:`patch_kornia`,
:func:`photometric_loss` (SSIM + L1) and :func:`min_reprojection_loss` (Monodepth2's objective).
"""

import os as _os

from fastdepth.kornia_patch import patch_kornia
from fastdepth.photometric import min_reprojection_loss, photometric_loss
from fastdepth.warp import warp, warp_frame_depth

__version__ = "0.1.0"

if _os.environ.get("FASTDEPTH_BUILD_EXTENSION") == "1":  # build the C++/CUDA extension ahead of time
    from fastdepth import _cuda

    _cuda.load()

__all__ = [
    "min_reprojection_loss",
    "patch_kornia",
    "photometric_loss",
    "warp",
    "warp_frame_depth",
    "__version__",
]
