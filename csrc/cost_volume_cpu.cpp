// The CPU twin of the cost volume's CUDA kernels: the same per-pixel math (cost_volume.cuh), in
// OpenMP loops over the rows of the target, every hypothesis of a row in turn. Unlike a GPU thread,
// which samples plane by plane, the twin works on channels-last features: the sources copied whole
// (their taps land anywhere), the target a row at a time. A view's four taps are then four
// contiguous vectors of C channels, and the sample, the reduction and the backward's scatters run
// over the channels in loops the compiler vectorises (the taps computed once per pixel, not once
// per channel). The same products per element; the sums over channels are added in lanes, so their
// order differs from the GPU's. In the backward a row's target gradient is summed over the
// hypotheses in a row of its own and written once; the sources' are scattered into channels-last
// buffers (SourceSlots), summed and transposed into grad_fs at the end, after the sources' copy is
// freed: grad_fs is written only then. No torch.
#include <algorithm>
#include <memory>
#include <vector>

#include "cost_volume.cuh"
#include "cpu_threads.h"

namespace fastdepth {
namespace {

using cost_volume::View;

// element(planar, channels_last) for every element of n_maps maps of C channels and HW pixels, with
// its index in the planar (n_maps, C, HW) and the channels-last (n_maps, HW, C) layout: in parallel,
// in blocks of pixels.
template <typename Element>
void for_each_transposed(int64_t n_maps, int64_t C, int64_t HW, Element element) {
  constexpr int64_t kPixels = 64;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t m = 0; m < n_maps; ++m) {
    for (int64_t p0 = 0; p0 < HW; p0 += kPixels) {
      const int64_t p1 = std::min(HW, p0 + kPixels);
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t p = p0; p < p1; ++p) element((m * C + c) * HW + p, (m * HW + p) * C + c);
      }
    }
  }
}

// out (n_maps, HW, C) = planar (n_maps, C, HW).
template <typename F>
void to_channels_last(const F* planar, int64_t n_maps, int64_t C, int64_t HW, F* out) {
  for_each_transposed(n_maps, C, HW, [=](int64_t from, int64_t to) { out[to] = planar[from]; });
}

// planar (n_maps, C, HW) = the sum over the n_parts buffers, in order, of parts (each (n_maps, HW,
// C), stride apart).
template <typename F>
void sum_parts_to_planar(const F* parts, int64_t n_parts, int64_t stride, int64_t n_maps, int64_t C, int64_t HW,
                         F* planar) {
  for_each_transposed(n_maps, C, HW, [=](int64_t to, int64_t from) {
    F total = F(0);
    for (int64_t t = 0; t < n_parts; ++t) total += parts[t * stride + from];
    planar[to] = total;
  });
}

// element(planar, channels_last) for the C x W elements of row `row` of a planar (C, HW) map, with
// their index in the map and in a channels-last (W, C) row.
template <typename Element>
void for_each_in_row(int64_t C, int64_t HW, int row, int W, Element element) {
  const int64_t off = static_cast<int64_t>(row) * W;
  for (int64_t c = 0; c < C; ++c) {
    for (int j = 0; j < W; ++j) element(c * HW + off + j, j * C + c);
  }
}

// out (W, C) = row `row` of planar (C, HW).
template <typename F>
void row_to_channels_last(const F* planar, int64_t C, int64_t HW, int row, int W, F* out) {
  for_each_in_row(C, HW, row, W, [=](int64_t from, int64_t to) { out[to] = planar[from]; });
}

// row `row` of planar (C, HW) = channels_last (W, C).
template <typename F>
void row_to_planar(const F* channels_last, int64_t C, int64_t HW, int row, int W, F* planar) {
  for_each_in_row(C, HW, row, W, [=](int64_t to, int64_t from) { planar[to] = channels_last[from]; });
}

// The channels-last buffers of n values that the sources' gradients of each batch element are
// scattered into: one for an element a share has to itself, one per share for an element that
// shares split (cpu_threads.h: BatchShares), added in share order at the end.
struct SourceSlots {
  SourceSlots(const BatchShares& shares, int64_t n) : shares(shares), n(n), first(shares.nb + 1, 0) {
    for (int64_t b = 0; b < shares.nb; ++b) first[b + 1] = first[b] + parts(shares.b0 + b);
  }
  int64_t parts(int64_t b) const { return shares.shared(b) ? shares.shares : 1; }
  int64_t size() const { return first.back() * n; }
  // share t's buffer of element b
  template <typename F>
  F* of(F* base, int64_t b, int64_t t) const {
    return base + (first[b - shares.b0] + (shares.shared(b) ? t : 0)) * n;
  }
  BatchShares shares;
  int64_t n;
  std::vector<int64_t> first;
};

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

