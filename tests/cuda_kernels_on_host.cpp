// The CUDA kernels' bodies run on the host: for every thread of a kernel's grid, in order, the same
// per-pixel function of csrc/<op>.cuh that the kernel calls, with the atomics as plain additions
// and a block's sums added thread by thread. The warp's backward can also run its blocks last
// first, and the fused objective's block kernels their blocks and the threads of each phase
// (set_reverse_order), as a GPU may: what they write must not depend on it. The CPU twins reach
// the same math through their own loops (rows, lanes, channels-last), so without this the
// per-pixel paths only a GPU runs would be compiled but never executed before a GPU session.
// float32 throughout, as the kernels compute; built and called by
// tests/test_cuda_kernels_on_host.py. No torch, no CUDA.
#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "cost_volume.cuh"
#include "photometric.cuh"
#include "reprojection.cuh"
#include "warp.cuh"

using namespace fastdepth;

namespace {

warp::Options warp_options(int H, int W, bool normalize, bool border, bool align_corners) {
  return {warp::axis_map(W, align_corners), warp::axis_map(H, align_corners), normalize, border};
}

bool reverse_order = false;

// 0 .. n - 1, or n - 1 .. 0 under set_reverse_order(true): the order of a grid's blocks or of the
// threads of a block's phase.
std::vector<int64_t> in_order(int64_t n) {
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = reverse_order ? n - 1 - i : i;
  return order;
}

}  // namespace

extern "C" {

void set_reverse_order(bool reverse) { reverse_order = reverse; }

// warp_fwd_kernel: one thread per destination pixel, every source.
void warp_forward(const float* image, const float* depth, const float* pose, const float* K, float* out, int8_t* mask,
                  int64_t B, int64_t S, int64_t C, int H, int W, bool normalize, bool border, bool align_corners) {
  const warp::Shape sh{B, S, C, H, W};
  const warp::Options opt = warp_options(H, W, normalize, border, align_corners);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t pix = 0; pix < static_cast<int64_t>(H) * W; ++pix) {
      const warp::Pixel<float> p = warp::make_pixel(depth, K, b, pix, sh, opt.normalize);
      for (int64_t s = 0; s < S; ++s) warp::forward_source(image, pose, out, mask, p, b * S + s, pix, sh, opt);
    }
  }
}

// warp_bwd_kernel: grad_image zeroed by the caller; pose_partials (B, S, blocks, 16) and
// k_partials (B, blocks, 4) as the kernel writes them.
void warp_backward(const float* grad_out, const float* image, const float* depth, const float* pose, const float* K,
                   float* grad_image, float* grad_depth, float* pose_partials, float* k_partials, int64_t B, int64_t S,
                   int64_t C, int H, int W, bool normalize, bool border, bool align_corners) {
  const warp::Shape sh{B, S, C, H, W};
  const warp::Options opt = warp_options(H, W, normalize, border, align_corners);
  const int64_t HW = static_cast<int64_t>(H) * W, blocks = warp::blocks_per_image(H, W);
  auto scatter = [=](int64_t at, float v) { grad_image[at] += v; };
  for (int64_t b = 0; b < B; ++b) {
    for (const int64_t block : in_order(blocks)) {
      float* k_part = k_partials + (b * blocks + block) * warp::kIntrinsicsPartials;
      for (int q = 0; q < warp::kIntrinsicsPartials; ++q) k_part[q] = 0.f;
      for (int64_t s = 0; s < S; ++s) {
        float* part = pose_partials + ((b * S + s) * blocks + block) * warp::kPosePartials;
        for (int q = 0; q < warp::kPosePartials; ++q) part[q] = 0.f;
      }
      for (int64_t pix = block * warp::kBlock; pix < (block + 1) * warp::kBlock && pix < HW; ++pix) {
        const warp::Pixel<float> p = warp::make_pixel(depth, K, b, pix, sh, opt.normalize);
        float gK[warp::kIntrinsicsPartials] = {};
        float gP[2] = {}, gd[2] = {};
        for (int64_t s = 0; s < S; ++s) {
          float gT[warp::kPosePartials] = {};
          warp::backward_source(grad_out, image, pose, true, p, b * S + s, pix, sh, opt, true, gT, gK, gP, gd,
                                scatter);
          float* part = pose_partials + ((b * S + s) * blocks + block) * warp::kPosePartials;
          for (int q = 0; q < warp::kPosePartials; ++q) part[q] += gT[q];
        }
        grad_depth[b * HW + pix] = warp::depth_grad(p, gd);
        warp::ray_backward(p, gP, grad_depth[b * HW + pix], opt.normalize, gK);
        for (int q = 0; q < warp::kIntrinsicsPartials; ++q) k_part[q] += gK[q];
      }
    }
  }
}

