"""The CUDA kernels' per-pixel paths, run on the host thread by thread (tests/cuda_kernels_on_host.cpp),
against the CPU twin's ops on the same float32 inputs: the warp, the photometric loss, the fused
objective's forward and the cost volume, forward and backward. The twin reaches the same math
through loops of its own and is checked against the reference elsewhere."""

import contextlib
import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import TWIN

from fastdepth import _cuda
from fastdepth.checks.cost_volume import OPTIONS as VOLUME_OPTIONS
from fastdepth.checks.cost_volume import SWEEP_CASES, SWEEP_PLANES
from fastdepth.checks.cost_volume import inputs as volume_inputs
from fastdepth.compare import assert_close
from fastdepth.cost_volume import output_shape, projections
from fastdepth.scenes import natural_images, warp_scene
from fastdepth.tolerances import tolerance

ROOT = Path(__file__).resolve().parents[1]
COMPILER = shutil.which("g++") or shutil.which("c++")
pytestmark = pytest.mark.skipif(not (TWIN and COMPILER), reason="needs the CPU twin and a C++ compiler")
SAMPLINGS = {
    "kornia": dict(normalize=False, border=False, align_corners=True),
    "monodepth2-normalized": dict(normalize=True, border=True, align_corners=False),
}
REDUCTIONS = {"l1": 0, "dot": 1, "group_dot": 1, "variance": 2}


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    library = tmp_path_factory.mktemp("cuda_kernels_on_host") / "kernels.so"
    source = ROOT / "tests" / "cuda_kernels_on_host.cpp"
    command = [COMPILER, "-std=c++17", "-O1", "-shared", "-fPIC", f"-I{ROOT / 'csrc'}", "-o", str(library), str(source)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(library))


def ptr(t: torch.Tensor | None):
    assert t is None or t.is_contiguous()
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def ints(*values):
    return [ctypes.c_int64(v) for v in values]


def hw(H, W):
    return [ctypes.c_int(H), ctypes.c_int(W)]


def flags(*values):
    return [ctypes.c_bool(v) for v in values]


def scene(B, S, C, H, W, seed):
    """A warp scene with a NaN and an infinite depth, so that both skip their pixel."""
    x = warp_scene(B, S, C, H, W, seed=seed, rotation=0.1, translation=0.5)
    x["depth"][0, 0, 0, 1] = float("nan")
    x["depth"][-1, 0, H - 1, W - 1] = float("inf")
    return x


@pytest.mark.parametrize("shape", [(2, 2, 3, 9, 13), (1, 1, 2, 3, 150)], ids=str)
@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_warp(kernels, shape, sampling, seed):
    # (1, 1, 2, 3, 150): three blocks of pose and intrinsics partial sums, the last one partial
    B, S, C, H, W = shape
    x = scene(B, S, C, H, W, seed)
    image, depth, pose, K = x["image"], x["depth"], x["pose"], x["K"]
    o = SAMPLINGS[sampling]
    options = (o["normalize"], "border" if o["border"] else "zeros", o["align_corners"])
    dims = [*ints(B, S, C), *hw(H, W), *flags(o["normalize"], o["border"], o["align_corners"])]
    tol = tolerance("warp", torch.float32, "cuda", "cpu")

    out, mask = torch.empty_like(image), torch.empty(B, S, 1, H, W, dtype=torch.int8)
    kernels.warp_forward(ptr(image), ptr(depth), ptr(pose), ptr(K), ptr(out), ptr(mask), *dims)
    twin_out, twin_mask = _cuda.library().warp_forward(image, depth, pose, K, *options, True)
    assert_close(out, twin_out, abs_tol=tol.forward, name="warped")
    assert torch.equal(mask.bool(), twin_mask.reshape(mask.shape).bool())

    grad = torch.randn(image.shape, generator=torch.Generator().manual_seed(seed))
    g_image, g_depth, pose_part, k_part = warp_backward(kernels, x, grad, o)
    # the bindings' reduction of the partial sums (csrc/warp_bindings.cpp: reduce_partials)
    g_pose = pose_part.sum(2).reshape(B, S, 4, 4)
    g_k = torch.zeros(B, 3, 3)
    g_k[:, 0, 0], g_k[:, 1, 1], g_k[:, 0, 2], g_k[:, 1, 2] = k_part.sum(1).unbind(1)
    twin = _cuda.library().warp_backward(grad, image, depth, pose, K, *options, [True] * 4, False)
    for name, a, b in zip(("image", "depth", "pose", "K"), (g_image, g_depth, g_pose, g_k), twin, strict=True):
        assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name=f"grad {name}")