// A view's four taps in a channels-last map of C channels: where each corner's channel vector
// starts (-1 where the corner is masked off) and its bilinear weight, as warp::sample forms it.
template <typename F>
struct ChannelTaps {
  int64_t at[4];
  F w[4];
  // corner k's vector in map, or ``masked`` (zeros to read, a buffer of its own to scatter into)
  template <typename T>
  T* corner(T* map, int k, T* masked) const {
    return at[k] >= 0 ? map + at[k] : masked;
  }
};

template <typename F>
ChannelTaps<F> channel_taps(const View<F>& view, int W, int64_t C) {
  const warp::Taps<F>& t = view.t;
  const bool m[4] = {t.m00, t.m01, t.m10, t.m11};
  const int64_t o[4] = {t.o00, t.o00 + 1, t.o00 + W, t.o00 + W + 1};
  ChannelTaps<F> r;
  for (int k = 0; k < 4; ++k) r.at[k] = m[k] ? o[k] * C : -1;
  r.w[0] = (F(1) - t.fu) * (F(1) - t.fv);
  r.w[1] = t.fu * (F(1) - t.fv);
  r.w[2] = (F(1) - t.fu) * t.fv;
  r.w[3] = t.fu * t.fv;
  return r;
}

// x[c] = the bilinear sample of channel c (warp::sample's additions in its order), c in [0, C).
// Not inlined: GCC honours restrict only on the arguments of a function called as one.
template <typename F>
__attribute__((noinline)) void sample_channels(const F* __restrict__ p00, const F* __restrict__ p01,
                                               const F* __restrict__ p10, const F* __restrict__ p11, const F* w,
                                               int64_t C, F* __restrict__ x) {
  const F w00 = w[0], w01 = w[1], w10 = w[2], w11 = w[3];
  for (int64_t c = 0; c < C; ++c) {
    F val = F(0);
    val += w00 * p00[c];
    val += w01 * p01[c];
    val += w10 * p10[c];
    val += w11 * p11[c];
    x[c] = val;
  }
}

template <typename F>
void sample_channels(const F* map, const ChannelTaps<F>& t, int64_t C, const F* zeros, F* x) {
  sample_channels(t.corner(map, 0, zeros), t.corner(map, 1, zeros), t.corner(map, 2, zeros), t.corner(map, 3, zeros),
                  t.w, C, x);
}

// The sum over n channels of |t - x| (l1) or t * x (dot), in lanes.
template <typename F, int kReduction>
__attribute__((noinline)) F reduce_channels(const F* __restrict__ t, const F* __restrict__ x, int64_t n) {
  F acc = F(0);
#pragma omp simd reduction(+ : acc)
  for (int64_t c = 0; c < n; ++c) {
    if constexpr (kReduction == cost_volume::kL1) {
      acc += fd_abs(t[c] - x[c]);
    } else {
      acc += t[c] * x[c];
    }
  }
  return acc;
}

