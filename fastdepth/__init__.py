"""fastdepth: fused GPU kernels for self-supervised monocular depth training.

Public ops (each documents its conventions): :func:`warp_frame_depth` (Kornia drop-in),
:func:`warp` (multi-source, padding and mask options), :func:`patch_kornia`.
"""

from fastdepth.kornia_patch import patch_kornia
from fastdepth.warp import warp, warp_frame_depth

__version__ = "0.1.0"

__all__ = ["patch_kornia", "warp", "warp_frame_depth", "__version__"]
