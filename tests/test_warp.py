"""The fused warp kernels against the reference: forward, backward, edge cases, determinism,
opcheck and torch.compile. Triton runs under TRITON_INTERPRET=1 on CPU tensors without a GPU."""

import pytest
import torch
from conftest import ALL, FUSED
from helpers import grads, leaves, max_abs, max_rel, non_contiguous

import fastdepth
from fastdepth.checks.warp import near_mask_edge
from fastdepth.compare import assert_close
from fastdepth.scenes import WARP_EDGE_CASES, warp_scene
from fastdepth.tolerances import tolerance

NAMES = ("image", "depth", "pose", "K")


def fused_vs_reference(scene, backend, device, **options):
    """Outputs, masks and gradients of the fused op and of the float64 reference on the same inputs."""
    tensors = [scene[n].to(device) for n in NAMES]
    ours_in = leaves(*tensors)
    ref_in = leaves(*tensors, dtype=torch.float64)
    out, mask = fastdepth.warp(*ours_in, **options, return_mask=True, backend=backend)
    ref, ref_mask = fastdepth.warp(*ref_in, **options, return_mask=True, backend="torch")
    g = torch.randn(out.shape, dtype=torch.float64, device=device).to(out.dtype)
    near_edge = near_mask_edge(*ref_in[1:], options.get("normalize_points", False), options.get("align_corners", True))
    # float32 rounding may put a sample that lies exactly on the image edge on either side of it
    mask_ok = torch.equal(mask | near_edge, ref_mask | near_edge)
    return out, ref, mask_ok, grads(out, ours_in, g), grads(ref, ref_in, g)


OPTIONS = [
    dict(padding_mode="zeros", align_corners=True, normalize_points=False),
    dict(padding_mode="zeros", align_corners=True, normalize_points=True),
    dict(padding_mode="border", align_corners=False, normalize_points=False),
    dict(padding_mode="border", align_corners=True, normalize_points=True),
    dict(padding_mode="zeros", align_corners=False, normalize_points=False),
]
SHAPES = [(2, 2, 3, 9, 13), (1, 1, 1, 5, 6), (2, 1, 5, 1, 7), (1, 3, 2, 6, 1), (2, 2, 3, 16, 40)]


def check_against_reference(result, tol, unchecked=()):
    out, ref, mask_ok, g_ours, g_ref = result
    assert out.dtype == torch.float32
    assert_close(out, ref, abs_tol=tol.forward, name="warped")
    assert mask_ok
    for name, a, b in zip(NAMES, g_ours, g_ref, strict=True):
        assert a.shape == b.shape, name
        if name not in unchecked:
            assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name=f"grad {name}")


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{v}" for v in o.values()))
def test_float32_matches_reference(backend, device, shape, options, seed):
    scene = warp_scene(*shape, seed=seed, rotation=0.1, translation=0.5)
    tol = tolerance("warp", torch.float32, backend, device)
    check_against_reference(fused_vs_reference(scene, backend, device, **options), tol)


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("image_dtype", [torch.float16, torch.bfloat16])
def test_half_images_match_reference(backend, device, image_dtype, seed):
    scene = warp_scene(2, 2, 3, 10, 12, seed=seed, image_dtype=image_dtype, translation=0.5)
    result = fused_vs_reference(scene, backend, device, padding_mode="border", align_corners=False)
    out, ref = result[0], result[1]
    assert out.dtype == image_dtype and result[3][0].dtype == image_dtype
    tol = tolerance("warp", image_dtype, backend, device)
    assert_close(out, ref, abs_tol=tol.forward, name="warped")
    for name, a, b in zip(NAMES, result[3], result[4], strict=True):
        # image gradients are rounded to the image dtype; the rest are float32
        bound = tol.forward if name == "image" else tolerance("warp", torch.float32, backend, device).gradient
        assert_close(a, b, rel_tol=bound, name=f"grad {name}")


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("case", list(WARP_EDGE_CASES))
@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_edge_cases_match_reference(backend, device, case, padding_mode, seed):
    scene = warp_scene(2, 2, 3, 8, 10, seed=seed)
    WARP_EDGE_CASES[case](scene)
    result = fused_vs_reference(scene, backend, device, padding_mode=padding_mode)
    # Exactly on pixel centres bilinear sampling has a kink: float32 rounding picks the one-sided
    # derivative from either side, so the pose gradient is not comparable there (depth and K
    # gradients are analytically zero for the identity pose and still are compared).
    tol = tolerance("warp", torch.float32, backend, device)
    check_against_reference(result, tol, unchecked=("pose",) if case == "on_border" else ())


