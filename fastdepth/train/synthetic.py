"""A synthetic world rendered by ray casting: the default training data, no download needed.

Each scene is a corridor: a textured ground plane, two side walls, a far wall and boxes standing on
the ground, with procedural textures anchored in world coordinates (so that they are consistent
between frames, as photometric training needs). A camera drives down the corridor with a gentle
sway and yaw. Everything is deterministic from the seed. Camera convention: x right, y down,
z forward (OpenCV); the intrinsics are Monodepth2's KITTI ones scaled to the image size.

A sample is a frame triplet (previous, target, next) with the intrinsics, the ground-truth depth of
the target and the ground-truth destination -> source poses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fastdepth.scenes import intrinsics, rigid_pose

CAMERA_HEIGHT = 1.5
HALF_WIDTH = 4.0
FAR_WALL = 60.0
MAX_DEPTH = 100.0


@dataclass
class Box:
    lo: torch.Tensor  # (3,) world min corner
    hi: torch.Tensor  # (3,) world max corner


class Scene:
    """One corridor scene with its boxes, texture parameters and camera path."""

    def __init__(self, seed: int, frames: int):
        gen = torch.Generator().manual_seed(seed)
        rand = lambda *shape: torch.rand(*shape, generator=gen, dtype=torch.float64)
        self.boxes = []
        for _ in range(8):
            x = (rand(1) * 2 - 1) * (HALF_WIDTH - 1.0)
            z = 6 + rand(1) * 40
            size = 0.4 + rand(3) * torch.tensor([1.2, 1.6, 1.2], dtype=torch.float64)
            lo = torch.cat([x - size[0] / 2, CAMERA_HEIGHT - size[1:2], z - size[2] / 2])
            self.boxes.append(Box(lo, lo + torch.cat([size[:1], size[1:2], size[2:]])))
        self.frequencies = 0.5 + 1.5 * rand(6, 3)  # per surface: texture frequencies (per metre)
        self.colors = 0.25 + 0.6 * rand(6, 3)  # per surface: base colour
        self.phase = 6.3 * rand(6)
        self.speed = 0.25 + 0.15 * rand(1).item()  # metres per frame
        self.sway = 0.5 * rand(1).item()
        self.frames = frames

    def camera_to_world(self, frame: int) -> torch.Tensor:
        """(4, 4) camera -> world transform of a frame: forward motion, lateral sway, gentle yaw."""
        t = frame * self.speed
        x = self.sway * math.sin(0.15 * frame)
        yaw = 0.04 * math.sin(0.1 * frame)
        aa = torch.tensor([0.0, yaw, 0.0], dtype=torch.float64)
        return rigid_pose(aa, torch.tensor([x, 0.0, t], dtype=torch.float64))

    def texture(self, surface: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """RGB (N, 3) of world points on the given surfaces: smooth bands and checkers."""
        f = self.frequencies[surface]  # (N, 3)
        u = (points * f).sum(-1, keepdim=True)
        v = (points * f.flip(-1)).sum(-1, keepdim=True)
        cells = torch.floor(points * 0.8).sum(-1, keepdim=True) % 2
        shade = 0.55 + 0.2 * torch.sin(u + self.phase[surface, None]) + 0.1 * torch.cos(0.7 * v) + 0.15 * cells
        return (self.colors[surface] * shade).clamp(0, 1)

    def render(self, frame: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (3, H, W) in [0, 1], depth (1, H, W)): the camera z of the nearest hit."""
        K = intrinsics(1, height, width, dtype=torch.float64)[0]
        ys, xs = torch.meshgrid(
            torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
        )
        rays = torch.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], torch.ones_like(xs)], -1).reshape(-1, 3)
        c2w = self.camera_to_world(frame)
        dirs = rays @ c2w[:3, :3].T  # world directions, z-component 1 in camera space
        origin = c2w[:3, 3]
        t_best = torch.full((rays.shape[0],), float("inf"), dtype=torch.float64)
        surface = torch.zeros(rays.shape[0], dtype=torch.long)
        planes = ((1, CAMERA_HEIGHT, 0), (0, -HALF_WIDTH, 1), (0, HALF_WIDTH, 2), (2, FAR_WALL + origin[2].item(), 3))
        for axis, value, sid in planes:  # ground, left wall, right wall, far wall (moves with the camera)
            d = dirs[:, axis]
            t = (value - origin[axis]) / torch.where(d.abs() > 1e-12, d, torch.full_like(d, 1e-12))
            hit = (t > 1e-6) & (t < t_best)
            t_best = torch.where(hit, t, t_best)
            surface = torch.where(hit, torch.full_like(surface, sid), surface)
        for i, box in enumerate(self.boxes):  # slab test
            inv = 1.0 / torch.where(dirs.abs() > 1e-12, dirs, torch.full_like(dirs, 1e-12))
            t0 = (box.lo - origin) * inv
            t1 = (box.hi - origin) * inv
            t_near = torch.minimum(t0, t1).amax(-1)
            t_far = torch.maximum(t0, t1).amin(-1)
            hit = (t_near <= t_far) & (t_near > 1e-6) & (t_near < t_best)
            t_best = torch.where(hit, t_near, t_best)
            surface = torch.where(hit, torch.full_like(surface, 4 + i % 2), surface)
        points = origin + t_best[:, None] * dirs
        color = self.texture(surface, points)
        # the ray's camera z is 1 per unit t, so the depth is t itself
        depth = t_best.clamp(max=MAX_DEPTH)
        image = color.T.reshape(3, height, width).float()
        return image, depth.reshape(1, height, width).float()


