"""ManyDepth's matching cost volume (``ResnetEncoderMatching.match_features``) on
:func:`fastdepth.cost_volume`: the same numbers, without the (D, C, h, w) warped features of each
batch element that ManyDepth builds with ``grid_sample``.

Conventions (ManyDepth's):

* current_feats (B, C, h, w) and lookup_feats (B, S, C, h, w), one float dtype; relative_poses
  (B, S, 4, 4) current -> lookup frame, all zeros for a lookup frame that is missing (the start of a
  sequence: ManyDepth skips it); K (B, 3, 3) or ManyDepth's (B, 4, 4) at the features' resolution;
  depth_bins (D,) or (B, D), the depth of each fronto-parallel plane (ManyDepth's ``depth_bins``).
* Each lookup frame's features are warped at every plane with zeros padding and align_corners=True
  and compared by the mean over channels of ``|current - warped|``. A plane counts at a pixel where
  the pixel is at least 2 from the current image's border and its projection at least 2 from the
  lookup image's (in pixels: 2 <= u <= w - 2, 2 <= v <= h - 2; ResNet's zero padding makes the edges
  unreliable); the cost averages the lookup frames whose difference there is above 0.
* A plane that no lookup frame counts is missing: its cost is 0 in ManyDepth's sums, then, with
  ``set_missing_to_max``, the largest cost of that pixel over the planes.

Gradients reach both feature maps (ManyDepth computes its cost volume without them), the poses, K
and the planes as :func:`fastdepth.cost_volume` gives them; the masks have none.
"""

from __future__ import annotations

import torch

from fastdepth import backends, validation
from fastdepth.cost_volume import cost_volume, projections
from fastdepth.warp import geometry_dtype

#: pixels closer than this to an image's border do not count (ManyDepth: ResNet's zero padding)
EDGE = 2


def match_features(
    current_feats: torch.Tensor,
    lookup_feats: torch.Tensor,
    relative_poses: torch.Tensor,
    K: torch.Tensor,
    depth_bins: torch.Tensor,
    *,
    set_missing_to_max: bool = True,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ManyDepth's ``match_features`` (see the module docstring for the conventions).

    Args:
        current_feats: (B, C, h, w) features of the current frame.
        lookup_feats: (B, S, C, h, w) features of the lookup frames.
        relative_poses: (B, S, 4, 4) current -> lookup transforms; all zeros: a missing frame.
        K: (B, 3, 3) or (B, 4, 4) intrinsics at the features' resolution.
        depth_bins: (D,) or (B, D) plane depths.
        set_missing_to_max: give a missing plane the largest cost of its pixel, as ManyDepth's default.
        backend: that of :func:`fastdepth.cost_volume`.

    Returns:
        ``(cost_volume, missing_mask)``, each (B, D, h, w) in float32 (float64 for float64 features);
        the mask is 1.0 where a plane is missing.
    """
    validation.check_tensor("current_feats", current_feats)
    validation.check_shape("current_feats", current_feats, ("B", "C", "h", "w"))
    validation.check_tensor("lookup_feats", lookup_feats)
    validation.check_shape("lookup_feats", lookup_feats, ("B", "S", "C", "h", "w"))
    validation.check_tensor("relative_poses", relative_poses)
    validation.check_shape("relative_poses", relative_poses, (*lookup_feats.shape[:2], 4, 4))
    validation.check_tensor("K", K)
    validation.check_tensor("depth_bins", depth_bins)
    if K.dim() != 3 or K.shape[-2:] not in ((3, 3), (4, 4)):
        raise ValueError(f"K must be (B, 3, 3) or (B, 4, 4), got {tuple(K.shape)}")
    if depth_bins.dim() not in (1, 2):
        raise ValueError(f"depth_bins must be (D,) or (B, D), got {tuple(depth_bins.shape)}")
    B, _, h, w = current_feats.shape
    planes = depth_bins.expand(B, depth_bins.shape[-1]) if depth_bins.dim() == 1 else depth_bins
    K = K[:, :3, :3]
    present = relative_poses.flatten(2).sum(-1) != 0  # (B, S)
    eye = torch.eye(4, dtype=relative_poses.dtype, device=relative_poses.device)
    poses = torch.where(present[..., None, None], relative_poses, eye)  # a missing frame's is unused
    # each frame's own cost volume (ManyDepth averages only the frames that count), which validates the inputs
    costs = [
        cost_volume(current_feats, lookup_feats[:, s : s + 1], planes, poses[:, s : s + 1], K, backend=backend)
        for s in range(lookup_feats.shape[1])
    ]
    counted = _counted(planes, poses, K, present, h, w, backend, current_feats)
    accumulate = torch.float64 if current_feats.dtype == torch.float64 else torch.float32
    total = torch.zeros((B, planes.shape[1], h, w), dtype=accumulate, device=current_feats.device)
    counts = torch.zeros_like(total)
    for s, cost in enumerate(costs):
        diffs = torch.where(counted[:, s], cost.to(accumulate), 0.0)
        total = total + diffs
        counts = counts + (diffs > 0).to(accumulate)
    volume = total / (counts + 1e-7)
    missing = (volume == 0).to(accumulate)
    if set_missing_to_max:
        volume = volume * (1 - missing) + volume.max(1, keepdim=True)[0] * missing
    return volume, missing


def _counted(planes, poses, K, present, h: int, w: int, backend, features) -> torch.Tensor:
    """(B, S, D, h, w) bool: where a lookup frame's plane counts (the module docstring), from the
    pixels (u, v) the cost volume samples at."""
    geometry = geometry_dtype(features, planes, poses, K)
    name = backends.resolve(backend, features.device, (features.dtype, geometry))
    with torch.no_grad():
        u, v = projections(planes, poses, K, h, w, geometry, name)
        inside = (u >= EDGE) & (u <= w - EDGE) & (v >= EDGE) & (v <= h - EDGE)
        border = torch.zeros(h, w, dtype=torch.bool, device=u.device)
        border[EDGE:-EDGE, EDGE:-EDGE] = True
        return inside & border & present[:, :, None, None, None]
