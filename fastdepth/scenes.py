"""Small random scenes for self-checks, tests and benchmarks (deterministic from a seed).

A scene is a dict of the warp's inputs: ``image`` (B, S, C, H, W), ``depth`` (B, 1, H, W),
``pose`` (B, S, 4, 4) rigid destination -> source transforms and ``K`` (B, 3, 3) with
Monodepth2's KITTI intrinsics scaled to the image size.
"""

from __future__ import annotations

import torch

#: Monodepth2's KITTI intrinsics, normalised by image width (fx, cx) and height (fy, cy).
KITTI_INTRINSICS = (0.58, 1.92, 0.5, 0.5)


def intrinsics(batch: int, height: int, width: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """(B, 3, 3) pinhole intrinsics: Monodepth2's KITTI K scaled to ``height`` x ``width``."""
    fx, fy, cx, cy = KITTI_INTRINSICS
    k = torch.tensor([[fx * width, 0.0, cx * width], [0.0, fy * height, cy * height], [0.0, 0.0, 1.0]])
    return k.to(dtype=dtype, device=device).expand(batch, 3, 3).clone()


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: (..., 3) axis-angle -> (..., 3, 3) rotation."""
    theta = axis_angle.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    k = axis_angle / theta
    kx, ky, kz = k.unbind(-1)
    zero = torch.zeros_like(kx)
    cross = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], dim=-1).reshape(*k.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    return eye + s * cross + (1 - c) * (cross @ cross)


def rigid_pose(axis_angle: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """(..., 4, 4) transform from (..., 3) axis-angle and (..., 3) translation."""
    pose = torch.zeros(*axis_angle.shape[:-1], 4, 4, dtype=axis_angle.dtype, device=axis_angle.device)
    pose[..., :3, :3] = axis_angle_to_matrix(axis_angle)
    pose[..., :3, 3] = translation
    pose[..., 3, 3] = 1.0
    return pose


def warp_scene(
    batch: int = 2,
    sources: int = 2,
    channels: int = 3,
    height: int = 12,
    width: int = 16,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    image_dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    rotation: float = 0.05,
    translation: float = 0.2,
    depth_range: tuple[float, float] = (1.0, 10.0),
) -> dict[str, torch.Tensor]:
    """A random warp problem: uniform images, depth in ``depth_range``, small random rigid motions."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = depth_range
    image = torch.rand(batch, sources, channels, height, width, generator=gen, dtype=torch.float64)
    depth = lo + (hi - lo) * torch.rand(batch, 1, height, width, generator=gen, dtype=torch.float64)
    aa = rotation * torch.randn(batch, sources, 3, generator=gen, dtype=torch.float64)
    t = translation * torch.randn(batch, sources, 3, generator=gen, dtype=torch.float64)
    scene = {
        "image": image.to(image_dtype or dtype),
        "depth": depth.to(dtype),
        "pose": rigid_pose(aa, t).to(dtype),
        "K": intrinsics(batch, height, width, dtype=dtype),
    }
    return {name: value.to(device) for name, value in scene.items()}


def natural_images(
    batch: int,
    channels: int,
    height: int,
    width: int,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    contrast: float = 1.0,
) -> torch.Tensor:
    """(B, C, H, W) images in [0, 1] with natural-image statistics: smooth shapes, edges and grain.

    ``contrast`` scales the deviation from mid-grey: small values give the low-contrast patches on
    which SSIM's ``E[x²] - E[x]²`` cancels in float32.
    """
    gen = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height, dtype=torch.float64).view(1, 1, height, 1)
    xs = torch.linspace(0, 1, width, dtype=torch.float64).view(1, 1, 1, width)
    image = torch.zeros(batch, channels, height, width, dtype=torch.float64)
    for _ in range(4):
        fy, fx = 1 + 6 * torch.rand(2, generator=gen, dtype=torch.float64)
        phase = 6.3 * torch.rand(batch, channels, 1, 1, generator=gen, dtype=torch.float64)
        image += 0.15 * torch.sin(6.3 * (fy * ys + fx * xs) + phase)
    edges = (torch.rand(batch, 1, 1, 1, generator=gen, dtype=torch.float64) * 0.8 + 0.1) < xs
    image += 0.2 * edges
    image += 0.03 * torch.randn(batch, channels, height, width, generator=gen, dtype=torch.float64)
    image = 0.5 + contrast * (image - image.mean())
    return image.clamp(0, 1).to(dtype=dtype, device=device)


def _behind_camera(scene: dict) -> None:
    """Half a turn about y, 3 units forward: the nearer points land behind the source camera."""
    scene["pose"][..., :3, :3].copy_(torch.diag(torch.tensor([-1.0, 1.0, -1.0])))
    scene["pose"][..., 2, 3] = 3.0


def _z_undivided(scene: dict) -> None:
    """z = 0 in the source under a projective last row, w divided: Kornia leaves z undivided and
    projects qx / w, qy / w, which the x and y rows, scaled down, keep inside the image."""
    pose = scene["pose"]
    pose[..., :2, :] *= 0.05
    pose[..., 2, :] = 0.0
    pose[..., 3, :] = torch.tensor([0.01, -0.02, 0.03, 1.0], dtype=pose.dtype)


def _nan_depth(scene: dict) -> None:
    scene["depth"][0, 0, 2, 3] = float("nan")
    scene["depth"][-1, 0, -1, -1] = float("inf")


#: Named edge cases of a warp scene (each changes the scene in place), shared by the tests of the
#: reference against Kornia, of the fused kernels against the reference, and the GPU campaign.
WARP_EDGE_CASES = {
    "behind_camera": _behind_camera,
    # a large sideways motion: most projections leave the image
    "off_image": lambda s: s["pose"][..., 0, 3].fill_(6.0),
    # the identity: every projection lands exactly on a pixel centre, edges included
    "on_border": lambda s: s["pose"].copy_(torch.eye(4)),
    # X = 0: every such pixel projects the source camera's translation
    "depth_zero": lambda s: s["depth"][:, :, ::2].fill_(0.0),
    "negative_depth": lambda s: s["depth"][:, :, 1::2].mul_(-1),
    # w of the homogeneous point at the divide threshold: Kornia leaves it undivided
    "w_near_zero": lambda s: s["pose"][..., 3, :].copy_(torch.tensor([0.0, 0.0, 0.0, 1e-9])),
    "z_undivided": _z_undivided,
    "nan_depth": _nan_depth,
}
