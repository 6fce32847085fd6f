// The CPU twin of the fused objective's CUDA kernels: the same per-pixel functions (warp.cuh,
// photometric.cuh), over bands of rows of one batch element (twin_bands, reprojection.cuh) where
// the GPU kernels work on a pixel (forward) or a tile (backward). The forward warps the band and its
// halo once into a buffer of the thread's (warp_rows.h), where each GPU thread recomputes the warp of
// its 3x3 window, and computes the photometric loss a row at a time from it (photometric_rows.h);
// the backward runs the CUDA kernel's one-pass phases over the band. The warped images and their
// gradient are never stored. No torch.
#include <algorithm>
#include <vector>

#include "photometric_rows.h"
#include "reprojection.cuh"
#include "warp_rows.h"

namespace fastdepth {

// The forward, a band at a time: every source warped at the band's rows and the row above and below
// it (its halo, warped by both bands that need it) into the thread's band buffer, then the loss a
// row at a time from it, in the order of photometric::forward_pixel.
template <typename F>
void reprojection_forward_cpu(const F* target, const F* sources, const F* depth, const F* pose, const F* K,
                              const F* identity, int64_t s_id, F* loss, int64_t* index, const warp::Shape& sh,
                              const warp::Options& opt, F alpha) {
  const int W = sh.W;
  const int64_t HW = static_cast<int64_t>(sh.H) * W;
  const int64_t CHW = sh.C * HW;
  const TwinBands bands = twin_bands(sh.H, sh.B);
#pragma omp parallel
  {
    const int64_t band_size = static_cast<int64_t>(bands.rows + 2) * W;  // a plane's rows in the buffer
    warp::SpanGeometry<F> span(band_size, false);
    warp::CornerTaps<F> taps(band_size);
    std::vector<F> warped(sh.S * sh.C * band_size);  // source s, channel c at (s * C + c) * band_size
    photometric::RowScratch<F> scratch(W);
    photometric::TargetSums<F> target_sums(sh.C, W);
    std::vector<F> ssim(W), l1(W), l(W);
    std::vector<int64_t> best_k(W);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < sh.B; ++b) {
      for (int64_t band = 0; band < bands.count; ++band) {
        const int r0 = static_cast<int>(band) * bands.rows, r1 = std::min(sh.H, r0 + bands.rows);
        const int x0 = std::max(0, r0 - 1), x1 = std::min(sh.H, r1 + 1);  // the rows warped
        const int64_t n = static_cast<int64_t>(x1 - x0) * W;
        for (int64_t s = 0; s < sh.S; ++s) {
          const int64_t bs = b * sh.S + s;
          warp::span_geometry(depth, K, b, static_cast<int64_t>(x0) * W, n, pose + bs * 16, sh, opt, span, false);
          warp::sample_span(sources + bs * CHW, span, n, sh, taps, warped.data() + s * sh.C * band_size, band_size);
        }
        for (int row = r0; row < r1; ++row) {
          const int64_t off = static_cast<int64_t>(row) * W;
          F* best = loss + b * HW + off;
          for (int j = 0; j < W; ++j) best[j] = F(INFINITY), best_k[j] = 0;
          for (int64_t k = 0; k < s_id; ++k) {
            photometric::take_min_row(identity + (b * s_id + k) * HW + off, k, best, best_k.data(), W);
          }
          target_sums.sum_row(target + b * CHW, HW, row, sh.C, sh.H, scratch);
          for (int64_t s = 0; s < sh.S; ++s) {
            photometric::candidate_loss_row({warped.data() + s * sh.C * band_size, band_size, x0}, target + b * CHW,
                                            HW, target_sums, row, sh.C, sh.H, W, alpha, scratch, ssim.data(),
                                            l1.data(), l.data());
            photometric::take_min_row(l.data(), s_id + s, best, best_k.data(), W);
          }
          std::copy(best_k.begin(), best_k.end(), index + b * HW + off);
        }
      }
    }
  }
}

