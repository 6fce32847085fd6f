// The CPU twin of the fused objective's CUDA kernels: the same per-pixel functions (warp.cuh,
// photometric.cuh), over bands of rows of one batch element (twin_bands, reprojection.cuh) where
// the GPU kernels work on a pixel (forward) or a tile (backward). The forward warps the band and its
// halo once into a buffer of the thread's (warp_rows.h), where each GPU thread recomputes the warp of
// its 3x3 window, and computes the photometric loss a row at a time from it (photometric_rows.h);
// the backward streams the CUDA kernel's one-pass phases through the band a row at a time. The
// warped images and their gradient are never stored. No torch.
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
// of one batch element as the tile (as wide as the image; its halo of 2 rows above and below),
// streamed a row at a time so that every pixel's geometry is computed once and what the phases
// pass on stays in a ring of 3 rows per source and channel. At step t, per source: (A) row t's
// geometry and bilinear taps (corner_taps), and per channel its samples and their slopes
// d sample / d (iu, iv) from the same gather (sample_and_slopes); (B) per channel, the stat
// gradients of the windows centred on row t - 1 (stat_grads_row), which need rows t - 2 .. t;
// (C) per channel, their adjoint at row t - 2 (adjoint_box_row, pixel_grads_row), which needs the
// windows of rows t - 3 .. t - 1, times the slopes, summed over the channels into d loss / d (iu, iv).
// Then the geometry's backward of row t - 2 (block_geometry_backward, the row as the block) into
// grad_depth and the band's pose and intrinsics partial sums. The same functions in the same order
// per pixel as photometric_backward_cpu followed by warp_backward_cpu, so the gradients are theirs
// bit for bit, except the pose and intrinsics sums, taken over bands rather than blocks. The halo
// rows are warped by both bands that need them.
template <typename F>
void reprojection_backward_cpu(const F* grad, const int64_t* index, const F* target, const F* sources,
                               const F* depth, const F* pose, const F* K, int64_t s_id, F* grad_depth,
                               F* pose_partials, F* k_partials, const warp::Shape& sh, const warp::Options& opt,
                               F alpha) {
  using Span = warp::SpanGeometry<F>;
  const int W = sh.W, H = sh.H;
  const int64_t HW = static_cast<int64_t>(H) * W, S = sh.S, C = sh.C;
  const TwinBands bands = twin_bands(H, sh.B);
  const F alpha_c = alpha / F(C);
  const F l1_c = (F(1) - alpha) / F(C);
  const int64_t row_size = (W + warp::kLanes - 1) / warp::kLanes * warp::kLanes;  // a row as a block
  const auto geometry_backward =
      opt.normalize ? warp::block_geometry_backward<F, true> : warp::block_geometry_backward<F, false>;
#pragma omp parallel
  {
    // rings of 3 rows, image row r in slot r % 3: the geometry (source s's of slot k at k * S + s),
    // and per source and channel the samples, their slopes, the 4 stat planes; per source where it won
    std::vector<Span> geometry(3 * S, Span(row_size, true));
    std::vector<F> x(S * C * 3 * row_size), d_iu(x.size()), d_iv(x.size()), stats(4 * x.size());
    std::vector<F> won(S * 3 * row_size), g_x(W), g_unused(W);
    const auto ring = [&](std::vector<F>& buffer, int64_t plane, int r) {
      return buffer.data() + (plane * 3 + r % 3) * row_size;
    };
    const auto ring_window = [&](std::vector<F>& buffer, int64_t plane, int r) {
      return photometric::WindowRows<F>{ring(buffer, plane, photometric::reflect(r - 1, H)), ring(buffer, plane, r),
                                        ring(buffer, plane, photometric::reflect(r + 1, H))};
    };
    warp::CornerTaps<F> taps(row_size);
    warp::PixelSpan<F> pixels(row_size);
    warp::BlockGrads<F> grads(S, row_size);
    photometric::RowScratch<F> scratch(W);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < sh.B; ++b) {
      for (int64_t band = 0; band < bands.count; ++band) {
        // rows [x0, x1) warped, [s0, s1) the windows' stat gradients, [r0, r1) the band
        const int r0 = static_cast<int>(band) * bands.rows, r1 = std::min(H, r0 + bands.rows);
        const int x0 = std::max(0, r0 - 2), x1 = std::min(H, r1 + 2);
        const int s0 = std::max(0, r0 - 1), s1 = std::min(H, r1 + 1);
        grads.clear();
        for (int t = x0; t < r1 + 2; ++t) {
          const int u = t - 1, v = t - 2;  // the rows of (B) and (C)
          for (int64_t s = 0; s < S; ++s) {
            const int64_t bs = b * S + s;
            if (t < x1) {  // (A)
              Span& span = geometry[(t % 3) * S + s];
              warp::span_geometry(depth, K, b, static_cast<int64_t>(t) * W, W, pose + bs * 16, sh, opt, span, true);
              warp::corner_taps(span, W, W, H, taps);
              for (int64_t c = 0; c < C; ++c) {
                warp::sample_and_slopes(sources + (bs * C + c) * HW, taps, W, ring(x, s * C + c, t),
                                        ring(d_iu, s * C + c, t), ring(d_iv, s * C + c, t));
              }
              if (t >= s0 && t < s1) {
                const int64_t off = b * HW + static_cast<int64_t>(t) * W;
                photometric::where_won_row(grad + off, index + off, s_id + s, W, ring(won, s, t));
              }
            }
            if (u >= s0 && u < s1) {  // (B)
              for (int64_t c = 0; c < C; ++c) {
                const int64_t plane = s * C + c;
                photometric::stat_grads_row(ring_window(x, plane, u),
                                            photometric::window_rows(target + (b * C + c) * HW, 0, u, H, W), W,
                                            ring(won, s, u), alpha_c, scratch, ring(stats, 4 * plane, u),
                                            ring(stats, 4 * plane + 1, u), ring(stats, 4 * plane + 2, u),
                                            ring(stats, 4 * plane + 3, u));
              }
            }
            if (v >= r0 && v < r1) {  // (C)
              F* gu = grads.g_iu.data() + s * row_size;
              F* gv = grads.g_iv.data() + s * row_size;
              std::fill(gu, gu + W, F(0));
              std::fill(gv, gv + W, F(0));
              const F* keep = geometry[(v % 3) * S + s].field(Span::kKeep);
              for (int64_t c = 0; c < C; ++c) {
                const int64_t plane = s * C + c;
                const photometric::WindowRows<F> rows[4] = {
                    ring_window(stats, 4 * plane, v), ring_window(stats, 4 * plane + 1, v),
                    ring_window(stats, 4 * plane + 2, v), ring_window(stats, 4 * plane + 3, v)};
                photometric::adjoint_box_row(rows, v, H, W, scratch);
                photometric::pixel_grads_row(scratch.sum(0), scratch.sum(1), scratch.sum(2), scratch.sum(3),
                                             ring(x, plane, v), target + (b * C + c) * HW + static_cast<int64_t>(v) * W,
                                             ring(won, s, v), l1_c, W, g_x.data(), g_unused.data());
                warp::add_position_grads(g_x.data(), ring(d_iu, plane, v), ring(d_iv, plane, v), keep, W, gu, gv);
              }
            }
          }
          if (v >= r0 && v < r1) {
            const int64_t pix = static_cast<int64_t>(v) * W;
            warp::span_pixels(depth, K, b, pix, W, sh, opt, pixels);
            geometry_backward(pixels, geometry.data() + (v % 3) * S, S, W, K + b * 9, pose + b * S * 16,
                              grad_depth != nullptr ? grad_depth + b * HW + pix : nullptr, grads);
          }
        }
        warp::store_partials(grads, S, b, band, bands.count, pose_partials, k_partials);
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
