"""``fastdepth eval --predictions``: depth maps in .npy, .pfm and 16-bit .png, aligned per image;
a prediction off by a known scale and shift (in depth or in inverse depth) scores perfectly with the
right alignment and badly without it."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from fastdepth.cli import main
from fastdepth.train.metrics import depth_errors
from fastdepth.train.predictions import crop_mask, evaluate_predictions, read_depth, write_pfm


def ground_truth(seed):
    gen = np.random.default_rng(seed)
    depth = 2.0 + 30.0 * gen.random((24, 32))
    depth[0, :5] = 0.0  # invalid pixels
    return depth.astype(np.float32)


def write(path, depth, fmt):
    if fmt == "npy":
        np.save(path.with_suffix(".npy"), depth)
    elif fmt == "pfm":
        write_pfm(path.with_suffix(".pfm"), depth)
    else:
        Image.fromarray(np.round(depth * 256).astype(np.uint16)).save(path.with_suffix(".png"))


def evaluate(capsys, tmp_path, align):
    code = main(["eval", "--predictions", str(tmp_path / "pred"), "--ground-truth", str(tmp_path / "gt"),
                 "--align", align, "--json"])  # fmt: skip
    assert code == 0
    (line,) = [text for text in capsys.readouterr().out.splitlines() if text.startswith("{")]
    return json.loads(line)


RELATIONS = {
    # alignment: (prediction from the ground truth, the alignment that recovers it)
    "median": lambda gt: 2.5 * gt,
    "scale-shift": lambda gt: (gt - 3.0) / 2.0,
    "scale-shift-inverse": lambda gt: np.where(gt > 0, (1.0 / np.maximum(gt, 1e-6) - 0.01) / 4.0, 0.0),
}


@pytest.mark.parametrize("align", list(RELATIONS))
@pytest.mark.parametrize("fmt", ["npy", "pfm"])
def test_the_right_alignment_recovers_perfect_metrics(align, fmt, tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    for i in range(3):
        gt = ground_truth(i)
        write(tmp_path / "gt" / f"frame{i}", gt, "png")
        write(tmp_path / "pred" / f"frame{i}", RELATIONS[align](gt.astype(np.float64)).astype(np.float32), fmt)
    right = evaluate(capsys, tmp_path, align)
    assert right["images"] == 3 and right["abs_rel"] < 2e-3 and right["a1"] == 1.0
    wrong = evaluate(capsys, tmp_path, "none")
    assert wrong["abs_rel"] > 0.2
    assert (tmp_path / "pred-worst.png").is_file()


def test_formats_read_the_same_depth(tmp_path):
    depth = ground_truth(0)
    for fmt in ("npy", "pfm", "png"):
        write(tmp_path / "d", depth, fmt)
    npy, pfm, png = (read_depth(tmp_path / f"d.{fmt}") for fmt in ("npy", "pfm", "png"))
    assert torch.equal(npy, pfm) and torch.allclose(png, npy, atol=1 / 512)


@pytest.mark.parametrize(
    "setup,pattern",
    [
        (lambda p: (p / "pred" / "a.txt").write_text("1"), r"holds no .npy, .pfm, .png file"),
        (lambda p: np.save(p / "pred" / "b.npy", np.ones((4, 4))), r"no ground truth for 1 prediction"),
        (lambda p: (p / "pred" / "c.pfm").write_bytes(b"PF\n2 2\n-1\n"), r"cannot read depth map .*c\.pfm"),
    ],
)
def test_bad_prediction_folders(setup, pattern, tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    np.save(tmp_path / "gt" / "c.npy", np.ones((2, 2)))
    setup(tmp_path)
    code = main(["eval", "--predictions", str(tmp_path / "pred"), "--ground-truth", str(tmp_path / "gt")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(pattern, err), err


def _folder_metrics(tmp_path, pred, gt, **options):
    """The mean metrics of one image (H x W lists), through the folders ``fastdepth eval`` reads."""
    for name, depth in (("pred", pred), ("gt", gt)):
        (tmp_path / name).mkdir(parents=True)
        np.save(tmp_path / name / "frame.npy", np.asarray(depth, dtype=np.float32))
    means, _ = evaluate_predictions(tmp_path / "pred", tmp_path / "gt", **options)
    return means


def test_median_alignment_takes_numpys_median(tmp_path):
    # an even count of valid pixels: np.median averages the middle two, a ratio of 5 / 3 (not 4 / 2)
    means = _folder_metrics(tmp_path, [[1.0, 2.0], [4.0, 10.0]], [[2.0, 4.0], [6.0, 8.0]], alignment="median")
    expected = depth_errors(torch.tensor([2.0, 4.0, 6.0, 8.0]), torch.tensor([1.0, 2.0, 4.0, 10.0]) * 5 / 3)
    assert means["abs_rel"] == pytest.approx(expected["abs_rel"])


def test_ground_truth_beyond_the_range_is_left_out_and_predictions_clamped(tmp_path):
    # metric depth as it is: ground truth of 100 is beyond max_depth 80 (left out), the prediction of
    # 1000 at a valid pixel counts as 80: abs_rel = |10 - 80| / 10 over the 3 valid pixels
    gt = [[10.0, 10.0], [10.0, 100.0]]
    means = _folder_metrics(tmp_path / "none", [[10.0, 10.0], [1000.0, 10.0]], gt, alignment="none")
    assert means["abs_rel"] == pytest.approx(7.0 / 3)
    # nor does it reach the alignment: the median ratio 10 / 1 of the valid pixels gives 10, 10, 30
    # (with it, 10 / 2 would give 5, 5, 15: abs_rel 0.5)
    means = _folder_metrics(tmp_path / "median", [[1.0, 1.0], [3.0, 50.0]], gt, alignment="median")
    assert means["abs_rel"] == pytest.approx(2.0 / 3)


@pytest.mark.parametrize("align", ["median", "none"])
def test_predictions_that_are_no_depths_are_left_out(align, tmp_path):
    # where depth is taken as it is (relative or metric), a prediction <= 0 is no depth: the pixel
    # counts as the ground truth's invalid pixels do
    gt, pred = [[2.0, 3.0, 4.0], [5.0, 6.0, 7.0]], [[2.0, -1.0, 6.0], [5.0, 9.0, 7.0]]
    with_bad = _folder_metrics(tmp_path / "a", pred, gt, alignment=align)
    gt[0][1], pred[0][1] = 0.0, 7.0
    assert with_bad == pytest.approx(_folder_metrics(tmp_path / "b", pred, gt, alignment=align))


def test_png_depth_takes_its_scale(tmp_path):
    Image.fromarray(np.array([[1000, 2500], [0, 500]], dtype=np.uint16)).save(tmp_path / "d.png")
    assert read_depth(tmp_path / "d.png", png_scale=1000.0).tolist() == [[1.0, 2.5], [0.0, 0.5]]


def test_garg_and_eigen_crops_are_kittis_fractions_truncated():
    # KITTI's 375 x 1242 ground truth: Garg's crop keeps rows [153, 371) and columns [44, 1197),
    # Eigen's rows [124, 342) and the same columns (the fractions times the size, truncated)
    for crop, rows, cols in (("garg", (153, 371), (44, 1197)), ("eigen", (124, 342), (44, 1197))):
        mask = crop_mask(375, 1242, crop)
        kept_rows, kept_cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
        assert (kept_rows[0].item(), kept_rows[-1].item() + 1) == rows
        assert (kept_cols[0].item(), kept_cols[-1].item() + 1) == cols
        assert mask.sum() == (rows[1] - rows[0]) * (cols[1] - cols[0])
    assert crop_mask(375, 1242, "none").all()
    with pytest.raises(ValueError, match="--crop must be one of"):
        crop_mask(375, 1242, "kitti")


@pytest.mark.parametrize("crop", ["garg", "eigen"])
def test_a_crop_leaves_out_what_lies_outside_it(crop, tmp_path):
    gt = 2.0 + 30.0 * np.random.default_rng(0).random((75, 120))
    pred = gt.copy()
    outside = ~crop_mask(75, 120, crop).numpy()
    pred[outside] *= 3.0  # wrong only outside the crop
    assert _folder_metrics(tmp_path / crop, pred, gt, alignment="none", crop=crop)["abs_rel"] < 1e-6
    assert _folder_metrics(tmp_path / "none", pred, gt, alignment="none")["abs_rel"] > 0.1


def test_resize_is_bilinear_with_pixel_centres_as_cv2_and_pil(tmp_path):
    # Monodepth2 resizes its predictions to the ground truth with cv2.resize (bilinear, pixel centres
    # at half-integers); upsampling, PIL's bilinear filter computes the same values
    gen = np.random.default_rng(1)
    pred = (1.0 + gen.random((12, 20))).astype(np.float32)
    gt = (1.0 + gen.random((30, 48))).astype(np.float32)
    expected = np.asarray(Image.fromarray(pred).resize((48, 30), Image.BILINEAR), dtype=np.float64)
    means = _folder_metrics(tmp_path / "resized", pred, gt, alignment="none", resize=True)
    direct = _folder_metrics(tmp_path / "direct", expected, gt, alignment="none")
    assert means == pytest.approx(direct, rel=1e-5)


def test_a_prediction_of_another_size_needs_resize(tmp_path):
    with pytest.raises(ValueError, match=r"is \(12, 20\) but .* is \(30, 48\).*--resize"):
        _folder_metrics(tmp_path, np.ones((12, 20)), np.ones((30, 48)), alignment="none")


def test_the_command_line_crops_and_resizes(tmp_path, capsys):
    # a prediction at half KITTI's size, right inside Garg's crop and wrong outside it
    gt = np.full((376, 1242), 10.0, dtype=np.float32)
    gt[crop_mask(376, 1242, "garg").numpy()] = 20.0
    pred = np.full((188, 621), 40.0, dtype=np.float32)
    pred[crop_mask(188, 621, "garg").numpy()] = 20.0
    for name, depth in (("pred", pred), ("gt", gt)):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "0000000005.npy", depth)
    code = main(["eval", "--predictions", str(tmp_path / "pred"), "--ground-truth", str(tmp_path / "gt"),
                 "--align", "none", "--crop", "garg", "--resize", "--json"])  # fmt: skip
    assert code == 0
    (line,) = [text for text in capsys.readouterr().out.splitlines() if text.startswith("{")]
    metrics = json.loads(line)
    assert metrics["crop"] == "garg" and metrics["a1"] > 0.99
    assert main(["eval", "--predictions", str(tmp_path / "pred"), "--ground-truth", str(tmp_path / "gt")]) == 2
    assert "--resize resizes it" in capsys.readouterr().err


def monodepth2_eval(disps, gt_depths, min_depth=1e-3, max_depth=80.0):
    """Monodepth2's evaluate_depth.py for its Eigen split, transcribed with NumPy: each disparity
    resized to its ground truth (PIL's bilinear filter computes cv2.resize's values when it enlarges),
    inverted, Garg's crop, median scaling, the clamp, compute_errors averaged over images."""
    errors = []
    for disp, gt in zip(disps, gt_depths, strict=True):
        h, w = gt.shape
        depth = 1 / np.asarray(Image.fromarray(disp).resize((w, h), Image.BILINEAR), dtype=np.float32)
        crop = np.array([0.40810811 * h, 0.99189189 * h, 0.03594771 * w, 0.96405229 * w]).astype(np.int32)
        crop_mask = np.zeros(gt.shape)
        crop_mask[crop[0] : crop[1], crop[2] : crop[3]] = 1
        mask = np.logical_and(np.logical_and(gt > min_depth, gt < max_depth), crop_mask)
        p, g = depth[mask], gt[mask]
        p = np.clip(p * np.median(g) / np.median(p), min_depth, max_depth)
        thresh = np.maximum(g / p, p / g)
        errors.append([
            np.mean(np.abs(g - p) / g), np.mean((g - p) ** 2 / g), np.sqrt(np.mean((g - p) ** 2)),
            np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2)),
            (thresh < 1.25).mean(), (thresh < 1.25**2).mean(), (thresh < 1.25**3).mean(),
        ])  # fmt: skip
    return dict(zip(["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"], np.mean(errors, 0), strict=True))


