"""The CPU twin of the CUDA kernels (backend='cuda' on CPU tensors) in float64: the kernels'
per-pixel math against the reference at the 1e-10 level, forward and backward."""

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TWIN
from helpers import grads, leaves, subprocess_env

import fastdepth
from fastdepth.compare import assert_close
from fastdepth.scenes import natural_images, warp_scene
from fastdepth.tolerances import tolerance

pytestmark = pytest.mark.skipif(not TWIN, reason="the C++ extension cannot be built here (no compiler or ninja)")
NAMES = ("image", "depth", "pose", "K")


@pytest.mark.parametrize("shape", [(2, 2, 3, 9, 13), (1, 1, 1, 1, 7), (1, 3, 5, 6, 1), (2, 1, 3, 300, 2)], ids=str)
@pytest.mark.parametrize(
    "options",
    [
        dict(padding_mode="zeros", align_corners=True, normalize_points=False),
        dict(padding_mode="border", align_corners=False, normalize_points=True),
    ],
    ids=["kornia", "monodepth2-normalized"],
)
def test_warp_float64_matches_reference(shape, options, seed):
    # (2, 1, 3, 300, 2) spans three 256-pixel blocks of partial sums
    scene = warp_scene(*shape, seed=seed, dtype=torch.float64, rotation=0.1, translation=0.5)
    ours_in, ref_in = leaves(*(scene[n] for n in NAMES)), leaves(*(scene[n] for n in NAMES))
    out, mask = fastdepth.warp(*ours_in, **options, return_mask=True, backend="cuda")
    ref, ref_mask = fastdepth.warp(*ref_in, **options, return_mask=True, backend="torch")
    tol = tolerance("warp", torch.float64, "cuda", "cpu")
    assert out.dtype == torch.float64
    assert_close(out, ref, abs_tol=tol.forward, name="warped")
    assert torch.equal(mask, ref_mask)
    g = torch.randn_like(ref)
    for name, a, b in zip(NAMES, grads(out, ours_in, g), grads(ref, ref_in, g), strict=True):
        assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name=f"grad {name}")


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 5, 7), (1, 1, 2, 2), (1, 2, 3, 40), (1, 3, 4, 3), (2, 1, 3, 3), (1, 2, 100, 5), (1, 1, 49, 3)],
    ids=str,
)
def test_min_reprojection_float64_matches_reference(shape, seed):
    # H = 100 and 49: the backward's bands of rows (at most 48) meet inside the image
    B, C, H, W = shape
    target = natural_images(B, C, H, W, seed=seed, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    warped = (target[:, None] + 0.2 * torch.randn(B, 2, C, H, W, generator=gen, dtype=torch.float64)).clamp(0, 1)
    identity = (target[:, None] + 0.2 * torch.randn(B, 1, C, H, W, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ours_in, ref_in = leaves(target, warped, identity), leaves(target, warped, identity)
    loss, index, automask = fastdepth.min_reprojection_loss(*ours_in, backend="cuda")
    ref_loss, ref_index, ref_automask = fastdepth.min_reprojection_loss(*ref_in, backend="torch")
    tol = tolerance("photometric", torch.float64, "cuda", "cpu")
    assert_close(loss, ref_loss, abs_tol=tol.forward, name="loss")
    assert torch.equal(index, ref_index) and torch.equal(automask, ref_automask)
    g = torch.rand_like(ref_loss)
    for a, b in zip(grads(loss, ours_in, g), grads(ref_loss, ref_in, g), strict=True):
        assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name="gradient")


def test_photometric_float64_gradcheck(seed):
    pred, target = leaves(natural_images(1, 2, 3, 4, seed=seed, dtype=torch.float64), torch.rand(1, 2, 3, 4).double())
    assert torch.autograd.gradcheck(lambda p, t: fastdepth.photometric_loss(p, t, backend="cuda"), (pred, target))


def test_build_ahead_of_time_on_import():
    code = "import fastdepth; from fastdepth import _cuda; print(_cuda.state()['loaded'])"
    env = subprocess_env(FASTDEPTH_BUILD_EXTENSION="1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.stdout.strip().endswith("True"), result.stderr


def test_warp_image_gradient_over_batch_passes(seed):
    # the twin scatters the image gradient into per-thread buffers of at most 64 MiB (kThreadPartBytes
    # in csrc/warp_cpu.cpp): with 9 x 1024 x 1024 image elements per batch element, each element takes
    # a pass of its own, scheduled as a batch of one would be, so the float gradients match bitwise
    scene = warp_scene(2, 1, 9, 1024, 1024, seed=seed, rotation=0.05, translation=0.2)
    g = torch.randn(scene["image"].shape, generator=torch.Generator().manual_seed(seed))

    def image_gradient(b, deterministic=False):
        image, depth, pose, K = (scene[n][b] for n in NAMES)
        image = image.clone().requires_grad_(True)
        out = fastdepth.warp(image, depth, pose, K, backend="cuda", deterministic=deterministic)
        (grad,) = torch.autograd.grad(out, image, g[b])
        return grad

    both = image_gradient(slice(0, 2))
    assert torch.equal(both, torch.cat([image_gradient(slice(0, 1)), image_gradient(slice(1, 2))]))
    assert both.abs().sum() > 0
    # the fixed-point scatter over the same passes: its own rounding only
    assert_close(image_gradient(slice(0, 2), deterministic=True), both, abs_tol=1e-5, name="fixed point")


def test_warp_image_gradient_whatever_the_threads(seed):
    # a batch element whose blocks all fall to one thread gets its image gradient straight from it,
    # one that threads share through per-thread buffers: B=3 of 4 blocks each is split as 1 thread:
    # all its own; 2: element 1 shared; 5: elements 0 and 1 shared, 2 shared by two threads
    scene = warp_scene(3, 2, 2, 17, 23, seed=seed, dtype=torch.float64, rotation=0.1, translation=0.5)
    g = torch.randn(scene["image"].shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ref_in = leaves(*(scene[n] for n in NAMES))
    (ref,) = torch.autograd.grad(fastdepth.warp(*ref_in, backend="torch"), ref_in[0], g)
    tol = tolerance("warp", torch.float64, "cuda", "cpu")
    previous = torch.get_num_threads()
    fixed = []
    try:
        for threads in (1, 2, 5):
            torch.set_num_threads(threads)
            for deterministic in (False, True):
                image = scene["image"].clone().requires_grad_(True)
                out = fastdepth.warp(image, *(scene[n] for n in NAMES[1:]), backend="cuda", deterministic=deterministic)
                (grad,) = torch.autograd.grad(out, image, g)
                assert_close(grad, ref, rel_tol=tol.gradient, floor=tol.gradient_floor, name=f"{threads} threads")
                if deterministic:
                    fixed.append(grad)
    finally:
        torch.set_num_threads(previous)
    assert all(torch.equal(f, fixed[0]) for f in fixed[1:])  # integer sums: the order does not matter


def test_cost_volume_gradients_whatever_the_threads(seed):
    # as the warp's image gradient: B=3 over 1, 2 and 5 threads gives elements of one thread's own
    # and elements that threads share
    from fastdepth.checks.cost_volume import inputs as volume_inputs

    ft, fs, planes, poses, K = volume_inputs(3, 2, 4, 5, 7, 3, seed, torch.float64, "cpu")
    ref_in = leaves(ft, fs)
    ref = fastdepth.cost_volume(*ref_in, planes, poses, K, reduction="variance", backend="torch")
    g = torch.rand(ref.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    expected = grads(ref, ref_in, g)
    tol = tolerance("cost_volume", torch.float64, "cuda", "cpu")
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2, 5):
            torch.set_num_threads(threads)
            ours_in = leaves(ft, fs)
            ours = fastdepth.cost_volume(*ours_in, planes, poses, K, reduction="variance", backend="cuda")
            for name, a, b in zip(("target", "source"), grads(ours, ours_in, g), expected, strict=True):
                assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name=f"{name}, {threads} threads")
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("C,H", [(1, 5), (2, 7), (3, 34)], ids=str)
def test_photometric_backward_bands_whatever_the_threads(C, H, seed):
    # the backward takes bands of rows, at least two (channel, band) pairs per thread: with many
    # threads and few rows a band of ceil(H / bands) rows would start below the image (it wrote out
    # of bounds: 2 threads at C=1, H=5; 16 at C=3, H=34)
    pred, target = (natural_images(2, C, H, 3, dtype=torch.float64, seed=seed + k) for k in range(2))
    ref_in = leaves(pred, target)
    ref = fastdepth.photometric_loss(*ref_in, backend="torch")
    g = torch.rand(ref.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    expected = grads(ref, ref_in, g)
    tol = tolerance("photometric", torch.float64, "cuda", "cpu")
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2, 5, 16):
            torch.set_num_threads(threads)
            ours_in = leaves(pred, target)
            ours = fastdepth.photometric_loss(*ours_in, backend="cuda")
            for name, a, b in zip(("pred", "target"), grads(ours, ours_in, g), expected, strict=True):
                assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name=f"{name}, {threads} threads")
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize(
    ("machine", "capability", "level"),
    [
        ("x86_64", "AVX2", "x86-64-v3"),
        ("AMD64", "AVX512", "x86-64-v3"),
        ("x86_64", "DEFAULT", ""),
        ("aarch64", "SVE256", ""),
    ],
)
def test_twin_is_built_for_the_cpu_level_pytorch_reports(monkeypatch, machine, capability, level):
    from fastdepth import _cuda

    monkeypatch.setattr(_cuda.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(_cuda, "compiler_accepts", lambda flag: True)
    assert _cuda.cpu_level() == level


def test_twin_falls_back_to_the_baseline_where_the_compiler_lacks_the_level(monkeypatch):
    from fastdepth import _cuda

    monkeypatch.setattr(_cuda.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(_cuda, "compiler_accepts", lambda flag: False)
    assert _cuda.cpu_level() == ""


def test_compiler_probe_tells_a_known_flag_from_an_unknown_one():
    from fastdepth import _cuda

    assert _cuda.compiler_accepts("-O2")
    assert not _cuda.compiler_accepts("-march=no-such-level")


def test_vector_math_probe_links_libmvec_where_glibc_has_it(monkeypatch):
    # the twins' logs are vector calls where a program linked with -lmvec builds (csrc/cpu_math.h)
    from fastdepth import _cuda

    if platform.libc_ver()[0] == "glibc" and platform.machine() == "x86_64":
        assert _cuda.links_vector_math(_cuda.cpu_level())
    monkeypatch.setattr(_cuda, "_compiler", lambda: "false")  # a compiler that fails every build
    _cuda.links_vector_math.cache_clear()
    try:
        assert not _cuda.links_vector_math("")
    finally:
        _cuda.links_vector_math.cache_clear()


@pytest.mark.parametrize(
    ("vendor", "gds", "fast"),
    [
        ("GenuineIntel", "Not affected\n", True),
        ("GenuineIntel", "Vulnerable: No microcode\n", True),
        ("GenuineIntel", "Mitigation: Microcode\n", False),
        ("GenuineIntel", "Unknown: Dependent on hypervisor status\n", False),
        ("GenuineIntel", "", False),  # no such file: an older kernel
        ("AuthenticAMD", "Not affected\n", False),
    ],
)
def test_gathers_are_used_only_where_they_run_at_full_speed(vendor, gds, fast):
    from fastdepth import _cuda

    assert _cuda.gathers_at_full_speed(vendor, gds) == fast


@pytest.mark.skipif(not TWIN, reason="needs the CPU twin")
def test_twin_build_is_named_after_its_gather_tuning():
    # the same results either way (the tuning changes only the instructions), one build per tuning
    from fastdepth import _cuda

    _cuda.load()
    (library,) = (Path(p) for p in torch.ops.loaded_libraries if "fastdepth_ext" in p)
    assert ("_gathers" in library.name) == _cuda.use_gathers(_cuda.cpu_level())


@pytest.mark.skipif(not TWIN, reason="needs the CPU twin")
def test_twin_is_built_with_vector_math_where_it_links():
    from fastdepth import _cuda

    _cuda.load()
    (library,) = (Path(p) for p in torch.ops.loaded_libraries if "fastdepth_ext" in p)
    calls_vector_log = re.search(rb"_ZGV[bcde]N[0-9]+v_logf", library.read_bytes()) is not None
    assert calls_vector_log == _cuda.links_vector_math(_cuda.cpu_level())


@pytest.mark.parametrize("baton", [True, False], ids=["lock_file_blocks", "os_lock"])
def test_a_build_lock_left_by_a_killed_build_is_deleted(monkeypatch, tmp_path, baton):
    # a PyTorch whose build waits on the lock file's existence (FileBaton) waits forever on one that
    # a killed build left behind; one that holds an OS lock on the file keeps the file, harmless
    from torch.utils import cpp_extension

    from fastdepth import _cuda

    if baton:
        monkeypatch.setattr(cpp_extension, "FileBaton", object, raising=False)
    else:
        monkeypatch.delattr(cpp_extension, "FileBaton", raising=False)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    lock = tmp_path / _cuda._build_config()[0] / "lock"
    lock.parent.mkdir()
    lock.touch()
    assert _cuda.remove_stale_lock() is None and lock.exists()  # a build may be running
    os.utime(lock, (lock.stat().st_atime, lock.stat().st_mtime - _cuda.STALE_LOCK_S - 1))
    if not baton:
        assert _cuda.remove_stale_lock(0) is None and lock.exists()
        return
    with pytest.warns(UserWarning, match="left .* ago by a build that did not finish"):
        assert _cuda.remove_stale_lock() == lock
    assert not lock.exists()
    assert _cuda.remove_stale_lock(0) is None
