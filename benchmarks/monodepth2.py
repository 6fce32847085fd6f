"""Monodepth2-style eager PyTorch, the peer fastdepth replaces, written from Monodepth2's formulas
(its layers.py); the tests check the reference against it.

``BackprojectDepth -> Project3D -> grid_sample`` for the warp, the SSIM layer with five
``AvgPool2d(3, 1)`` on ``ReflectionPad2d(1)`` inputs for the loss, and the per-pixel minimum
reprojection with identity auto-masking (Monodepth2 adds 1e-5 noise to the identity losses to
break ties; the benchmark does too).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class BackprojectDepth(nn.Module):
    """Depth (B, 1, H, W) and inv_K (B, 4, 4) -> homogeneous camera points (B, 4, H*W)."""

    def __init__(self, batch: int, height: int, width: int, device, dtype=torch.float32):
        super().__init__()
        ys, xs = torch.meshgrid(
            torch.arange(height, dtype=dtype, device=device),
            torch.arange(width, dtype=dtype, device=device),
            indexing="ij",
        )
        ones = torch.ones(height * width, dtype=dtype, device=device)
        self.pix_coords = torch.stack([xs.reshape(-1), ys.reshape(-1), ones], 0).expand(batch, 3, -1).contiguous()
        self.ones = torch.ones(batch, 1, height * width, dtype=dtype, device=device)

    def forward(self, depth: torch.Tensor, inv_K: torch.Tensor) -> torch.Tensor:
        cam_points = torch.matmul(inv_K[:, :3, :3], self.pix_coords)
        cam_points = depth.view(depth.shape[0], 1, -1) * cam_points
        return torch.cat([cam_points, self.ones], 1)


class Project3D(nn.Module):
    """Camera points (B, 4, H*W), K (B, 4, 4), T (B, 4, 4) -> grid (B, H, W, 2) in [-1, 1]."""

    def __init__(self, height: int, width: int, eps: float = 1e-7):
        super().__init__()
        self.height, self.width, self.eps = height, width, eps

    def forward(self, points: torch.Tensor, K: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        P = torch.matmul(K, T)[:, :3, :]
        cam_points = torch.matmul(P, points)
        pix_coords = cam_points[:, :2, :] / (cam_points[:, 2, :].unsqueeze(1) + self.eps)
        pix_coords = pix_coords.view(-1, 2, self.height, self.width).permute(0, 2, 3, 1)
        pix_coords = pix_coords / torch.tensor(
            [self.width - 1, self.height - 1], dtype=points.dtype, device=points.device
        )
        return (pix_coords - 0.5) * 2


class SSIM(nn.Module):
    """Monodepth2's SSIM loss layer."""

    def __init__(self):
        super().__init__()
        self.mu_x_pool = nn.AvgPool2d(3, 1)
        self.mu_y_pool = nn.AvgPool2d(3, 1)
        self.sig_x_pool = nn.AvgPool2d(3, 1)
        self.sig_y_pool = nn.AvgPool2d(3, 1)
        self.sig_xy_pool = nn.AvgPool2d(3, 1)
        self.refl = nn.ReflectionPad2d(1)
        self.C1 = 0.01**2
        self.C2 = 0.03**2

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.refl(x)
        y = self.refl(y)
        mu_x = self.mu_x_pool(x)
        mu_y = self.mu_y_pool(y)
        sigma_x = self.sig_x_pool(x**2) - mu_x**2
        sigma_y = self.sig_y_pool(y**2) - mu_y**2
        sigma_xy = self.sig_xy_pool(x * y) - mu_x * mu_y
        SSIM_n = (2 * mu_x * mu_y + self.C1) * (2 * sigma_xy + self.C2)
        SSIM_d = (mu_x**2 + mu_y**2 + self.C1) * (sigma_x + sigma_y + self.C2)
        return torch.clamp((1 - SSIM_n / SSIM_d) / 2, 0, 1)


_ssim = SSIM()


def reprojection_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.85) -> torch.Tensor:
    """Monodepth2's compute_reprojection_loss: (B, 1, H, W)."""
    l1_loss = torch.abs(target - pred).mean(1, True)
    ssim_loss = _ssim(pred, target).mean(1, True)
    return alpha * ssim_loss + (1 - alpha) * l1_loss


def to_4x4(K: torch.Tensor) -> torch.Tensor:
    K4 = torch.eye(4, dtype=K.dtype, device=K.device).repeat(K.shape[0], 1, 1)
    K4[:, :3, :3] = K
    return K4


class Warper:
    """Monodepth2's warp for fixed (B, H, W): image (B, C, H, W), depth, T (B, 4, 4), K (B, 3, 3).

    ``eps`` is Monodepth2's ``z + 1e-7`` (0 divides by z exactly, Kornia's rule away from z = 0).
    """

    def __init__(self, batch: int, height: int, width: int, device, dtype=torch.float32, eps: float = 1e-7):
        self.backproject = BackprojectDepth(batch, height, width, device, dtype)
        self.project = Project3D(height, width, eps)

    def __call__(self, image, depth, T, K):
        K4 = to_4x4(K)
        points = self.backproject(depth, torch.linalg.inv(K4))
        grid = self.project(points, K4, T)
        return F.grid_sample(image, grid.to(image.dtype), padding_mode="border", align_corners=False)