// The one-pass backward of the geometry, reprojection.cuh's phases with a band of rows (twin_bands)
// of one batch element as the tile (as wide as the image; its halo of 2 rows above and below). Per
// source: the warp's geometry of the band and its halo, and its bilinear taps (corner_taps); per
// channel, (A) its samples, and their slopes d sample / d (iu, iv) from the same gather
// (sample_and_slopes), into the thread's band buffers; (B) the stat gradients of the windows
// centred on the band's rows and the rows next to it (stat_grads_row); (C) their adjoint at the
// band's rows (adjoint_box_row, pixel_grads_row), times the slopes, summed over the channels into
// d loss / d (iu, iv). Then the geometry's backward of the band, kBlock pixels at a time
// (block_geometry_backward), into grad_depth and the band's pose and intrinsics partial sums. The
// same functions in the same order as photometric_backward_cpu
// followed by warp_backward_cpu, so the gradients are theirs bit for bit, except the pose and
// intrinsics sums, taken over bands rather than blocks. The halo rows are warped by both bands that
// need them. Bands of 24 to 32 rows measured fastest of 8 to 64 (2 threads, B=2 3x192x640; the
// forward's within 5% from 8 to 32); with random per-pixel depth, 16 to 96 rows within 10%.
template <typename F>
void reprojection_backward_cpu(const F* grad, const int64_t* index, const F* target, const F* sources,
                               const F* depth, const F* pose, const F* K, int64_t s_id, F* grad_depth,
                               F* pose_partials, F* k_partials, const warp::Shape& sh, const warp::Options& opt,
                               F alpha) {
  using Span = warp::SpanGeometry<F>;
  const int W = sh.W;
  const int64_t HW = static_cast<int64_t>(sh.H) * W;
  const TwinBands bands = twin_bands(sh.H, sh.B);
  const F alpha_c = alpha / F(sh.C);
  const F l1_c = (F(1) - alpha) / F(sh.C);
  const auto geometry_backward =
      opt.normalize ? warp::block_geometry_backward<F, true> : warp::block_geometry_backward<F, false>;
#pragma omp parallel
  {
    // the band's rows and halo: rows [x0, x1) warped, [s0, s1) windows, [r0, r1) the band
    const size_t x_rows = bands.rows + 4, s_rows = bands.rows + 2;
    Span span(static_cast<int64_t>(x_rows) * W, false);
    warp::CornerTaps<F> taps(static_cast<int64_t>(x_rows) * W);
    std::vector<F> x(x_rows * W), d_iu(x_rows * W), d_iv(x_rows * W), won(s_rows * W);
    std::vector<F> stats(4 * s_rows * W);  // d/d E[x], E[y], E[x²], E[xy] of the window rows
    std::vector<F> g_iu(sh.S * bands.rows * W), g_iv(g_iu.size()), g_x(W), g_unused(W);
    photometric::RowScratch<F> scratch(W);
    std::vector<Span> block_spans(sh.S, Span(warp::kBlock, true));
    warp::PixelSpan<F> pixels(warp::kBlock);
    warp::BlockGrads<F> grads(sh.S);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < sh.B; ++b) {
      for (int64_t band = 0; band < bands.count; ++band) {
        const int r0 = static_cast<int>(band) * bands.rows, r1 = std::min(sh.H, r0 + bands.rows);
        const int x0 = std::max(0, r0 - 2), x1 = std::min(sh.H, r1 + 2);
        const int s0 = std::max(0, r0 - 1), s1 = std::min(sh.H, r1 + 1);
        const auto x_row = [&](int r) { return x.data() + static_cast<int64_t>(r - x0) * W; };
        const auto stat_row = [&](int q, int r) { return stats.data() + (q * s_rows + r - s0) * W; };
        const int64_t band_n = static_cast<int64_t>(r1 - r0) * W, x_n = static_cast<int64_t>(x1 - x0) * W;
        for (int64_t s = 0; s < sh.S; ++s) {
          const int64_t bs = b * sh.S + s;
          warp::span_geometry(depth, K, b, static_cast<int64_t>(x0) * W, x_n, pose + bs * 16, sh, opt, span, false);
          for (int r = s0; r < s1; ++r) {
            const int64_t off = b * HW + static_cast<int64_t>(r) * W;
            photometric::where_won_row(grad + off, index + off, s_id + s, W, won.data() + (r - s0) * W);
          }
          F* gu = g_iu.data() + s * bands.rows * W;
          F* gv = g_iv.data() + s * bands.rows * W;
          std::fill(gu, gu + band_n, F(0));
          std::fill(gv, gv + band_n, F(0));
          warp::corner_taps(span, x_n, W, sh.H, taps);
          for (int64_t c = 0; c < sh.C; ++c) {
            const F* y = target + (b * sh.C + c) * HW;
            // (A)
            warp::sample_and_slopes(sources + (bs * sh.C + c) * HW, taps, x_n, x.data(), d_iu.data(), d_iv.data());
            // (B)
            for (int r = s0; r < s1; ++r) {
              photometric::stat_grads_row(photometric::window_rows(x.data(), x0, r, sh.H, W),
                                          photometric::window_rows(y, 0, r, sh.H, W), W,
                                          won.data() + (r - s0) * W, alpha_c, scratch, stat_row(0, r),
                                          stat_row(1, r), stat_row(2, r), stat_row(3, r));
            }
            // (C)
            for (int r = r0; r < r1; ++r) {
              const F* const rows[4] = {stat_row(0, r), stat_row(1, r), stat_row(2, r), stat_row(3, r)};
              photometric::adjoint_box_row(rows, r, sh.H, W, scratch);
              photometric::pixel_grads_row(scratch.sum(0), scratch.sum(1), scratch.sum(2), scratch.sum(3), x_row(r),
                                           y + static_cast<int64_t>(r) * W, won.data() + (r - s0) * W, l1_c, W,
                                           g_x.data(), g_unused.data());
              const int64_t at = static_cast<int64_t>(r - x0) * W, band_at = static_cast<int64_t>(r - r0) * W;
              warp::add_position_grads(g_x.data(), d_iu.data() + at, d_iv.data() + at, span.field(Span::kKeep) + at,
                                       W, gu + band_at, gv + band_at);
            }
          }
        }
        grads.clear();
        const int64_t pix_band = static_cast<int64_t>(r0) * W;
        for (int64_t i0 = 0; i0 < band_n; i0 += warp::kBlock) {
          const int64_t n = std::min<int64_t>(warp::kBlock, band_n - i0);
          for (int64_t s = 0; s < sh.S; ++s) {
            warp::span_geometry(depth, K, b, pix_band + i0, n, pose + (b * sh.S + s) * 16, sh, opt, block_spans[s],
                                true);
            const F* gu = g_iu.data() + s * bands.rows * W + i0;
            const F* gv = g_iv.data() + s * bands.rows * W + i0;
            std::copy(gu, gu + n, grads.g_iu.data() + s * warp::kBlock);
            std::copy(gv, gv + n, grads.g_iv.data() + s * warp::kBlock);
          }
          warp::span_pixels(depth, K, b, pix_band + i0, n, sh, opt, pixels);
          geometry_backward(pixels, block_spans.data(), sh.S, n, K + b * 9, pose + b * sh.S * 16,
                            grad_depth != nullptr ? grad_depth + b * HW + pix_band + i0 : nullptr, grads);
        }
        warp::store_partials(grads, sh.S, b, band, bands.count, pose_partials, k_partials);
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

template void reprojection_backward_cpu<float>(const float*, const int64_t*, const float*, const float*,
                                               const float*, const float*, const float*, int64_t, float*, float*,
                                               float*, const warp::Shape&, const warp::Options&, float);
template void reprojection_backward_cpu<double>(const double*, const int64_t*, const double*, const double*,
                                                const double*, const double*, const double*, int64_t, double*,
                                                double*, double*, const warp::Shape&, const warp::Options&, double);

}  // namespace fastdepth
