"""For one batch, the objective and its gradients w.r.t. every network parameter agree between
the Kornia backend and fastdepth's backends."""

import pytest
import torch
from conftest import TRITON_DEVICES, TWIN

from fastdepth.train.models import DepthNet, PoseNet
from fastdepth.train.objective import compute_loss, predict_poses
from fastdepth.train.synthetic import SyntheticWorld


def batch(height, width, size, dtype):
    world = SyntheticWorld(seed=3, scenes=1, frames=size + 2, height=height, width=width)
    items = [world[i] for i in range(size)]
    return torch.stack([s["frames"] for s in items]).to(dtype), torch.stack([s["K"] for s in items]).to(dtype)


def loss_and_grads(backend, dtype, height=64, width=64, size=2, objective="fused"):
    torch.manual_seed(0)
    depth_net, pose_net = DepthNet().to(dtype), PoseNet().to(dtype)
    frames, K = batch(height, width, size, dtype)
    disps = depth_net(frames[:, 1])
    poses = predict_poses(pose_net, frames)
    loss, _ = compute_loss(disps, poses, frames, K, backend, objective=objective)
    params = [*depth_net.parameters(), *pose_net.parameters()]
    return loss, torch.autograd.grad(loss, params)


def worst_relative(grads_a, grads_b):
    scale = max(g.abs().max().item() for g in grads_b)
    return max((a - b).abs().max().item() for a, b in zip(grads_a, grads_b, strict=True)) / scale


@pytest.fixture(scope="module")
def kornia64():
    return loss_and_grads("kornia", torch.float64)


@pytest.fixture(scope="module")
def kornia32():
    return loss_and_grads("kornia", torch.float32)


@pytest.mark.parametrize("objective", ["fused", "composed"])
def test_torch_backend_float64(kornia64, objective):
    loss, grads = loss_and_grads("torch", torch.float64, objective=objective)
    assert abs(loss.item() - kornia64[0].item()) <= 1e-9 * abs(kornia64[0].item())
    assert worst_relative(grads, kornia64[1]) <= 1e-9


@pytest.mark.skipif(not TWIN, reason="the C++ extension cannot be built here")
@pytest.mark.parametrize("objective", ["fused", "composed"])
def test_cpu_twin_float64(kornia64, objective):
    # the fused objective and the composed one give the same loss and gradients over all network
    # parameters (both against Kornia's composition, float64)
    loss, grads = loss_and_grads("cuda", torch.float64, objective=objective)
    assert abs(loss.item() - kornia64[0].item()) <= 1e-9 * abs(kornia64[0].item())
    assert worst_relative(grads, kornia64[1]) <= 1e-9


@pytest.mark.parametrize("backend", ["torch"] + (["cuda"] if TWIN else []))
def test_float32(backend, kornia32):
    # measured: loss <= 1e-7 relative, gradients <= 2e-5 relative
    loss, grads = loss_and_grads(backend, torch.float32)
    assert abs(loss.item() - kornia32[0].item()) <= 1e-4 * abs(kornia32[0].item())
    assert worst_relative(grads, kornia32[1]) <= 1e-4


@pytest.mark.skipif("cpu" not in TRITON_DEVICES, reason="Triton's interpreter is not enabled")
def test_triton_interpreter_tiny_batch(monkeypatch):
    # one 64x64 tile per image: the interpreter's cost is per program, and the kernels' tiling is
    # covered by the op tests at their real tile size
    from fastdepth.kernels import photometric

    monkeypatch.setattr(photometric, "BH", 64)
    monkeypatch.setattr(photometric, "BW", 64)
    kornia = loss_and_grads("kornia", torch.float64, size=1)
    loss, grads = loss_and_grads("triton", torch.float32, size=1)
    assert abs(loss.item() - kornia[0].item()) <= 1e-4 * abs(kornia[0].item())
    # one 64x64 image: float32 flips the winner of a near-tie at a pixel or two, which moves the pose
    # decoder's bias gradient by about 1e-4 of the largest (seen: 1.3e-4 on an AMD EPYC, where the
    # networks' convolutions round differently than on the Intel machines that gave 2e-5)
    assert worst_relative(grads, [g.float() for g in kornia[1]]) <= 5e-4


def test_smoothness_is_monodepth2s(seed):
    # Monodepth2's trainer, written out: each scale's disparity divided by its mean, get_smooth_loss
    # against the target resized to that scale, weighted 1e-3 / 2**scale; the loss averages the scales
    def get_smooth_loss(disp, img):
        grad_disp_x = torch.abs(disp[:, :, :, :-1] - disp[:, :, :, 1:])
        grad_disp_y = torch.abs(disp[:, :, :-1, :] - disp[:, :, 1:, :])
        grad_img_x = torch.mean(torch.abs(img[:, :, :, :-1] - img[:, :, :, 1:]), 1, keepdim=True)
        grad_img_y = torch.mean(torch.abs(img[:, :, :-1, :] - img[:, :, 1:, :]), 1, keepdim=True)
        return (grad_disp_x * torch.exp(-grad_img_x)).mean() + (grad_disp_y * torch.exp(-grad_img_y)).mean()

    frames, K = batch(64, 96, 2, torch.float64)
    disps = [torch.rand(2, 1, 64 // 2**s, 96 // 2**s, dtype=torch.float64) for s in range(4)]
    poses = torch.eye(4, dtype=torch.float64).repeat(2, 2, 1, 1)
    _, parts = compute_loss(disps, poses, frames, K, "torch")
    expected = 0.0
    for scale, disp in enumerate(disps):
        color = torch.nn.functional.interpolate(frames[:, 1], disp.shape[-2:], mode="bilinear", align_corners=False)
        expected += 1e-3 * get_smooth_loss(disp / (disp.mean(2, True).mean(3, True) + 1e-7), color) / 2**scale
    assert parts["smoothness"].item() == pytest.approx(expected.item() / 4, rel=1e-12)


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        loss_and_grads("jax", torch.float32, size=1)


@pytest.mark.skipif(not TWIN, reason="the C++ extension cannot be built here")
@pytest.mark.parametrize("loss", ["si", "ssi"])
def test_supervised_objective_on_the_twin_float64(loss):
    # the fused supervised losses give the reference's loss and gradients over all DepthNet parameters
    from fastdepth.train.objective import supervised_loss

    world = SyntheticWorld(seed=3, scenes=1, frames=4, height=64, width=64)
    items = [world[i] for i in range(2)]
    frames = torch.stack([s["frames"] for s in items]).double()
    depth_gt = torch.stack([s["depth"] for s in items]).double()
    results = []
    for backend in ("torch", "cuda"):
        torch.manual_seed(0)
        depth_net = DepthNet().double()
        value = supervised_loss(depth_net(frames[:, 1]), depth_gt, loss, backend)
        results.append((value, torch.autograd.grad(value, list(depth_net.parameters()))))
    (ref, ref_grads), (ours, our_grads) = results
    assert abs(ours.item() - ref.item()) <= 1e-9 * abs(ref.item())
    assert worst_relative(our_grads, ref_grads) <= 1e-9
