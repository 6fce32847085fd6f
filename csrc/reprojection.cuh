// Per-pixel math of the fused objective (the reprojection op's forward), shared by the CUDA kernel
// (reprojection.cu) and the CPU twin (reprojection_cpu.cpp): the warp's projection (warp.cuh)
// recomputed for each pixel of the reflected 3x3 window, its samples, and the photometric loss's
// SSIM and minimum (photometric.cuh). Mirrors kernels/reprojection.py, with one difference: here
// the window's taps are computed once per source and kept for every channel (128 registers, no
// spills in the compile report), where the Triton kernel recomputes them per channel (with the
// nine taps live, Triton's compiler needed 240 registers at one pixel per thread). Conventions in
// fastdepth/reprojection.py. No torch, no CUDA runtime calls.
#pragma once

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

template <typename F>
FD_HD WindowTaps<F> window_taps(const F* depth, const F* K, const F* pose_s, int64_t b, int row, int col,
                                const warp::Shape& sh, const warp::Options& opt) {
  WindowTaps<F> w;
#pragma unroll
  for (int o = 0; o < 9; ++o) {
    const int r = photometric::reflect(row + o / 3 - 1, sh.H), q = photometric::reflect(col + o % 3 - 1, sh.W);
    const warp::Pixel<F> p = warp::make_pixel(depth, K, b, static_cast<int64_t>(r) * sh.W + q, sh, opt.normalize);
    const warp::Geometry<F> g =
        warp::compute_geometry(p.d, p.ray, p.k, pose_s, sh.W, sh.H, opt.mu, opt.mv, opt.border);
    w.t[o] = warp::bilinear_taps(g.iu, g.iv, sh.W, sh.H);
    if (!(p.d_ok && g.finite)) w.t[o].m00 = w.t[o].m01 = w.t[o].m10 = w.t[o].m11 = false;
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
    if (l < best || (l != l && best == best)) {
      best = l;
      best_k = k;
    }
  }
  store_as(loss + b * HW + off, best);
  index[b * HW + off] = best_k;
}

}  // namespace reprojection

// ---- entry points on raw pointers: the CUDA launcher (reprojection.cu; geometry float32, stream
// a cudaStream_t) and the CPU twin (reprojection_cpu.cpp; F = float or double). shape: the
// sources' (B, S, C, H, W); identity may be null when s_id == 0. ----
void reprojection_forward_cuda(ImageType type, const void* target, const void* sources, const float* depth,
                               const float* pose, const float* K, const void* identity, int64_t s_id, void* loss,
                               int64_t* index, const warp::Shape& shape, const warp::Options& options, float alpha,
                               void* stream);
template <typename F>
void reprojection_forward_cpu(const F* target, const F* sources, const F* depth, const F* pose, const F* K,
                              const F* identity, int64_t s_id, F* loss, int64_t* index, const warp::Shape& shape,
                              const warp::Options& options, F alpha);

}  // namespace fastdepth
