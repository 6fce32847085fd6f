"""The self-supervised training loop: DepthNet + PoseNet, Monodepth2's objective on fastdepth (or
Kornia), AdamW, AMP on the GPU, a progress bar, TensorBoard, atomic checkpoints with exact resume,
DDP under ``torchrun`` (gloo on the CPU), seeds.

Data order is a function of (seed, step): every step's batch is fixed in advance, so a resumed run
sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from pathlib import Path

import torch
import torch.distributed as dist

from fastdepth import backends
from fastdepth.train import augment, evaluate, validate
from fastdepth.train.config import TrainConfig, resolve_device
from fastdepth.train.folders import ImageFolderSequences
from fastdepth.train.models import DepthNet, PoseNet
from fastdepth.train.objective import (
    BACKENDS,
    OBJECTIVES,
    SUPERVISED_LOSSES,
    compute_loss,
    predict_poses,
    supervised_loss,
    warp_sampling,
)
from fastdepth.train.synthetic import SyntheticWorld

CHECKPOINT = "checkpoint.pt"


class Distributed:
    """Rank, world size and device of this process (torchrun's environment, else one process)."""

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = resolve_device(device, local, self.world)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0


def build_dataset(cfg: TrainConfig):
    if cfg.data:
        return ImageFolderSequences(cfg.data, cfg.height, cfg.width, cfg.split)
    return SyntheticWorld(cfg.seed, cfg.scenes, cfg.frames, cfg.height, cfg.width)


def batch_indices(cfg: TrainConfig, length: int, step: int, world: int, rank: int) -> list[int]:
    """The dataset indices of this rank's share of global step ``step`` (a function of seed and step)."""
    per_step = cfg.batch_size * world
    if length < per_step:
        raise ValueError(f"the dataset has {length} samples, fewer than one global batch of {per_step}")
    steps_per_epoch = length // per_step
    epoch, position = divmod(step, steps_per_epoch)
    order = torch.randperm(length, generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch))
    start = position * per_step + rank * cfg.batch_size
    return order[start : start + cfg.batch_size].tolist()


def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


class StepBatches(torch.utils.data.Sampler):
    """This rank's batch at every step of ``steps``: (dataset index (batch_indices), augmentation
    seed (augment.sample_seed)) of each sample."""

    def __init__(self, cfg: TrainConfig, length: int, steps: range, world: int, rank: int):
        self.cfg, self.length, self.steps, self.world, self.rank = cfg, length, steps, world, rank

    def _batch(self, step: int) -> list[tuple[int, int]]:
        first_slot = self.rank * self.cfg.batch_size
        indices = batch_indices(self.cfg, self.length, step, self.world, self.rank)
        return [(i, augment.sample_seed(self.cfg.seed, step, first_slot + j)) for j, i in enumerate(indices)]

    def __iter__(self):
        return (self._batch(step) for step in self.steps)

    def __len__(self) -> int:
        return len(self.steps)


class TrainingSamples(torch.utils.data.Dataset):
    """A dataset's samples by (index, augmentation seed), augmented (augment.augmented) or not."""

    def __init__(self, dataset, augmenting: bool):
        self.dataset, self.augmenting = dataset, augmenting

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = item
        sample = self.dataset[index]
        return augment.augmented(sample, seed) if self.augmenting else sample


def data_workers(cfg: TrainConfig, device: torch.device, world: int) -> int:
    """--workers, or by default none on the CPU (the step needs every core) and on a GPU up to 8
    processes, leaving each training process a core of its own."""
    if cfg.workers is not None:
        return cfg.workers
    return 0 if device.type == "cpu" else max(0, min(8, (os.cpu_count() or 1) // world - 1))


def batches(dataset, cfg: TrainConfig, steps: range, env: Distributed) -> torch.utils.data.DataLoader:
    """This rank's batches at ``steps``, loaded by data_workers background processes (the same
    batches as in the main process: each is a function of the seed and its step)."""
    workers = data_workers(cfg, env.device, env.world) if len(steps) else 0
    return torch.utils.data.DataLoader(
        TrainingSamples(dataset, cfg.augment),
        batch_sampler=StepBatches(cfg, len(dataset), steps, env.world, env.rank),
        num_workers=workers,
        collate_fn=collate,
        pin_memory=env.device.type == "cuda",
        generator=torch.Generator(),  # the loader's seed draw leaves the global generator alone
        prefetch_factor=2 if workers else None,
    )


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    choice = cfg.amp if cfg.amp != "auto" else ("bf16" if device.type == "cuda" else "none")
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choice]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a crash leaves the previous checkpoint intact."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def unwrap(module):
    return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module


def replicas_equal(modules: list[torch.nn.Module]) -> bool:
    """Whether every rank holds the same parameters (compares a checksum of all of them)."""
    flat = torch.cat([p.detach().double().flatten() for m in modules for p in m.parameters()])
    weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device).remainder(97) + 1
    checksum = torch.stack([flat.sum(), (flat * weights).sum()])
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    return all(torch.equal(g, gathered[0]) for g in gathered)


