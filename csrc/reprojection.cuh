// Per-pixel math of the fused objective, shared by the CUDA kernels (reprojection.cu) and the CPU
// twin (reprojection_cpu.cpp). The forward: the warp's projection (warp.cuh) recomputed for each
// pixel of the reflected 3x3 window, its samples, and the photometric loss's SSIM and minimum
// (photometric.cuh); or, in the tile forward, each position of a block warped once into shared
// memory and the windows read from there. Mirrors kernels/reprojection.py, with one difference: here the window's taps
// are computed once per source and kept for every channel (128 registers, no spills in the compile
// report), where the Triton kernel recomputes them per channel (with the nine taps live, Triton's
// compiler needed 240 registers at one pixel per thread). The backward's phases, one position of a
// block each (the kernel runs them with a barrier between phases, tests/cuda_kernels_on_host.cpp
// runs every position of a phase in turn). Conventions in fastdepth/reprojection.py. No torch, no
// CUDA runtime calls.
#pragma once

#include <algorithm>
#include <cstdint>

#include "photometric.cuh"
#include "warp.cuh"

namespace fastdepth {
namespace reprojection {

// The taps of one source at the 9 pixels of the reflected 3x3 window centred on (row, col), the
// warp's projection (warp.cuh) computed once for every channel; a neighbour whose depth or
// projection is not finite has all four taps masked off, so that it samples 0 (the warp's
// convention).
template <typename F>
struct WindowTaps {
  warp::Taps<F> t[9];
};

// The taps of source pose_s at pixel p, all four masked off where its depth or projection is not
// finite.
template <typename F>
FD_HD warp::Taps<F> pixel_taps(const warp::Pixel<F>& p, const F* pose_s, const warp::Shape& sh,
                               const warp::Options& opt) {
  const warp::Geometry<F> g = warp::compute_geometry(p.d, p.ray, p.k, pose_s, sh.W, sh.H, opt.mu, opt.mv, opt.border);
  warp::Taps<F> t = warp::bilinear_taps(g.iu, g.iv, sh.W, sh.H);
  if (!(p.d_ok && g.finite)) t.m00 = t.m01 = t.m10 = t.m11 = false;
  return t;
}

template <typename F>
FD_HD WindowTaps<F> window_taps(const F* depth, const F* K, const F* pose_s, int64_t b, int row, int col,
                                const warp::Shape& sh, const warp::Options& opt) {
  WindowTaps<F> w;
#pragma unroll
  for (int o = 0; o < 9; ++o) {
    const int r = photometric::reflect(row + o / 3 - 1, sh.H), q = photometric::reflect(col + o % 3 - 1, sh.W);
    w.t[o] = pixel_taps(warp::make_pixel(depth, K, b, static_cast<int64_t>(r) * sh.W + q, sh, opt.normalize), pose_s,
                        sh, opt);
  }
  return w;
}

// The loss of source s (its C planes at source_bs, sampled through its window taps) against the
// target (target_b) at (row, col), averaged over the channels, accumulated in
// photometric::candidate_loss's order.
template <typename F, typename Img>
FD_HD F warped_loss(const Img* source_bs, const Img* target_b, const WindowTaps<F>& w, int row, int col,
                    const warp::Shape& sh, F alpha) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  F ssim = F(0), l1 = F(0);
#pragma unroll 1
  for (int64_t c = 0; c < sh.C; ++c) {
    const Img* x = source_bs + c * HW;
    const Img* y = target_b + c * HW;
    F sx = F(0), sy = F(0), sxx = F(0), syy = F(0), sxy = F(0), centre = F(0);
#pragma unroll
    for (int o = 0; o < 9; ++o) {
      const int r = photometric::reflect(row + o / 3 - 1, sh.H), q = photometric::reflect(col + o % 3 - 1, sh.W);
      const F xv = warp::sample<F>(x, w.t[o], sh.W);
      const F yv = load_as<F>(y + static_cast<int64_t>(r) * sh.W + q);
      sx += xv;
      sy += yv;
      sxx += xv * xv;
      syy += yv * yv;
      sxy += xv * yv;
      if (o == 4) centre = xv;
    }
    const photometric::SsimTerms<F> t = photometric::ssim_from_sums(sx, sy, sxx, syy, sxy);
    ssim += photometric::ssim_loss(t);
    l1 += fd_abs(load_as<F>(y + static_cast<int64_t>(row) * sh.W + col) - centre);
  }
  return photometric::mix_channels(ssim, l1, alpha, sh.C);
}

// Forward of one pixel: the minimum over the identity maps (B, s_id, H, W), then the warped sources
// (strictly lower wins: ties go to the lowest index; a NaN wins once and stays), and its index.
template <typename F, typename Img>
FD_HD void forward_pixel(const Img* target, const Img* sources, const F* depth, const F* pose, const F* K,
                         const Img* identity, int64_t s_id, Img* loss, int64_t* index, int64_t b, int row, int col,
                         const warp::Shape& sh, const warp::Options& opt, F alpha) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  const int64_t off = static_cast<int64_t>(row) * sh.W + col;
  F best = F(INFINITY);
  int64_t best_k = 0;
  for (int64_t k = 0; k < s_id + sh.S; ++k) {
    const int64_t bs = b * sh.S + (k - s_id);
    const F l = k < s_id ? load_as<F>(identity + (b * s_id + k) * HW + off)
                         : warped_loss(sources + bs * sh.C * HW, target + b * sh.C * HW,
                                       window_taps(depth, K, pose + bs * 16, b, row, col, sh, opt), row, col, sh,
                                       alpha);
    photometric::take_if_lower(l, k, best, best_k);
  }
  store_as(loss + b * HW + off, best);
  index[b * HW + off] = best_k;
}

