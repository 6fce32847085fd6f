"""What every op's correctness cases share: the result record and leaf/gradient helpers."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
