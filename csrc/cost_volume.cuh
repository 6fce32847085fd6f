// Per-pixel math of the plane-sweep cost volume, shared by the CUDA kernels (cost_volume.cu) and
// the CPU twin (cost_volume_cpu.cpp). Mirrors kernels/cost_volume.py function by function;
// conventions in fastdepth/cost_volume.py. The sampling is the warp's (warp.cuh). No torch, no CUDA
// runtime calls.
#pragma once

#include "warp.cuh"

namespace fastdepth {
namespace cost_volume {

// Pixels per block, as kernels/cost_volume.py's BLOCK.
constexpr int kBlock = 128;

// l1, dot (group_dot is dot with G groups) or the per-channel variance of the views (G = C).
enum Reduction : int { kL1 = 0, kDot = 1, kVariance = 2 };

// Features (B, C, H, W) and (B, S, C, H, W); projections u, v (B, S, D, H, W); cost (B, G, D, H, W).
struct Shape {
  int64_t B, S, C, D, G;
  int H, W;
};

struct Options {
  warp::AxisMap mu, mv;
  bool border;
  int reduction;
};

// Where source s is read for one target pixel at one hypothesis: the bilinear taps (all masked
// off where the projection does not exist) and d(sample position)/d(projected pixel) per axis.
template <typename F>
struct View {
  warp::Taps<F> t;
  F du, dv;
  bool keep;
};

template <typename F>
FD_HD View<F> make_view(F pu, F pv, const Shape& sh, const Options& o) {
  View<F> r;
  bool inside_u, inside_v;
  r.keep = warp::is_finite(pu) && warp::is_finite(pv);
  const F iu = warp::sample_coord(pu, sh.W, o.mu, o.border, &r.du, &inside_u);
  const F iv = warp::sample_coord(pv, sh.H, o.mv, o.border, &r.dv, &inside_v);
  r.t = warp::bilinear_taps(iu, iv, sh.W, sh.H);
  if (!r.keep) r.t.m00 = r.t.m01 = r.t.m10 = r.t.m11 = false;
  return r;
}

// Offsets: the projections of (b, s, d), the target features' plane (b, c), a source plane (b, s, c).
FD_HD int64_t view_at(int64_t b, int64_t s, int64_t d, int64_t pix, const Shape& sh) {
  return ((b * sh.S + s) * sh.D + d) * sh.H * sh.W + pix;
}
FD_HD int64_t target_plane(int64_t b, int64_t c, const Shape& sh) { return (b * sh.C + c) * sh.H * sh.W; }
FD_HD int64_t source_plane(int64_t b, int64_t s, int64_t c, const Shape& sh) {
  return ((b * sh.S + s) * sh.C + c) * sh.H * sh.W;
}

// The depth of hypothesis d at pixel pix: (B, D) planes, or (B, D, H, W) per pixel.
template <typename F>
FD_HD F hypothesis_at(const F* hyp, int64_t b, int64_t d, int64_t pix, const Shape& sh, bool per_pixel) {
  return per_pixel ? hyp[(b * sh.D + d) * sh.H * sh.W + pix] : hyp[b * sh.D + d];
}

// The projected source pixel (pu, pv) of target pixel (row, col) at depth d, pose T: the warp's
// projection (warp::project of the unnormalised ray), NaN where it does not exist.
template <typename F>
FD_HD void project_pixel(F d, int row, int col, warp::Intrinsics<F> k, const F* T, F* pu, F* pv) {
  const warp::Geometry<F> g = warp::project(d, warp::make_ray(F(col), F(row), k, false), k, T);
  *pu = g.finite ? g.u : F(NAN);
  *pv = g.finite ? g.v : F(NAN);
}

// The projections u, v (B, S, D, H, W) of target pixel pix at hypothesis d in source s, from the
// hypotheses, poses (B, S, 4, 4) and K (B, 3, 3): what the forward and backward read.
template <typename F>
FD_HD void project_view(const F* hyp, const F* poses, const F* K, F* u, F* v, int64_t b, int64_t s, int64_t d,
                        int64_t pix, const Shape& sh, bool per_pixel) {
  const int64_t at = view_at(b, s, d, pix, sh);
  project_pixel(hypothesis_at(hyp, b, d, pix, sh, per_pixel), static_cast<int>(pix / sh.W),
                static_cast<int>(pix % sh.W), warp::load_intrinsics(K + b * 9), poses + (b * sh.S + s) * 16, u + at,
                v + at);
}

template <typename F, typename Img>
FD_HD F sample_view(const Img* fs, const F* u, const F* v, int64_t b, int64_t s, int64_t c, int64_t d, int64_t pix,
                    const Shape& sh, const Options& o) {
  const int64_t at = view_at(b, s, d, pix, sh);
  return warp::sample<F>(fs + source_plane(b, s, c, sh), make_view(u[at], v[at], sh, o).t, sh.W);
}

// The cost of one target pixel at hypothesis d, for every group g. l1 and dot take each source's
// view once per group and go through the group's channels with it; the variance (one channel per
// group) needs every view of a channel at once.
template <typename F, typename Img>
FD_HD void forward_pixel(const Img* ft, const Img* fs, const F* u, const F* v, Img* out, int64_t b, int64_t d,
                         int64_t pix, const Shape& sh, const Options& o) {
  const int64_t Cg = sh.C / sh.G, HW = static_cast<int64_t>(sh.H) * sh.W;
  for (int64_t g = 0; g < sh.G; ++g) {
    F cost;
    if (o.reduction == kVariance) {
      const F t = load_as<F>(ft + target_plane(b, g, sh) + pix);
      F sum = F(0), sum_sq = F(0);
      for (int64_t s = 0; s < sh.S; ++s) {
        const F x = sample_view(fs, u, v, b, s, g, d, pix, sh, o);
        sum += x, sum_sq += x * x;
      }
      const F n = F(sh.S + 1), mean = (t + sum) / n;
      cost = (t * t + sum_sq) / n - mean * mean;
    } else {
      F acc = F(0);
      for (int64_t s = 0; s < sh.S; ++s) {
        const int64_t at = view_at(b, s, d, pix, sh);
        const warp::Taps<F> taps = make_view(u[at], v[at], sh, o).t;
        for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
          const F t = load_as<F>(ft + target_plane(b, c, sh) + pix);
          const F x = warp::sample<F>(fs + source_plane(b, s, c, sh), taps, sh.W);
          acc += o.reduction == kL1 ? fd_abs(t - x) : t * x;
        }
      }
      cost = acc / F(Cg * sh.S);
    }
    store_as(out + ((b * sh.G + g) * sh.D + d) * HW + pix, cost);
  }
}

// The upstream gradient go times the reduction's constant factor: 1 / (Cg S) for the means (l1,
// dot), 2 / (S + 1) for the variance; computed once per pixel and group.
template <typename F>
FD_HD F scaled_upstream(int reduction, F go, int64_t S, int64_t Cg) {
  return reduction == kVariance ? go * F(2) / F(S + 1) : go / F(Cg * S);
}

// d cost / d (sample x of source s, target value t) times the upstream gradient, from its scaled
// form ``scaled``; ``mean`` is the views' mean (variance only).
template <typename F>
FD_HD void reduction_grads(int reduction, F scaled, F t, F x, F mean, F* gx, F* gt) {
  if (reduction == kL1) {
    *gx = scaled * F((x > t) - (x < t));
    *gt = -*gx;
  } else if (reduction == kDot) {
    *gx = scaled * t;
    *gt = scaled * x;
  } else {
    *gx = scaled * (x - mean);
    *gt = scaled * (t - mean);
  }
}

// Backward of one target pixel at hypothesis d: the features' gradients through
// scatter_t(offset, value) and scatter_s(offset, value), and the projections' gradient at (b, s, d).
template <typename F, typename Img, typename ScatterT, typename ScatterS>
FD_HD void backward_pixel(const Img* grad, const Img* ft, const Img* fs, const F* u, const F* v, F* g_u, F* g_v,
                          int64_t b, int64_t d, int64_t pix, const Shape& sh, const Options& o, bool need_features,
                          bool need_geometry, ScatterT scatter_t, ScatterS scatter_s) {
  const int64_t Cg = sh.C / sh.G, HW = static_cast<int64_t>(sh.H) * sh.W;
  for (int64_t s = 0; s < sh.S; ++s) {
    const int64_t at = view_at(b, s, d, pix, sh);
    const View<F> w = make_view(u[at], v[at], sh, o);
    F g_iu = F(0), g_iv = F(0);
    for (int64_t g = 0; g < sh.G; ++g) {
      const F go = scaled_upstream(o.reduction, load_as<F>(grad + ((b * sh.G + g) * sh.D + d) * HW + pix), sh.S, Cg);
      for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
        F mean = F(0);
        if (o.reduction == kVariance) {
          for (int64_t s2 = 0; s2 < sh.S; ++s2) mean += sample_view(fs, u, v, b, s2, c, d, pix, sh, o);
        }
        const F t = load_as<F>(ft + target_plane(b, c, sh) + pix);
        mean = (mean + t) / F(sh.S + 1);
        const int64_t plane = source_plane(b, s, c, sh);
        const F x = warp::sample<F>(fs + plane, w.t, sh.W);
        F gx, gt;
        reduction_grads(o.reduction, go, t, x, mean, &gx, &gt);
        if (need_features) {
          // the variance's target term belongs to no source: it is added once, with the first
          if (o.reduction != kVariance || s == 0) scatter_t(target_plane(b, c, sh) + pix, gt);
          warp::scatter_bilinear(w.t, plane, sh.W, gx, scatter_s);
        }
        if (need_geometry) warp::sample_position_grad(fs + plane, w.t, sh.W, gx, &g_iu, &g_iv);
      }
    }
    if (need_geometry) {
      g_u[at] = w.keep ? g_iu * w.du : F(0);
      g_v[at] = w.keep ? g_iv * w.dv : F(0);
    }
  }
}

