// Per-pixel math of the fused objective (the reprojection op's forward), shared by the CUDA kernel
// (reprojection.cu) and the CPU twin (reprojection_cpu.cpp): the warp's projection and sampling
// (warp.cuh) recomputed for each pixel of the reflected 3x3 window, and the photometric loss's SSIM
// and minimum (photometric.cuh). Mirrors kernels/reprojection.py; conventions in
// fastdepth/reprojection.py. No torch, no CUDA runtime calls.
#pragma once

#include "photometric.cuh"
#include "warp.cuh"

namespace fastdepth {
namespace reprojection {

// The warped value of one source plane at the in-range pixel (row, col): 0 where the depth or the
// projection is not finite (the warp's convention).
template <typename F, typename Img>
FD_HD F warped_value(const Img* plane, const F* depth, const F* K, const F* pose_s, int64_t b, int row, int col,
                     const warp::Shape& sh, const warp::Options& opt) {
  const warp::Pixel<F> p = warp::make_pixel(depth, K, b, static_cast<int64_t>(row) * sh.W + col, sh, opt.normalize);
  const warp::Geometry<F> g = warp::compute_geometry(p.d, p.ray, p.k, pose_s, sh.W, sh.H, opt.mu, opt.mv, opt.border);
  if (!(p.d_ok && g.finite)) return F(0);
  return warp::sample(plane, warp::bilinear_taps(g.iu, g.iv, sh.W, sh.H), sh.W);
}

// The loss of source s (its C planes at source_bs) against the target (target_b) at (row, col),
// averaged over the channels, accumulated in photometric::candidate_loss's order.
template <typename F, typename Img>
FD_HD F warped_loss(const Img* source_bs, const Img* target_b, const F* depth, const F* K, const F* pose_s, int64_t b,
                    int row, int col, const warp::Shape& sh, const warp::Options& opt, F alpha) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  F ssim = F(0), l1 = F(0);
#pragma unroll 1
  for (int64_t c = 0; c < sh.C; ++c) {
    const Img* x = source_bs + c * HW;
    const Img* y = target_b + c * HW;
    F sx = F(0), sy = F(0), sxx = F(0), syy = F(0), sxy = F(0), centre = F(0);
    for (int dy = -1; dy <= 1; ++dy) {
      const int r = photometric::reflect(row + dy, sh.H);
      for (int dx = -1; dx <= 1; ++dx) {
        const int q = photometric::reflect(col + dx, sh.W);
        const F xv = warped_value(x, depth, K, pose_s, b, r, q, sh, opt);
        const F yv = load_as<F>(y + static_cast<int64_t>(r) * sh.W + q);
        sx += xv;
        sy += yv;
        sxx += xv * xv;
        syy += yv * yv;
        sxy += xv * yv;
        if (dy == 0 && dx == 0) centre = xv;
      }
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
                         : warped_loss(sources + bs * sh.C * HW, target + b * sh.C * HW, depth, K, pose + bs * 16, b,
                                       row, col, sh, opt, alpha);
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
