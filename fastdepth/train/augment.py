"""Monodepth2's training augmentation (``fastdepth train --augment``), drawn from a seed of its own
per sample, so that a run's batches stay a function of its seed and step (``--resume`` and
``--workers`` see the same ones). With probability 1/2 each:

* a horizontal flip of the whole sample: the frames (and the synthetic world's depth); K's
  ``cx -> (W - 1) - cx`` (pixel centres at integers, Kornia's convention, so that pixel ``x`` maps to
  ``W - 1 - x``); the poses ``M T M`` with ``M = diag(-1, 1, 1, 1)``, the mirrored scene seen by the
  mirrored cameras;
* a colour jitter of the networks' inputs only, ``frames_aug`` (the loss compares the frames
  unjittered, as Monodepth2's): brightness, contrast and saturation by factors in [0.8, 1.2] and the
  hue by up to 0.1 of a turn, the same for the three frames, in a random order (torchvision's
  ``ColorJitter(0.2, 0.2, 0.2, 0.1)``).
"""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF

MIRROR_X = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))


def sample_seed(run_seed: int, step: int, slot: int) -> int:
    """The augmentation seed of the ``slot``-th sample of global step ``step`` of a run."""
    return ((run_seed * 1_000_003 + step) * 65_537 + slot) % 2**62


def flipped(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The sample mirrored left to right (see the module's docstring)."""
    out = dict(sample)
    out["frames"] = sample["frames"].flip(-1)
    K = sample["K"].clone()
    K[0, 2] = (sample["frames"].shape[-1] - 1) - K[0, 2]
    out["K"] = K
    if "depth" in sample:
        out["depth"] = sample["depth"].flip(-1)
    if "poses" in sample:
        out["poses"] = MIRROR_X @ sample["poses"] @ MIRROR_X
    return out


def jittered(frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``frames`` (..., 3, H, W) in [0, 1] with one random colour jitter (see the module's docstring)."""
    factors = 0.8 + 0.4 * torch.rand(3, generator=generator, dtype=torch.float64)
    hue = 0.2 * torch.rand((), generator=generator, dtype=torch.float64).item() - 0.1
    steps = (
        lambda x: TF.adjust_brightness(x, factors[0].item()),
        lambda x: TF.adjust_contrast(x, factors[1].item()),
        lambda x: TF.adjust_saturation(x, factors[2].item()),
        lambda x: TF.adjust_hue(x, hue),
    )
    for k in torch.randperm(4, generator=generator).tolist():
        frames = steps[k](frames)
    return frames


def augmented(sample: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """The sample, maybe flipped, with ``frames_aug``: its frames, maybe jittered."""
    generator = torch.Generator().manual_seed(seed)
    flip, jitter = (torch.rand(2, generator=generator) < 0.5).tolist()
    out = flipped(sample) if flip else dict(sample)
    out["frames_aug"] = jittered(out["frames"], generator) if jitter else out["frames"]
    return out