// ---- a block of positions, one per GPU thread (photometric.cuh: Position): a tile of pixels and the
// halo around it whose warped values the tile's windows read, warped once into the block's plane in
// shared memory (the forward's tile kernel: halo 1; the backward's: halo 2). ----
using photometric::block_position;
using photometric::kBlockH;
using photometric::kBlockPositions;
using photometric::kBlockW;
using photometric::Position;

// The sums of the window centred on an in-image position (reflected at the image border) over the
// block's warped plane x_s and the target plane y, in warped_loss's order.
template <typename F>
struct WindowSums {
  F sx, sy, sxx, syy, sxy;
};

template <typename F, typename Img>
FD_HD WindowSums<F> block_window_sums(const F* x_s, const Img* y, int H, int W, const Position& pos) {
  WindowSums<F> s = {F(0), F(0), F(0), F(0), F(0)};
  const int row0 = pos.row - pos.t / kBlockW, col0 = pos.col - pos.t % kBlockW;  // the block's first pixel
  for (int dy = -1; dy <= 1; ++dy) {
    const int r = photometric::reflect(pos.row + dy, H);
    for (int dx = -1; dx <= 1; ++dx) {
      const int q = photometric::reflect(pos.col + dx, W);
      const F xv = x_s[(r - row0) * kBlockW + q - col0];
      const F yv = load_as<F>(y + static_cast<int64_t>(r) * W + q);
      s.sx += xv;
      s.sy += yv;
      s.sxx += xv * xv;
      s.syy += yv * yv;
      s.sxy += xv * yv;
    }
  }
  return s;
}

// ---- the forward over blocks (reprojection_tile_fwd_kernel, the alternative to forward_pixel's
// recomputed windows that the benchmark times as FORWARD = "tile"): one thread per position of a
// block, a tile of (kBlockH - 2) x (kBlockW - 2) pixels and its halo of 1. Per source, each
// position's taps (pixel_taps); per channel, (A) tile_sample_phase warps the position into the
// block's plane, (B) tile_loss_phase adds the SSIM and L1 terms of the window centred on each tile
// pixel; then the candidate's loss (mix_channels) and photometric::take_if_lower. The same samples, sums and
// comparisons in the same order as forward_pixel, each warp computed once instead of in 9 windows. ----

// Tiles across W and down H of the forward's tile grid.
FD_HD int forward_tiles_w(int W) { return (W + kBlockW - 3) / (kBlockW - 2); }
FD_HD int forward_tiles_h(int H) { return (H + kBlockH - 3) / (kBlockH - 2); }

// (A) the warped value of one source plane at the position (0 where its taps are masked off) into x_s.
template <typename F, typename Img>
FD_HD void tile_sample_phase(const warp::Taps<F>& taps, const Img* plane, int W, const Position& pos, F* x_s) {
  x_s[pos.t] = warp::sample<F>(plane, taps, W);
}

// (B) at a tile pixel: the SSIM and L1 terms of one channel, added to ssim and l1 (warped_loss's).
template <typename F, typename Img>
FD_HD void tile_loss_phase(const F* x_s, const Img* y, int H, int W, const Position& pos, F& ssim, F& l1) {
  if (!pos.own) return;
  const WindowSums<F> s = block_window_sums(x_s, y, H, W, pos);
  ssim += photometric::ssim_loss(photometric::ssim_from_sums(s.sx, s.sy, s.sxx, s.syy, s.sxy));
  l1 += fd_abs(load_as<F>(y + static_cast<int64_t>(pos.row) * W + pos.col) - x_s[pos.t]);
}

