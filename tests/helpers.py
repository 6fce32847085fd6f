"""Comparison helpers shared by the test modules."""

import torch


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


def max_rel(a: torch.Tensor, b: torch.Tensor, floor: float = 1e-30) -> float:
    """Max abs difference relative to the max-norm of the expected tensor ``b`` (at least ``floor``).

    The floor keeps float32 noise on a gradient that is analytically zero from counting as a
    large relative error.
    """
    if a.numel() == 0:
        return 0.0
    return max_abs(a, b) / max(b.double().abs().max().item(), floor)


def grads(outputs: torch.Tensor, inputs: list[torch.Tensor], grad_output: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(outputs, inputs, grad_output.to(outputs.dtype)))


def leaves(*tensors: torch.Tensor, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """Fresh leaf copies that require grad (optionally cast)."""
    return [t.detach().to(dtype or t.dtype).clone().requires_grad_(True) for t in tensors]


def non_contiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values with non-trivial strides (a transposed copy, transposed back)."""
    out = t.detach().transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not out.is_contiguous() or t.shape[-1] == 1 or t.shape[-2] == 1
    return out.requires_grad_(t.requires_grad)