def scene_depth(h, w):
    """A smooth scene's depth at the pixel centres of an h x w image: far at the top, near below."""
    v, u = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    return (4.0 + 50.0 * (1.0 - v) ** 2 + 3.0 * np.sin(12.0 * u)).astype(np.float32)


def test_monodepth2s_files_give_monodepth2s_numbers(tmp_path, capsys):
    # its saved disparities (N x 1 x h x w, of a scale its own) and gt_depths.npz (KITTI's sizes
    # differ from drive to drive: an object array), sparse as lidar
    gen = np.random.default_rng(3)
    gt_depths, disps = [], []
    for h, w in ((75, 248), (74, 245), (75, 248)):
        gt = scene_depth(h, w)
        gt[gen.random((h, w)) < 0.7] = 0.0
        gt_depths.append(gt)
        disps.append(((1.0 + 0.1 * gen.random((1, 24, 80))) / (3.0 * scene_depth(24, 80))).astype(np.float32))
    np.save(tmp_path / "disps.npy", np.stack(disps))
    np.savez_compressed(tmp_path / "gt_depths.npz", data=np.array(gt_depths, dtype=object))
    code = main(["eval", "--predictions", str(tmp_path / "disps.npy"),
                 "--ground-truth", str(tmp_path / "gt_depths.npz"),
                 "--disparity", "--resize", "--crop", "garg", "--json"])  # fmt: skip
    assert code == 0
    (line,) = [text for text in capsys.readouterr().out.splitlines() if text.startswith("{")]
    ours = json.loads(line)
    assert ours["images"] == 3 and (tmp_path / "disps-worst.png").is_file()
    expected = monodepth2_eval([d[0] for d in disps], gt_depths)
    assert {name: ours[name] for name in expected} == pytest.approx(expected, rel=1e-5)
    assert ours["abs_rel"] < 0.05
    # the same disparities taken as depth score badly
    depth_taken = evaluate_predictions(tmp_path / "disps.npy", tmp_path / "gt_depths.npz", crop="garg", resize=True)
    assert depth_taken[0]["abs_rel"] > 0.3


