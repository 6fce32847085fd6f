"""Monodepth2's augmentation (fastdepth train --augment): a flip is the mirrored scene (the warp of the
flipped sample is the flipped warp), the jitter reaches the networks' inputs only, both are drawn
half the time from the sample's seed, and a run with them resumes batch for batch."""

import pytest
import torch

from fastdepth.reference.warp import warp
from fastdepth.train.augment import augmented, flipped, jittered, sample_seed
from fastdepth.train.loop import TrainConfig, train
from fastdepth.train.synthetic import SyntheticWorld


@pytest.fixture(scope="module")
def sample():
    world = SyntheticWorld(seed=3, scenes=1, frames=4, height=64, width=96)
    item = world[1]
    item["K"] = item["K"].clone()
    item["K"][0, 2] += 7.5  # off centre, as a real camera's: the flip must mirror cx about (W - 1) / 2
    return item


def warped_target(item):
    """The previous and next frames warped into the target with the sample's depth, poses and K."""
    sources, depth = item["frames"][[0, 2]][None].double(), item["depth"][None].double()
    return warp(sources, depth, item["poses"][None].double(), item["K"][None].double(), False, "zeros", True, False)[0]


def test_the_warp_of_a_flipped_sample_is_the_flipped_warp(sample):
    mirrored = warped_target(flipped(sample))
    assert torch.allclose(mirrored, warped_target(sample).flip(-1), atol=1e-9)
    wrong_cx = dict(flipped(sample), K=sample["K"])  # flipped without mirroring cx: another image
    assert (warped_target(wrong_cx) - warped_target(sample).flip(-1)).abs().max() > 0.05


def test_the_jitter_reaches_the_networks_inputs_only(sample):
    seeds = range(200)
    outcomes = [augmented(sample, seed) for seed in seeds]
    flips = [torch.equal(out["frames"], sample["frames"].flip(-1)) for out in outcomes]
    jitters = [not torch.equal(out["frames_aug"], out["frames"]) for out in outcomes]
    assert 70 <= sum(flips) <= 130 and 70 <= sum(jitters) <= 130  # each half the time
    for out, flip in zip(outcomes, flips, strict=True):
        assert flip or torch.equal(out["frames"], sample["frames"])  # the loss's frames: flipped at most
    # one jitter for the three frames: three equal frames stay equal
    same = sample["frames"][1].expand(3, -1, -1, -1)
    jittered_same = jittered(same, torch.Generator().manual_seed(0))
    assert not torch.equal(jittered_same, same) and torch.equal(jittered_same[0], jittered_same[2])
    # a function of the seed
    assert torch.equal(augmented(sample, 5)["frames_aug"], augmented(sample, 5)["frames_aug"])


def test_sample_seeds_differ_by_run_step_and_slot():
    seeds = {sample_seed(run, step, slot) for run in range(3) for step in range(50) for slot in range(16)}
    assert len(seeds) == 3 * 50 * 16


def test_an_augmented_run_resumes_batch_for_batch(tmp_path):
    tiny = dict(height=64, width=64, batch_size=2, eval_images=2, checkpoint_every=1000, device="cpu", augment=True)
    whole = train(TrainConfig(steps=4, out=str(tmp_path / "whole"), **tiny), progress=False)["losses"]
    train(TrainConfig(steps=2, out=str(tmp_path / "split"), **tiny), progress=False)
    resumed = train(TrainConfig(steps=4, out=str(tmp_path / "split"), resume=True, **tiny), progress=False)["losses"]
    assert resumed == pytest.approx(whole, rel=1e-5)
    plain = train(TrainConfig(steps=2, out=str(tmp_path / "plain"), **{**tiny, "augment": False}), progress=False)
    assert plain["losses"] != pytest.approx(whole[:2], rel=1e-5)


def test_each_rank_draws_its_own_samples_augmentations():
    from fastdepth.train.loop import StepBatches

    cfg = TrainConfig(batch_size=3, seed=1)
    seeds = [{seed for batch in StepBatches(cfg, 60, range(4), 2, rank) for _, seed in batch} for rank in (0, 1)]
    assert len(seeds[0]) == len(seeds[1]) == 4 * 3 and not seeds[0] & seeds[1]
