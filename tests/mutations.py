"""Mutation check: does a test fail when the code it guards is wrong?

Each mutation below changes one line of the library (a comparison at an edge, a constant, a term
of a gradient, a statistic of the benchmark runner) and names the tests that must then fail. The
script applies one mutation at a time to the working tree, runs its tests (``pytest -x``, the
extension rebuilt where ``csrc/`` changed), restores the file and reports ``killed`` (a test
failed, as it should) or ``SURVIVED`` (no test noticed: a gap in the tests). A mutation whose line
no longer occurs exactly once is reported ``stale``: update it with the code it guards.

    .venv/bin/python tests/mutations.py            # all of them (about 15 minutes on 2 cores)
    .venv/bin/python tests/mutations.py M1 W2      # some; exit status 1 if any survived

Not a pytest module (the name has no ``test_`` prefix): it edits the working tree, so run it on a
clean checkout and nothing else at the same time. Mutations known to change nothing observable are
left out: the clamp of the SSIM term at exactly 0 (its gradient is 0 there anyway), the parallax
test at |t| = |X| exactly (both shares are equal there), the fixed-point rounding mode of the
deterministic scatter (2**-62 of the bound) and ``fastdepth eval``'s own clamp of the aligned
prediction (the metrics clamp it again).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = ("tests/test_cpu_twin.py", "tests/test_cuda_kernels_on_host.py")  # the twin and the CUDA kernels' bodies
NOT_TRITON = "not triton"
SCHEDULES = ("tests/test_triton_gpu.py",)  # the Triton kernels as a GPU may schedule them

# (id, file, original line or lines, mutated, test files, pytest -k expression)
MUTATIONS = [
    # the warp: taps, border clip, validity, depth and pose gradients
    ("M1", "csrc/warp.cuh", "mu1 = u0 + 1 >= 0 && u0 + 1 < W;", "mu1 = u0 + 1 >= 0 && u0 + 1 <= W;",
     (*HOST, "tests/test_warp.py"), NOT_TRITON),
    ("M2", "csrc/warp.cuh", "*dpos = (pos > F(0)) & (pos < last) ? F(m.scale) : F(0);",
     "*dpos = (pos >= F(0)) & (pos < last) ? F(m.scale) : F(0);", ("tests/test_warp.py",), "border_padding_has"),
    ("K2", "kernels/warp.py", "dpos = tl.where((pos > 0.0) & (pos < size - 1.0), dpos, 0.0)",
     "dpos = tl.where((pos >= 0.0) & (pos < size - 1.0), dpos, 0.0)", ("tests/test_warp.py",), "border_padding_has"),
    ("M3", "csrc/warp.cuh", "*inside = (pos >= F(0)) & (pos <= last);", "*inside = (pos > F(0)) & (pos <= last);",
     (*HOST, "tests/test_warp.py"), NOT_TRITON),
    ("M13", "csrc/warp_rows.h", "mu1 = (u0 + 1 >= 0) & (u0 + 1 < W);", "mu1 = (u0 + 1 >= 0) & (u0 + 1 <= W);",
     (*HOST, "tests/test_warp.py"), NOT_TRITON),
    ("W1", "csrc/warp.cuh", "gPs[j] = gq[0] * T[j] + gq[1] * T[4 + j] + gq[2] * T[8 + j] + gq[3] * T[12 + j];",
     "gPs[j] = gq[0] * T[j] + gq[1] * T[4 + j] + gq[2] * T[8 + j];", (*HOST, "tests/test_warp.py"), NOT_TRITON),
    ("W2", "kernels/warp.py",
     "gX = gqx * tl.load(pb + 0) + gqy * tl.load(pb + 4) + gqz * tl.load(pb + 8) + gw * tl.load(pb + 12)",
     "gX = gqx * tl.load(pb + 0) + gqy * tl.load(pb + 4) + gqz * tl.load(pb + 8)",
     ("tests/test_warp.py",), "triton and edge"),
    ("W3", "csrc/warp.cuh", "keep_if(g.w_ok & !g.z_ok, -(gpx * g.px + gpy * g.py + gpz * g.pz) * g.inv_w)",
     "keep_if(g.w_ok, -(gpx * g.px + gpy * g.py + gpz * g.pz) * g.inv_w)", (*HOST, "tests/test_warp.py"), NOT_TRITON),
    # the photometric loss and the minimum: SSIM constants, reflection, ties, L1 slope, channels
    ("M4", "csrc/photometric.cuh", "if (l < best || (l != l && best == best)) {",
     "if (l <= best || (l != l && best == best)) {", (*HOST, "tests/test_reprojection.py"), NOT_TRITON),
    ("K1", "kernels/photometric.py", "take = (loss < best) | ((loss != loss) & (best == best))",
     "take = (loss <= best) | ((loss != loss) & (best == best))", ("tests/test_photometric.py",), "triton and ties"),
    ("M5", "csrc/photometric.cuh", "(o == 1 && r == n - 2)) ? 2 : 1;", "(o == 1 && r == n - 1)) ? 2 : 1;",
     HOST, NOT_TRITON),
    ("M6", "csrc/photometric.cuh", "t.b = F(2) * (sxy * ninth - t.mx * t.my) + F(kC2);",
     "t.b = F(2) * (sxy * ninth - t.mx * t.my) + F(kC1);", HOST, NOT_TRITON),
    ("M6b", "csrc/photometric.cuh", "const F g_c = -g_s * s * (t.d * inv_cd);",
     "const F g_c = -g_s * s * (t.c * inv_cd);", HOST, NOT_TRITON),
    ("K6", "kernels/photometric.py", "g_d = -g_s * s * (c * inv_cd)", "g_d = -g_s * s * (d * inv_cd)",
     ("tests/test_photometric.py",), "triton"),
    ("M6c", "csrc/photometric_rows.h", "reflected_sum3(scratch.col(3), syy(c), W);",
     "reflected_sum3(scratch.col(1), syy(c), W);", HOST, NOT_TRITON),
    ("A8", "csrc/photometric.cuh", "t.a = F(2) * t.mx * t.my + F(kC1);", "t.a = F(2) * t.mx * t.my + F(kC2);",
     HOST, NOT_TRITON),
    ("M8", "csrc/photometric.cuh", "(F(yv > xv) - F(yv < xv))", "(F(yv >= xv) - F(yv < xv))", HOST, NOT_TRITON),
    ("M17", "csrc/photometric.cuh", "i = i > n - 1 ? 2 * (n - 1) - i : i;", "i = i > n - 1 ? n - 1 : i;",
     HOST, NOT_TRITON),
    ("G8", "csrc/photometric.cuh", "return (alpha * ssim + (F(1) - alpha) * l1) / F(C);",
     "return (alpha * ssim + (F(1) - alpha) * l1) / F(3);", HOST, NOT_TRITON),
    ("PC1", "csrc/photometric.cuh",
     "return {need_target || need_identity ? 0 : sh.S_id, need_target || need_warped ? sh.S_id + sh.S_w : sh.S_id};",
     "return {sh.S_id, need_target || need_warped ? sh.S_id + sh.S_w : sh.S_id};", HOST, NOT_TRITON),
    ("M9", "csrc/photometric_rows.h", "s[W - 1] = v[W - 2] + v[W - 1] + v[W - 2];",
     "s[W - 1] = v[W - 1] + v[W - 1] + v[W - 2];", HOST, NOT_TRITON),
    ("M10", "csrc/photometric_rows.h", "acc += F(reflect_count(j, 1, W)) * v[j + 1];", "acc += v[j + 1];",
     HOST, NOT_TRITON),
    ("R1", "fastdepth/reference/photometric.py", 'xp = F.pad(x, (1, 1, 1, 1), mode="reflect")',
     'xp = F.pad(x, (1, 1, 1, 1), mode="replicate")', ("tests/test_reference_photometric.py",), ""),
    # the fused objective: halos, tiles, the window's centre, the mask, the identity's gradient
    ("M11", "csrc/reprojection_cpu.cpp", "const int x0 = std::max(0, r0 - 2), x1 = std::min(H, r1 + 2);",
     "const int x0 = std::max(0, r0 - 2), x1 = std::min(H, r1 + 1);", HOST, NOT_TRITON),
    # the twin's streamed backward: the reflected window in its rings, the geometry of the row it ends
    ("M11b", "csrc/reprojection_cpu.cpp", "ring(buffer, plane, photometric::reflect(r + 1, H))};",
     "ring(buffer, plane, r + 1)};", HOST, NOT_TRITON),
    ("M11c", "csrc/reprojection_cpu.cpp", "geometry_backward(pixels, geometry.data() + (v % 3) * S,",
     "geometry_backward(pixels, geometry.data() + (t % 3) * S,", HOST, NOT_TRITON),
    ("R6a", "csrc/photometric.cuh", "p.windows = in_image && bi >= halo - 1 &&",
     "p.windows = in_image && bi >= halo &&", HOST, NOT_TRITON),
    ("R6b", "kernels/photometric.py", "windows = in_image & (bi >= HALO - 1) &",
     "windows = in_image & (bi >= HALO) &", ("tests/test_reprojection.py",), "triton and one_pass"),
    ("P6", "csrc/reprojection.cuh", "if (o == 4) centre = xv;", "if (o == 3) centre = xv;", HOST, NOT_TRITON),
    # the tiles on a GPU's schedules (Triton, then CUDA): a halo row written over the next tile's, missing barriers
    ("S1", "kernels/photometric.py", "own = in_image & (bi >= HALO) & (bi < PB_H - HALO) &",
     "own = in_image & (bi >= HALO) & (bi < PB_H - HALO + 1) &", SCHEDULES, "reprojection"),
    ("S3", "kernels/reprojection.py", "tl.store(x_scr + pos, xv)\n            tl.debug_barrier()\n            s_x",
     "tl.store(x_scr + pos, xv)\n            s_x", SCHEDULES, "tile"),
    ("S4", "kernels/reprojection.py", "- xv)\n            tl.debug_barrier()  # before the next channel",
     "- xv)\n            # before the next channel", SCHEDULES, "tile"),
    ("S5", "kernels/reprojection.py", "tl.store(sg_scr + 2 * PB_H * PB_W + pos, g_cov)\n            tl.debug_barrier()",
     "tl.store(sg_scr + 2 * PB_H * PB_W + pos, g_cov)", SCHEDULES, "window"),
    ("S6", "csrc/photometric.cuh", "p.own = in_image && bi >= halo && bi < kBlockH - halo &&",
     "p.own = in_image && bi >= halo && bi < kBlockH - halo + (halo == 1) &&", ("tests/test_cuda_kernels_on_host.py",),
     "block_kernels"),
    ("S7", "csrc/reprojection.cu", "sh.W, pos, x_s);\n      __syncthreads();\n      stat_phase",
     "sh.W, pos, x_s);\n      stat_phase", ("tests/test_cuda_kernels_on_host.py",), "barrier"),
    # the photometric tile backward: the halo's windows, the barriers, the target's window gradient
    ("PT1", "kernels/photometric.py", "tl.store(scr + 3 * PB_H * PB_W + pos, s_cov)\n            tl.debug_barrier()",
     "tl.store(scr + 3 * PB_H * PB_W + pos, s_cov)", SCHEDULES, "tile"),
    ("PT2", "kernels/photometric.py", "g_my += tl.where(use, count * tl.load(scr + PB_H * PB_W + at",
     "g_my += tl.where(use, tl.load(scr + PB_H * PB_W + at", ("tests/test_photometric.py",), "tile_backward"),
    ("PT3", "csrc/photometric.cu", "alpha_c, sg_s);\n      __syncthreads();\n      if (pos.own)",
     "alpha_c, sg_s);\n      if (pos.own)", ("tests/test_cuda_kernels_on_host.py",), "barrier"),
    ("PT4", "csrc/photometric.cuh", "sum.my += F(count) * sg_s[kBlockPositions + at];",
     "sum.my += sg_s[kBlockPositions + at];", ("tests/test_cuda_kernels_on_host.py",), "tile_backward"),
    ("E8", "fastdepth/reprojection.py", "return loss, index, index >= n_identity",
     "return loss, index, index > n_identity", ("tests/test_reprojection.py",), NOT_TRITON),
    ("I6", "fastdepth/reprojection.py",
     "g_identity = torch.where(won, grad, torch.zeros_like(grad)).to(identity.dtype)",
     "g_identity = grad.expand_as(won).to(identity.dtype)", ("tests/test_reprojection.py",), NOT_TRITON),
    # the cost volume: ties, the variance's gradient, masked corners, the projection, the mask
    ("C1", "csrc/cost_volume.cuh", "*gx = scaled * F((x > t) - (x < t));", "*gx = scaled * F((x >= t) - (x < t));",
     ("tests/test_cost_volume.py",), "no_gradient_where"),
    ("KC1", "kernels/cost_volume.py", "gx = scaled * tl.where(x > t, 1.0, tl.where(x < t, -1.0, 0.0))",
     "gx = scaled * tl.where(x >= t, 1.0, tl.where(x < t, -1.0, 0.0))", ("tests/test_cost_volume.py",),
     "no_gradient_where"),
    ("CS1", "kernels/cost_volume.py", "            gt_sum += gt\n", "            gt_sum = gt\n",
     ("tests/test_cost_volume.py",), "matches_the_reference and sweep and triton"),
    ("CS2", "kernels/cost_volume.py", "g_iu = tl.sum(gx * ((v01 - v00) * (1.0 - fv2) + (v11 - v10) * fv2), axis=1)",
     "g_iu = tl.sum(gx * ((v01 - v00) * (1.0 - fv2) + (v11 - v10) * fu2), axis=1)", ("tests/test_cost_volume.py",),
     "matches_the_reference and sweep and triton"),
    ("CS3", "kernels/cost_volume.py", "acc01 = tl.where(keep_sums, acc01, 0.0) + tl.where(",
     "acc01 = acc01 + tl.where(", ("tests/test_cost_volume.py",), "matches_the_reference and sweep and triton"),
    ("CS4", "csrc/cost_volume.cuh", "if (need_geometry && w.keep) add_uv(at, g_iu * w.du, g_iv * w.dv);",
     "if (need_geometry && w.keep) add_uv(at, g_iu * w.du, g_iv * w.du);", ("tests/test_cuda_kernels_on_host.py",),
     "cost_volume"),
    ("CS5", "csrc/cost_volume.cuh", "if (any) {  // the run's taps are this view's",
     "if (true) {  // the run's taps are this view's", ("tests/test_cuda_kernels_on_host.py",), "cost_volume"),
    ("CS6", "csrc/cost_volume.cuh", "    if (need_features) flush_run(run, b, s, c0, n, sh, scatter_s);\n  }",
     "    if (false) flush_run(run, b, s, c0, n, sh, scatter_s);\n  }", ("tests/test_cuda_kernels_on_host.py",),
     "cost_volume"),
    ("C2", "csrc/cost_volume.cuh", "return reduction == kVariance ? go * F(2) / F(S + 1)",
     "return reduction == kVariance ? go * F(2) / F(S)", HOST, NOT_TRITON),
    ("C3", "csrc/cost_volume_cpu.cpp", "for (int k = 0; k < 4; ++k) r.at[k] = m[k] ? o[k] * C : -1;",
     "for (int k = 0; k < 4; ++k) r.at[k] = o[k] * C;", HOST, NOT_TRITON),
    ("CV1", "csrc/cost_volume_cpu.cpp", "if (shares.shared(b) || shares.owner(b) == t) fill_zero(",
     "if (shares.shared(b)) fill_zero(", HOST, NOT_TRITON),
    ("P1", "fastdepth/projection.py",
     "gq[0] * T[0][j] + gq[1] * T[1][j] + gq[2] * T[2][j] + gq[3] * T[3][j]",
     "gq[0] * T[0][j] + gq[1] * T[1][j] + gq[2] * T[2][j]", ("tests/test_cost_volume.py",), "projection"),
    ("F8", "fastdepth/cost_volume.py", "return valid.all(1).reshape(B, D, h, w)",
     "return valid.any(1).reshape(B, D, h, w)", ("tests/test_cost_volume.py",), NOT_TRITON),
    # the supervised losses: the valid pixels, the L1 slope at 0
    ("M15", "csrc/depth_loss.cuh", "return t > F(0) && t < F(INFINITY) && (mask == nullptr || mask[i]);",
     "return t >= F(0) && t < F(INFINITY) && (mask == nullptr || mask[i]);", ("tests/test_depth_loss.py",),
     NOT_TRITON),
    ("D6", "csrc/depth_loss.cuh", "return t > F(0) && t < F(INFINITY) && (mask == nullptr || mask[i]);",
     "return t > F(0) && t <= F(INFINITY) && (mask == nullptr || mask[i]);", ("tests/test_depth_loss.py",),
     "not_positive_and_finite"),
    ("KD6", "kernels/depth_loss.py", 'ok = in_range & (t > 0) & (t < float("inf"))',
     'ok = in_range & (t > 0) & (t <= float("inf"))', ("tests/test_depth_loss.py",), "not_positive_and_finite"),
    # the closed forms the depth-loss kernels compute per image: the alignment, the backward's coefficients
    ("DS1", "csrc/depth_loss.cuh", "c[4] = (al.ok ? -2.0 * scale * al.a : 0.0) * g;",
     "c[4] = (al.ok ? 2.0 * scale * al.a : 0.0) * g;", ("tests/test_depth_loss.py",), NOT_TRITON),
    ("DS2", "kernels/depth_loss.py", "c5 = tl.where(ok, -w * q * a / nc, 0.0) * g",
     "c5 = tl.where(ok, w * q * a / nc, 0.0) * g", ("tests/test_depth_loss.py",), "triton"),
    ("DS3", "csrc/depth_loss.cuh", "al.b = n > 0.0 ? (st - al.a * sp) / (n < 1.0 ? 1.0 : n) : 0.0;",
     "al.b = n > 0.0 ? (st + al.a * sp) / (n < 1.0 ? 1.0 : n) : 0.0;", ("tests/test_depth_loss.py",), NOT_TRITON),
    ("DS4", "kernels/depth_loss.py", "ok = tl.abs(det) > 1e-12 * tl.where(size < 1e-30, 1e-30, size)",
     "ok = tl.abs(det) >= 0.0", ("tests/test_depth_loss.py",), "triton"),
    ("M16", "csrc/depth_loss.cuh", "return squared ? F(2) * r : F((r > F(0)) - (r < F(0)));",
     "return squared ? F(2) * r : F((r >= F(0)) - (r < F(0)));", ("tests/test_depth_loss.py",), "exactly_zero"),
    ("K16", "kernels/depth_loss.py", "return tl.where(r > 0, 1.0, tl.where(r < 0, -1.0, 0.0)).to(r.dtype)",
     "return tl.where(r >= 0, 1.0, tl.where(r < 0, -1.0, 0.0)).to(r.dtype)", ("tests/test_depth_loss.py",),
     "exactly_zero"),
    # the Python layers: value checks, the second derivative, the float64 fallback, Kornia's patch
    ("V6", "fastdepth/validation.py", "        if not ok:\n            raise ValueError(message)",
     "        if not ok and False:\n            raise ValueError(message)", ("tests/test_warp_validation.py",),
     NOT_TRITON),
    ("D8", "fastdepth/dispatch.py", "            if torch.is_grad_enabled():\n                raise RuntimeError(",
     "            if False:\n                raise RuntimeError(", ("tests/test_dispatch.py",), ""),
    ("C8", "fastdepth/backends.py", "    if name not in _warned_float64:\n        _warned_float64.add(name)",
     "    if True:\n        _warned_float64.add(name)", ("tests/test_backends.py",), ""),
    ("B8", "fastdepth/kornia_patch.py",
     "        if not _active:\n            for module, original in _originals.items():",
     "        if True:\n            for module, original in _originals.items():", ("tests/test_kornia_patch.py",), ""),
    # training: the smoothness term, the depth metrics
    ("T1", "fastdepth/train/objective.py", "SMOOTHNESS = 1e-3", "SMOOTHNESS = 1e-2",
     ("tests/test_train_objective.py",), "smoothness"),
    ("T3", "fastdepth/train/objective.py",
     "smoothness = smoothness + SMOOTHNESS * smoothness_loss(norm_disp, scaled_image) / 2**scale",
     "smoothness = smoothness + SMOOTHNESS * smoothness_loss(norm_disp, scaled_image)",
     ("tests/test_train_objective.py",), "smoothness"),
    ("T4", "fastdepth/train/objective.py", "norm_disp = disp / (disp.mean((2, 3), keepdim=True) + 1e-7)",
     "norm_disp = disp", ("tests/test_train_objective.py",), "smoothness"),
    ("T2", "fastdepth/train/metrics.py", '"abs_rel": ((gt - pred).abs() / gt).mean().item(),',
     '"abs_rel": ((gt - pred).abs() / pred).mean().item(),', ("tests/test_train_metrics.py",), ""),
    ("T6", "fastdepth/train/metrics.py", '"a2": (thresh < 1.25**2).double().mean().item(),',
     '"a2": (thresh < 1.25**3).double().mean().item(),', ("tests/test_train_metrics.py",), ""),
    ("T8", "fastdepth/train/metrics.py", "thresh = torch.maximum(gt / pred, pred / gt)", "thresh = pred / gt",
     ("tests/test_train_metrics.py",), ""),
    # fastdepth eval: NumPy's median, the range of the ground truth, predictions that are no depths, PNG scale,
    # Garg's crop, the resize's pixel centres
    ("EV2", "fastdepth/train/predictions.py", "        return pred * (median(gt) / median(pred))",
     "        return pred * (gt.median() / pred.median())", ("tests/test_eval_predictions.py",), ""),
    ("EV2b", "fastdepth/train/metrics.py", "        p = p * (median(g) / median(p))",
     "        p = p * (g.median() / p.median())", ("tests/test_train_metrics.py",), ""),
    ("EV3", "fastdepth/train/predictions.py",
     "        valid = (gt > min_depth) & (gt < max_depth) & torch.isfinite(pred)",
     "        valid = (gt > min_depth) & torch.isfinite(pred)", ("tests/test_eval_predictions.py",), ""),
    ("EV5", "fastdepth/train/predictions.py", "                data = np.asarray(image, dtype=np.float64) / png_scale",
     "                data = np.asarray(image, dtype=np.float64) / 256.0", ("tests/test_eval_predictions.py",), ""),
    ("EV6", "fastdepth/train/predictions.py", 'if alignment in ("median", "none"):', 'if alignment in ("none",):',
     ("tests/test_eval_predictions.py",), ""),
    ("EV7", "fastdepth/train/predictions.py", '"garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),',
     '"garg": (0.40810811, 0.99189189, 0.03594771, 0.97405229),', ("tests/test_eval_predictions.py",), ""),
    ("EV9", "fastdepth/train/predictions.py", "pred = torch.where(pred > 0, 1.0 / pred, torch.nan)",
     "pred = torch.where(pred > 0, 1.0 / pred, 1.0 / pred)", ("tests/test_eval_predictions.py",), ""),
    ("EV8", "fastdepth/train/predictions.py", 'mode="bilinear", align_corners=False)',
     'mode="bilinear", align_corners=True)', ("tests/test_eval_predictions.py",), ""),
    # training data and runs: the intrinsics file's four-number form, a split's cameras, K resized, --resume's refusal
    ("F2", "fastdepth/train/folders.py", "        fx, fy, cx, cy = values", "        fx, cx, fy, cy = values",
     ("tests/test_train_folders.py",), ""),
    ("AU1", "fastdepth/train/augment.py", 'K[0, 2] = (sample["frames"].shape[-1] - 1) - K[0, 2]',
     'K[0, 2] = sample["frames"].shape[-1] - K[0, 2]', ("tests/test_train_augment.py",), ""),
    ("MD1", "fastdepth/manydepth.py", "EDGE = 2\n", "EDGE = 1\n", ("tests/test_manydepth.py",), ""),
    ("MD2", "fastdepth/manydepth.py", "volume.max(1, keepdim=True)[0]", "volume.max()",
     ("tests/test_manydepth.py",), ""),
    ("MD3", "fastdepth/manydepth.py", "counts = counts + (diffs > 0)", "counts = counts + (diffs >= 0)",
     ("tests/test_manydepth.py",), ""),
    ("MV1", "fastdepth/mvsnet.py", "poses = src_projs @ torch.linalg.inv(ref_proj)[:, None]",
     "poses = torch.linalg.inv(ref_proj)[:, None] @ src_projs", ("tests/test_mvsnet.py",), ""),
    ("MV2", "fastdepth/mvsnet.py", "        align_corners=align_corners, backend=backend,",
     "        align_corners=True, backend=backend,", ("tests/test_mvsnet.py",), ""),
    ("MT1", "README.md", 'automask = fastdepth.reprojection_loss(\n            target, sources, depth, poses, K, '
     'identity=identity, padding_mode="border", align_corners=False', 'automask = fastdepth.reprojection_loss(\n   '
     '         target, sources, depth, poses, K, identity=identity, padding_mode="border", align_corners=True',
     ("tests/test_monodepth2_trainer.py",), ""),
    ("VA1", "fastdepth/train/validate.py", "float(value) * len(chunk) / len(samples)",
     "float(value) / -(-len(samples) // cfg.batch_size)", ("tests/test_train_validate.py",), ""),
    ("VA2", "fastdepth/train/validate.py", "cfg.val_data or cfg.data,", "cfg.data or cfg.val_data,",
     ("tests/test_train_validate.py",), ""),
    ("F3", "fastdepth/train/folders.py", 'KITTI_CAMERAS = {"l": "02", "r": "03"}',
     'KITTI_CAMERAS = {"l": "02", "r": "02"}', ("tests/test_train_folders.py",), ""),
    ("F1", "fastdepth/train/folders.py", "        scaled[1] *= self.height / h", "        scaled[1] *= self.width / w",
     ("tests/test_train_folders.py",), ""),
    ("L2", "fastdepth/train/loop.py", "    if changed:\n        raise ValueError(",
     "    if False:\n        raise ValueError(", ("tests/test_cli_errors.py",), "resume"),
    # the benchmark runner and its report: the statistics every results file states
    ("B1", "benchmarks/report.py",
     'return other["median_ms"] / twin["median_ms"] if twin and other and twin["median_ms"] else None',
     'return twin["median_ms"] / other["median_ms"] if twin and other and twin["median_ms"] else None',
     ("tests/test_bench.py",), "targets"),
    ("B2", "benchmarks/run.py",
     "return [sorted(s)[len(s) // 2] if fn is not None and s else None for fn, s in zip(fns, samples, strict=True)]",
     "return [min(s) if fn is not None and s else None for fn, s in zip(fns, samples, strict=True)]",
     ("tests/test_bench.py",), "median_of_runs"),
    ("B3", "benchmarks/report.py", "speed_up = composed_ms / fused[1] if composed_ms and fused else None",
     "speed_up = fused[1] / composed_ms if composed_ms and fused else None", ("tests/test_bench.py",), "composed_ops"),
    ("B4", "benchmarks/report.py",
     'ratio = ours["peak_mem_mb"] / eager["peak_mem_mb"] if ours and eager and eager["peak_mem_mb"] else None',
     'ratio = eager["peak_mem_mb"] / ours["peak_mem_mb"] if ours and eager and eager["peak_mem_mb"] else None',
     ("tests/test_bench.py",), "targets"),
    ("B5", "benchmarks/run.py",
     'row["bandwidth_fraction"] = row["floor_bytes"] / (row["median_ms"] * 1e-3) / bandwidth',
     'row["bandwidth_fraction"] = row["floor_bytes"] / (row["median_ms"] * 1e-3)', ("tests/test_bench.py",),
     "median_of_runs"),
]  # fmt: skip


def check(mutation: tuple) -> str:
    """Apply one mutation, run its tests, restore the file: ``killed``, ``SURVIVED`` or ``stale``."""
    _, name, original, mutated, tests, keyword = mutation
    path = ROOT / name
    source = path.read_text()
    if source.count(original) != 1:
        return "stale"
    path.write_text(source.replace(original, mutated))
    try:
        env = dict(os.environ, OMP_NUM_THREADS="2")
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-k", keyword, *tests]
        run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1800)
    finally:
        path.write_text(source)
    return "killed" if run.returncode == 1 else ("SURVIVED" if run.returncode == 0 else f"error {run.returncode}")


def main(ids: list[str]) -> int:
    chosen = [m for m in MUTATIONS if not ids or m[0] in ids]
    survived = 0
    for mutation in chosen:
        start = time.monotonic()
        outcome = check(mutation)
        survived += outcome != "killed"
        print(f"{mutation[0]:5s} {outcome:9s} {mutation[1]} ({time.monotonic() - start:.0f} s)", flush=True)
    print(f"{len(chosen) - survived} of {len(chosen)} mutations killed")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
