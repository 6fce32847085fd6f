"""The README's ``compute_losses`` for Monodepth2's trainer: the same losses and gradients as
Monodepth2's ``generate_images_pred`` followed by its ``compute_losses`` (default options),
transcribed here from Monodepth2's trainer.py and layers.py without the identity losses' random
noise, and dividing by z (Monodepth2: z + 1e-7; ``eps=0`` below)."""

import re
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fastdepth.benchmarks import monodepth2

from fastdepth.scenes import natural_images
from fastdepth.train.objective import transformation_from_parameters

README = Path(__file__).resolve().parents[1] / "README.md"
B, H, W = 2, 32, 64
FRAME_IDS = [0, -1, 1]
SCALES = [0, 1, 2, 3]


def disp_to_depth(disp, min_depth, max_depth):
    min_disp, max_disp = 1 / max_depth, 1 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return scaled_disp, 1 / scaled_disp


def get_smooth_loss(disp, img):
    grad_disp_x = torch.abs(disp[:, :, :, :-1] - disp[:, :, :, 1:])
    grad_disp_y = torch.abs(disp[:, :, :-1, :] - disp[:, :, 1:, :])
    grad_img_x = torch.mean(torch.abs(img[:, :, :, :-1] - img[:, :, :, 1:]), 1, keepdim=True)
    grad_img_y = torch.mean(torch.abs(img[:, :, :-1, :] - img[:, :, 1:, :]), 1, keepdim=True)
    grad_disp_x = grad_disp_x * torch.exp(-grad_img_x)
    grad_disp_y = grad_disp_y * torch.exp(-grad_img_y)
    return grad_disp_x.mean() + grad_disp_y.mean()


def readme_compute_losses(monkeypatch):
    block = re.search(r"<!-- monodepth2-trainer -->\s*```python\n(.+?)\n```", README.read_text(), re.S)
    assert block, "README.md has no Python block after <!-- monodepth2-trainer -->"
    layers = types.ModuleType("layers")
    layers.disp_to_depth, layers.get_smooth_loss = disp_to_depth, get_smooth_loss
    monkeypatch.setitem(sys.modules, "layers", layers)
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    return namespace["compute_losses"]


def monodepth2_losses(self, inputs, outputs):
    """Monodepth2's generate_images_pred then compute_losses, default options."""
    backproject = monodepth2.BackprojectDepth(B, H, W, "cpu", inputs[("K", 0)].dtype)
    project = monodepth2.Project3D(H, W, eps=0)
    for scale in self.opt.scales:
        disp = F.interpolate(outputs[("disp", scale)], [H, W], mode="bilinear", align_corners=False)
        _, depth = disp_to_depth(disp, self.opt.min_depth, self.opt.max_depth)
        outputs[("depth", 0, scale)] = depth
        for frame_id in self.opt.frame_ids[1:]:
            cam_points = backproject(depth, inputs[("inv_K", 0)])
            pix_coords = project(cam_points, inputs[("K", 0)], outputs[("cam_T_cam", 0, frame_id)])
            outputs[("color", frame_id, scale)] = F.grid_sample(
                inputs[("color", frame_id, 0)], pix_coords, padding_mode="border", align_corners=False
            )
    losses, total_loss = {}, 0
    target = inputs[("color", 0, 0)]
    for scale in self.opt.scales:
        frames = self.opt.frame_ids[1:]
        warped = [outputs[("color", f, scale)] for f in frames]
        reprojection = torch.cat([monodepth2.reprojection_loss(pred, target) for pred in warped], 1)
        identity = torch.cat([monodepth2.reprojection_loss(inputs[("color", f, 0)], target) for f in frames], 1)
        to_optimise, idxs = torch.min(torch.cat((identity, reprojection), 1), dim=1)
        outputs[f"identity_selection/{scale}"] = (idxs > identity.shape[1] - 1).float()
        disp = outputs[("disp", scale)]
        norm_disp = disp / (disp.mean(2, True).mean(3, True) + 1e-7)
        smooth_loss = get_smooth_loss(norm_disp, inputs[("color", 0, scale)])
        loss = to_optimise.mean() + self.opt.disparity_smoothness * smooth_loss / (2**scale)
        total_loss += loss
        losses[f"loss/{scale}"] = loss
    losses["loss"] = total_loss / self.num_scales
    return losses


def batch(dtype):
    """Monodepth2's inputs (colours at 4 scales, K and inv_K at scale 0) and the networks' outputs
    (disparities at 4 scales; poses from axis-angle and translation leaves)."""
    generator = torch.Generator().manual_seed(0)
    inputs = {}
    for i, f in enumerate(FRAME_IDS):
        image = natural_images(B, 3, H, W, seed=i).to(dtype)
        for s in SCALES:
            inputs[("color", f, s)] = F.interpolate(image, scale_factor=0.5**s, mode="area") if s else image
    K = torch.tensor([[0.58 * W, 0, 0.5 * W, 0], [0, 1.92 * H, 0.5 * H, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=dtype)
    inputs[("K", 0)] = K.expand(B, 4, 4).contiguous()
    inputs[("inv_K", 0)] = torch.linalg.inv(inputs[("K", 0)])
    disps = [torch.rand(B, 1, H >> s, W >> s, generator=generator, dtype=dtype) * 0.3 + 0.05 for s in SCALES]
    motion = (torch.randn(2, B, 6, generator=generator, dtype=dtype) * 0.03).requires_grad_(True)
    return inputs, [d.requires_grad_(True) for d in disps], motion


def outputs_of(disps, motion):
    outputs = {("disp", s): d for s, d in zip(SCALES, disps, strict=True)}
    for i, f in enumerate(FRAME_IDS[1:]):  # Monodepth2 inverts the pose to the frame before
        outputs[("cam_T_cam", 0, f)] = transformation_from_parameters(motion[i, :, :3], motion[i, :, 3:], f < 0)
    return outputs


@pytest.mark.parametrize(
    "dtype,backend,rtol", [(torch.float64, "torch", 1e-9), (torch.float64, "cuda", 1e-9), (torch.float32, "cuda", 2e-4)]
)
def test_readme_compute_losses_is_monodepth2s(dtype, backend, rtol, monkeypatch):
    monkeypatch.setenv("FASTDEPTH_BACKEND", backend)
    opt = types.SimpleNamespace(
        frame_ids=FRAME_IDS, scales=SCALES, height=H, width=W, min_depth=0.1, max_depth=100.0, disparity_smoothness=1e-3
    )
    trainer = types.SimpleNamespace(opt=opt, num_scales=len(SCALES))
    inputs, disps, motion = batch(dtype)
    theirs_out, ours_out = outputs_of(disps, motion), outputs_of(disps, motion)
    theirs = monodepth2_losses(trainer, inputs, theirs_out)
    ours = readme_compute_losses(monkeypatch)(trainer, inputs, ours_out)
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert torch.allclose(ours[name], theirs[name], rtol=rtol, atol=0), name
    for scale in SCALES:
        assert torch.equal(ours_out[("depth", 0, scale)], theirs_out[("depth", 0, scale)])
        selection = f"identity_selection/{scale}"
        assert (ours_out[selection] != theirs_out[selection]).float().mean() < 1e-3
        assert 0.05 < theirs_out[selection].mean() < 0.95  # both identity and warped sources win
    grads_theirs = torch.autograd.grad(theirs["loss"], [*disps, motion])
    grads_ours = torch.autograd.grad(ours["loss"], [*disps, motion])
    for got, expected in zip(grads_ours, grads_theirs, strict=True):
        scale = expected.abs().max()
        assert (got - expected).abs().max() <= 50 * rtol * scale