// photometric_fwd_kernel and photometric_bwd_kernel: one thread per pixel; identity may be null
// when S_id == 0, a null gradient is not computed.
void photometric_forward(const float* target, const float* identity, const float* warped, float* loss, int64_t* index,
                         int64_t B, int64_t S_id, int64_t S_w, int64_t C, int H, int W, float alpha) {
  const photometric::Shape sh{B, S_id, S_w, C, H, W};
  for (int64_t b = 0; b < B; ++b) {
    for (int row = 0; row < H; ++row) {
      for (int col = 0; col < W; ++col) {
        photometric::forward_pixel<float>(target, identity, warped, loss, index, b, row, col, sh, alpha);
      }
    }
  }
}

void photometric_backward(const float* grad, const int64_t* index, const float* target, const float* identity,
                          const float* warped, float* grad_target, float* grad_identity, float* grad_warped, int64_t B,
                          int64_t S_id, int64_t S_w, int64_t C, int H, int W, float alpha) {
  const photometric::Shape sh{B, S_id, S_w, C, H, W};
  for (int64_t b = 0; b < B; ++b) {
    for (int row = 0; row < H; ++row) {
      for (int col = 0; col < W; ++col) {
        photometric::backward_pixel<float>(grad, index, target, identity, warped, grad_target, grad_identity,
                                           grad_warped, b, row, col, sh, alpha);
      }
    }
  }
}

// photometric_tile_bwd_kernel: a block per tile, each phase run for every position of the block in
// turn (the kernel's barriers); the same arguments as photometric_backward.
void photometric_tile_backward(const float* grad, const int64_t* index, const float* target, const float* identity,
                               const float* warped, float* grad_target, float* grad_identity, float* grad_warped,
                               int64_t B, int64_t S_id, int64_t S_w, int64_t C, int H, int W, float alpha) {
  using namespace photometric;
  const Shape sh{B, S_id, S_w, C, H, W};
  const int64_t HW = static_cast<int64_t>(H) * W;
  const int tiles_w = tile_backward_tiles_w(W), tiles_h = tile_backward_tiles_h(H);
  std::vector<float> sg_s(4 * kBlockPositions), g_target(kBlockPositions);
  const CandidateRange ks = needed_candidates(sh, grad_target != nullptr, grad_identity != nullptr, grad_warped != nullptr);
  for (int64_t b = 0; b < B; ++b) {
    for (const int64_t tile : in_order(static_cast<int64_t>(tiles_w) * tiles_h)) {
      const auto position = [&](int64_t t) {
        return block_position(static_cast<int>(t), static_cast<int>(tile / tiles_w) * (kBlockH - 2),
                              static_cast<int>(tile % tiles_w) * (kBlockW - 2), H, W, 1);
      };
      for (int64_t c = 0; c < C; ++c) {
        const float* y = target + (b * C + c) * HW;
        std::fill(g_target.begin(), g_target.end(), 0.f);
        for (int64_t k = ks.first; k < ks.last; ++k) {
          const bool is_identity = k < S_id;
          const int64_t plane = is_identity ? ((b * S_id + k) * C + c) * HW : ((b * S_w + k - S_id) * C + c) * HW;
          const float* x = (is_identity ? identity : warped) + plane;
          float* g_out = is_identity ? grad_identity : grad_warped;
          const auto g_at = [&](const Position& pos) {
            return routed_grad<float>(grad + b * HW, index != nullptr ? index + b * HW : nullptr, k,
                                      static_cast<int64_t>(pos.r_in) * W + pos.c_in);
          };
          for (const int64_t t : in_order(kBlockPositions)) {
            const Position pos = position(t);
            tile_stat_phase(x, y, g_at(pos), H, W, pos, alpha / float(C), sg_s.data());
          }
          for (const int64_t t : in_order(kBlockPositions)) {
            const Position pos = position(t);
            if (!pos.own) continue;
            const float g_x =
                tile_adjoint_phase(sg_s.data(), x, y, g_at(pos), H, W, pos, (1.f - alpha) / float(C), &g_target[t]);
            if (g_out != nullptr) g_out[plane + static_cast<int64_t>(pos.row) * W + pos.col] = g_x;
          }
        }
        for (const int64_t t : in_order(kBlockPositions)) {
          const Position pos = position(t);
          if (grad_target != nullptr && pos.own) grad_target[(b * C + c) * HW + pos.row * W + pos.col] = g_target[t];
        }
      }
    }
  }
}