@pytest.mark.parametrize("backend,device", FUSED)
def test_border_padding_has_no_position_gradient_on_the_image_edge(backend, device, seed):
    # grid_sample's border clip counts the edges as outside: a sample exactly on the first or last
    # column or row has no gradient to its position. Exact positions (H - 1 and W - 1 powers of 2):
    # the identity pose, depth 2, fx = fy = 1 and cx = cy = 0 sample every pixel at its own centre
    scene = warp_scene(1, 2, 2, 5, 9, seed=seed)
    scene["pose"].copy_(torch.eye(4))
    scene["depth"].fill_(2.0)
    scene["K"].copy_(torch.eye(3))
    result = fused_vs_reference(scene, backend, device, padding_mode="border")
    check_against_reference(result, tolerance("warp", torch.float32, backend, device))
    assert result[3][2][..., 0, 3].abs().max() > 0  # the translation's gradient, from the inner pixels


@pytest.mark.parametrize("backend,device", FUSED)
def test_gradients_keep_their_precision_far_beyond_the_translation(backend, device, seed):
    # depth 1e4 to 1e5, translations of 0.3: the depth gradient along the ray cancels there (Kornia's
    # float32 error: 3e-3); where z is divided the projection ignores w, so the pose's last row is 0
    scene = warp_scene(1, 2, 3, 8, 12, seed=seed, translation=0.3)
    scene["depth"] = scene["depth"] * 1e4
    result = fused_vs_reference(scene, backend, device)
    check_against_reference(result, tolerance("warp", torch.float32, backend, device))
    assert torch.all(result[3][2][..., 3, :] == 0)


@pytest.mark.parametrize("backend,device", FUSED)
def test_non_contiguous_inputs(backend, device, seed):
    scene = warp_scene(2, 2, 3, 7, 9, seed=seed)
    scene = {k: non_contiguous(v) for k, v in scene.items()}
    check_against_reference(
        fused_vs_reference(scene, backend, device), tolerance("warp", torch.float32, backend, device)
    )


@pytest.mark.parametrize("backend,device", ALL)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_non_finite_depth_is_zero_and_contained(backend, device, bad, padding_mode, seed):
    scene = warp_scene(2, 2, 3, 8, 10, seed=seed, device=device)
    bad_pixels = torch.zeros_like(scene["depth"], dtype=torch.bool)
    bad_pixels[0, 0, 2, 3] = bad_pixels[1, 0, 0, 0] = bad_pixels[1, 0, 7, 9] = True
    scene["depth"][bad_pixels] = bad
    inputs = leaves(*(scene[n] for n in NAMES))
    out, mask = fastdepth.warp(*inputs, padding_mode=padding_mode, return_mask=True, backend=backend)
    chosen = bad_pixels[:, None].expand_as(out)
    assert torch.all(out[chosen] == 0) and torch.isfinite(out).all()
    assert not mask[bad_pixels[:, None].expand_as(mask)].any()
    gradients = grads(out, inputs, torch.randn_like(out))
    for name, g in zip(NAMES, gradients, strict=True):
        assert torch.isfinite(g).all(), name
    assert torch.all(gradients[1][bad_pixels] == 0)


