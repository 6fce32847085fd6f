"""What every op's correctness cases share: the result record and leaf/gradient helpers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fastdepth.compare import max_abs, max_rel, worst

#: how close (in pixels, or in image values for an absolute difference) a float64 quantity may come
#: to a kink of the computation before the cases leave it out: float32 puts it within about 1e-5
KINK_TOL = 1e-4


@dataclass
class CaseResult:
    op: str
    case: str
    backend: str
    device: str
    dtype: str
    forward_error: float | None = None
    gradient_error: float | None = None
    forward_tol: float | None = None
    gradient_tol: float | None = None
    mismatches: int = 0  # mask pixels away from the image edge, winners or NaN positions that differ
    deterministic: bool | None = None
    seconds: float = 0.0
    error: str | None = None
    where: str = ""  # the largest differences of the output and of the worst gradient, with indices

    @property
    def passed(self) -> bool:
        if self.error is not None:
            return False
        return (
            self.forward_error <= self.forward_tol
            and self.gradient_error <= self.gradient_tol
            and self.mismatches == 0
            and self.deterministic is not False
        )


def leaves(tensors, dtype=None) -> list[torch.Tensor]:
    """Fresh leaf copies that require grad (optionally cast)."""
    return [t.detach().to(dtype or t.dtype).clone().requires_grad_(True) for t in tensors]


def grads(out: torch.Tensor, inputs, g: torch.Tensor):
    return torch.autograd.grad(out, inputs, g.to(out.dtype))


def winner_mismatches(
    maps: torch.Tensor, index: torch.Tensor, expected: torch.Tensor, tie_tol: float, ignore: torch.Tensor | None = None
) -> tuple[int, torch.Tensor]:
    """Compare the winners of a per-pixel minimum with the reference's.

    ``maps`` (B, K, H, W): every candidate's float64 reference loss; ``index`` and ``expected``
    (B, 1, H, W): the winners picked by the implementation and by the reference. Two candidates
    whose reference losses differ by at most ``tie_tol`` (but not by 0) may be ordered either way
    by float32 arithmetic; exact ties (equal inputs) must go to the lower index, as the reference's.
    Pixels where ``ignore`` (B, 1, H, W) is set are not compared.

    Returns:
        ``(mismatches, near_ties)``: the number of differing winners that are not such near-ties,
        and the (B, 1, H, W) mask of the near-ties, whose gradients differ by design.
    """
    gap = (maps.gather(1, index) - maps.gather(1, expected)).abs()
    differ = index != expected
    if ignore is not None:
        differ &= ~ignore
    near_ties = differ & (gap > 0) & (gap <= tie_tol)
    return int((differ & ~near_ties).sum()), near_ties


def output_error(out: torch.Tensor, expected: torch.Tensor) -> tuple[float, str]:
    """:func:`~fastdepth.compare.max_abs` of the output, and where it is largest."""
    return max_abs(out, expected), f"output: {worst(out, expected)}"


def gradient_error(names, ours, expected, floor: float) -> tuple[float, str]:
    """The largest :func:`~fastdepth.compare.max_rel` over the named gradients (NaN first), and
    where that gradient differs most."""
    errors = [(max_rel(a, b, floor), name, a, b) for name, a, b in zip(names, ours, expected, strict=True)]
    error, name, a, b = max(errors, key=lambda e: math.inf if math.isnan(e[0]) else e[0])
    return error, f"grad {name}: {worst(a, b)}"