// reprojection_fwd_kernel: one thread per pixel; identity may be null when s_id == 0.
void reprojection_forward(const float* target, const float* sources, const float* depth, const float* pose,
                          const float* K, const float* identity, int64_t s_id, float* loss, int64_t* index, int64_t B,
                          int64_t S, int64_t C, int H, int W, bool normalize, bool border, bool align_corners,
                          float alpha) {
  const warp::Shape sh{B, S, C, H, W};
  const warp::Options opt = warp_options(H, W, normalize, border, align_corners);
  for (int64_t b = 0; b < B; ++b) {
    for (int row = 0; row < H; ++row) {
      for (int col = 0; col < W; ++col) {
        reprojection::forward_pixel<float>(target, sources, depth, pose, K, identity, s_id, loss, index, b, row, col,
                                           sh, opt, alpha);
      }
    }
  }
}

// reprojection_tile_fwd_kernel: a block per tile, each phase run for every position of the block
// in turn (the kernel's barriers); identity may be null when s_id == 0.
void reprojection_forward_tile(const float* target, const float* sources, const float* depth, const float* pose,
                               const float* K, const float* identity, int64_t s_id, float* loss, int64_t* index,
                               int64_t B, int64_t S, int64_t C, int H, int W, bool normalize, bool border,
                               bool align_corners, float alpha) {
  using namespace reprojection;
  const warp::Shape sh{B, S, C, H, W};
  const warp::Options opt = warp_options(H, W, normalize, border, align_corners);
  const int64_t HW = static_cast<int64_t>(H) * W;
  const int tiles_w = forward_tiles_w(W), tiles_h = forward_tiles_h(H);
  std::vector<float> x_s(kBlockPositions), best(kBlockPositions), ssim(kBlockPositions), l1(kBlockPositions);
  std::vector<int64_t> best_k(kBlockPositions);
  std::vector<warp::Taps<float>> taps(kBlockPositions);
  const std::vector<int64_t> positions = in_order(kBlockPositions);
  for (int64_t b = 0; b < B; ++b) {
    for (const int64_t tile : in_order(static_cast<int64_t>(tiles_w) * tiles_h)) {
      const int tile_row = static_cast<int>(tile / tiles_w) * (kBlockH - 2);
      const int tile_col = static_cast<int>(tile % tiles_w) * (kBlockW - 2);
      const auto position = [&](int t) { return block_position(t, tile_row, tile_col, H, W, 1); };
      const auto pix = [&](const Position& pos) { return static_cast<int64_t>(pos.r_in) * W + pos.c_in; };
      for (const int64_t t : positions) {
        best[t] = INFINITY, best_k[t] = 0;
        for (int64_t k = 0; position(t).own && k < s_id; ++k) {
          photometric::take_if_lower(identity[(b * s_id + k) * HW + pix(position(t))], k, best[t], best_k[t]);
        }
      }
      for (int64_t s = 0; s < S; ++s) {
        const int64_t bs = b * S + s;
        for (const int64_t t : positions) {
          const Position pos = position(t);
          taps[t] = pixel_taps(warp::make_pixel_at(depth, K, b, pos.r_in, pos.c_in, sh, opt.normalize), pose + bs * 16,
                               sh, opt);
          ssim[t] = l1[t] = 0.f;
        }
        for (int64_t c = 0; c < C; ++c) {
          for (const int64_t t : positions) {
            tile_sample_phase(taps[t], sources + (bs * C + c) * HW, W, position(t), x_s.data());
          }
          for (const int64_t t : positions) {
            tile_loss_phase(x_s.data(), target + (b * C + c) * HW, H, W, position(t), ssim[t], l1[t]);
          }
        }
        for (const int64_t t : positions) {
          if (!position(t).own) continue;
          photometric::take_if_lower(photometric::mix_channels(ssim[t], l1[t], alpha, C), s_id + s, best[t], best_k[t]);
        }
      }
      for (const int64_t t : positions) {
        if (!position(t).own) continue;
        loss[b * HW + pix(position(t))] = best[t];
        index[b * HW + pix(position(t))] = best_k[t];
      }
    }
  }
}

