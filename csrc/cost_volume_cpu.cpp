// The CPU twin of the cost volume's CUDA kernels: the same per-pixel math (cost_volume.cuh), in
// OpenMP loops over rows of one (image, hypothesis). Unlike a GPU thread, which recomputes a
// source's taps for every channel, the twin computes the views of a row once and then goes through
// the channels plane by plane (the same sums in the same order per pixel, far fewer operations and
// cache misses). The backward's scatters go to per-thread gradient buffers (cpu_threads.h). No torch.
#include <algorithm>
#include <vector>

#include "cost_volume.cuh"
#include "cpu_threads.h"

namespace fastdepth {
namespace {

using cost_volume::View;

// The views of every source for one row of target pixels at hypothesis d.
template <typename F>
void row_views(const F* u, const F* v, int64_t b, int64_t d, int row, const cost_volume::Shape& sh,
               const cost_volume::Options& o, std::vector<View<F>>& views) {
  for (int64_t s = 0; s < sh.S; ++s) {
    for (int col = 0; col < sh.W; ++col) {
      const int64_t at = cost_volume::view_at(b, s, d, static_cast<int64_t>(row) * sh.W + col, sh);
      views[s * sh.W + col] = cost_volume::make_view(u[at], v[at], sh, o);
    }
  }
}

// warp::sample, with a branch-free path where all four taps are inside (the same products, added
// in the same order): most samples of a cost volume.
template <typename F>
inline __attribute__((always_inline)) F sample_fast(const F* plane, const warp::Taps<F>& t, int W) {
  if (!(t.m00 && t.m01 && t.m10 && t.m11)) return warp::sample<F>(plane, t, W);
  const F* p = plane + t.o00;
  F val = (F(1) - t.fu) * (F(1) - t.fv) * p[0];
  val += t.fu * (F(1) - t.fv) * p[1];
  val += (F(1) - t.fu) * t.fv * p[W];
  val += t.fu * t.fv * p[W + 1];
  return val;
}

// warp::scatter_bilinear into the buffer ``to``, with the same branch-free path as sample_fast.
template <typename F, typename Scatter>
inline __attribute__((always_inline)) void scatter_fast(F* to, const warp::Taps<F>& t, int64_t plane, int W, F go,
                                                        Scatter& scatter) {
  if (!(t.m00 && t.m01 && t.m10 && t.m11)) return warp::scatter_bilinear(t, plane, W, go, scatter);
  F* q = to + plane + t.o00;
  q[0] += (F(1) - t.fu) * (F(1) - t.fv) * go;
  q[1] += t.fu * (F(1) - t.fv) * go;
  q[W] += (F(1) - t.fu) * t.fv * go;
  q[W + 1] += t.fu * t.fv * go;
}

// One source plane (sampled through views) against a row of target values t: added to acc (l1,
// dot) or to the views' sum and sum of squares (variance). Templated on the reduction.
template <typename F, int kReduction>
void forward_row(const F* t, const F* plane, const View<F>* views, int W, F* acc, F* sum, F* sum_sq) {
  for (int col = 0; col < W; ++col) {
    const F x = sample_fast(plane, views[col].t, W);
    if constexpr (kReduction == cost_volume::kL1) {
      acc[col] += fd_abs(t[col] - x);
    } else if constexpr (kReduction == cost_volume::kDot) {
      acc[col] += t[col] * x;
    } else {
      sum[col] += x, sum_sq[col] += x * x;
    }
  }
}

// The backward of one source plane (at offset plane, sampled through views) along a row of target
// values t: the sample gradients scattered into my_s and, where add_target, the target's added to
// my_t_row (kFeatures); the position gradients added to g_iu, g_iv (kGeometry). Templated on what
// the loop would otherwise test at every pixel.
template <typename F, int kReduction, bool kFeatures, bool kGeometry>
void backward_row(const F* t, const F* fs, int64_t plane, const View<F>* views, const F* go, const F* mean, int W,
                  bool add_target, F* my_t_row, F* my_s, F* g_iu, F* g_iv) {
  auto scatter_s = [=](int64_t at, F value) { my_s[at] += value; };
  for (int col = 0; col < W; ++col) {
    const View<F>& w = views[col];
    const F x = sample_fast(fs + plane, w.t, W);
    F gx, gt;
    cost_volume::reduction_grads(kReduction, go[col], t[col], x, mean[col], &gx, &gt);
    if constexpr (kFeatures) {
      if (add_target) my_t_row[col] += gt;
      scatter_fast(my_s, w.t, plane, W, gx, scatter_s);
    }
    if constexpr (kGeometry) warp::sample_position_grad(fs + plane, w.t, W, gx, &g_iu[col], &g_iv[col]);
  }
}

template <typename F>
using BackwardRow = decltype(&backward_row<F, 0, false, false>);

template <typename F, int kReduction>
BackwardRow<F> backward_row_for(bool features, bool geometry) {
  static constexpr BackwardRow<F> kRows[4] = {
      backward_row<F, kReduction, false, false>, backward_row<F, kReduction, false, true>,
      backward_row<F, kReduction, true, false>, backward_row<F, kReduction, true, true>};
  return kRows[2 * features + geometry];
}

template <typename F>
BackwardRow<F> backward_row_for(int reduction, bool features, bool geometry) {
  if (reduction == cost_volume::kL1) return backward_row_for<F, cost_volume::kL1>(features, geometry);
  if (reduction == cost_volume::kDot) return backward_row_for<F, cost_volume::kDot>(features, geometry);
  return backward_row_for<F, cost_volume::kVariance>(features, geometry);
}

}  // namespace

template <typename F>
void cost_volume_forward_cpu(const F* ft, const F* fs, const F* u, const F* v, F* out, const cost_volume::Shape& sh,
                             const cost_volume::Options& o) {
  using namespace cost_volume;
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W, Cg = sh.C / sh.G;
#pragma omp parallel
  {
    const auto row_forward = o.reduction == kL1    ? forward_row<F, kL1>
                             : o.reduction == kDot ? forward_row<F, kDot>
                                                   : forward_row<F, kVariance>;
    std::vector<View<F>> views(sh.S * sh.W);
    std::vector<F> acc(sh.W), sum(sh.W), sum_sq(sh.W);
#pragma omp for collapse(3) schedule(static)
    for (int64_t b = 0; b < sh.B; ++b) {
      for (int64_t d = 0; d < sh.D; ++d) {
        for (int row = 0; row < sh.H; ++row) {
          row_views(u, v, b, d, row, sh, o, views);
          const int64_t first = static_cast<int64_t>(row) * sh.W;
          for (int64_t g = 0; g < sh.G; ++g) {
            std::fill(acc.begin(), acc.end(), F(0));
            for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
              const F* t = ft + target_plane(b, c, sh) + first;
              std::fill(sum.begin(), sum.end(), F(0));
              std::fill(sum_sq.begin(), sum_sq.end(), F(0));
              for (int64_t s = 0; s < sh.S; ++s) {
                row_forward(t, fs + source_plane(b, s, c, sh), views.data() + s * sh.W, sh.W, acc.data(), sum.data(),
                            sum_sq.data());
              }
              if (o.reduction == kVariance) {
                const F n = F(sh.S + 1);
                for (int col = 0; col < sh.W; ++col) {
                  const F mean = (t[col] + sum[col]) / n;
                  acc[col] = (t[col] * t[col] + sum_sq[col]) / n - mean * mean;
                }
              }
            }
            F* o_row = out + ((b * sh.G + g) * sh.D + d) * HW + first;
            for (int col = 0; col < sh.W; ++col) {
              o_row[col] = o.reduction == kVariance ? acc[col] : acc[col] / F(Cg * sh.S);
            }
          }
        }
      }
    }
  }
}

