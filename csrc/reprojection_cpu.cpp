// The CPU twin of the fused objective's CUDA kernel. The same per-pixel functions (warp.cuh,
// photometric.cuh), with one difference the CPU rewards: where each GPU thread recomputes the warp of
// its 3x3 window (reprojection.cuh), the twin warps every source image of a batch element once into
// a scratch buffer (a tile with its halo, the whole image here; warp_rows.h) and then computes the
// photometric loss a row at a time from it (photometric_rows.h), in the order of
// photometric::forward_pixel. The scratch lives for one batch element: the warped images are never
// stored. No torch.
#include <algorithm>
#include <memory>
#include <vector>

#include "photometric_rows.h"
#include "reprojection.cuh"
#include "warp_rows.h"

namespace fastdepth {

template <typename F>
void reprojection_forward_cpu(const F* target, const F* sources, const F* depth, const F* pose, const F* K,
                              const F* identity, int64_t s_id, F* loss, int64_t* index, const warp::Shape& sh,
                              const warp::Options& opt, F alpha) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  const int64_t CHW = sh.C * HW;
  std::unique_ptr<F[]> warped(new F[sh.S * CHW]);  // every element written before it is read
  for (int64_t b = 0; b < sh.B; ++b) {
#pragma omp parallel
    {
      warp::SpanGeometry<F> span(sh.W, false);
      warp::CornerTaps<F> taps(sh.W);
#pragma omp for schedule(static)
      for (int row = 0; row < sh.H; ++row) {
        const int64_t pix0 = static_cast<int64_t>(row) * sh.W;
        for (int64_t s = 0; s < sh.S; ++s) {
          warp::span_geometry(depth, K, b, pix0, sh.W, pose + (b * sh.S + s) * 16, sh, opt, span, false);
          // into the scratch, indexed by s as the sources of b are
          warp::sample_span(sources + (b * sh.S + s) * CHW, span, sh.W, sh, taps, warped.get() + s * CHW + pix0);
        }
      }
    }
#pragma omp parallel
    {
      photometric::RowScratch<F> scratch(sh.W);
      std::vector<F> ssim(sh.W), l1(sh.W), l(sh.W);
      std::vector<int64_t> best_k(sh.W);
#pragma omp for schedule(static)
      for (int row = 0; row < sh.H; ++row) {
        const int64_t off = static_cast<int64_t>(row) * sh.W;
        F* best = loss + b * HW + off;
        for (int j = 0; j < sh.W; ++j) best[j] = F(INFINITY), best_k[j] = 0;
        for (int64_t k = 0; k < s_id; ++k) {
          photometric::take_min_row(identity + (b * s_id + k) * HW + off, k, best, best_k.data(), sh.W);
        }
        for (int64_t s = 0; s < sh.S; ++s) {
          photometric::candidate_loss_row(warped.get() + s * CHW, target + b * CHW, HW, row, sh.C, sh.H, sh.W,
                                          alpha, scratch, ssim.data(), l1.data(), l.data());
          photometric::take_min_row(l.data(), s_id + s, best, best_k.data(), sh.W);
        }
        std::copy(best_k.begin(), best_k.end(), index + b * HW + off);
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
