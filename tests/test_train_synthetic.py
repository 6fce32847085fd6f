"""The synthetic world's frame batches (what the benchmarks warp) and Monodepth2's disparity <-> depth."""

import pytest
import torch

import fastdepth
from fastdepth.train.objective import depth_to_disp, disp_to_depth
from fastdepth.train.synthetic import SyntheticWorld, frame_batch


def test_frame_batch_holds_the_worlds_triplets():
    frames = frame_batch(2, 64, 64, seed=1)
    assert frames["target"].shape == (2, 3, 64, 64) and frames["sources"].shape == (2, 2, 3, 64, 64)
    assert frames["depth"].shape == (2, 1, 64, 64) and frames["poses"].shape == (2, 2, 4, 4)
    assert frames["K"].shape == (2, 3, 3)
    item = SyntheticWorld(seed=1, scenes=2, frames=3, height=64, width=64)[1]  # scene 1, target frame 1
    torch.testing.assert_close(frames["target"][1], item["frames"][1], rtol=0, atol=0)
    torch.testing.assert_close(frames["sources"][1], item["frames"][0::2], rtol=0, atol=0)
    torch.testing.assert_close(frames["depth"][1], item["depth"], rtol=0, atol=0)
    torch.testing.assert_close(frames["poses"][1], item["poses"], rtol=0, atol=0)


def test_frame_batch_sources_warp_onto_the_target_with_the_true_depth_and_poses():
    frames = frame_batch(2, 48, 160)  # not a DepthNet size: the benchmarks' quick size is none either
    warped, valid = fastdepth.warp(
        frames["sources"], frames["depth"], frames["poses"], frames["K"], return_mask=True, backend="torch"
    )
    target = frames["target"][:, None].expand_as(warped)
    valid = valid.expand_as(warped)
    assert valid.float().mean() > 0.9
    warped_error = (warped - target).abs()[valid].mean()
    identity_error = (frames["sources"] - target).abs().mean()
    # with the poses inverted the warped error is 1.5x the identity error
    assert warped_error < 0.5 * identity_error, (warped_error, identity_error)


def test_frame_batch_rejects_an_empty_batch_and_a_size_below_two():
    with pytest.raises(ValueError, match="batch must be at least 1"):
        frame_batch(0, 8, 8)
    with pytest.raises(ValueError, match="at least 2"):
        frame_batch(1, 1, 8)


def test_depth_to_disp_inverts_disp_to_depth():
    disp = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(depth_to_disp(disp_to_depth(disp)), disp)
    assert depth_to_disp(torch.tensor([100.0, 0.1], dtype=torch.float64)).tolist() == pytest.approx([0.0, 1.0])


def test_the_eval_split_holds_as_many_images_as_asked():
    # odd counts included: 1 image once gave none (and the eval PNG of 0 rows failed)
    from fastdepth.train.evaluate import eval_split

    for images in (1, 2, 3, 5, 8):
        samples = eval_split(0, 64, 64, images)
        assert len(samples) == images and all("depth" in s for s in samples)
    assert eval_split(0, 64, 64, 4)[1]["frames"].equal(eval_split(0, 64, 64, 4)[1]["frames"])  # deterministic
