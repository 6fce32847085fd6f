"""Every bad input to the warp raises a clear exception naming the argument."""

import re
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import BACKEND_NAMES, FLOAT32_ONLY
from helpers import subprocess_env

import fastdepth
from fastdepth import validation
from fastdepth.scenes import warp_scene


def single_source_inputs(**changes):
    scene = warp_scene(2, 1, 3, 6, 8)
    args = {
        "normalize_points": False,
        "image_src": scene["image"][:, 0],
        "depth_dst": scene["depth"],
        "src_trans_dst": scene["pose"][:, 0],
        "camera_matrix": scene["K"],
    }
    for name, change in changes.items():
        args[name] = change(args[name]) if callable(change) else change
    return args


def with_nan(t):
    t = t.clone()
    t.view(-1)[0] = float("nan")
    return t


def with_inf(t):
    t = t.clone()
    t.view(-1)[-1] = float("inf")
    return t


def zero_fx(k):
    k = k.clone()
    k[1, 0, 0] = 0.0
    return k


BAD_INPUTS = [
    # (changes, exception, message pattern)
    (dict(image_src=lambda t: t[0]), ValueError, r"image_src must have shape \(B, C, H, W\)"),
    (dict(image_src=lambda t: t[:, :, :5]), ValueError, r"depth_dst must have shape \(2, 1, 5, 8\)"),
    (dict(depth_dst=lambda t: t.expand(2, 2, 6, 8)), ValueError, r"depth_dst must have shape \(2, 1, 6, 8\)"),
    (dict(depth_dst=lambda t: t[:1]), ValueError, r"depth_dst must have shape \(2, 1, 6, 8\), got \(1, 1, 6, 8\)"),
    (dict(src_trans_dst=lambda t: t[:, :3]), ValueError, r"src_trans_dst must have shape \(2, 4, 4\)"),
    (dict(camera_matrix=lambda t: t[:, :2]), ValueError, r"camera_matrix must have shape \(2, 3, 3\)"),
    (dict(camera_matrix=lambda t: t[0]), ValueError, r"camera_matrix must have shape \(2, 3, 3\)"),
    (dict(image_src=lambda t: (t * 255).to(torch.uint8)), TypeError, r"image_src must have dtype in"),
    (
        dict(depth_dst=lambda t: t.int()),
        TypeError,
        r"depth_dst must have dtype in \(float16, bfloat16, float32, float64",
    ),
    (dict(camera_matrix=lambda t: t.long()), TypeError, r"camera_matrix must have dtype in"),
    (dict(depth_dst=lambda t: t.to("meta")), ValueError, r"depth_dst is on meta but image_src is on cpu"),
    (dict(src_trans_dst=with_nan), ValueError, r"src_trans_dst must be finite"),
    (dict(camera_matrix=with_inf), ValueError, r"camera_matrix must be finite"),
    (dict(camera_matrix=zero_fx), ValueError, r"fx and fy .* must be non-zero"),
    (dict(depth_dst=[1.0, 2.0]), TypeError, r"depth_dst must be a torch.Tensor, got list"),
    (dict(image_src=lambda t: t[:, :0]), ValueError, r"image_src must have at least one channel"),
    (dict(normalize_points="False"), TypeError, r"normalize_points must be True or False, got 'False'"),
    (dict(normalize_points=1), TypeError, r"normalize_points must be True or False, got 1 \(int\)"),
]


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("changes,error,pattern", BAD_INPUTS, ids=lambda x: x if isinstance(x, str) else None)
def test_bad_input_raises(backend, changes, error, pattern):
    with pytest.raises(error, match=pattern):
        fastdepth.warp_frame_depth(**single_source_inputs(**changes), backend=backend)


def test_multi_source_shapes_must_agree():
    scene = warp_scene(2, 3, 3, 6, 8)
    with pytest.raises(ValueError, match=re.escape("src_trans_dst must have shape (2, 3, 4, 4), got (2, 2, 4, 4)")):
        fastdepth.warp(scene["image"], scene["depth"], scene["pose"][:, :2], scene["K"])


@pytest.mark.parametrize(
    "option,value,error,pattern",
    [
        ("padding_mode", "reflection", ValueError, r"padding_mode must be one of \('zeros', 'border'\)"),
        ("padding_mode", 0, ValueError, r"padding_mode must be one of"),
        ("align_corners", None, TypeError, r"align_corners must be True or False, got None"),
        ("align_corners", 1, TypeError, r"align_corners must be True or False, got 1"),
        ("return_mask", "yes", TypeError, r"return_mask must be True or False"),
        ("backend", "cudnn", ValueError, r"backend must be one of"),
    ],
)
@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_bad_options_raise(option, value, error, pattern, backend):
    arguments = {"backend": backend, **{option: value}}
    with pytest.raises(error, match=pattern):
        fastdepth.warp(**single_source_inputs(), **arguments)


def test_bad_backend_environment_variable(monkeypatch):
    monkeypatch.setenv("FASTDEPTH_BACKEND", "fast")
    with pytest.raises(ValueError, match=r"\$FASTDEPTH_BACKEND must be one of"):
        fastdepth.warp(**single_source_inputs())


