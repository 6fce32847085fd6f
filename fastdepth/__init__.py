"""fastdepth: fused GPU kernels for self-supervised monocular depth training.

Public ops (each documents its conventions): :func:`warp_frame_depth` (Kornia drop-in),
:func:`warp` (multi-source, padding and mask options), :func:`patch_kornia`,
:func:`photometric_loss` (SSIM + L1), :func:`min_reprojection_loss` (Monodepth2's objective),
:func:`reprojection_loss` with :func:`identity_loss` (the objective fused with the warp), the
supervised :func:`scale_invariant_loss` and :func:`scale_shift_invariant_loss`, and the plane-sweep
:func:`cost_volume` (ManyDepth, MVSNet), with ManyDepth's own matching cost in
:func:`fastdepth.manydepth.match_features` and the MVSNet family's plane sweep from its projection
matrices in :func:`fastdepth.mvsnet.plane_sweep`.
Every op's public functions are exported from its module as listed in :mod:`fastdepth.registry`.
"""

import importlib as _importlib
import os as _os

from fastdepth import registry as _registry
from fastdepth.kornia_patch import patch_kornia

__version__ = "0.1.0"

__all__ = ["patch_kornia", "__version__"]
for _op in _registry.OPS.values():
    _module = _importlib.import_module(_op.module)
    for _name in _op.api:
        globals()[_name] = getattr(_module, _name)
        __all__.append(_name)

from fastdepth import manydepth as manydepth  # noqa: E402 (they build on the ops above)
from fastdepth import mvsnet as mvsnet  # noqa: E402

__all__ += ["manydepth", "mvsnet"]

if _os.environ.get("FASTDEPTH_BUILD_EXTENSION") == "1":  # build the C++/CUDA extension ahead of time
    from fastdepth import _cuda

    _cuda.load()
