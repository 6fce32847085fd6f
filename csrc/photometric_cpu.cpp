// The CPU twin of the photometric loss's CUDA kernels: the same per-pixel math (photometric.cuh)
// driven by host loops, parallel over pixels with OpenMP; the backward runs in two passes (see
// there). No torch.
#include <memory>
#include <vector>

#include "photometric.cuh"

namespace fastdepth {

template <typename F>
void photometric_forward_cpu(const F* target, const F* identity, const F* warped, F* loss, int64_t* index,
                             const photometric::Shape& sh, F alpha) {
#pragma omp parallel for collapse(3) schedule(static)
  for (int64_t b = 0; b < sh.B; ++b) {
    for (int row = 0; row < sh.H; ++row) {
      for (int col = 0; col < sh.W; ++col) {
        photometric::forward_pixel(target, identity, warped, loss, index, b, row, col, sh, alpha);
      }
    }
  }
}

// Unlike the GPU kernels, which recompute the window statistics of the 9 neighbours of every
// pixel, the twin computes each output pixel's stat gradients once (pass 1, skipping pixels a
// candidate did not win) and then applies the adjoint of the reflected box filter (pass 2): the
// same per-pixel functions, about a ninth of the arithmetic on a CPU.
template <typename F>
void photometric_backward_cpu(const F* grad, const int64_t* index, const F* target, const F* identity,
                              const F* warped, F* grad_target, F* grad_identity, F* grad_warped,
                              const photometric::Shape& sh, F alpha) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  const int64_t K = sh.S_id + sh.S_w;
  const F alpha_c = alpha / F(sh.C);
  const F l1_c = (F(1) - alpha) / F(sh.C);
  // every element is written in pass 1: no initialisation (a 16-byte struct per candidate plane pixel)
  std::unique_ptr<photometric::StatGrads<F>[]> stats(new photometric::StatGrads<F>[K * sh.C * HW]);
  for (int64_t b = 0; b < sh.B; ++b) {
    const F* g_map = grad + b * HW;
    const int64_t* i_map = index != nullptr ? index + b * HW : nullptr;
    const auto plane = [&](int64_t k, int64_t c) {
      return k < sh.S_id ? ((b * sh.S_id + k) * sh.C + c) * HW : ((b * sh.S_w + k - sh.S_id) * sh.C + c) * HW;
    };
    const auto source = [&](int64_t k) { return k < sh.S_id ? identity : warped; };
#pragma omp parallel for collapse(3) schedule(static)
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t c = 0; c < sh.C; ++c) {
        for (int row = 0; row < sh.H; ++row) {
          for (int col = 0; col < sh.W; ++col) {
            const int64_t off = static_cast<int64_t>(row) * sh.W + col;
            const bool won = i_map == nullptr || i_map[off] == k;
            const F g = won ? g_map[off] : F(0);
            stats[(k * sh.C + c) * HW + off] =
                g != F(0) ? photometric::stat_grads_at(source(k) + plane(k, c), target + (b * sh.C + c) * HW, row,
                                                       col, sh.H, sh.W, g, alpha_c)
                          : photometric::StatGrads<F>{F(0), F(0), F(0), F(0)};
          }
        }
      }
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t c = 0; c < sh.C; ++c) {
      for (int row = 0; row < sh.H; ++row) {
        for (int col = 0; col < sh.W; ++col) {
          const int64_t off = static_cast<int64_t>(row) * sh.W + col;
          const F yv = target[(b * sh.C + c) * HW + off];
          const bool interior = row >= 2 && row < sh.H - 2 && col >= 2 && col < sh.W - 2;
          F g_target = F(0);
          for (int64_t k = 0; k < K; ++k) {
            photometric::StatGrads<F> sum = {F(0), F(0), F(0), F(0)};
            const photometric::StatGrads<F>* at = stats.get() + (k * sh.C + c) * HW;
            if (interior) {  // every count is 1: the same sum without the reflection's branches
              for (int oy = -1; oy <= 1; ++oy) {
                for (int ox = -1; ox <= 1; ++ox) {
                  const photometric::StatGrads<F>& s = at[off + static_cast<int64_t>(oy) * sh.W + ox];
                  sum.mx += s.mx, sum.my += s.my, sum.var += s.var, sum.cov += s.cov;
                }
              }
            } else {
              for (int o = 0; o < 9; ++o) {
                const int oy = o / 3 - 1, ox = o % 3 - 1;
                const int count =
                    photometric::reflect_count(row, oy, sh.H) * photometric::reflect_count(col, ox, sh.W);
                if (count == 0) continue;
                const photometric::StatGrads<F>& s = at[off + static_cast<int64_t>(oy) * sh.W + ox];
                sum.mx += F(count) * s.mx;
                sum.my += F(count) * s.my;
                sum.var += F(count) * s.var;
                sum.cov += F(count) * s.cov;
              }
            }
            const F g_here = (i_map == nullptr || i_map[off] == k) ? g_map[off] : F(0);
            const F xv = source(k)[plane(k, c) + off];
            const F g_x = photometric::pixel_grads(sum, xv, yv, g_here, l1_c, &g_target);
            F* g_out = k < sh.S_id ? grad_identity : grad_warped;
            if (g_out != nullptr) g_out[plane(k, c) + off] = g_x;
          }
          if (grad_target != nullptr) grad_target[(b * sh.C + c) * HW + off] = g_target;
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