// reprojection_bwd_kernel: a block per tile, each phase run for every position of the block in turn
// (the kernel's barriers), the block's pose and intrinsics sums added position by position;
// grad_depth (B, H, W), pose_partials (B, S, tiles, 16), k_partials (B, tiles, 4) as it writes them.
void reprojection_backward(const float* grad, const int64_t* index, const float* target, const float* sources,
                           const float* depth, const float* pose, const float* K, float* grad_depth,
                           float* pose_partials, float* k_partials, int64_t s_id, int64_t B, int64_t S, int64_t C,
                           int H, int W, bool normalize, bool border, bool align_corners, float alpha) {
  using namespace reprojection;
  const warp::Shape sh{B, S, C, H, W};
  const warp::Options opt = warp_options(H, W, normalize, border, align_corners);
  const int64_t HW = static_cast<int64_t>(H) * W;
  const int tiles_w = backward_tiles_w(W), tiles_h = backward_tiles_h(H);
  const int64_t tiles = static_cast<int64_t>(tiles_w) * tiles_h;
  std::vector<float> x_s(kBlockPositions), sg_s(3 * kBlockPositions);
  std::vector<SourceState<float>> st(kBlockPositions);
  std::vector<std::array<float, 2>> gP(kBlockPositions);
  std::vector<std::array<float, 2>> gd(kBlockPositions);
  const std::vector<int64_t> positions = in_order(kBlockPositions);
  for (int64_t b = 0; b < B; ++b) {
    for (const int64_t tile : in_order(tiles)) {
      const int tile_row = static_cast<int>(tile / tiles_w) * (kBlockH - 4);
      const int tile_col = static_cast<int>(tile % tiles_w) * (kBlockW - 4);
      float* k_part = k_partials + (b * tiles + tile) * warp::kIntrinsicsPartials;
      std::fill(k_part, k_part + warp::kIntrinsicsPartials, 0.f);
      std::fill(gP.begin(), gP.end(), std::array<float, 2>{});
      std::fill(gd.begin(), gd.end(), std::array<float, 2>{});
      const auto position = [&](int t) { return block_position(t, tile_row, tile_col, H, W, 2); };
      const auto pixel = [&](const Position& pos) {
        return warp::make_pixel_at(depth, K, b, pos.r_in, pos.c_in, sh, opt.normalize);
      };
      for (int64_t s = 0; s < S; ++s) {
        const int64_t bs = b * S + s;
        const float* T = pose + bs * 16;
        for (const int64_t t : positions) {
          const Position pos = position(t);
          const int64_t off = b * HW + static_cast<int64_t>(pos.r_in) * W + pos.c_in;
          st[t] = begin_source(pixel(pos), pos, T, grad[off], index[off], s_id + s, sh, opt);
        }
        for (int64_t c = 0; c < C; ++c) {
          const float* y = target + (b * C + c) * HW;
          if (c == 0) {
            for (const int64_t t : positions) {
              sample_phase(st[t], sources + bs * C * HW, W, position(t), x_s.data());
            }
          }
          for (const int64_t t : positions) {
            stat_phase(st[t], x_s.data(), y, H, W, position(t), alpha / float(C), sg_s.data());
          }
          // no barrier between a thread's phase C and its next channel's phase A in the kernel: each
          // thread runs both before the next thread starts, which a GPU may do
          for (const int64_t t : positions) {
            adjoint_phase(st[t], sg_s.data(), y, H, W, position(t), (1.f - alpha) / float(C));
            if (c + 1 < C) sample_phase(st[t], sources + (bs * C + c + 1) * HW, W, position(t), x_s.data());
          }
        }
        float* part = pose_partials + (bs * tiles + tile) * warp::kPosePartials;
        std::fill(part, part + warp::kPosePartials, 0.f);
        for (const int64_t t : positions) {
          if (!st[t].live) continue;
          const warp::Pixel<float> p = pixel(position(t));
          const warp::Geometry<float> g =
              warp::compute_geometry(p.d, p.ray, p.k, T, W, H, opt.mu, opt.mv, opt.border);
          float gT[warp::kPosePartials] = {};
          warp::geometry_backward(g, p, st[t].g_iu, st[t].g_iv, T, gT, k_part, gP[t].data(), gd[t].data());
          for (int q = 0; q < warp::kPosePartials; ++q) part[q] += gT[q];
        }
      }
      for (const int64_t t : positions) {
        const Position pos = position(t);
        if (!pos.own) continue;
        const warp::Pixel<float> p = pixel(pos);
        const float grad_d = warp::depth_grad(p, gd[t].data());
        warp::ray_backward(p, gP[t].data(), grad_d, opt.normalize, k_part);
        grad_depth[b * HW + static_cast<int64_t>(pos.row) * W + pos.col] = grad_d;
      }
    }
  }
}