// Channels per thread of the sweep backward.
constexpr int kSweepChannels = 4;

FD_HD int64_t sweep_chunks(const Shape& sh) { return (sh.C + kSweepChannels - 1) / kSweepChannels; }

// Whether two views' taps scatter to the same addresses.
template <typename F>
FD_HD bool same_taps(const warp::Taps<F>& a, const warp::Taps<F>& b) {
  return a.o00 == b.o00 && a.m00 == b.m00 && a.m01 == b.m01 && a.m10 == b.m10 && a.m11 == b.m11;
}

// A run of consecutive hypotheses whose views have the same taps: each channel's four tap
// gradients summed over the run, scattered once when the run ends.
template <typename F>
struct TapRun {
  warp::Taps<F> taps;
  F acc[kSweepChannels][4];
};

// Scatters a run's sums to the source planes of channels c0 .. c0 + n - 1 of (b, s).
template <typename F, typename ScatterS>
FD_HD void flush_run(const TapRun<F>& run, int64_t b, int64_t s, int64_t c0, int64_t n, const Shape& sh,
                     ScatterS scatter_s) {
#pragma unroll
  for (int k = 0; k < kSweepChannels; ++k) {
    if (k < n) {
      const int64_t at = source_plane(b, s, c0 + k, sh) + run.taps.o00;
      if (run.taps.m00) scatter_s(at, run.acc[k][0]);
      if (run.taps.m01) scatter_s(at + 1, run.acc[k][1]);
      if (run.taps.m10) scatter_s(at + sh.W, run.acc[k][2]);
      if (run.taps.m11) scatter_s(at + sh.W + 1, run.acc[k][3]);
    }
  }
}