// ---- the one-pass backward of the geometry (depth, poses, K): kernels/reprojection.py's
// reprojection_bwd_kernel, one thread per position of a block: a tile of (kBlockH - 4) x
// (kBlockW - 4) pixels and its halo of 2, whose windows the tile's neighbours read. Per source and
// channel: (A) sample_phase warps every position into the block's shared plane, (B) stat_phase
// computes the stat gradients (photometric.cuh: StatGrads, without the reflection counts) of the
// windows centred on the tile's neighbours from it, (C) adjoint_phase sums them at the tile's
// pixels with the counts, adds the L1 term and multiplies d loss / d warped by the sample's
// position gradient; then warp::geometry_backward. The same sums in the same order as
// photometric_bwd_kernel followed by warp_bwd_kernel; the warped images and their gradient are
// never stored. ----

// Tiles across W and down H of the backward's grid.
FD_HD int backward_tiles_w(int W) { return (W + kBlockW - 5) / (kBlockW - 4); }
FD_HD int backward_tiles_h(int H) { return (H + kBlockH - 5) / (kBlockH - 4); }

// What a position keeps through the channels of one source.
template <typename F>
struct SourceState {
  warp::Taps<F> taps;
  bool keep, live;   // depth and projection finite; and a tile pixel
  F g;               // the upstream gradient where this source won, else 0
  F x, d_iu, d_iv;   // this channel's warped value and d sample / d (iu, iv)
  F g_iu, g_iv;      // d loss / d (iu, iv), summed over the channels
};

template <typename F>
FD_HD SourceState<F> begin_source(const warp::Pixel<F>& p, const Position& pos, const F* T, F g_map,
                                  int64_t winner, int64_t k, const warp::Shape& sh, const warp::Options& opt) {
  SourceState<F> st;
  const warp::Geometry<F> g = warp::compute_geometry(p.d, p.ray, p.k, T, sh.W, sh.H, opt.mu, opt.mv, opt.border);
  st.taps = warp::bilinear_taps(g.iu, g.iv, sh.W, sh.H);
  st.keep = p.d_ok && g.finite;
  st.live = st.keep && pos.own;
  st.g = winner == k ? g_map : F(0);
  st.g_iu = st.g_iv = F(0);
  return st;
}

// (A) the warped value of one source plane at the position (0 where not kept) into x_s[t], and
// d sample / d (iu, iv) (the warp's own functions; used only where kept).
template <typename F, typename Img>
FD_HD void sample_phase(SourceState<F>& st, const Img* plane, int W, const Position& pos, F* x_s) {
  st.x = st.keep ? warp::sample<F>(plane, st.taps, W) : F(0);
  st.d_iu = st.d_iv = F(0);
  warp::sample_position_grad(plane, st.taps, W, F(1), &st.d_iu, &st.d_iv);
  x_s[pos.t] = st.x;
}

// (B) the stat gradients of the window centred on the position, from the block's warped plane x_s
// and the target plane y, into the three planes of sg_s (d/d E[x], E[x²], E[xy]), where the
// position is the centre of a window a tile pixel lies in.
template <typename F, typename Img>
FD_HD void stat_phase(const SourceState<F>& st, const F* x_s, const Img* y, int H, int W, const Position& pos,
                      F alpha_c, F* sg_s) {
  if (!pos.windows) return;
  const WindowSums<F> s = block_window_sums(x_s, y, H, W, pos);
  const photometric::StatGrads<F> g =
      photometric::stat_grads_from_terms(photometric::ssim_from_sums(s.sx, s.sy, s.sxx, s.syy, s.sxy), st.g,
                                         alpha_c);
  sg_s[pos.t] = g.mx;
  sg_s[kBlockPositions + pos.t] = g.var;
  sg_s[2 * kBlockPositions + pos.t] = g.cov;
}