@pytest.mark.parametrize("backend,device", FUSED)
def test_deterministic_backward_is_bitwise_equal_over_ten_runs(backend, device, seed):
    # many destination pixels sample the same source pixels: the image gradient's scatter collides
    scene = warp_scene(2, 2, 3, 24, 32, seed=seed, device=device, translation=0.5, depth_range=(5.0, 30.0))
    inputs = leaves(*(scene[n] for n in NAMES))
    g = torch.randn(scene["image"].shape, device=device)
    runs = [grads(fastdepth.warp(*inputs, backend=backend, deterministic=True), inputs, g) for _ in range(10)]
    for run in runs[1:]:
        for name, a, b in zip(NAMES, run, runs[0], strict=True):
            assert torch.equal(a, b), name
    # as accurate as the float atomics: the sums are exact, each contribution rounded as float32
    reference = leaves(*(scene[n] for n in NAMES), dtype=torch.float64)
    expected = grads(fastdepth.warp(*reference, backend="torch"), reference, g.double())
    tol = tolerance("warp", torch.float32, backend, device)
    for name, a, b in zip(NAMES, runs[0], expected, strict=True):
        assert_close(a, b, rel_tol=tol.gradient, floor=tol.gradient_floor, name=f"grad {name}")


@pytest.mark.parametrize("backend,device", FUSED)
def test_deterministic_algorithms_select_the_fixed_point_scatter(backend, device, seed):
    scene = warp_scene(1, 2, 3, 8, 10, seed=seed, device=device, translation=0.5)
    inputs = leaves(*(scene[n] for n in NAMES))
    chosen = grads(fastdepth.warp(*inputs, backend=backend, deterministic=True), inputs, torch.ones_like(inputs[0]))
    torch.use_deterministic_algorithms(True)
    try:
        default = grads(fastdepth.warp(*inputs, backend=backend), inputs, torch.ones_like(inputs[0]))
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(a, b) for a, b in zip(default, chosen, strict=True))


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_deterministic_scatter_with_a_non_finite_gradient_is_nan(backend, device, bad, seed):
    scene = warp_scene(1, 1, 1, 4, 5, seed=seed, device=device)
    inputs = leaves(*(scene[n] for n in NAMES))
    g = torch.ones_like(inputs[0])
    g[0, 0, 0, 1, 1] = bad
    (g_image,) = torch.autograd.grad(fastdepth.warp(*inputs, backend=backend, deterministic=True), inputs[:1], g)
    assert torch.isnan(g_image).all()


@pytest.mark.parametrize("backend,device", FUSED)
def test_deterministic_scatter_of_a_zero_gradient_is_zero(backend, device, seed):
    # nothing to scatter: the scale is its largest, every sum exactly 0
    scene = warp_scene(1, 1, 2, 4, 5, seed=seed, device=device)
    inputs = leaves(*(scene[n] for n in NAMES))
    out = fastdepth.warp(*inputs, backend=backend, deterministic=True)
    (g_image,) = torch.autograd.grad(out, inputs[:1], torch.zeros_like(out))
    assert torch.equal(g_image, torch.zeros_like(g_image))