// The backward of one view over n channels: the upstream gradient go of each channel
// (scaled_upstream's, that of its group), target values t, samples x, the views' mean (variance
// only); the samples' gradients scattered into the corners q00..q11 (kFeatures; each its own buffer
// where masked off) and the target's added to g_t (where add_target); the position gradients
// (sample_position_grad's, from the corner values p00..p11) added to *g_iu, *g_iv in lanes
// (kGeometry).
template <typename F, int kReduction, bool kFeatures, bool kGeometry>
__attribute__((noinline)) void backward_channels(const F* __restrict__ t, const F* __restrict__ x,
                                                 const F* __restrict__ mean, const F* __restrict__ go,
                                                 const F* w, const F* fu_fv,
                                                 const F* __restrict__ p00, const F* __restrict__ p01,
                                                 const F* __restrict__ p10, const F* __restrict__ p11, int64_t n,
                                                 bool add_target, F* __restrict__ g_t, F* __restrict__ q00,
                                                 F* __restrict__ q01, F* __restrict__ q10, F* __restrict__ q11,
                                                 F* g_iu, F* g_iv) {
  const F w00 = w[0], w01 = w[1], w10 = w[2], w11 = w[3], fu = fu_fv[0], fv = fu_fv[1];
  F iu = F(0), iv = F(0);
#pragma omp simd reduction(+ : iu, iv)
  for (int64_t c = 0; c < n; ++c) {
    F gx, gt;
    cost_volume::reduction_grads(kReduction, go[c], t[c], x[c],
                                 kReduction == cost_volume::kVariance ? mean[c] : F(0), &gx, &gt);
    if constexpr (kFeatures) {
      if (add_target) g_t[c] += gt;
      q00[c] += w00 * gx;
      q01[c] += w01 * gx;
      q10[c] += w10 * gx;
      q11[c] += w11 * gx;
    }
    if constexpr (kGeometry) {
      iu += gx * ((p01[c] - p00[c]) * (F(1) - fv) + (p11[c] - p10[c]) * fv);
      iv += gx * ((p10[c] - p00[c]) * (F(1) - fu) + (p11[c] - p01[c]) * fu);
    }
  }
  *g_iu += iu;
  *g_iv += iv;
}

template <typename F>
using BackwardChannels = decltype(&backward_channels<F, 0, false, false>);

template <typename F, int kReduction>
BackwardChannels<F> backward_channels_for(bool features, bool geometry) {
  static constexpr BackwardChannels<F> kFunctions[4] = {
      backward_channels<F, kReduction, false, false>, backward_channels<F, kReduction, false, true>,
      backward_channels<F, kReduction, true, false>, backward_channels<F, kReduction, true, true>};
  return kFunctions[2 * features + geometry];
}

template <typename F>
BackwardChannels<F> backward_channels_for(int reduction, bool features, bool geometry) {
  if (reduction == cost_volume::kL1) return backward_channels_for<F, cost_volume::kL1>(features, geometry);
  if (reduction == cost_volume::kDot) return backward_channels_for<F, cost_volume::kDot>(features, geometry);
  return backward_channels_for<F, cost_volume::kVariance>(features, geometry);
}

// One thread's buffers of C channels: the samples of every source, the views' mean, the upstream
// gradient of each channel, zeros to read at masked corners and four buffers to scatter them into.
template <typename F>
struct ChannelScratch {
  ChannelScratch(int64_t S, int64_t C) : C(C), x(S * C), mean(C), go(C), zeros(C), scatter(4 * C) {}
  int64_t C;
  std::vector<F> x, mean, go, zeros, scatter;
  F* xs(int64_t s) { return x.data() + s * C; }
  F* masked(int k) { return scatter.data() + k * C; }
};

// Every source's C channels sampled through the row's views at column col, into scratch.xs(s).
template <typename F>
void sample_sources(const F* fs_cl, const std::vector<View<F>>& views, int64_t b, int col,
                    const cost_volume::Shape& sh, ChannelScratch<F>& scratch) {
  const int64_t map = static_cast<int64_t>(sh.H) * sh.W * sh.C;  // one source's channels-last features
  for (int64_t s = 0; s < sh.S; ++s) {
    sample_channels(fs_cl + (b * sh.S + s) * map, channel_taps(views[s * sh.W + col], sh.W, sh.C), sh.C,
                    scratch.zeros.data(), scratch.xs(s));
  }
}

// u, v of one row of target pixels at one (image, source, hypothesis): project_pixel along the row,
// at the plane's depth hyp[0] or (kPerPixel) the row's own depths hyp[col]. Not inlined, for the
// restrict arguments: the loop vectorises, its divisions as selects.
template <typename F, bool kPerPixel>
__attribute__((noinline)) void project_row(const F* __restrict__ hyp, warp::Intrinsics<F> k, const F* __restrict__ T,
                                           int row, int W, F* __restrict__ u, F* __restrict__ v) {
  for (int col = 0; col < W; ++col) {
    cost_volume::project_pixel(kPerPixel ? hyp[col] : hyp[0], row, col, k, T, u + col, v + col);
  }
}

}  // namespace

