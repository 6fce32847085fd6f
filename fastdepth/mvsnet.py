"""The MVSNet family's plane sweep (MVSNet, CasMVSNet, MVSTER: ``homo_warping`` of every source
view at every depth hypothesis, then the variance over the views or a correlation with the
reference) on :func:`fastdepth.cost_volume`, from their 4 x 4 projection matrices, without the
(B, C, D, H, W) warped volume of each source.

Conventions (theirs):

* ref_feature (B, C, H, W); src_features (B, S, C, H, W) or a list of S (B, C, H, W), one float dtype;
  ref_proj (B, 4, 4) and src_projs (B, S, 4, 4) or a list of S (B, 4, 4), each view's projection
  ``[K R | K t; 0 0 0 1]`` at the features' resolution; depth_values (B, D) or (B, D, H, W).
* ``homo_warping``: reference pixel (x, y) at depth d maps through ``src_proj @ inverse(ref_proj)``
  to ``(u z, v z, z)`` in the source view, divided by z (where |z| > 1e-8, as fastdepth divides),
  and the source is sampled there bilinearly with zeros padding. ``align_corners=True`` samples at
  (u, v) exactly, as CasMVSNet's ``grid_sample(..., align_corners=True)``; MVSNet's
  ``grid_sample`` without the argument (``align_corners=False`` since PyTorch 1.3) samples at
  ``u W / (W - 1) - 1/2``, which ``align_corners=False`` reproduces.
* Reductions as :func:`fastdepth.cost_volume`: ``"variance"`` (MVSNet, CasMVSNet: per channel over
  the reference and the S warped sources), (B, C, D, H, W); ``"group_dot"`` with ``groups``
  (group-wise correlation with the reference, the mean over sources), (B, groups, D, H, W); ``"dot"``
  and ``"l1"``, (B, D, H, W).

Gradients reach both feature maps (the family's geometry runs without one), and the projection
matrices and depths through :func:`fastdepth.cost_volume`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fastdepth import validation
from fastdepth.cost_volume import cost_volume


def plane_sweep(
    ref_feature: torch.Tensor,
    src_features: torch.Tensor | Sequence[torch.Tensor],
    ref_proj: torch.Tensor,
    src_projs: torch.Tensor | Sequence[torch.Tensor],
    depth_values: torch.Tensor,
    *,
    reduction: str = "variance",
    groups: int | None = None,
    align_corners: bool = True,
    backend: str | None = None,
) -> torch.Tensor:
    """The cost volume of ``homo_warping`` and the reduction (see the module docstring).

    Args:
        ref_feature: (B, C, H, W) features of the reference view.
        src_features: (B, S, C, H, W), or a list of S (B, C, H, W), features of the source views.
        ref_proj: (B, 4, 4) projection matrix of the reference view.
        src_projs: (B, S, 4, 4), or a list of S (B, 4, 4), projection matrices of the source views.
        depth_values: (B, D) depth hypotheses, or (B, D, H, W) per pixel.
        reduction, groups, backend: as :func:`fastdepth.cost_volume`'s.
        align_corners: True as CasMVSNet samples; False as MVSNet under PyTorch >= 1.3.

    Returns:
        (B, C, D, H, W) (``variance``), (B, groups, D, H, W) (``group_dot``) or (B, D, H, W).
    """
    if not isinstance(src_features, torch.Tensor):
        src_features = torch.stack(list(src_features), 1)
    if not isinstance(src_projs, torch.Tensor):
        src_projs = torch.stack(list(src_projs), 1)
    validation.check_tensor("ref_proj", ref_proj)
    validation.check_shape("ref_proj", ref_proj, ("B", 4, 4))
    validation.check_tensor("src_projs", src_projs)
    validation.check_shape("src_projs", src_projs, (ref_proj.shape[0], "S", 4, 4))
    poses = src_projs @ torch.linalg.inv(ref_proj)[:, None]  # reference (x d, y d, d, 1) -> source (u z, v z, z, 1)
    # the projections hold K: the identity makes the ray of pixel (x, y) (x, y, 1), as homo_warping's
    K = torch.eye(3, dtype=poses.dtype, device=poses.device).expand(ref_proj.shape[0], 3, 3)
    return cost_volume(
        ref_feature, src_features, depth_values, poses, K, reduction=reduction, groups=groups,
        align_corners=align_corners, backend=backend,
    )  # fmt: skip