// The sweep backward (l1, dot, group_dot; not the variance) of one target pixel of image b and the
// channels [c0, c0 + kSweepChannels) below C, every source and hypothesis in turn: the target's
// gradient summed in registers and written once to g_ft (no other thread has it: no scatter), the
// projections' share from these channels through add_uv(offset, d/du, d/dv), and the sources'
// through scatter_s(offset, value) once per run of hypotheses with the same taps (TapRun: with
// dense hypotheses, neighbouring planes often sample the same four pixels). Where backward_pixel's
// thread has one hypothesis and every channel, this one scatters the target's gradient not at all
// and the sources' once per run rather than per hypothesis.
template <typename F, typename Img, typename ScatterS, typename AddUV>
FD_HD void backward_sweep_pixel(const Img* grad, const Img* ft, const Img* fs, const F* u, const F* v, F* g_ft,
                                int64_t b, int64_t c0, int64_t pix, const Shape& sh, const Options& o,
                                bool need_features, bool need_geometry, ScatterS scatter_s, AddUV add_uv) {
  const int64_t Cg = sh.C / sh.G, HW = static_cast<int64_t>(sh.H) * sh.W;
  const int64_t n = sh.C - c0 < kSweepChannels ? sh.C - c0 : kSweepChannels;
  F t[kSweepChannels], gt[kSweepChannels];
#pragma unroll
  for (int k = 0; k < kSweepChannels; ++k) {
    t[k] = k < n ? load_as<F>(ft + target_plane(b, c0 + k, sh) + pix) : F(0);
    gt[k] = F(0);
  }
  for (int64_t s = 0; s < sh.S; ++s) {
    TapRun<F> run;
    run.taps.m00 = run.taps.m01 = run.taps.m10 = run.taps.m11 = false;  // empty: nothing to flush
    run.taps.o00 = 0;
    for (int64_t d = 0; d < sh.D; ++d) {
      const int64_t at = view_at(b, s, d, pix, sh);
      const View<F> w = make_view(u[at], v[at], sh, o);
      const bool any = w.t.m00 || w.t.m01 || w.t.m10 || w.t.m11;
      if (need_features && any && !same_taps(w.t, run.taps)) {
        flush_run(run, b, s, c0, n, sh, scatter_s);
        run.taps = w.t;
#pragma unroll
        for (int k = 0; k < kSweepChannels; ++k) run.acc[k][0] = run.acc[k][1] = run.acc[k][2] = run.acc[k][3] = F(0);
      }
      const F w00 = (F(1) - w.t.fu) * (F(1) - w.t.fv), w01 = w.t.fu * (F(1) - w.t.fv);
      const F w10 = (F(1) - w.t.fu) * w.t.fv, w11 = w.t.fu * w.t.fv;
      F g_iu = F(0), g_iv = F(0);
#pragma unroll
      for (int k = 0; k < kSweepChannels; ++k) {
        if (k < n) {
          const int64_t c = c0 + k;
          const F go =
              scaled_upstream(o.reduction, load_as<F>(grad + ((b * sh.G + c / Cg) * sh.D + d) * HW + pix), sh.S, Cg);
          const int64_t plane = source_plane(b, s, c, sh);
          const F x = warp::sample<F>(fs + plane, w.t, sh.W);
          F gx, g_t;
          reduction_grads(o.reduction, go, t[k], x, F(0), &gx, &g_t);
          gt[k] += g_t;
          if (any) {  // the run's taps are this view's
            run.acc[k][0] += w00 * gx;
            run.acc[k][1] += w01 * gx;
            run.acc[k][2] += w10 * gx;
            run.acc[k][3] += w11 * gx;
          }
          if (need_geometry) warp::sample_position_grad(fs + plane, w.t, sh.W, gx, &g_iu, &g_iv);
        }
      }
      if (need_geometry && w.keep) add_uv(at, g_iu * w.du, g_iv * w.dv);
    }
    if (need_features) flush_run(run, b, s, c0, n, sh, scatter_s);
  }
  if (need_features) {
#pragma unroll
    for (int k = 0; k < kSweepChannels; ++k) {
      if (k < n) g_ft[target_plane(b, c0 + k, sh) + pix] = gt[k];
    }
  }
}

}  // namespace cost_volume

