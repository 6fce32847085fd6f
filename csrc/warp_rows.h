// The warp's geometry for the CPU twins (warp_cpu.cpp, reprojection_cpu.cpp), a row segment at a
// time in loops the compiler vectorises. A GPU thread projects its own pixel (warp.cuh); a CPU core
// projecting one pixel at a time spends most of the warp in that chain of dependent divisions and
// compares. Here make_pixel_at and compute_geometry (the same functions) run over a whole segment
// of pixels, and what the sampling (and the backward) needs is kept per pixel, structure of arrays;
// the samples, which gather, then follow pixel by pixel. Needs -fno-trapping-math: otherwise GCC
// keeps the divisions behind branches and the loop scalar. No torch.
#pragma once

#include <algorithm>
#include <vector>

#include "warp.cuh"

namespace fastdepth {
namespace warp {

// The geometry of one source at the pixels [pix0, pix0 + n) of a span: field q of pixel i at
// data[q * n + i], flags as 0 or 1. The first four fields are what the forward needs; a full span
// also holds the rest of Geometry, for backward_at.
template <typename F>
struct SpanGeometry {
  enum Field { kIu, kIv, kKeep, kInside, kX, kY, kDu, kDv, kInvZ, kInvW, kPx, kPy, kPz, kZOk, kWOk, kFields };
  SpanGeometry(int64_t n, bool full) : n(n), data(static_cast<size_t>(n) * (full ? kFields : kX)) {}
  int64_t n;
  std::vector<F> data;

  F at(Field q, int64_t i) const { return data[q * n + i]; }
  // keep: depth and projection finite (else the warp gives 0)
  bool keep(int64_t i) const { return at(kKeep, i) != F(0); }

  // Geometry of pixel i of a full span, whose Pixel is p: what compute_geometry returned.
  Geometry<F> geometry(int64_t i, const Pixel<F>& p) const {
    Geometry<F> g;
    g.X = p.d * p.ray.rx;
    g.Y = p.d * p.ray.ry;
    g.Z = p.d * p.ray.rz;
    g.px = at(kPx, i), g.py = at(kPy, i), g.pz = at(kPz, i);
    g.inv_w = at(kInvW, i), g.inv_z = at(kInvZ, i);
    g.w_ok = at(kWOk, i) != F(0), g.z_ok = at(kZOk, i) != F(0);
    g.x = at(kX, i), g.y = at(kY, i);
    g.finite = keep(i), g.inside = at(kInside, i) != F(0);
    g.iu = at(kIu, i), g.iv = at(kIv, i), g.du = at(kDu, i), g.dv = at(kDv, i);
    return g;
  }
};

// Pixels col0 .. col0 + n of one row of depth_b, one pointer per field of SpanGeometry. The
// options the loop branches on are template arguments and every output is a restrict argument
// (GCC ignores restrict elsewhere), so that the loop body has no branch and no load the stores
// could alias.
template <typename F, bool kNormalize, bool kBorder, bool kFull>
void segment_geometry(const F* depth_b, const F* k, const F* T, int row, int col0, int n, const Shape& sh,
                      const Options& opt, F* __restrict__ iu, F* __restrict__ iv, F* __restrict__ keep,
                      F* __restrict__ inside, F* __restrict__ x, F* __restrict__ y, F* __restrict__ du,
                      F* __restrict__ dv, F* __restrict__ inv_z, F* __restrict__ inv_w, F* __restrict__ px,
                      F* __restrict__ py, F* __restrict__ pz, F* __restrict__ z_ok, F* __restrict__ w_ok) {
  for (int i = 0; i < n; ++i) {
    const Pixel<F> p = make_pixel_at(depth_b, k, 0, row, col0 + i, sh, kNormalize);
    const Geometry<F> g = compute_geometry(p.d, p.ray, p.k, T, sh.W, sh.H, opt.mu, opt.mv, kBorder);
    iu[i] = g.iu;
    iv[i] = g.iv;
    keep[i] = p.d_ok & g.finite ? F(1) : F(0);  // flags as selects: F(bool) keeps the loop scalar
    inside[i] = g.inside ? F(1) : F(0);
    if constexpr (kFull) {
      x[i] = g.x, y[i] = g.y, du[i] = g.du, dv[i] = g.dv, inv_z[i] = g.inv_z, inv_w[i] = g.inv_w;
      px[i] = g.px, py[i] = g.py, pz[i] = g.pz;
      z_ok[i] = g.z_ok ? F(1) : F(0), w_ok[i] = g.w_ok ? F(1) : F(0);
    }
  }
}

// The geometry of source pose_bs at the pixels [pix0, pix0 + n) of batch element b (a span may
// cross rows), into span.
template <typename F>
void span_geometry(const F* depth, const F* K, int64_t b, int64_t pix0, int64_t n, const F* pose_bs, const Shape& sh,
                   const Options& opt, SpanGeometry<F>& span, bool full) {
  using Segment = decltype(&segment_geometry<F, false, false, false>);
  static constexpr Segment kSegments[8] = {
      segment_geometry<F, false, false, false>, segment_geometry<F, false, false, true>,
      segment_geometry<F, false, true, false>,  segment_geometry<F, false, true, true>,
      segment_geometry<F, true, false, false>,  segment_geometry<F, true, false, true>,
      segment_geometry<F, true, true, false>,   segment_geometry<F, true, true, true>};
  const Segment segment = kSegments[4 * opt.normalize + 2 * opt.border + full];
  constexpr int kFields = SpanGeometry<F>::kFields;
  for (int64_t at = 0; at < n;) {
    const int64_t pix = pix0 + at;
    const int row = static_cast<int>(pix / sh.W), col = static_cast<int>(pix % sh.W);
    const int len = static_cast<int>(std::min<int64_t>(sh.W - col, n - at));
    F* f[kFields];  // field q of entry at (a forward span holds only the first kX fields)
    for (int q = 0; q < kFields; ++q) f[q] = full || q < SpanGeometry<F>::kX ? span.data.data() + q * span.n + at : nullptr;
    segment(depth + b * sh.H * sh.W, K + b * 9, pose_bs, row, col, len, sh, opt, f[0], f[1], f[2], f[3], f[4], f[5],
            f[6], f[7], f[8], f[9], f[10], f[11], f[12], f[13], f[14]);
    at += len;
  }
}

}  // namespace warp
}  // namespace fastdepth