// (C) at a tile pixel: the stat gradients of the windows it lies in, each counted as often as it
// holds the pixel (photometric::candidate_grads' order), and the L1 term: d loss / d warped, times
// the sample's position gradient, added to g_iu, g_iv.
template <typename F, typename Img>
FD_HD void adjoint_phase(SourceState<F>& st, const F* sg_s, const Img* y, int H, int W, const Position& pos, F l1_c) {
  if (!st.live) return;
  photometric::StatGrads<F> sum = {F(0), F(0), F(0), F(0)};
  for (int o = 0; o < 9; ++o) {
    const int oy = o / 3 - 1, ox = o % 3 - 1;
    const int count = photometric::reflect_count(pos.row, oy, H) * photometric::reflect_count(pos.col, ox, W);
    if (count == 0) continue;
    const int at = pos.t + oy * kBlockW + ox;
    sum.mx += F(count) * sg_s[at];
    sum.var += F(count) * sg_s[kBlockPositions + at];
    sum.cov += F(count) * sg_s[2 * kBlockPositions + at];
  }
  F g_y = F(0);  // the target's gradient, not needed here
  const F g_x = photometric::pixel_grads(sum, st.x, load_as<F>(y + static_cast<int64_t>(pos.row) * W + pos.col),
                                         st.g, l1_c, &g_y);
  st.g_iu += g_x * st.d_iu;
  st.g_iv += g_x * st.d_iv;
}

}  // namespace reprojection

// ---- entry points on raw pointers: the CUDA launcher (reprojection.cu; geometry float32, stream
// a cudaStream_t) and the CPU twin (reprojection_cpu.cpp; F = float or double). shape: the
// sources' (B, S, C, H, W); identity may be null when s_id == 0. ----
// tile: reprojection_tile_fwd_kernel (each warp computed once per block) instead of
// reprojection_fwd_kernel (forward_pixel: each pixel's 9 windows warped again).
void reprojection_forward_cuda(ImageType type, const void* target, const void* sources, const float* depth,
                               const float* pose, const float* K, const void* identity, int64_t s_id, void* loss,
                               int64_t* index, const warp::Shape& shape, const warp::Options& options, float alpha,
                               bool tile, void* stream);
template <typename F>
void reprojection_forward_cpu(const F* target, const F* sources, const F* depth, const F* pose, const F* K,
                              const F* identity, int64_t s_id, F* loss, int64_t* index, const warp::Shape& shape,
                              const warp::Options& options, F alpha);
// The CPU twin's bands of rows of one batch element: at most kTwinBandRows rows each, as equal as
// whole rows allow, and, where the image has the rows (bands of at least kTwinMinBandRows), at least
// kTwinMinPairs (element, band) pairs in all, so that a small batch keeps the threads busy (B=1 at
// 96 rows: 8 bands of 12, not 3 of 32 on 2 threads). A function of the shape, not of the thread
// count: the pose and intrinsics partial sums, per band, are the same on any machine.
constexpr int kTwinBandRows = 32;
constexpr int kTwinMinBandRows = 8;
constexpr int64_t kTwinMinPairs = 8;
struct TwinBands {
  int64_t count;
  int rows;  // of every band but the last
};
inline TwinBands twin_bands(int H, int64_t B) {
  const int64_t for_rows = (H + kTwinBandRows - 1) / kTwinBandRows;
  const int64_t for_pairs = (kTwinMinPairs + B - 1) / (B > 0 ? B : 1);
  const int64_t wanted = std::max<int64_t>({1, for_rows, std::min<int64_t>(for_pairs, H / kTwinMinBandRows)});
  const int rows = static_cast<int>((H + wanted - 1) / wanted);
  return {(H + rows - 1) / rows, rows};  // fewer than wanted where bands would be empty
}
// The CPU twin's one-pass backward (reprojection_cpu.cpp; F = float or double): grad_depth (B, H, W),
// pose_partials (B, S, bands, 16) and k_partials (B, bands, 4), bands = twin_bands(H, B).count;
// each may be null when not needed.
template <typename F>
void reprojection_backward_cpu(const F* grad, const int64_t* index, const F* target, const F* sources,
                               const F* depth, const F* pose, const F* K, int64_t s_id, F* grad_depth,
                               F* pose_partials, F* k_partials, const warp::Shape& shape,
                               const warp::Options& options, F alpha);
// The one-pass backward (geometry float32): grad_depth (B, H, W), pose_partials (B, S, tiles, 16) and
// k_partials (B, tiles, 4), tiles = backward_tiles_w(W) * backward_tiles_h(H); each may be null when not
// needed. index: the forward's winners (the warped sources from s_id on).
void reprojection_backward_cuda(ImageType type, const void* grad, const int64_t* index, const void* target,
                                const void* sources, const float* depth, const float* pose, const float* K,
                                float* grad_depth, float* pose_partials, float* k_partials, int64_t s_id,
                                const warp::Shape& shape, const warp::Options& options, float alpha, void* stream);

}  // namespace fastdepth