def save_npz_as(path):
    with open(path, "wb") as f:
        np.savez(f, np.ones((3, 4, 4)))


@pytest.mark.parametrize(
    "setup,options,pattern",
    [
        (lambda p: np.save(p / "pred.npy", np.ones((2, 4, 4))), {}, r"holds 2 maps but .* holds 3"),
        (lambda p: np.savez(p / "gt.npz", np.ones((0, 4, 4))) or np.save(p / "pred.npy", np.ones((0, 4, 4))), {},
         r"holds 0 maps but .* holds 0"),
        (lambda p: np.save(p / "pred.npy", np.ones((4, 4))), {}, r"pred\.npy: a stack of maps is N x H x W"),
        (lambda p: (p / "pred.npy").mkdir(), {}, r"both folders, or both stacks"),
        (lambda p: save_npz_as(p / "pred.npy"), {}, r"pred\.npy: not a .npy array"),
        (lambda p: np.save(p / "pred.npy", np.ones((3, 4, 4))), {"alignment": "scale-shift-inverse", "disparity": True},
         r"--disparity: --align scale-shift-inverse takes the predictions as disparities already"),
    ],
)  # fmt: skip
def test_bad_stacks(setup, options, pattern, tmp_path):
    np.savez(tmp_path / "gt.npz", np.ones((3, 4, 4)))
    setup(tmp_path)
    with pytest.raises(ValueError, match=pattern):
        evaluate_predictions(tmp_path / "pred.npy", tmp_path / "gt.npz", **options)