@pytest.mark.parametrize("backend,device", FUSED)
def test_backward_is_deterministic(backend, device, seed):
    scene = warp_scene(2, 2, 3, 24, 32, seed=seed, device=device, translation=0.5)
    inputs = leaves(*(scene[n] for n in NAMES))
    out = fastdepth.warp(*inputs, backend=backend)
    g = torch.randn_like(out)
    first = grads(out, inputs, g)
    second = grads(fastdepth.warp(*inputs, backend=backend), inputs, g)
    for name, a, b in zip(NAMES[1:], first[1:], second[1:], strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize(
    "wanted", [(True, False, False, False), (False, True, True, False), (False, False, False, True)]
)
def test_only_requested_gradients(backend, device, wanted, seed):
    scene = warp_scene(1, 2, 3, 6, 8, seed=seed, device=device)
    inputs = [scene[n].clone().requires_grad_(w) for n, w in zip(NAMES, wanted, strict=True)]
    ref_inputs = leaves(*(scene[n] for n in NAMES), dtype=torch.float64)
    out = fastdepth.warp(*inputs, backend=backend)
    g = torch.randn_like(out)
    ours = torch.autograd.grad(out, [t for t in inputs if t.requires_grad], g)
    ref = grads(fastdepth.warp(*ref_inputs, backend="torch"), ref_inputs, g.double())
    tol = tolerance("warp", torch.float32, backend, device)
    for a, b in zip(ours, [r for r, w in zip(ref, wanted, strict=True) if w], strict=True):
        assert_close(a, b, rel_tol=tol.gradient, name="gradient")


@pytest.mark.parametrize("backend,device", FUSED)
def test_warp_frame_depth_single_source(backend, device, seed):
    scene = warp_scene(2, 1, 3, 7, 9, seed=seed, device=device)
    image, depth, pose, K = scene["image"][:, 0], scene["depth"], scene["pose"][:, 0], scene["K"]
    out = fastdepth.warp_frame_depth(image, depth, pose, K, backend=backend)
    out_mask = fastdepth.warp(image, depth, pose, K, return_mask=True, backend=backend)
    ref = fastdepth.warp_frame_depth(image, depth, pose, K, backend="torch")
    assert out.shape == image.shape
    assert_close(out, ref, abs_tol=tolerance("warp", torch.float32, backend, device).forward, name="warped")
    assert out_mask[1].shape == depth.shape and out_mask[1].dtype == torch.bool


@pytest.mark.parametrize("backend,device", ALL)
def test_empty_batch(backend, device):
    scene = warp_scene(0, 2, 3, 5, 6, device=device)
    inputs = leaves(*(scene[n] for n in NAMES))
    out, mask = fastdepth.warp(*inputs, return_mask=True, backend=backend)
    assert out.shape == (0, 2, 3, 5, 6) and mask.shape == (0, 2, 1, 5, 6)
    out.sum().backward()
    assert inputs[1].grad.shape == inputs[1].shape


@pytest.mark.parametrize("backend,device", ALL)
def test_no_source_gives_zero_gradients(backend, device):
    scene = warp_scene(2, 0, 3, 5, 6, device=device)
    inputs = leaves(*(scene[n] for n in NAMES))
    out, mask = fastdepth.warp(*inputs, return_mask=True, backend=backend)
    assert out.shape == (2, 0, 3, 5, 6) and mask.shape == (2, 0, 1, 5, 6)
    for name, g in zip(NAMES, grads(out, inputs, torch.ones_like(out)), strict=True):
        assert torch.equal(g, torch.zeros_like(g)), name


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize("want_mask,deterministic", [(False, False), (True, True)])
def test_opcheck(backend, device, want_mask, deterministic, seed):
    scene = warp_scene(1, 2, 2, 5, 6, seed=seed, device=device)
    args = leaves(*(scene[n] for n in NAMES))
    options = (False, "border", False, want_mask, deterministic, backend)
    torch.library.opcheck(torch.ops.fastdepth.warp.default, (*args, *options))
    grad_out = torch.randn_like(scene["image"])
    torch.library.opcheck(
        torch.ops.fastdepth.warp_backward.default,
        (grad_out, *[a.detach() for a in args], True, "zeros", True, [True, False, True, True], deterministic, backend),
    )


@pytest.mark.parametrize("backend,device", FUSED)
def test_torch_compile_fullgraph(backend, device, seed):
    scene = warp_scene(1, 2, 3, 6, 8, seed=seed, device=device)

    def step(image, depth, pose, K):
        warped = fastdepth.warp(image, depth, pose, K, padding_mode="border", align_corners=False, backend=backend)
        return (warped - image).abs().mean()

    eager_in = leaves(*(scene[n] for n in NAMES))
    compiled_in = leaves(*(scene[n] for n in NAMES))
    eager = step(*eager_in)
    compiled = torch.compile(step, fullgraph=True)(*compiled_in)
    eager.backward()
    compiled.backward()
    assert max_abs(compiled, eager) <= 1e-6
    for a, b in zip(compiled_in, eager_in, strict=True):
        assert max_rel(a.grad, b.grad) <= 1e-5


@pytest.mark.parametrize("backend,device", ALL)
def test_autocast_does_not_reach_inside(backend, device, seed):
    scene = warp_scene(1, 2, 3, 6, 8, seed=seed, device=device)
    args = [scene[n] for n in NAMES]
    expected = fastdepth.warp(*args, backend=backend)
    with torch.autocast(device, dtype=torch.bfloat16):
        under = fastdepth.warp(*args, backend=backend)
    assert under.dtype == torch.float32 and torch.equal(under, expected)
