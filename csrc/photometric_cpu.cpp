// The CPU twin of the photometric loss's CUDA kernels: the same per-pixel math (photometric.cuh),
// computed a row at a time (photometric_rows.h: separable window sums, loops the compiler
// vectorises), parallel over rows with OpenMP; the backward a band of rows at a time (see there).
// No torch.
#include <algorithm>
#include <memory>
#include <vector>

#include "cpu_threads.h"
#include "photometric_rows.h"

namespace fastdepth {

template <typename F>
void photometric_forward_cpu(const F* target, const F* identity, const F* warped, F* loss, int64_t* index,
                             const photometric::Shape& sh, F alpha) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
#pragma omp parallel
  {
    photometric::RowScratch<F> scratch(sh.W);
    photometric::TargetSums<F> target_sums(sh.C, sh.W);
    std::vector<F> ssim(sh.W), l1(sh.W), l(sh.W);
    std::vector<int64_t> best_k(sh.W);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < sh.B; ++b) {
      for (int row = 0; row < sh.H; ++row) {
        const int64_t off = b * HW + static_cast<int64_t>(row) * sh.W;
        const F* y = target + b * sh.C * HW;
        F* best = loss + off;
        for (int j = 0; j < sh.W; ++j) best[j] = F(INFINITY), best_k[j] = 0;
        target_sums.sum_row(y, HW, row, sh.C, sh.H, scratch);
        for (int64_t k = 0; k < sh.S_id + sh.S_w; ++k) {
          const F* x = k < sh.S_id ? identity + (b * sh.S_id + k) * sh.C * HW
                                   : warped + (b * sh.S_w + k - sh.S_id) * sh.C * HW;
          photometric::candidate_loss_row({x, HW, 0}, y, HW, target_sums, row, sh.C, sh.H, sh.W, alpha, scratch,
                                          ssim.data(), l1.data(), l.data());
          photometric::take_min_row(l.data(), k, best, best_k.data(), sh.W);
        }
        if (index != nullptr) std::copy(best_k.begin(), best_k.end(), index + off);
      }
    }
  }
}