def test_an_npz_of_several_arrays_names_the_one_it_reads(tmp_path):
    np.save(tmp_path / "pred.npy", np.full((1, 4, 4), 5.0))
    np.savez(tmp_path / "gt.npz", data=np.full((1, 4, 4), 5.0), other=np.ones((1, 4, 4)))
    assert evaluate_predictions(tmp_path / "pred.npy", tmp_path / "gt.npz", alignment="none")[0]["abs_rel"] == 0
    np.savez(tmp_path / "gt.npz", a=np.ones((1, 4, 4)), b=np.ones((1, 4, 4)))
    with pytest.raises(ValueError, match=r"an array 'data' or only one array, got \['a', 'b'\]"):
        evaluate_predictions(tmp_path / "pred.npy", tmp_path / "gt.npz")


@pytest.mark.parametrize("align", ["median", "scale-shift", "none"])
def test_disparities_that_are_no_depths_are_left_out(align, tmp_path):
    # with --disparity a value <= 0 is no depth, whatever the alignment (scale-shift would fit it)
    gt, disp = [[2.0, 3.0, 4.0], [5.0, 6.0, 7.0]], [[0.5, -1.0, 0.25], [0.2, 0.1, 0.15]]
    with_bad = _folder_metrics(tmp_path / "a", disp, gt, alignment=align, disparity=True)
    gt[0][1], disp[0][1] = 0.0, 0.3
    assert with_bad == pytest.approx(_folder_metrics(tmp_path / "b", disp, gt, alignment=align, disparity=True))