def warp_backward(kernels, x, grad, o):
    """warp_bwd_kernel on the host: d/d image, d/d depth and the pose and intrinsics partial sums."""
    B, S, C, H, W = x["image"].shape
    blocks = -(-H * W // 128)
    g_image, g_depth = torch.zeros_like(x["image"]), torch.empty_like(x["depth"])
    pose_part, k_part = torch.empty(B, S, blocks, 16), torch.empty(B, blocks, 4)
    kernels.warp_backward(
        ptr(grad), ptr(x["image"]), ptr(x["depth"]), ptr(x["pose"]), ptr(x["K"]), ptr(g_image), ptr(g_depth),
        ptr(pose_part), ptr(k_part), *ints(B, S, C), *hw(H, W), *flags(o["normalize"], o["border"], o["align_corners"]),
    )  # fmt: skip
    return g_image, g_depth, pose_part, k_part


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 1, 2, 2), (1, 2, 3, 40)], ids=str)
def test_photometric(kernels, shape, seed):
    B, C, H, W = shape
    target = natural_images(B, C, H, W, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    warped = (target[:, None] + 0.2 * torch.randn(B, 2, C, H, W, generator=gen)).clamp(0, 1)
    identity = (target[:, None] + 0.2 * torch.randn(B, 1, C, H, W, generator=gen)).clamp(0, 1)
    dims = [*ints(B, 1, 2, C), *hw(H, W), ctypes.c_float(0.85)]
    tol = tolerance("photometric", torch.float32, "cuda", "cpu")

    loss, index = torch.empty(B, 1, H, W), torch.empty(B, 1, H, W, dtype=torch.int64)
    kernels.photometric_forward(ptr(target), ptr(identity), ptr(warped), ptr(loss), ptr(index), *dims)
    twin_loss, twin_index = _cuda.library().photometric_forward(target, warped, identity, 0.85, True)
    assert_close(loss, twin_loss, abs_tol=tol.forward, name="loss")
    assert torch.equal(index, twin_index)

    grad = torch.rand(B, 1, H, W, generator=gen)
    g_target, g_warped, g_identity = torch.empty_like(target), torch.empty_like(warped), torch.empty_like(identity)
    kernels.photometric_backward(
        ptr(grad), ptr(index), ptr(target), ptr(identity), ptr(warped), ptr(g_target), ptr(g_identity), ptr(g_warped),
        *dims,
    )  # fmt: skip
    twin = _cuda.library().photometric_backward(grad, index, target, warped, identity, 0.85, [True, True, True], False)
    for name, a, b in zip(("target", "warped", "identity"), (g_target, g_warped, g_identity), twin, strict=True):
        assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name=f"grad {name}")