template <typename F>
void cost_volume_backward_cpu(const F* grad, const F* ft, const F* fs, const F* u, const F* v, F* grad_ft, F* grad_fs,
                              F* grad_u, F* grad_v, const cost_volume::Shape& sh, const cost_volume::Options& o) {
  using namespace cost_volume;
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W, Cg = sh.C / sh.G;
  const int64_t n_t = sh.B * sh.C * HW, n_s = sh.B * sh.S * sh.C * HW;
  const bool need_features = grad_ft != nullptr, need_geometry = grad_u != nullptr;
  const int threads = thread_count();
  std::vector<F> part_t(need_features ? threads * n_t : 0), part_s(need_features ? threads * n_s : 0);
#pragma omp parallel num_threads(threads)
  {
    F* my_t = need_features ? part_t.data() + thread_id() * n_t : nullptr;
    F* my_s = need_features ? part_s.data() + thread_id() * n_s : nullptr;
    const BackwardRow<F> row_backward = backward_row_for<F>(o.reduction, need_features, need_geometry);
    std::vector<View<F>> views(sh.S * sh.W);
    std::vector<F> g_iu(sh.S * sh.W), g_iv(sh.S * sh.W), mean(sh.W), go(sh.W);
#pragma omp for collapse(3) schedule(static)
    for (int64_t b = 0; b < sh.B; ++b) {
      for (int64_t d = 0; d < sh.D; ++d) {
        for (int row = 0; row < sh.H; ++row) {
          row_views(u, v, b, d, row, sh, o, views);
          const int64_t first = static_cast<int64_t>(row) * sh.W;
          std::fill(g_iu.begin(), g_iu.end(), F(0));
          std::fill(g_iv.begin(), g_iv.end(), F(0));
          for (int64_t g = 0; g < sh.G; ++g) {
            const F* go_row = grad + ((b * sh.G + g) * sh.D + d) * HW + first;
            for (int col = 0; col < sh.W; ++col) go[col] = scaled_upstream(o.reduction, go_row[col], sh.S, Cg);
            for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
              const F* t = ft + target_plane(b, c, sh) + first;
              if (o.reduction == kVariance) {
                for (int col = 0; col < sh.W; ++col) mean[col] = t[col];
                for (int64_t s = 0; s < sh.S; ++s) {
                  const F* plane = fs + source_plane(b, s, c, sh);
                  for (int col = 0; col < sh.W; ++col) mean[col] += sample_fast(plane, views[s * sh.W + col].t, sh.W);
                }
                for (int col = 0; col < sh.W; ++col) mean[col] /= F(sh.S + 1);
              }
              for (int64_t s = 0; s < sh.S; ++s) {
                // the variance's target term belongs to no source: it is added once, with the first
                row_backward(t, fs, source_plane(b, s, c, sh), views.data() + s * sh.W, go.data(), mean.data(),
                             sh.W, o.reduction != kVariance || s == 0,
                             need_features ? my_t + target_plane(b, c, sh) + first : nullptr, my_s,
                             g_iu.data() + s * sh.W, g_iv.data() + s * sh.W);
              }
            }
          }
          if (need_geometry) {
            for (int64_t s = 0; s < sh.S; ++s) {
              for (int col = 0; col < sh.W; ++col) {
                const View<F>& w = views[s * sh.W + col];
                const int64_t at = view_at(b, s, d, first + col, sh);
                grad_u[at] = w.keep ? g_iu[s * sh.W + col] * w.du : F(0);
                grad_v[at] = w.keep ? g_iv[s * sh.W + col] * w.dv : F(0);
              }
            }
          }
        }
      }
    }
  }
  if (!need_features) return;
  sum_thread_parts(part_s.data(), threads, n_s, grad_fs);
  sum_thread_parts(part_t.data(), threads, n_t, grad_ft);
}

template void cost_volume_forward_cpu<float>(const float*, const float*, const float*, const float*, float*,
                                             const cost_volume::Shape&, const cost_volume::Options&);
template void cost_volume_forward_cpu<double>(const double*, const double*, const double*, const double*, double*,
                                              const cost_volume::Shape&, const cost_volume::Options&);
template void cost_volume_backward_cpu<float>(const float*, const float*, const float*, const float*, const float*,
                                              float*, float*, float*, float*, const cost_volume::Shape&,
                                              const cost_volume::Options&);
template void cost_volume_backward_cpu<double>(const double*, const double*, const double*, const double*,
                                               const double*, double*, double*, double*, double*,
                                               const cost_volume::Shape&, const cost_volume::Options&);

}  // namespace fastdepth