// Unlike the GPU kernels, which recompute the window statistics of the 9 neighbours of every
// pixel, the twin computes each output pixel's stat gradients once (zero where a candidate did
// not win, NaN where its window holds NaN: see StatGrads) and then applies the adjoint of the
// reflected box filter: the same per-pixel functions, about a ninth of the arithmetic on a CPU.
// Both run a band of rows at a time per channel, the stat gradients of the band and its two halo
// rows in a buffer of the thread's that stays in cache (the halo rows are computed by both bands
// that need them): at most kMaxBandRows rows, the bands of an image as equal as whole rows allow
// (none empty), and at least two (channel, band) pairs per thread. Bands of 48 rows measured
// 10-20% faster than stat planes written whole (2 threads, 3x192x640).
template <typename F>
void photometric_backward_cpu(const F* grad, const int64_t* index, const F* target, const F* identity,
                              const F* warped, F* grad_target, F* grad_identity, F* grad_warped,
                              const photometric::Shape& sh, F alpha) {
  constexpr int kMaxBandRows = 48;
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  const photometric::CandidateRange ks = photometric::needed_candidates(
      sh, grad_target != nullptr, grad_identity != nullptr, grad_warped != nullptr);
  const int64_t K = ks.last - ks.first;  // candidates ks.first + 0 .. K - 1
  const F alpha_c = alpha / F(sh.C);
  const F l1_c = (F(1) - alpha) / F(sh.C);
  const int64_t for_rows = (sh.H + kMaxBandRows - 1) / kMaxBandRows;
  const int64_t for_threads = (2 * thread_count() + sh.C - 1) / sh.C;
  const int64_t wanted = std::min<int64_t>(sh.H, std::max(for_rows, for_threads));
  const int band_rows = static_cast<int>((sh.H + wanted - 1) / wanted);
  const int bands = (sh.H + band_rows - 1) / band_rows;  // fewer than wanted where bands would be empty
  // the upstream gradient where candidate k won, else 0 (K planes): shared by every channel
  std::unique_ptr<F[]> won(new F[K * HW]);
  const auto won_plane = [&](int64_t k) { return won.get() + (k - ks.first) * HW; };
  for (int64_t b = 0; b < sh.B; ++b) {
    const F* g_map = grad + b * HW;
    const int64_t* i_map = index != nullptr ? index + b * HW : nullptr;
    const auto plane = [&](int64_t k, int64_t c) {
      return k < sh.S_id ? ((b * sh.S_id + k) * sh.C + c) * HW : ((b * sh.S_w + k - sh.S_id) * sh.C + c) * HW;
    };
    const auto source = [&](int64_t k) { return k < sh.S_id ? identity : warped; };
#pragma omp parallel
    {
      photometric::RowScratch<F> scratch(sh.W);
      std::vector<F> g_target(static_cast<size_t>(band_rows) * sh.W), g_unused(sh.W);  // the band's rows
      // four stat planes (d/d E[x], E[y], E[x²], E[xy]) of the band's rows and its halo: row r of
      // the image at band_stats[q] + (r - first) * W, first = the band's first row less its halo
      const size_t band_size = static_cast<size_t>(band_rows + 2) * sh.W;
      std::vector<F> band_stats(4 * band_size);
      const auto band_plane = [&](int q) { return band_stats.data() + q * band_size; };
#pragma omp for collapse(2) schedule(static)
      for (int64_t k = ks.first; k < ks.last; ++k) {
        for (int row = 0; row < sh.H; ++row) {
          const int64_t off = static_cast<int64_t>(row) * sh.W;
          photometric::where_won_row(g_map + off, i_map != nullptr ? i_map + off : nullptr, k, sh.W,
                                     won_plane(k) + off);
        }
      }
#pragma omp for collapse(2) schedule(static)
      for (int64_t c = 0; c < sh.C; ++c) {
        for (int band = 0; band < bands; ++band) {
          const int r0 = band * band_rows, r1 = std::min(sh.H, r0 + band_rows);
          const int first = std::max(0, r0 - 1), last = std::min(sh.H, r1 + 1);
          const F* y = target + (b * sh.C + c) * HW;
          std::fill(g_target.begin(), g_target.end(), F(0));
          for (int64_t k = ks.first; k < ks.last; ++k) {
            const F* x = source(k) + plane(k, c);
            for (int row = first; row < last; ++row) {
              const int64_t at = static_cast<int64_t>(row - first) * sh.W;
              photometric::stat_grads_row(photometric::window_rows(x, 0, row, sh.H, sh.W),
                                          photometric::window_rows(y, 0, row, sh.H, sh.W), sh.W,
                                          won_plane(k) + static_cast<int64_t>(row) * sh.W, alpha_c, scratch,
                                          band_plane(0) + at, band_plane(1) + at, band_plane(2) + at,
                                          band_plane(3) + at);
            }
            F* g_out = k < sh.S_id ? grad_identity : grad_warped;
            for (int row = r0; row < r1; ++row) {
              const int64_t off = static_cast<int64_t>(row) * sh.W;
              const photometric::WindowRows<F> rows[4] = {
                  photometric::window_rows<F>(band_plane(0), first, row, sh.H, sh.W),
                  photometric::window_rows<F>(band_plane(1), first, row, sh.H, sh.W),
                  photometric::window_rows<F>(band_plane(2), first, row, sh.H, sh.W),
                  photometric::window_rows<F>(band_plane(3), first, row, sh.H, sh.W)};
              photometric::adjoint_box_row(rows, row, sh.H, sh.W, scratch);
              photometric::pixel_grads_row(scratch.sum(0), scratch.sum(1), scratch.sum(2), scratch.sum(3), x + off,
                                           y + off, won_plane(k) + off, l1_c, sh.W,
                                           g_out != nullptr ? g_out + plane(k, c) + off : g_unused.data(),
                                           g_target.data() + static_cast<int64_t>(row - r0) * sh.W);
            }
          }
          if (grad_target != nullptr) {
            std::copy(g_target.begin(), g_target.begin() + static_cast<int64_t>(r1 - r0) * sh.W,
                      grad_target + (b * sh.C + c) * HW + static_cast<int64_t>(r0) * sh.W);
          }
        }
      }
    }
  }
}

template void photometric_forward_cpu<float>(const float*, const float*, const float*, float*, int64_t*,
                                             const photometric::Shape&, float);
template void photometric_forward_cpu<double>(const double*, const double*, const double*, double*, int64_t*,
                                              const photometric::Shape&, double);
template void photometric_backward_cpu<float>(const float*, const int64_t*, const float*, const float*, const float*,
                                              float*, float*, float*, const photometric::Shape&, float);
template void photometric_backward_cpu<double>(const double*, const int64_t*, const double*, const double*,
                                               const double*, double*, double*, double*, const photometric::Shape&,
                                               double);

}  // namespace fastdepth
