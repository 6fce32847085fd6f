"""Named correctness checks of the fused backends against the float64 reference, on any device.

The GPU campaign's correctness step (``benchmarks/gpu_campaign.sh``), its compute-sanitizer cases
(``--sanitizer``: few, small, float32) and its CPU rehearsal run these. Each case runs an op
forward and backward on one backend, dtype and device, and records the errors against the float64
reference on the same inputs, the bound from :mod:`fastdepth.tolerances`, and for the warp whether
the depth, pose and intrinsics gradients are bitwise equal over repeated runs.

    python -m fastdepth.checks --device cuda [--backends triton,cuda] [--dtypes fp32,bf16,fp16]
        [--quick] [--sanitizer] [--out checks.json]

Results are written (atomically) after every case, so a run that is cut off keeps what it checked.
Exit status 1 when any case failed or could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import fastdepth
from fastdepth import reference
from fastdepth.compare import max_abs, max_rel
from fastdepth.scenes import natural_images, warp_scene
from fastdepth.tolerances import tolerance

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
WARP_NAMES = ("image", "depth", "pose", "K")
REPEATS = 5


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
    mismatches: int = 0  # mask pixels away from the image edge, or winners, that differ
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


def near_mask_edge(depth, pose, K, normalize_points, align_corners, tol=1e-4) -> torch.Tensor:
    """(B, S, 1, H, W): pixels whose float64 sample position lies within ``tol`` of the image edge
    (or whose z lies within ``tol`` of the divide threshold): float32 rounding may put those on
    either side, so the validity mask is not compared there."""
    depth, pose, K = (t.detach().double() for t in (depth, pose, K))
    H, W = depth.shape[-2:]
    u, v, z, _ = reference.project(depth, pose, K, normalize_points)
    iu = reference.sample_position(u, W, align_corners)
    iv = reference.sample_position(v, H, align_corners)
    near = torch.zeros_like(u, dtype=torch.bool)
    for pos, edge in ((iu, 0), (iu, W - 1), (iv, 0), (iv, H - 1), (z, 1e-8)):
        near |= (pos - edge).abs() <= tol
    return near[:, :, None]


def _leaves(tensors, dtype=None):
    return [t.detach().to(dtype or t.dtype).clone().requires_grad_(True) for t in tensors]


def _grads(out, inputs, g):
    return torch.autograd.grad(out, inputs, g.to(out.dtype))


# ---- warp ----

WARP_OPTIONS = {
    "kornia": dict(padding_mode="zeros", align_corners=True),
    "monodepth2": dict(padding_mode="border", align_corners=False),
    "zeros-half-pixel": dict(padding_mode="zeros", align_corners=False),
    "border-normalized": dict(padding_mode="border", align_corners=True, normalize_points=True),
}


def _nan_depth(scene):
    scene["depth"][0, 0, 2, 3] = float("nan")
    scene["depth"][-1, 0, -1, -1] = float("inf")


def _behind_camera(scene):
    scene["pose"][..., :3, :3] = torch.diag(torch.tensor([-1.0, 1.0, -1.0]))


def _off_image(scene):
    scene["pose"][..., 0, 3] = 6.0


WARP_EDGES = {"nan-depth": _nan_depth, "behind-camera": _behind_camera, "off-image": _off_image}


def warp_case(name: str, backend: str, device: str, dtype: torch.dtype, shape, seed: int = 0) -> CaseResult:
    """Forward, mask and all four gradients against the float64 reference; geometry gradients
    bitwise equal over REPEATS backward runs."""
    result = CaseResult("warp", name, backend, device, str(dtype).removeprefix("torch."))
    options = WARP_OPTIONS.get(name, WARP_OPTIONS["kornia"])
    scene = warp_scene(*shape, seed=seed, image_dtype=dtype, rotation=0.1, translation=0.5)
    if name in WARP_EDGES:
        WARP_EDGES[name](scene)
    tensors = [scene[n].to(device) for n in WARP_NAMES]
    ours_in, ref_in = _leaves(tensors), _leaves(tensors, torch.float64)
    out, mask = fastdepth.warp(*ours_in, **options, return_mask=True, backend=backend)
    ref, ref_mask = fastdepth.warp(*ref_in, **options, return_mask=True, backend="torch")
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(device)
    ours_g = _grads(out, ours_in, g)
    ref_g = _grads(ref, ref_in, g.to(out.dtype).double())
    tol = tolerance("warp", dtype, backend, device)
    near = near_mask_edge(*tensors[1:], options.get("normalize_points", False), options["align_corners"])
    result.mismatches = int(((mask != ref_mask) & ~near).sum())
    result.forward_error = max_abs(out, ref)
    result.gradient_error = max(max_rel(a, b, tol.gradient_floor) for a, b in zip(ours_g, ref_g, strict=True))
    result.forward_tol, result.gradient_tol = tol.forward, tol.gradient
    again = [_grads(fastdepth.warp(*ours_in, **options, backend=backend), ours_in, g)[1:] for _ in range(REPEATS - 1)]
    result.deterministic = all(torch.equal(a, b) for run in again for a, b in zip(run, ours_g[1:], strict=True))
    return result


# ---- photometric loss and min-reprojection ----


def _candidates(B, C, H, W, seed, dtype, device):
    target = natural_images(B, C, H, W, seed=seed, dtype=dtype, device=device)
    gen = torch.Generator().manual_seed(seed + 1)
    noise = torch.randn(B, 4, C, H, W, generator=gen).to(device)
    sources = (target[:, None].float() + 0.2 * noise).clamp(0, 1).to(dtype)
    return target, sources[:, :2].contiguous(), sources[:, 2:].contiguous()


def photometric_case(name: str, backend: str, device: str, dtype: torch.dtype, shape, seed: int = 0) -> CaseResult:
    """``photometric_loss`` (one candidate), ``min_reprojection`` (2 identity + 2 warped sources),
    ``ties`` (every warped source equals an identity source: identity must win) or ``nan-pixel``
    (the NaN pattern of the loss map must be the reference's)."""
    result = CaseResult("photometric", name, backend, device, str(dtype).removeprefix("torch."))
    B, C, H, W = shape
    target, warped, identity = _candidates(B, C, H, W, seed, dtype, device)
    if name == "ties":
        identity = warped.flip(1).contiguous()
    if name == "nan-pixel":
        warped[0, 0, 0, H // 2, W // 2] = float("nan")
    if name == "photometric_loss":
        inputs = [warped[:, 0].contiguous(), target]

        def run(*xs, backend):
            return (fastdepth.photometric_loss(*xs, backend=backend),)

    else:
        inputs = [target, warped, identity]

        def run(*xs, backend):
            return fastdepth.min_reprojection_loss(*xs, backend=backend)

    ours_in, ref_in = _leaves(inputs), _leaves(inputs, torch.float64)
    ours, ref = run(*ours_in, backend=backend), run(*ref_in, backend="torch")
    tol = tolerance("photometric", dtype, backend, device)
    result.forward_tol, result.gradient_tol = tol.forward, tol.gradient
    result.forward_error = max_abs(ours[0], ref[0])
    if len(ours) > 1:
        result.mismatches = int((ours[1] != ref[1]).sum())
    if name == "nan-pixel":  # NaN positions must agree; gradients are not compared through NaN
        result.mismatches += int((torch.isnan(ours[0]) != torch.isnan(ref[0])).sum())
        result.gradient_error = 0.0
        return result
    g = torch.rand(ours[0].shape, generator=torch.Generator().manual_seed(seed)).to(device)
    pairs = zip(_grads(ours[0], ours_in, g), _grads(ref[0], ref_in, g.to(dtype).double()), strict=True)
    result.gradient_error = max(max_rel(a, b, tol.gradient_floor) for a, b in pairs)
    return result


# ---- the case list ----

Case = tuple[str, Callable, str, tuple]  # (op, function, case name, shape)


def cases(quick: bool, sanitizer: bool) -> list[Case]:
    """Every named case; ``quick``: tiny shapes (the interpreter); ``sanitizer``: one of each kind.

    Full shapes are not multiples of any block or tile size (37 x 53)."""
    warp_shape = (2, 2, 3, 9, 13) if quick or sanitizer else (2, 2, 3, 37, 53)
    image_shape = (1, 2, 6, 9) if quick or sanitizer else (2, 3, 37, 53)
    warp_names = ["kornia", "nan-depth"] if sanitizer else [*WARP_OPTIONS, *WARP_EDGES]
    photo_names = ["min_reprojection"] if sanitizer else ["photometric_loss", "min_reprojection", "ties", "nan-pixel"]
    return [("warp", warp_case, n, warp_shape) for n in warp_names] + [
        ("photometric", photometric_case, n, image_shape) for n in photo_names
    ]


def run_cases(device: str, backends: list[str], dtypes: list[str], quick: bool, sanitizer: bool, out: Path | None):
    results = []
    for op, fn, name, shape in cases(quick, sanitizer):
        for backend in backends:
            for dtype_name in dtypes:
                dtype = DTYPES[dtype_name]
                if dtype == torch.bfloat16 and backend == "triton" and torch.device(device).type == "cpu":
                    continue  # Triton's interpreter has no bfloat16
                start = time.perf_counter()
                try:
                    result = fn(name, backend, device, dtype, shape)
                except Exception as error:  # a case that cannot run is a failure, reported with its cause
                    result = CaseResult(op, name, backend, device, dtype_name, error=_describe(error))
                result.seconds = round(time.perf_counter() - start, 3)
                results.append(result)
                print(_line(result), flush=True)
                if out is not None:
                    _write(results, out)
    return results


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}"[:2000]


def _line(r: CaseResult) -> str:
    verdict = "pass" if r.passed else "FAIL"
    if r.error:
        return f"{verdict} {r.op:11} {r.case:18} {r.backend:6} {r.dtype:8} error: {r.error.splitlines()[0]}"
    det = "" if r.deterministic is None else f" deterministic={r.deterministic}"
    return (
        f"{verdict} {r.op:11} {r.case:18} {r.backend:6} {r.dtype:8} fwd {r.forward_error:.2e}/{r.forward_tol:.0e} "
        f"grad {r.gradient_error:.2e}/{r.gradient_tol:.0e} mismatches {r.mismatches}{det} ({r.seconds:.1f} s)"
    )


def _write(results: list[CaseResult], path: Path) -> None:
    rows = [asdict(r) | {"passed": r.passed} for r in results]
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(rows, indent=1) + "\n")
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backends", default="triton,cuda")
    parser.add_argument("--dtypes", default="fp32,bf16,fp16")
    parser.add_argument("--quick", action="store_true", help="tiny shapes (for Triton's interpreter)")
    parser.add_argument("--sanitizer", action="store_true", help="a few small float32 cases (compute-sanitizer)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file of the results")
    args = parser.parse_args(argv)
    dtypes = ["fp32"] if args.sanitizer else args.dtypes.split(",")
    results = run_cases(args.device, args.backends.split(","), dtypes, args.quick, args.sanitizer, args.out)
    failed = [r for r in results if not r.passed]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