template <typename F>
void cost_volume_projection_cpu(const F* hyp, const F* poses, const F* K, F* u, F* v, const cost_volume::Shape& sh,
                                bool per_pixel) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
#pragma omp parallel for collapse(4) schedule(static)
  for (int64_t b = 0; b < sh.B; ++b) {
    for (int64_t s = 0; s < sh.S; ++s) {
      for (int64_t d = 0; d < sh.D; ++d) {
        for (int row = 0; row < sh.H; ++row) {
          const int64_t pix0 = static_cast<int64_t>(row) * sh.W, at = cost_volume::view_at(b, s, d, pix0, sh);
          const warp::Intrinsics<F> k = warp::load_intrinsics(K + b * 9);
          const F* T = poses + (b * sh.S + s) * 16;
          if (per_pixel) {
            project_row<F, true>(hyp + (b * sh.D + d) * HW + pix0, k, T, row, sh.W, u + at, v + at);
          } else {
            project_row<F, false>(hyp + b * sh.D + d, k, T, row, sh.W, u + at, v + at);
          }
        }
      }
    }
  }
}

template <typename F>
void cost_volume_forward_cpu(const F* ft, const F* fs, const F* u, const F* v, F* out, const cost_volume::Shape& sh,
                             const cost_volume::Options& o) {
  using namespace cost_volume;
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W, C = sh.C, Cg = C / sh.G;
  std::vector<F> fs_cl(sh.B * sh.S * C * HW);
  to_channels_last(fs, sh.B * sh.S, C, HW, fs_cl.data());
  const auto reduce = o.reduction == kL1 ? reduce_channels<F, kL1> : reduce_channels<F, kDot>;
#pragma omp parallel
  {
    std::vector<View<F>> views(sh.S * sh.W);
    ChannelScratch<F> scratch(sh.S, C);
    std::vector<F> t_row(sh.W * C);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < sh.B; ++b) {
      for (int row = 0; row < sh.H; ++row) {
        row_to_channels_last(ft + b * C * HW, C, HW, row, sh.W, t_row.data());
        for (int64_t d = 0; d < sh.D; ++d) {
          row_views(u, v, b, d, row, sh, o, views);
          for (int col = 0; col < sh.W; ++col) {
            const int64_t pix = static_cast<int64_t>(row) * sh.W + col;
            const F* t = t_row.data() + col * C;
            sample_sources(fs_cl.data(), views, b, col, sh, scratch);
            if (o.reduction == kVariance) {
              const F n = F(sh.S + 1);
              for (int64_t c = 0; c < C; ++c) {
                F sum = F(0), sum_sq = F(0);
                for (int64_t s = 0; s < sh.S; ++s) {
                  const F x = scratch.xs(s)[c];
                  sum += x, sum_sq += x * x;
                }
                const F mean = (t[c] + sum) / n;
                out[((b * sh.G + c) * sh.D + d) * HW + pix] = (t[c] * t[c] + sum_sq) / n - mean * mean;
              }
              continue;
            }
            for (int64_t g = 0; g < sh.G; ++g) {
              F acc = F(0);
              for (int64_t s = 0; s < sh.S; ++s) acc += reduce(t + g * Cg, scratch.xs(s) + g * Cg, Cg);
              out[((b * sh.G + g) * sh.D + d) * HW + pix] = acc / F(Cg * sh.S);
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
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W, C = sh.C, Cg = C / sh.G;
  const int64_t s_b = sh.S * C * HW;  // the sources of one batch element
  const bool need_features = grad_ft != nullptr, need_geometry = grad_u != nullptr;
  const int threads = thread_count();
  // (element, row) pairs: a row's target gradient is all its own; the sources' are scattered into
  // the slots of SourceSlots
  const BatchShares shares{0, sh.B, sh.H, threads};
  const SourceSlots slots(shares, need_features ? s_b : 0);
  std::unique_ptr<F[]> g_s(new F[slots.size()]);  // each slot zeroed by the share that adds into it
  const BackwardChannels<F> view_backward = backward_channels_for<F>(o.reduction, need_features, need_geometry);
  {
    std::vector<F> fs_cl(sh.B * s_b);
    to_channels_last(fs, sh.B * sh.S, C, HW, fs_cl.data());
#pragma omp parallel num_threads(threads)
    {
      std::vector<View<F>> views(sh.S * sh.W);
      ChannelScratch<F> scratch(sh.S, C);
      std::vector<F> t_row(sh.W * C), g_t_row(sh.W * C);
      // share t of `threads`, whatever the team's size
      for (int64_t t = thread_id(); t < threads; t += team_size()) {
        for (int64_t b = 0; b < sh.B && need_features; ++b) {
          if (shares.shared(b) || shares.owner(b) == t) fill_zero(slots.of(g_s.get(), b, t), s_b);
        }
        for (int64_t pair = shares.first(t); pair < shares.first(t + 1); ++pair) {
          const int64_t b = pair / sh.H;
          const int row = static_cast<int>(pair % sh.H);
          F* my_s = need_features ? slots.of(g_s.get(), b, t) : nullptr;
          row_to_channels_last(ft + b * C * HW, C, HW, row, sh.W, t_row.data());
          fill_zero(g_t_row.data(), sh.W * C);
          for (int64_t d = 0; d < sh.D; ++d) {
            row_views(u, v, b, d, row, sh, o, views);
            for (int col = 0; col < sh.W; ++col) {
              const int64_t pix = static_cast<int64_t>(row) * sh.W + col;
              const F* t_col = t_row.data() + col * C;
              sample_sources(fs_cl.data(), views, b, col, sh, scratch);
              if (o.reduction == kVariance) {
                for (int64_t c = 0; c < C; ++c) {
                  F mean = t_col[c];
                  for (int64_t s = 0; s < sh.S; ++s) mean += scratch.xs(s)[c];
                  scratch.mean[c] = mean / F(sh.S + 1);
                }
              }
              // each channel's upstream gradient, that of its group: one call per view below, C
              // channels long (the variance's groups are single channels)
              for (int64_t g = 0; g < sh.G; ++g) {
                const F go = scaled_upstream(o.reduction, grad[((b * sh.G + g) * sh.D + d) * HW + pix], sh.S, Cg);
                std::fill(scratch.go.begin() + g * Cg, scratch.go.begin() + (g + 1) * Cg, go);
              }
              for (int64_t s = 0; s < sh.S; ++s) {
                const View<F>& view = views[s * sh.W + col];
                const ChannelTaps<F> taps = channel_taps(view, sh.W, C);
                const F* map = fs_cl.data() + (b * sh.S + s) * HW * C;
                F* into = need_features ? my_s + s * HW * C : nullptr;
                const F* p[4];
                F* q[4];
                for (int k = 0; k < 4; ++k) {
                  p[k] = taps.corner(map, k, static_cast<const F*>(scratch.zeros.data()));
                  q[k] = need_features ? taps.corner(into, k, scratch.masked(k)) : scratch.masked(k);
                }
                const F fu_fv[2] = {view.t.fu, view.t.fv};
                F g_iu = F(0), g_iv = F(0);
                // the variance's target term belongs to no source: it is added once, with the first
                view_backward(t_col, scratch.xs(s), scratch.mean.data(), scratch.go.data(), taps.w, fu_fv, p[0], p[1],
                              p[2], p[3], C, o.reduction != kVariance || s == 0, g_t_row.data() + col * C, q[0], q[1],
                              q[2], q[3], &g_iu, &g_iv);
                if (need_geometry) {
                  const int64_t at = view_at(b, s, d, pix, sh);
                  grad_u[at] = view.keep ? g_iu * view.du : F(0);
                  grad_v[at] = view.keep ? g_iv * view.dv : F(0);
                }
              }
            }
          }
          if (need_features) row_to_planar(g_t_row.data(), C, HW, row, sh.W, grad_ft + b * C * HW);
        }
      }
    }
  }  // the sources' copy freed before grad_fs is written
  if (!need_features) return;
  for (int64_t b = 0; b < sh.B; ++b) {
    sum_parts_to_planar(slots.of(g_s.get(), b, 0), slots.parts(b), s_b, sh.S, C, HW, grad_fs + b * s_b);
  }
}

template void cost_volume_projection_cpu<float>(const float*, const float*, const float*, float*, float*,
                                                const cost_volume::Shape&, bool);
template void cost_volume_projection_cpu<double>(const double*, const double*, const double*, double*, double*,
                                                 const cost_volume::Shape&, bool);
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