// cost_volume_proj_kernel: one thread per target pixel of every (image, source, hypothesis).
void cost_volume_projection(const float* hyp, const float* poses, const float* K, float* u, float* v, int64_t B,
                            int64_t S, int64_t D, int H, int W, bool per_pixel) {
  const cost_volume::Shape sh{B, S, 0, D, 0, H, W};
  for (int64_t bs = 0; bs < B * S; ++bs) {
    for (int64_t d = 0; d < D; ++d) {
      for (int64_t pix = 0; pix < static_cast<int64_t>(H) * W; ++pix) {
        cost_volume::project_view<float>(hyp, poses, K, u, v, bs / S, bs % S, d, pix, sh, per_pixel);
      }
    }
  }
}

// cost_volume_fwd_kernel and cost_volume_bwd_kernel: one thread per target pixel of every (image,
// hypothesis); the features' gradients zeroed by the caller.
void cost_volume_forward(const float* ft, const float* fs, const float* u, const float* v, float* out, int64_t B,
                         int64_t S, int64_t C, int64_t D, int64_t G, int H, int W, bool border, bool align_corners,
                         int reduction) {
  const cost_volume::Shape sh{B, S, C, D, G, H, W};
  const cost_volume::Options o{warp::axis_map(W, align_corners), warp::axis_map(H, align_corners), border, reduction};
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t d = 0; d < D; ++d) {
      for (int64_t pix = 0; pix < static_cast<int64_t>(H) * W; ++pix) {
        cost_volume::forward_pixel<float>(ft, fs, u, v, out, b, d, pix, sh, o);
      }
    }
  }
}

void cost_volume_backward(const float* grad, const float* ft, const float* fs, const float* u, const float* v,
                          float* grad_ft, float* grad_fs, float* grad_u, float* grad_v, int64_t B, int64_t S, int64_t C,
                          int64_t D, int64_t G, int H, int W, bool border, bool align_corners, int reduction) {
  const cost_volume::Shape sh{B, S, C, D, G, H, W};
  const cost_volume::Options o{warp::axis_map(W, align_corners), warp::axis_map(H, align_corners), border, reduction};
  auto scatter_t = [=](int64_t at, float value) { grad_ft[at] += value; };
  auto scatter_s = [=](int64_t at, float value) { grad_fs[at] += value; };
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t d = 0; d < D; ++d) {
      for (int64_t pix = 0; pix < static_cast<int64_t>(H) * W; ++pix) {
        cost_volume::backward_pixel<float>(grad, ft, fs, u, v, grad_u, grad_v, b, d, pix, sh, o, true, true, scatter_t,
                                           scatter_s);
      }
    }
  }
}

// cost_volume_sweep_bwd_kernel: one thread per target pixel of every (image, chunk of channels); the
// features' and projections' gradients zeroed by the caller.
void cost_volume_sweep_backward(const float* grad, const float* ft, const float* fs, const float* u, const float* v,
                                float* grad_ft, float* grad_fs, float* grad_u, float* grad_v, int64_t B, int64_t S,
                                int64_t C, int64_t D, int64_t G, int H, int W, bool border, bool align_corners,
                                int reduction) {
  const cost_volume::Shape sh{B, S, C, D, G, H, W};
  const cost_volume::Options o{warp::axis_map(W, align_corners), warp::axis_map(H, align_corners), border, reduction};
  auto scatter_s = [=](int64_t at, float value) { grad_fs[at] += value; };
  auto add_uv = [=](int64_t at, float gu, float gv) {
    grad_u[at] += gu;
    grad_v[at] += gv;
  };
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t chunk = 0; chunk < cost_volume::sweep_chunks(sh); ++chunk) {
      for (int64_t pix = 0; pix < static_cast<int64_t>(H) * W; ++pix) {
        cost_volume::backward_sweep_pixel<float>(grad, ft, fs, u, v, grad_ft, b, chunk * cost_volume::kSweepChannels,
                                                 pix, sh, o, true, true, scatter_s, add_uv);
      }
    }
  }
}

// The CPU twin's split of an element's rows into bands (reprojection.cuh), for its test.
void twin_band_split(int H, int64_t B, int64_t* count, int* rows) {
  const TwinBands bands = twin_bands(H, B);
  *count = bands.count;
  *rows = bands.rows;
}

}  // extern "C"