@pytest.mark.parametrize("shape", [(2, 3, 9, 13), (1, 2, 15, 31), (1, 1, 30, 61), (1, 1, 2, 2)], ids=str)
@pytest.mark.parametrize("needs", [(True, True, True), (False, True, False), (True, False, False)], ids=str)
@pytest.mark.parametrize("reverse", [False, True], ids=["in_order", "reverse_order"])
def test_photometric_tile_backward_is_the_pixel_backward(kernels, shape, needs, reverse, seed):
    # photometric_tile_bwd_kernel's phases: the same sums in the same order as photometric_bwd_kernel,
    # bit for bit, whatever the order of the blocks and of the threads of a phase (14 x 30 tiles: at
    # 15 x 31 a pixel alone in the last tile's row and column)
    B, C, H, W = shape
    target = natural_images(B, C, H, W, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    warped = (target[:, None] + 0.2 * torch.randn(B, 2, C, H, W, generator=gen)).clamp(0, 1)
    identity = (target[:, None] + 0.2 * torch.randn(B, 1, C, H, W, generator=gen)).clamp(0, 1)
    warped[0, 0, 0, H // 2, W // 2] = float("nan")
    index = torch.randint(0, 3, (B, 1, H, W), generator=gen)
    grad = torch.rand(B, 1, H, W, generator=gen)
    dims = [*ints(B, 1, 2, C), *hw(H, W), ctypes.c_float(0.85)]
    outs = {}
    for kernel in ("photometric_backward", "photometric_tile_backward"):
        g = [
            torch.full_like(t, 7.0) if need else None for t, need in zip((target, warped, identity), needs, strict=True)
        ]
        reversed_tiles = reverse and kernel == "photometric_tile_backward"
        with reverse_order(kernels) if reversed_tiles else contextlib.nullcontext():
            getattr(kernels, kernel)(
                ptr(grad), ptr(index), ptr(target), ptr(identity), ptr(warped), ptr(g[0]), ptr(g[2]), ptr(g[1]), *dims
            )  # fmt: skip
        outs[kernel] = g
    for name, a, b in zip(("target", "warped", "identity"), *outs.values(), strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.equal(a.nan_to_num(3.0), b.nan_to_num(3.0)) and torch.equal(a.isnan(), b.isnan()), name
            assert not (a == 7.0).any(), name  # every pixel written


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("size", [(9, 13), (2, 2), (30, 61)], ids=str)
def test_reprojection_forward(kernels, sampling, size, seed):
    # the tile kernel: tiles at every border, a pixel alone in its tile's last row and column (30 x 61)
    B, S, C, (H, W) = 2, 2, 3, size
    x = scene(B, S, C, H, W, seed)
    target = natural_images(B, C, H, W, seed=seed + 1)
    identity = torch.rand(B, 2, H, W, generator=torch.Generator().manual_seed(seed))
    o = SAMPLINGS[sampling]
    options = (o["normalize"], "border" if o["border"] else "zeros", o["align_corners"])
    loss, index = reprojection_forward(kernels.reprojection_forward, x, target, identity, o)
    twin_loss, twin_index = _cuda.library().reprojection_forward(
        target, x["image"], x["depth"], x["pose"], x["K"], identity, 0.85, *options
    )
    assert_close(loss, twin_loss, abs_tol=tolerance("reprojection", torch.float32, "cuda", "cpu").forward, name="loss")
    assert torch.equal(index, twin_index)
    # the same samples, sums and comparisons in the same order: bit for bit
    tile_loss, tile_index = reprojection_forward(kernels.reprojection_forward_tile, x, target, identity, o)
    assert torch.equal(tile_loss, loss) and torch.equal(tile_index, index)


def reprojection_forward(kernel, x, target, identity, o):
    """A forward kernel of the fused objective on the host (identity: 2 maps): the loss and the index."""
    B, S, C, H, W = x["image"].shape
    loss, index = torch.full((B, 1, H, W), -1.0), torch.full((B, 1, H, W), -1, dtype=torch.int64)
    kernel(
        ptr(target), ptr(x["image"]), ptr(x["depth"]), ptr(x["pose"]), ptr(x["K"]), ptr(identity), ctypes.c_int64(2),
        ptr(loss), ptr(index), *ints(B, S, C), *hw(H, W), *flags(o["normalize"], o["border"], o["align_corners"]),
        ctypes.c_float(0.85),
    )  # fmt: skip
    return loss, index


@pytest.mark.parametrize(
    "H,B,split",
    [(192, 2, (6, 32)), (192, 12, (6, 32)), (96, 1, (8, 12)), (100, 1, (8, 13)), (24, 1, (3, 8)), (2, 1, (1, 2)),
     (33, 2, (4, 9)), (1000, 1, (32, 32))],
    ids=str,
)  # fmt: skip
def test_twin_bands_keep_a_small_batch_busy(kernels, H, B, split):
    # the fused objective's CPU twin: bands of at most 32 rows, as equal as whole rows allow, and
    # at least 8 (element, band) pairs where bands of 8 rows or more allow it
    count, rows = ctypes.c_int64(), ctypes.c_int()
    kernels.twin_band_split(ctypes.c_int(H), ctypes.c_int64(B), ctypes.byref(count), ctypes.byref(rows))
    assert (count.value, rows.value) == split
    assert (count.value - 1) * rows.value < H <= count.value * rows.value


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("size", [(9, 13), (2, 2), (30, 61)], ids=str)
def test_reprojection_backward(kernels, sampling, size, seed):
    # tiles at every border, a pixel alone in its tile's last row and column (30 x 61), NaN depth
    B, S, C, (H, W) = 2, 2, 3, size
    x = scene(B, S, C, H, W, seed)
    x["depth"].view(-1)[seed % (H * W)] = float("nan")
    target = natural_images(B, C, H, W, seed=seed + 1)
    gen = torch.Generator().manual_seed(seed)
    index = torch.randint(0, S + 2, (B, 1, H, W), generator=gen)  # 2 identity maps, then the sources
    grad = torch.rand(B, 1, H, W, generator=gen)
    o = SAMPLINGS[sampling]
    g_depth, pose_part, k_part = reprojection_backward(kernels, x, target, index, grad, o)
    options = (o["normalize"], "border" if o["border"] else "zeros", o["align_corners"])
    # the twin's backward: the same phases over bands of rows, its partial sums per band
    twin = _cuda.library().reprojection_backward(
        grad, index, target, x["image"], x["depth"], x["pose"], x["K"], 2, 0.85, *options, [True, True, True]
    )
    g_k = torch.zeros(B, 3, 3)
    g_k[:, 0, 0], g_k[:, 1, 1], g_k[:, 0, 2], g_k[:, 1, 2] = k_part.sum(1).unbind(1)
    tol = tolerance("reprojection", torch.float32, "cuda", "cpu")
    ours = (g_depth, pose_part.sum(2).reshape(B, S, 4, 4), g_k)
    for name, a, b in zip(("depth", "poses", "K"), ours, twin, strict=True):
        assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name=f"grad {name}")


def reprojection_backward(kernels, x, target, index, grad, o):
    """reprojection_bwd_kernel on the host (2 identity maps before the sources in index): d/d depth
    and the pose and intrinsics partial sums per tile."""
    B, S, C, H, W = x["image"].shape
    tiles = -(-H // 12) * -(-W // 28)
    g_depth, pose_part, k_part = torch.empty(B, 1, H, W), torch.empty(B, S, tiles, 16), torch.empty(B, tiles, 4)
    kernels.reprojection_backward(
        ptr(grad), ptr(index), ptr(target), ptr(x["image"]), ptr(x["depth"]), ptr(x["pose"]), ptr(x["K"]),
        ptr(g_depth), ptr(pose_part), ptr(k_part), ctypes.c_int64(2), *ints(B, S, C), *hw(H, W),
        *flags(o["normalize"], o["border"], o["align_corners"]), ctypes.c_float(0.85),
    )  # fmt: skip
    return g_depth, pose_part, k_part


@contextlib.contextmanager
def reverse_order(kernels):
    """The host kernels run their blocks, and the threads of a block's phase, last first."""
    kernels.set_reverse_order(ctypes.c_bool(True))
    try:
        yield
    finally:
        kernels.set_reverse_order(ctypes.c_bool(False))


def test_block_kernels_write_the_same_in_any_order_of_blocks_and_threads(kernels, seed):
    # 30 x 61: 3 x 3 tiles of the tile forward (14 x 30) and of the backward (12 x 28), 15 warp blocks;
    # tiles write their own pixels only (their halos overlap), phases read only what the phase
    # before them wrote (a barrier apart): as a GPU may schedule them, last first
    B, S, C, H, W = 2, 2, 3, 30, 61
    x = scene(B, S, C, H, W, seed)
    target = natural_images(B, C, H, W, seed=seed + 1)
    gen = torch.Generator().manual_seed(seed)
    identity = torch.rand(B, 2, H, W, generator=gen)
    o = SAMPLINGS["kornia"]
    _, index = reprojection_forward(kernels.reprojection_forward_tile, x, target, identity, o)
    grad_map, grad_image = torch.rand(B, 1, H, W, generator=gen), torch.randn(x["image"].shape, generator=gen)

    def run():
        """The tile forward's loss and index, the one-pass backward's and the warp backward's outputs."""
        return (
            *reprojection_forward(kernels.reprojection_forward_tile, x, target, identity, o),
            *reprojection_backward(kernels, x, target, index, grad_map, o),
            *warp_backward(kernels, x, grad_image, o),
        )

    usual = run()
    with reverse_order(kernels):
        reverse = run()
    names = ["loss", "index", "grad depth", "pose partials", "K partials", "grad image", "warp: grad depth",
             "warp: pose partials", "warp: K partials"]  # fmt: skip
    # sums in another order: a tile's partial sums over its threads, the image gradient's scatter
    summed = {"pose partials", "K partials", "grad image"}
    for name, a, b in zip(names, reverse, usual, strict=True):
        if name in summed:
            assert_close(a, b, rel_tol=1e-5, name=name)  # of the max-norm: the sums may cancel
        else:
            assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0)), name


def _kernel_steps(op: str, steps: str) -> dict[str, list[str]]:
    """Each __global__ kernel of csrc/<op>.cu -> the calls of ``steps`` (a regex alternation) in order."""
    source = (ROOT / "csrc" / f"{op}.cu").read_text()
    kernels = {}
    for body in source.split("__global__")[1:]:
        body = body.split("dim3 ")[0].split("void launch_")[0]  # the last kernel: up to the launchers
        kernels[re.search(rf"\b({op}_\w+_kernel)\(", body).group(1)] = re.findall(rf"\b({steps}|__syncthreads)\(", body)
    return kernels


def test_the_cuda_block_kernels_have_a_barrier_wherever_the_host_run_separates_phases():
    # the host run completes each phase for every thread before the next; the .cu kernels must
    # put __syncthreads between the phases that share the block's plane, and after the last one
    # before the next channel's (candidate's) first overwrites the plane (the objective's backward's
    # next phase A writes x_s, which no phase C reads: csrc/reprojection.cu says why no barrier is needed)
    kernels = _kernel_steps("reprojection", "tile_sample_phase|tile_loss_phase|sample_phase|stat_phase|adjoint_phase")
    assert kernels["reprojection_tile_fwd_kernel"] == [
        "tile_sample_phase", "__syncthreads", "tile_loss_phase", "__syncthreads"
    ]  # fmt: skip
    assert kernels["reprojection_bwd_kernel"] == [
        "sample_phase", "__syncthreads", "stat_phase", "__syncthreads", "adjoint_phase"
    ]  # fmt: skip
    kernels = _kernel_steps("photometric", "tile_stat_phase|tile_adjoint_phase")
    assert kernels["photometric_tile_bwd_kernel"] == [
        "tile_stat_phase", "__syncthreads", "tile_adjoint_phase", "__syncthreads"
    ]  # fmt: skip


@pytest.mark.parametrize("case", VOLUME_OPTIONS)
def test_cost_volume(kernels, case, seed):
    B, S, C, h, w, D = 2, 2, 10, 5, 7, 3
    planes = SWEEP_PLANES if case in SWEEP_CASES else (0.5, 8.0)
    ft, fs, hypotheses, poses, K = volume_inputs(
        B, S, C, h, w, D, seed, torch.float32, "cpu", case == "per_pixel", planes
    )
    u, v = torch.empty(2, B, S, D, h, w)
    kernels.cost_volume_projection(
        ptr(hypotheses), ptr(poses), ptr(K), ptr(u), ptr(v), *ints(B, S, D), *hw(h, w), *flags(case == "per_pixel")
    )
    twin_u, twin_v = projections(hypotheses, poses, K, h, w, torch.float32, "cuda")
    assert_close(u, twin_u, abs_tol=1e-4, name="u")
    assert_close(v, twin_v, abs_tol=1e-4, name="v")
    options = dict(VOLUME_OPTIONS[case])
    reduction, groups = options["reduction"], options.get("groups", 1)
    padding, align = options.get("padding_mode", "zeros"), options.get("align_corners", True)
    shape = output_shape(B, C, D, h, w, reduction, groups)
    dims = [
        *ints(B, S, C, D, shape[1]),
        *hw(h, w),
        *flags(padding == "border", align),
        ctypes.c_int(REDUCTIONS[reduction]),
    ]
    tol = tolerance("cost_volume", torch.float32, "cuda", "cpu")

    cost = torch.empty(shape)
    kernels.cost_volume_forward(ptr(ft), ptr(fs), ptr(u), ptr(v), ptr(cost), *dims)
    twin_cost = _cuda.library().cost_volume_forward(ft, fs, u, v, reduction, groups, padding, align)
    assert_close(cost, twin_cost, abs_tol=tol.forward, name="cost")

    grad = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    options = (reduction, groups, padding, align, [True, True], False)
    twin = _cuda.library().cost_volume_backward(grad, ft, fs, u, v, *options)
    # the sweep kernel (not for the variance) over 3 chunks of channels, the last partial
    for backward in ("cost_volume_backward", "cost_volume_sweep_backward")[: 1 if reduction == "variance" else 2]:
        g_ft, g_fs, g_u, g_v = torch.zeros_like(ft), torch.zeros_like(fs), torch.zeros_like(u), torch.zeros_like(v)
        getattr(kernels, backward)(
            ptr(grad), ptr(ft), ptr(fs), ptr(u), ptr(v), ptr(g_ft), ptr(g_fs), ptr(g_u), ptr(g_v), *dims
        )
        ours = (g_ft, g_fs, g_u, g_v)
        for name, a, b in zip(("features_target", "features_source", "u", "v"), ours, twin, strict=True):
            keep = b.isfinite()
            assert torch.equal(keep, a.isfinite()), f"{backward}: {name}"
            assert_close(a[keep], b[keep], rel_tol=tol.gradient, floor=tol.gradient_floor, name=f"{backward}: {name}")