// ---- entry points on raw pointers: CUDA launchers (cost_volume.cu; stream is a cudaStream_t,
// geometry and projections float32) and the CPU twin (cost_volume_cpu.cpp; F = float or double).
// The projection writes u and v whole. The gradients are float32 (F on the CPU); the CUDA launchers
// add into zero-initialised ones, the twin writes every element; each may be null when not needed.
// sweep: the backward's sweep kernel (backward_sweep_pixel) where the reduction is not the variance. ----
void cost_volume_projection_cuda(const float* hyp, const float* poses, const float* K, float* u, float* v,
                                 const cost_volume::Shape& shape, bool per_pixel, void* stream);
void cost_volume_forward_cuda(ImageType type, const void* ft, const void* fs, const float* u, const float* v,
                              void* out, const cost_volume::Shape& shape, const cost_volume::Options& options,
                              void* stream);
void cost_volume_backward_cuda(ImageType type, const void* grad, const void* ft, const void* fs, const float* u,
                               const float* v, float* grad_ft, float* grad_fs, float* grad_u, float* grad_v,
                               const cost_volume::Shape& shape, const cost_volume::Options& options, bool sweep,
                               void* stream);
template <typename F>
void cost_volume_projection_cpu(const F* hyp, const F* poses, const F* K, F* u, F* v, const cost_volume::Shape& shape,
                                bool per_pixel);
template <typename F>
void cost_volume_forward_cpu(const F* ft, const F* fs, const F* u, const F* v, F* out, const cost_volume::Shape& shape,
                             const cost_volume::Options& options);
template <typename F>
void cost_volume_backward_cpu(const F* grad, const F* ft, const F* fs, const F* u, const F* v, F* grad_ft, F* grad_fs,
                              F* grad_u, F* grad_v, const cost_volume::Shape& shape,
                              const cost_volume::Options& options);

}  // namespace fastdepth