def test_value_checks_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("FASTDEPTH_CHECK_VALUES", "0")
    out = fastdepth.warp(**single_source_inputs(src_trans_dst=with_nan), backend="torch")
    assert out.shape == (2, 3, 6, 8)


@pytest.mark.parametrize("backend,device", FLOAT32_ONLY)
def test_fused_backend_falls_back_to_the_reference_for_float64(backend, device, monkeypatch):
    from fastdepth import backends

    monkeypatch.setattr(backends, "_warned_float64", set())
    args = {k: v.double().to(device) if isinstance(v, torch.Tensor) else v for k, v in single_source_inputs().items()}
    with pytest.warns(UserWarning, match=rf"backend='{backend}' computes in float32 .* run on the reference"):
        out = fastdepth.warp(**args, backend=backend)
    assert out.dtype == torch.float64 and torch.equal(out, fastdepth.warp(**args, backend="torch"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per process
        fastdepth.warp(**args, backend=backend)


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match=r"needs TRITON_INTERPRET=1"):
        fastdepth.warp(**single_source_inputs(), backend="triton")


def test_cuda_backend_reports_a_missing_compiler(tmp_path):
    # a fresh process (nothing loaded yet) whose C++ compiler does not exist
    code = (
        "import torch, fastdepth\n"
        "try:\n"
        "    fastdepth.photometric_loss(torch.rand(1, 1, 3, 3), torch.rand(1, 1, 3, 3), backend='cuda')\n"
        "except RuntimeError as e:\n"
        "    print('ERROR', e)\n"
    )
    env = subprocess_env(CXX="/nonexistent/g++", TORCH_EXTENSIONS_DIR=str(tmp_path))
    env.pop("FASTDEPTH_BUILD_EXTENSION", None)  # no build on import
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "ERROR backend='cuda' is unavailable: C++ compiler '/nonexistent/g++' not found" in result.stdout


def test_extension_build_failure_is_reported(monkeypatch):
    from fastdepth import _cuda

    monkeypatch.setattr(_cuda, "_state", {"loaded": False, "cuda": False, "error": None})
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    with pytest.raises(_cuda.ExtensionUnavailable, match=r"C\+\+ compiler '/nonexistent/g\+\+' not found"):
        _cuda.load()
    assert "not found" in _cuda.state()["error"]


def test_cuda_build_names_a_cuda_home_without_the_toolkit(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    from fastdepth import _cuda

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(tmp_path))
    assert _cuda.cuda_build_reason() == f"CUDA_HOME={tmp_path} has no include/cuda_runtime_api.h " + (
        "(set CUDA_HOME to the CUDA toolkit's folder)"
    )
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "cuda_runtime_api.h").touch()
    assert _cuda.cuda_build_reason() is None
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", None)
    assert _cuda.cuda_build_reason() == "nvcc not found (set CUDA_HOME)"


def test_meta_tensors_give_shapes():
    args = {k: v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in single_source_inputs().items()}
    out, mask = fastdepth.warp(**args, return_mask=True, backend="torch")
    assert out.device.type == "meta" and out.shape == (2, 3, 6, 8) and mask.shape == (2, 1, 6, 8)


@pytest.mark.skipif("triton" not in BACKEND_NAMES, reason="needs the Triton interpreter")
def test_batch_beyond_one_launch_is_refused(monkeypatch):
    # expanded tensors: the sizes without the memory; 2**24 images of 128 x 128 need 2**31 blocks
    monkeypatch.setenv("FASTDEPTH_CHECK_VALUES", "0")
    scene = warp_scene(1, 1, 1, 128, 128)
    B = 2**24
    args = [scene[n].expand(B, *scene[n].shape[1:]) for n in ("image", "depth", "pose", "K")]
    with pytest.raises(ValueError, match=r"image_src is too large for one launch"):
        fastdepth.warp(*args, backend="triton")


@pytest.mark.skipif("cuda" not in BACKEND_NAMES, reason="needs the C++ extension")
@pytest.mark.parametrize(
    "change,pattern",
    [
        (lambda a: a.__setitem__(1, a[1][:, :, :3]), r"depth has shape \[2, 1, 3, 8\], expected \[2, 1, 6, 8\]"),
        (lambda a: a.__setitem__(2, a[2][:1]), r"pose has shape"),
        (lambda a: a.__setitem__(3, a[3][:, :2]), r"K has shape"),
        (lambda a: a.__setitem__(5, "reflection"), r"padding_mode must be 'zeros' or 'border'"),
    ],
)
def test_raw_extension_op_checks_what_it_reads(change, pattern):
    from fastdepth import _cuda

    scene = warp_scene(2, 1, 3, 6, 8)
    args = [scene["image"], scene["depth"], scene["pose"], scene["K"], False, "zeros", True, False]
    change(args)
    with pytest.raises(ValueError, match=pattern):
        _cuda.library().warp_forward(*args)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_all_finite_is_false_at_nan_and_either_infinity_only(dtype):
    big = torch.finfo(dtype).max
    values = torch.tensor([0.0, -0.0, 1e-30, -big, big], dtype=dtype)
    assert validation.all_finite(values).item() and validation.all_finite(values[:0]).item()
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert not validation.all_finite(torch.cat([values, torch.tensor([bad], dtype=dtype)])).item()