def check_size(height: int, width: int) -> None:
    """DepthNet needs multiples of 32, and at least 64 (its deepest features must be 2 pixels wide)."""
    if height % 32 or width % 32 or height < 64 or width < 64:
        raise ValueError(f"height and width must be multiples of 32 and at least 64, got {height}x{width}")


class SyntheticWorld(torch.utils.data.Dataset):
    """Frame triplets from ``scenes`` corridor scenes of ``frames`` frames each, rendered on demand.

    Items: ``frames`` (3, 3, H, W) previous/target/next in [0, 1], ``K`` (3, 3), ``depth`` (1, H, W)
    ground truth of the target, ``poses`` (2, 4, 4) ground-truth target -> previous/next transforms.
    Renders are cached in memory.
    """

    def __init__(self, seed: int = 0, scenes: int = 8, frames: int = 24, height: int = 64, width: int = 192):
        check_size(height, width)
        self.scenes = [Scene(seed * 1000 + s, frames) for s in range(scenes)]
        self.frames, self.height, self.width = frames, height, width
        self._cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.scenes) * (self.frames - 2)

    def _render(self, scene: int, frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (scene, frame)
        if key not in self._cache:
            self._cache[key] = self.scenes[scene].render(frame, self.height, self.width)
        return self._cache[key]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        scene, offset = divmod(index, self.frames - 2)
        return _triplet(self.scenes[scene], offset + 1, self.height, self.width, lambda f: self._render(scene, f))


def _triplet(scene: Scene, target: int, height: int, width: int, render) -> dict[str, torch.Tensor]:
    """The frames target - 1, target, target + 1 of a scene (``render(frame)``: its image and
    depth), as SyntheticWorld's items."""
    rendered = [render(f) for f in (target - 1, target, target + 1)]
    target_to_world = scene.camera_to_world(target)
    poses = [torch.linalg.inv(scene.camera_to_world(f)) @ target_to_world for f in (target - 1, target + 1)]
    return {
        "frames": torch.stack([image for image, _ in rendered]),
        "K": intrinsics(1, height, width)[0],
        "depth": rendered[1][1],
        "poses": torch.stack(poses).float(),
    }


def frame_batch(batch: int, height: int, width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of the world's frame triplets at any size (H, W >= 2; no DepthNet constraint), one
    scene per batch element, as a training step sees them: what the benchmarks warp.

    Returns (float32, CPU): ``target`` (B, 3, H, W), ``sources`` (B, 2, 3, H, W) the previous and
    next frames, ``depth`` (B, 1, H, W) the target's ground truth, ``poses`` (B, 2, 4, 4) target ->
    source, ``K`` (B, 3, 3).
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if height < 2 or width < 2:
        raise ValueError(f"height and width must be at least 2, got {height}x{width}")
    items = []
    for b in range(batch):
        scene = Scene(seed * 1000 + b, frames=3)
        items.append(_triplet(scene, 1, height, width, lambda f, scene=scene: scene.render(f, height, width)))
    frames = torch.stack([item["frames"] for item in items])
    return {
        "target": frames[:, 1].contiguous(),
        "sources": frames[:, 0::2].contiguous(),
        "depth": torch.stack([item["depth"] for item in items]),
        "poses": torch.stack([item["poses"] for item in items]),
        "K": torch.stack([item["K"] for item in items]),
    }
