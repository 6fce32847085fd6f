// The CPU twin of the fused objective's CUDA kernel. The same per-pixel functions (warp.cuh,
// photometric.cuh), with one difference the CPU rewards: where each GPU thread recomputes the warp of
// its 3x3 window (reprojection.cuh), the twin warps each source image once into a scratch buffer of
// one image (a tile with its halo, the whole image here) and then computes the photometric loss of
// every pixel from it, in the order of photometric::candidate_loss. The scratch lives for one
// (batch element, source) pair: the warped images are never stored. No torch.
#include <vector>

#include "reprojection.cuh"

namespace fastdepth {

template <typename F>
void reprojection_forward_cpu(const F* target, const F* sources, const F* depth, const F* pose, const F* K,
                              const F* identity, int64_t s_id, F* loss, int64_t* index, const warp::Shape& sh,
                              const warp::Options& opt, F alpha) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  const photometric::Shape one{1, 0, 1, sh.C, sh.H, sh.W};
  std::vector<F> warped(static_cast<size_t>(sh.C * HW));
  for (int64_t b = 0; b < sh.B; ++b) {
    F* best = loss + b * HW;
    int64_t* best_k = index + b * HW;
#pragma omp parallel for schedule(static)
    for (int64_t pix = 0; pix < HW; ++pix) {
      best[pix] = F(INFINITY);
      best_k[pix] = 0;
      for (int64_t k = 0; k < s_id; ++k) {
        const F l = identity[(b * s_id + k) * HW + pix];
        if (l < best[pix] || (l != l && best[pix] == best[pix])) {
          best[pix] = l;
          best_k[pix] = k;
        }
      }
    }
    for (int64_t s = 0; s < sh.S; ++s) {
      const int64_t bs = b * sh.S + s;
#pragma omp parallel for schedule(static)
      for (int64_t pix = 0; pix < HW; ++pix) {
        const warp::Pixel<F> p = warp::make_pixel(depth, K, b, pix, sh, opt.normalize);
        const warp::Geometry<F> g =
            warp::compute_geometry(p.d, p.ray, p.k, pose + bs * 16, sh.W, sh.H, opt.mu, opt.mv, opt.border);
        const bool keep = p.d_ok && g.finite;
        const warp::Taps<F> t = warp::bilinear_taps(g.iu, g.iv, sh.W, sh.H);
        for (int64_t c = 0; c < sh.C; ++c) {
          warped[c * HW + pix] = keep ? warp::sample(sources + (bs * sh.C + c) * HW, t, sh.W) : F(0);
        }
      }
#pragma omp parallel for collapse(2) schedule(static)
      for (int row = 0; row < sh.H; ++row) {
        for (int col = 0; col < sh.W; ++col) {
          const int64_t pix = static_cast<int64_t>(row) * sh.W + col;
          const F l = photometric::candidate_loss(warped.data(), target + b * sh.C * HW, HW, row, col, one, alpha);
          if (l < best[pix] || (l != l && best[pix] == best[pix])) {
            best[pix] = l;
            best_k[pix] = s_id + s;
          }
        }
      }
    }
  }
}

template void reprojection_forward_cpu<float>(const float*, const float*, const float*, const float*, const float*,
                                              const float*, int64_t, float*, int64_t*, const warp::Shape&,
                                              const warp::Options&, float);
template void reprojection_forward_cpu<double>(const double*, const double*, const double*, const double*,
                                               const double*, const double*, int64_t, double*, int64_t*,
                                               const warp::Shape&, const warp::Options&, double);

}  // namespace fastdepth
