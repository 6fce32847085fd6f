"""Comparing an implementation's tensors with the reference's: error measures, and failures that say
where the values disagree (the largest differences with their indices), not only by how much."""

from __future__ import annotations

import torch


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest absolute difference (0 for empty tensors); NaN where either holds NaN the other lacks."""
    if a.numel() == 0:
        return 0.0
    diff = (a.double() - b.double()).abs()
    same_nan = torch.isnan(a) & torch.isnan(b)
    diff = torch.where(same_nan, torch.zeros_like(diff), diff)
    return float("nan") if torch.isnan(diff).any() else diff.max().item()


def max_rel(a: torch.Tensor, b: torch.Tensor, floor: float = 1e-30) -> float:
    """Max abs difference relative to the max-norm of the expected tensor ``b`` (at least ``floor``).

    The floor keeps float32 noise on a gradient that is analytically zero from counting as a
    large relative error.
    """
    if a.numel() == 0:
        return 0.0
    return max_abs(a, b) / max(b.double().abs().nan_to_num(0.0).max().item(), floor)


def worst(actual: torch.Tensor, expected: torch.Tensor, k: int = 3) -> str:
    """The ``k`` largest differences with their indices, for a failure message."""
    if actual.shape != expected.shape:
        return f"shapes differ: {tuple(actual.shape)} vs {tuple(expected.shape)}"
    if actual.numel() == 0:
        return "empty"
    diff = (actual.double() - expected.double()).abs().nan_to_num(float("inf"))
    values, flat = diff.flatten().topk(min(k, diff.numel()))
    lines = []
    for value, i in zip(values.tolist(), flat.tolist(), strict=True):
        index = tuple(int(j) for j in torch.unravel_index(torch.tensor(i), actual.shape))
        lines.append(
            f"at {index}: got {actual[index].item():.6g}, expected {expected[index].item():.6g} (diff {value:.3g})"
        )
    return "; ".join(lines)


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    *,
    abs_tol: float | None = None,
    rel_tol: float | None = None,
    floor: float = 1e-30,
    name: str = "value",
) -> None:
    """Raise AssertionError, naming the worst elements, unless ``actual`` is within the tolerance.

    ``abs_tol``: on the max absolute difference; ``rel_tol``: on :func:`max_rel` (with ``floor``).
    NaN must match NaN position for position.
    """
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    if abs_tol is not None:
        error, bound, kind = max_abs(actual, expected), abs_tol, "abs"
    else:
        error, bound, kind = max_rel(actual, expected, floor), rel_tol, "rel"
    if not error <= bound:
        raise AssertionError(f"{name}: max {kind} error {error:.3g} > {bound:.3g}; {worst(actual, expected)}")