class TensorBoard:
    """TensorBoard scalars and images when the tensorboard package is installed; a no-op otherwise."""

    def __init__(self, folder: Path, enabled: bool):
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(folder))
            except ImportError:
                print("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def depth(self, step: int, disp: torch.Tensor) -> None:
        if self.writer:
            d = disp[:4].detach().float().cpu()
            self.writer.add_images("disparity", d / d.amax((1, 2, 3), keepdim=True).clamp_min(1e-6), step)

    def close(self) -> None:
        if self.writer:
            self.writer.close()


#: what must not change for ``--resume`` to continue the same run, batch for batch
RUN_IDENTITY = (
    "seed", "batch_size", "height", "width", "data", "split", "scenes", "frames", "backend", "monodepth2_sampling",
    "supervised", "loss", "augment",
)  # fmt: skip


def check_same_run(saved: dict, cfg: TrainConfig) -> None:
    """Refuse to resume a run with options that would make it another run."""
    changed = [
        f"{name} {getattr(cfg, name)!r} (the run has {saved[name]!r})"
        for name in RUN_IDENTITY
        if name in saved and saved[name] != getattr(cfg, name)
    ]
    if changed:
        raise ValueError(
            "--resume continues the same run, but these options differ: " + ", ".join(changed)
            + "; pass the run's own values or train into another --out"
        )  # fmt: skip


def check_config(cfg: TrainConfig) -> None:
    """ValueError naming the option for values the loop cannot run with."""
    if cfg.backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {cfg.backend!r}")
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"--objective must be one of {OBJECTIVES}, got {cfg.objective!r}")
    if cfg.loss not in SUPERVISED_LOSSES:
        raise ValueError(f"--loss must be one of {SUPERVISED_LOSSES}, got {cfg.loss!r}")
    if cfg.supervised and cfg.data:
        raise ValueError("--supervised trains on the synthetic world's ground-truth depth; --data folders have none")
    if cfg.split and not cfg.data:
        raise ValueError("--split names KITTI raw frames: give the KITTI raw folder as --data")
    if cfg.val_split and not (cfg.val_data or cfg.data):
        raise ValueError("--val-split names KITTI raw frames: give the KITTI raw folder as --val-data or --data")
    if cfg.supervised and (cfg.val_data or cfg.val_split):
        raise ValueError("--supervised trains no pose network, so it has no photometric validation loss (--val-data)")
    for name, low in (("steps", 0), ("batch_size", 1), ("log_every", 1), ("checkpoint_every", 1),
                      ("eval_images", 1), ("scenes", 1), ("frames", 3), ("workers", 0), ("val_every", 0)):  # fmt: skip
        if getattr(cfg, name) is not None and getattr(cfg, name) < low:
            raise ValueError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(cfg, name)}")
    if cfg.val_every and not (cfg.val_data or cfg.val_split):
        raise ValueError("--val-every validates on held-out frames: give them as --val-data or --val-split")
    if not cfg.lr > 0:
        raise ValueError(f"--lr must be positive, got {cfg.lr}")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise ValueError(f"--out {cfg.out} is a file, not a run directory")


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train; returns a summary (losses per step, images/s, eval metrics before and after)."""
    check_config(cfg)
    env = Distributed(cfg.device)
    device = env.device
    if cfg.backend != "kornia":
        try:
            backends.resolve(cfg.backend, device, (torch.float32, torch.float32))
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"--backend {cfg.backend}: {error}") from error
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    depth_net, pose_net = DepthNet(cfg.pretrained).to(device), PoseNet(cfg.pretrained).to(device)
    optimizer = torch.optim.AdamW([*depth_net.parameters(), *pose_net.parameters()], lr=cfg.lr)
    amp = amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    start_step, history, val_curve = 0, [], []
    checkpoint = out / CHECKPOINT
    if cfg.resume and checkpoint.is_file():
        state = evaluate.read_checkpoint(checkpoint, device)
        check_same_run(state["config"], cfg)
        depth_net.load_state_dict(state["depth_net"])
        pose_net.load_state_dict(state["pose_net"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_step, history, val_curve = state["step"], state["history"], state.get("val_curve", [])
        torch.set_rng_state(state["rng"])
    elif cfg.resume:
        raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint}")
    if env.world > 1:
        ddp = lambda m: torch.nn.parallel.DistributedDataParallel(
            m, device_ids=[device] if device.type == "cuda" else None
        )
        depth_net, pose_net = ddp(depth_net), ddp(pose_net)
    dataset = build_dataset(cfg)
    sampling = warp_sampling(cfg.monodepth2_sampling)
    eval_samples = evaluate.eval_split(cfg.seed, cfg.height, cfg.width, cfg.eval_images) if env.main else []
    val_set = validate.validation_set(cfg) if env.main else None
    val_samples = validate.validation_samples(val_set, cfg.eval_images) if val_set is not None else []
    validation = lambda: validate.validate(unwrap(depth_net), unwrap(pose_net), val_samples, device, cfg)
    summary: dict = {"config": dataclasses.asdict(cfg), "device": str(device), "world_size": env.world}
    if val_samples:
        summary["val_images"] = len(val_samples)
    if env.main and start_step == 0:
        summary["metrics_before"] = evaluate.evaluate(unwrap(depth_net), eval_samples, device)
        if val_samples:
            summary["val_before"] = validation()
    board = TensorBoard(out / "tensorboard", enabled=env.main)

    def state_dict(step: int) -> dict:
        return {
            "step": step,
            "depth_net": unwrap(depth_net).state_dict(),
            "pose_net": unwrap(pose_net).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": torch.get_rng_state(),
            "history": history,
            "val_curve": val_curve,
            "config": dataclasses.asdict(cfg),
        }

    steps = range(start_step, cfg.steps)
    bar = None
    if progress and env.main:
        from tqdm import tqdm

        bar = tqdm(steps, desc=f"train ({cfg.backend} on {device})", unit="step")
    timed_images, timed_seconds = 0, 0.0
    loaded = iter(batches(dataset, cfg, steps, env))
    for step in steps:
        started = time.perf_counter()  # a step's time includes waiting for its batch
        batch = next(loaded)
        frames, K = batch["frames"].to(device), batch["K"].to(device)
        inputs = batch["frames_aug"].to(device) if "frames_aug" in batch else frames  # the networks'
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            disps = depth_net(inputs[:, 1])
            poses = None if cfg.supervised else predict_poses(pose_net, inputs)
        if cfg.supervised:
            loss = supervised_loss([d.float() for d in disps], batch["depth"].to(device), cfg.loss, cfg.backend)
            parts = {"supervised": loss.detach()}
        else:
            loss, parts = compute_loss(
                [d.float() for d in disps], poses.float(), frames, K, cfg.backend, sampling, cfg.objective
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - started
        if step > start_step:  # the first step warms up (allocations, compilation)
            timed_images += frames.shape[0] * env.world
            timed_seconds += elapsed
        history.append(loss.item())
        if env.main:
            rate = timed_images / timed_seconds if timed_seconds else 0.0
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{history[-1]:.4f}", img_s=f"{rate:.1f}")
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                board.scalars(
                    step, {"loss": history[-1], "images_per_s": rate, **{k: v.item() for k, v in parts.items()}}
                )
                board.depth(step, disps[0])
            if val_samples and cfg.val_every and (step + 1) % cfg.val_every == 0:
                values = validation()
                board.scalars(step + 1, {f"val_{k}": v for k, v in values.items()})
                val_curve.append({"step": step + 1, **values})
            if (step + 1) % cfg.checkpoint_every == 0:
                save_checkpoint(checkpoint, state_dict(step + 1))
    if bar is not None:
        bar.close()
    summary["losses"] = history
    if val_curve:
        summary["val_curve"] = val_curve
    summary["images_per_s"] = timed_images / timed_seconds if timed_seconds else None
    if env.world > 1:
        summary["replicas_equal"] = replicas_equal([unwrap(depth_net), unwrap(pose_net)])
    if env.main:
        save_checkpoint(checkpoint, state_dict(max(cfg.steps, start_step)))
        summary["metrics_after"] = evaluate.evaluate(unwrap(depth_net), eval_samples, device)
        if val_samples:
            summary["val_after"] = validation()
            board.scalars(max(cfg.steps, start_step), {f"val_{k}": v for k, v in summary["val_after"].items()})
        shown = val_samples or eval_samples
        summary["png"] = str(evaluate.write_png(unwrap(depth_net), shown, device, out / "eval.png"))
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    board.close()
    if env.world > 1:
        dist.barrier()
    return summary
