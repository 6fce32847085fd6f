// The warp for the CPU twins (warp_cpu.cpp, reprojection_cpu.cpp), a row segment at a time in loops
// the compiler vectorises. A GPU thread projects and samples its own pixel (warp.cuh); a CPU core
// doing one pixel at a time spends most of the warp in that chain of dependent divisions and
// compares, and in the branches of the taps. Here make_pixel_at and compute_geometry (the same
// functions) run over a whole segment of pixels, and what the sampling (and the backward) needs is
// kept per pixel, structure of arrays; the samples and their position gradients then run over the
// segment too, as gathers; the backward's geometry (geometry_backward, ray_backward) over a block
// of pixels. The same operations as warp.cuh's in the same order: the results are those of the
// per-pixel functions, bit for bit (the block sums aside: see kLanes). Needs -fno-trapping-math:
// otherwise GCC keeps the divisions behind branches and the loops scalar. No torch.
#pragma once

#include <algorithm>
#include <vector>

#include "warp.cuh"

namespace fastdepth {
namespace warp {

// The geometry of one source at the pixels [pix0, pix0 + n) of a span: field q of pixel i at
// data[q * n + i], flags as 0 or 1. The first four fields are what the forward needs; a full span
// also holds the rest of Geometry, for the backward (block_geometry_backward).
template <typename F>
struct SpanGeometry {
  enum Field { kIu, kIv, kKeep, kInside, kX, kY, kDu, kDv, kInvZ, kInvW, kPx, kPy, kPz, kZOk, kWOk, kFields };
  SpanGeometry(int64_t n, bool full) : n(n), data(static_cast<size_t>(n) * (full ? kFields : kX)) {}
  int64_t n;
  std::vector<F> data;

  F at(Field q, int64_t i) const { return data[q * n + i]; }
  const F* field(Field q) const { return data.data() + q * n; }
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

// bilinear_taps for loops that gather: each corner's offset in 32 bits (H * W < 2**31), 0 where the
// corner is outside the plane (b00 .. b11 false: CornerTaps then holds -1). The offsets are masked
// with ands, not selects: a select of offsets becomes one of addresses, and the loads around would
// not vectorise as gathers.
template <typename F>
struct GatherTaps {
  F fu, fv;
  int32_t i00, i01, i10, i11;
  bool b00, b01, b10, b11;
};

template <typename F>
inline GatherTaps<F> gather_taps(F iu, F iv, int W, int H) {
  GatherTaps<F> t;
  const F u0f = fd_floor_small(iu), v0f = fd_floor_small(iv);
  t.fu = iu - u0f, t.fv = iv - v0f;
  const int u0 = static_cast<int>(u0f), v0 = static_cast<int>(v0f);
  const bool mu0 = (u0 >= 0) & (u0 < W), mu1 = (u0 + 1 >= 0) & (u0 + 1 < W);
  const bool mv0 = (v0 >= 0) & (v0 < H), mv1 = (v0 + 1 >= 0) & (v0 + 1 < H);
  t.b00 = mu0 & mv0, t.b01 = mu1 & mv0, t.b10 = mu0 & mv1, t.b11 = mu1 & mv1;
  const uint32_t w = static_cast<uint32_t>(W);
  const uint32_t o = static_cast<uint32_t>(v0) * w + static_cast<uint32_t>(u0);  // wraps outside the plane
  t.i00 = static_cast<int32_t>(o) & -int32_t(t.b00);
  t.i01 = static_cast<int32_t>(o + 1u) & -int32_t(t.b01);
  t.i10 = static_cast<int32_t>(o + w) & -int32_t(t.b10);
  t.i11 = static_cast<int32_t>(o + w + 1u) & -int32_t(t.b11);
  return t;
}

// The bilinear corners of pixels [0, n) of one source, for the sampling, the position gradients
// and the image gradient's scatter: corner k of pixel i at offset at[k * n + i] in a plane, -1
// where the corner is outside the plane or the pixel is not kept, with weight w[k * n + i]
// (sample's and scatter_bilinear's products, in their order), and the fractions fu, fv of the
// position (the slopes'). Computed once for all the channels.
template <typename F>
struct CornerTaps {
  explicit CornerTaps(int64_t n)
      : n(n), at(4 * static_cast<size_t>(n)), w(4 * static_cast<size_t>(n)), fu(n), fv(n) {}
  int64_t n;
  std::vector<int32_t> at;
  std::vector<F> w, fu, fv;
};

// CornerTaps' corners, vectorised. Not inlined: GCC honours the restrict arguments only of a
// function called as one, and without them the loop is not vectorised (the stores might alias the
// loads); the gathers below are not inlined for the same reason.
template <typename F>
__attribute__((noinline)) void corner_taps_segment(const F* __restrict__ iu, const F* __restrict__ iv,
                                                    const F* __restrict__ keep, int64_t n, int W, int H,
                                                    int32_t* __restrict__ a00, int32_t* __restrict__ a01,
                                                    int32_t* __restrict__ a10, int32_t* __restrict__ a11,
                                                    F* __restrict__ w00, F* __restrict__ w01, F* __restrict__ w10,
                                                    F* __restrict__ w11, F* __restrict__ fu, F* __restrict__ fv) {
  for (int64_t i = 0; i < n; ++i) {
    const GatherTaps<F> t = gather_taps(iu[i], iv[i], W, H);
    const bool on = keep[i] != F(0);
    a00[i] = on & t.b00 ? t.i00 : -1;
    a01[i] = on & t.b01 ? t.i01 : -1;
    a10[i] = on & t.b10 ? t.i10 : -1;
    a11[i] = on & t.b11 ? t.i11 : -1;
    w00[i] = (F(1) - t.fu) * (F(1) - t.fv);
    w01[i] = t.fu * (F(1) - t.fv);
    w10[i] = (F(1) - t.fu) * t.fv;
    w11[i] = t.fu * t.fv;
    fu[i] = t.fu;
    fv[i] = t.fv;
  }
}

template <typename F>
void corner_taps(const SpanGeometry<F>& span, int64_t n, int W, int H, CornerTaps<F>& taps) {
  using Span = SpanGeometry<F>;
  int32_t* a = taps.at.data();
  F* w = taps.w.data();
  const int64_t m = taps.n;
  corner_taps_segment(span.field(Span::kIu), span.field(Span::kIv), span.field(Span::kKeep), n, W, H, a, a + m,
                       a + 2 * m, a + 3 * m, w, w + m, w + 2 * m, w + 3 * m, taps.fu.data(), taps.fv.data());
}

// The value of plane at a corner offset of CornerTaps: 0 at -1 (which reads offset 0).
template <typename F>
inline F tap(const F* __restrict__ plane, int32_t at) {
  return keep_if(at >= 0, plane[at & ~(at >> 31)]);
}

// out[i] = the bilinear sample of plane at pixel i's corners (0 for a pixel not kept), i in [0, n):
// sample()'s additions in its order, vectorised (not inlined, as corner_taps_segment).
template <typename F>
__attribute__((noinline)) void sample_segment(const F* __restrict__ plane, const int32_t* __restrict__ a00,
                                              const int32_t* __restrict__ a01, const int32_t* __restrict__ a10,
                                              const int32_t* __restrict__ a11, const F* __restrict__ w00,
                                              const F* __restrict__ w01, const F* __restrict__ w10,
                                              const F* __restrict__ w11, int64_t n, F* __restrict__ out) {
  for (int64_t i = 0; i < n; ++i) {
    F val = F(0);
    val += w00[i] * tap(plane, a00[i]);
    val += w01[i] * tap(plane, a01[i]);
    val += w10[i] * tap(plane, a10[i]);
    val += w11[i] * tap(plane, a11[i]);
    out[i] = val;
  }
}

// sample_segment and its slopes d sample / d (iu, iv) from one gather of the corners: out[i] the
// bilinear sample of plane at pixel i's corners (0 for a pixel not kept), d_iu[i] and d_iv[i] its
// slopes (sample_position_grad's, in its order; 0 for a pixel not kept), i in [0, n). Not inlined,
// as corner_taps_segment.
template <typename F>
__attribute__((noinline)) void sample_and_slopes_segment(
    const F* __restrict__ plane, const int32_t* __restrict__ a00, const int32_t* __restrict__ a01,
    const int32_t* __restrict__ a10, const int32_t* __restrict__ a11, const F* __restrict__ w00,
    const F* __restrict__ w01, const F* __restrict__ w10, const F* __restrict__ w11, const F* __restrict__ fu,
    const F* __restrict__ fv, int64_t n, F* __restrict__ out, F* __restrict__ d_iu, F* __restrict__ d_iv) {
  for (int64_t i = 0; i < n; ++i) {
    const F v00 = tap(plane, a00[i]), v01 = tap(plane, a01[i]), v10 = tap(plane, a10[i]), v11 = tap(plane, a11[i]);
    F val = F(0);
    val += w00[i] * v00;
    val += w01[i] * v01;
    val += w10[i] * v10;
    val += w11[i] * v11;
    out[i] = val;
    d_iu[i] = (v01 - v00) * (F(1) - fv[i]) + (v11 - v10) * fv[i];
    d_iv[i] = (v10 - v00) * (F(1) - fu[i]) + (v11 - v01) * fu[i];
  }
}

// sample_and_slopes_segment of one plane at the first n pixels of taps.
template <typename F>
void sample_and_slopes(const F* plane, const CornerTaps<F>& taps, int64_t n, F* out, F* d_iu, F* d_iv) {
  const int32_t* a = taps.at.data();
  const F* w = taps.w.data();
  const int64_t m = taps.n;
  sample_and_slopes_segment(plane, a, a + m, a + 2 * m, a + 3 * m, w, w + m, w + 2 * m, w + 3 * m, taps.fu.data(),
                            taps.fv.data(), n, out, d_iu, d_iv);
}

// g_iu[i], g_iv[i] += go[i] times d sample / d (iu, iv) of plane at pixel i's corners where keep[i],
// i in [0, n): sample_position_grad, vectorised (not inlined, as corner_taps_segment).
template <typename F>
__attribute__((noinline)) void position_grads_segment(
    const F* __restrict__ plane, const int32_t* __restrict__ a00, const int32_t* __restrict__ a01,
    const int32_t* __restrict__ a10, const int32_t* __restrict__ a11, const F* __restrict__ fu,
    const F* __restrict__ fv, const F* __restrict__ keep, const F* __restrict__ go, int64_t n, F* __restrict__ g_iu,
    F* __restrict__ g_iv) {
  for (int64_t i = 0; i < n; ++i) {
    const F v00 = tap(plane, a00[i]), v01 = tap(plane, a01[i]), v10 = tap(plane, a10[i]), v11 = tap(plane, a11[i]);
    const bool on = keep[i] != F(0);
    g_iu[i] += keep_if(on, go[i] * ((v01 - v00) * (F(1) - fv[i]) + (v11 - v10) * fv[i]));
    g_iv[i] += keep_if(on, go[i] * ((v10 - v00) * (F(1) - fu[i]) + (v11 - v01) * fu[i]));
  }
}

// position_grads_segment of one plane at the first n pixels of taps, those of span.
template <typename F>
void position_grads(const F* plane, const CornerTaps<F>& taps, const SpanGeometry<F>& span, const F* go, int64_t n,
                    F* g_iu, F* g_iv) {
  const int32_t* a = taps.at.data();
  const int64_t m = taps.n;
  position_grads_segment(plane, a, a + m, a + 2 * m, a + 3 * m, taps.fu.data(), taps.fv.data(),
                         span.field(SpanGeometry<F>::kKeep), go, n, g_iu, g_iv);
}

// g_iu[i], g_iv[i] += go[i] times the slopes d_iu[i], d_iv[i] (sample_and_slopes_segment) where
// keep[i], i in [0, n): position_grads_segment's additions, its gather done before (not inlined, as
// position_grads_segment).
template <typename F>
__attribute__((noinline)) void add_position_grads(const F* __restrict__ go, const F* __restrict__ d_iu,
                                                  const F* __restrict__ d_iv, const F* __restrict__ keep, int64_t n,
                                                  F* __restrict__ g_iu, F* __restrict__ g_iv) {
  for (int64_t i = 0; i < n; ++i) {
    const bool on = keep[i] != F(0);
    g_iu[i] += keep_if(on, go[i] * d_iu[i]);
    g_iv[i] += keep_if(on, go[i] * d_iv[i]);
  }
}

// scatter_bilinear of go[i] at pixels [0, n) through add(offset in the plane, value): pixels in
// turn, corners in order, as the per-pixel backward adds them.
template <typename F, typename Add>
inline void scatter_segment(const F* go, const CornerTaps<F>& taps, int64_t n, Add add) {
  const int32_t* a = taps.at.data();
  const F* w = taps.w.data();
  const int64_t m = taps.n;
  for (int64_t i = 0; i < n; ++i) {
    const F g = go[i];
    for (int k = 0; k < 4; ++k) {
      if (a[k * m + i] >= 0) add(a[k * m + i], w[k * m + i] * g);
    }
  }
}

// Every channel of image (its C planes HW apart) sampled at the first n pixels of span, into out
// (C planes out_stride apart, at the span's first pixel); taps: scratch for at least n pixels.
template <typename F>
void sample_span(const F* image, const SpanGeometry<F>& span, int64_t n, const Shape& sh, CornerTaps<F>& taps,
                 F* out, int64_t out_stride) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  corner_taps(span, n, sh.W, sh.H, taps);
  const int32_t* a = taps.at.data();
  const F* w = taps.w.data();
  const int64_t m = taps.n;
  for (int64_t c = 0; c < sh.C; ++c) {
    sample_segment(image + c * HW, a, a + m, a + 2 * m, a + 3 * m, w, w + m, w + 2 * m, w + 3 * m, n,
                   out + c * out_stride);
  }
}

// Calls segment(row, col, len, at) for the row segments that make up the pixels [pix0, pix0 + n)
// of an image W wide (a span may cross rows); at: the segment's first entry in the span.
template <typename Segment>
void for_row_segments(int64_t pix0, int64_t n, int W, Segment segment) {
  for (int64_t at = 0; at < n;) {
    const int64_t pix = pix0 + at;
    const int row = static_cast<int>(pix / W), col = static_cast<int>(pix % W);
    const int len = static_cast<int>(std::min<int64_t>(W - col, n - at));
    segment(row, col, len, at);
    at += len;
  }
}

// The geometry of source pose_bs at the pixels [pix0, pix0 + n) of batch element b, into span.
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
  for_row_segments(pix0, n, sh.W, [&](int row, int col, int len, int64_t at) {
    F* f[kFields];  // field q of entry at (a forward span holds only the first kX fields)
    for (int q = 0; q < kFields; ++q) {
      f[q] = full || q < SpanGeometry<F>::kX ? span.data.data() + q * span.n + at : nullptr;
    }
    segment(depth + b * sh.H * sh.W, K + b * 9, pose_bs, row, col, len, sh, opt, f[0], f[1], f[2], f[3], f[4], f[5],
            f[6], f[7], f[8], f[9], f[10], f[11], f[12], f[13], f[14]);
  });
}

// The source-independent part of the pixels [pix0, pix0 + n) of a span: the sanitised depth and
// the ray (make_pixel_at), field q of pixel i at data[q * n + i].
template <typename F>
struct PixelSpan {
  enum Field { kD, kTx, kTy, kRx, kRy, kRz, kFields };
  explicit PixelSpan(int64_t n) : n(n), data(static_cast<size_t>(n) * kFields) {}
  int64_t n;
  std::vector<F> data;

  F at(Field q, int64_t i) const { return data[q * n + i]; }
  // Pixel i (d_ok is not kept: the spans' keep flags include it)
  Pixel<F> pixel(int64_t i, Intrinsics<F> k) const {
    Pixel<F> p{};
    p.k = k;
    p.ray = {at(kTx, i), at(kTy, i), at(kRx, i), at(kRy, i), at(kRz, i)};
    p.d = at(kD, i);
    return p;
  }
};

template <typename F, bool kNormalize>
void segment_pixels(const F* depth_b, const F* k, int row, int col0, int n, const Shape& sh, F* __restrict__ d,
                    F* __restrict__ tx, F* __restrict__ ty, F* __restrict__ rx, F* __restrict__ ry,
                    F* __restrict__ rz) {
  for (int i = 0; i < n; ++i) {
    const Pixel<F> p = make_pixel_at(depth_b, k, 0, row, col0 + i, sh, kNormalize);
    d[i] = p.d, tx[i] = p.ray.tx, ty[i] = p.ray.ty, rx[i] = p.ray.rx, ry[i] = p.ray.ry, rz[i] = p.ray.rz;
  }
}

template <typename F>
void span_pixels(const F* depth, const F* K, int64_t b, int64_t pix0, int64_t n, const Shape& sh,
                 const Options& opt, PixelSpan<F>& span) {
  const auto segment = opt.normalize ? segment_pixels<F, true> : segment_pixels<F, false>;
  for_row_segments(pix0, n, sh.W, [&](int row, int col, int len, int64_t at) {
    F* f = span.data.data() + at;
    const int64_t m = span.n;
    segment(depth + b * sh.H * sh.W, K + b * 9, row, col, len, sh, f, f + m, f + 2 * m, f + 3 * m, f + 4 * m,
            f + 5 * m);
  });
}

// Pixel i of a block adds into lane i % kLanes of the twin's vectorised backward; the lanes are then
// summed in order (as warp.cu's block_sum sums warps in order), so the sums do not depend on the
// vector width the compiler chose.
constexpr int kLanes = 8;
static_assert(kBlock % kLanes == 0, "a block's arrays hold whole groups of lanes");

// What the geometry's backward of one block of up to `block` pixels (a multiple of kLanes) needs and
// accumulates: the sample-position gradients of each source (g_iu, g_iv: S x block, source s's at
// s * block) and the lane sums of the pose (S x 16 x kLanes) and intrinsics (4 x kLanes) gradients.
template <typename F>
struct BlockGrads {
  explicit BlockGrads(int64_t S, int64_t block = kBlock)
      : block(block),
        g_iu(static_cast<size_t>(S) * block),
        g_iv(g_iu.size()),
        pose_lanes(static_cast<size_t>(S) * kPosePartials * kLanes) {}
  int64_t block;
  std::vector<F> g_iu, g_iv, pose_lanes;
  F k_lanes[kIntrinsicsPartials][kLanes];

  void clear() {
    std::fill(pose_lanes.begin(), pose_lanes.end(), F(0));
    std::fill(&k_lanes[0][0], &k_lanes[0][0] + kIntrinsicsPartials * kLanes, F(0));
  }
  F pose_sum(int64_t s, int q) const { return lane_sum(pose_lanes.data() + (s * kPosePartials + q) * kLanes); }
  F k_sum(int q) const { return lane_sum(k_lanes[q]); }
  static F lane_sum(const F* lanes) {
    F total = F(0);
    for (int l = 0; l < kLanes; ++l) total += lanes[l];
    return total;
  }
};

// The pose and intrinsics sums of grads into slot `slot` of batch element b's partial sums: pose
// (B, S, slots, kPosePartials) and intrinsics (B, slots, kIntrinsicsPartials), either may be null.
template <typename F>
void store_partials(const BlockGrads<F>& grads, int64_t S, int64_t b, int64_t slot, int64_t slots, F* pose_partials,
                    F* k_partials) {
  if (pose_partials != nullptr) {
    for (int64_t s = 0; s < S; ++s) {
      F* part = pose_partials + ((b * S + s) * slots + slot) * kPosePartials;
      for (int q = 0; q < kPosePartials; ++q) part[q] = grads.pose_sum(s, q);
    }
  }
  if (k_partials != nullptr) {
    F* part = k_partials + (b * slots + slot) * kIntrinsicsPartials;
    for (int q = 0; q < kIntrinsicsPartials; ++q) part[q] = grads.k_sum(q);
  }
}

// The geometry's backward over the n <= grads.block pixels of a block, kLanes pixels at a time in
// vectorised loops: geometry_backward of every kept pixel and source from grads.g_iu, g_iv into
// the lane sums, then ray_backward of every pixel into grad_depth (when not null; n entries).
// Lanes past n read stale entries of the block's arrays and are masked.
template <typename F, bool kNormalize>
void block_geometry_backward(const PixelSpan<F>& pixels, const SpanGeometry<F>* spans, int64_t S, int64_t n,
                             const F* K_b, const F* poses_b, F* grad_depth, BlockGrads<F>& grads) {
  const Intrinsics<F> k = load_intrinsics(K_b);
  for (int64_t i0 = 0; i0 < n; i0 += kLanes) {
    F in_block[kLanes];  // 1 for the lanes of pixels < n (a float: 64-bit compares keep the loops scalar)
    for (int64_t l = 0; l < kLanes; ++l) in_block[l] = i0 + l < n ? F(1) : F(0);
    F gP[2][kLanes] = {}, gD[2][kLanes] = {};
    for (int64_t s = 0; s < S; ++s) {
      const SpanGeometry<F>& span = spans[s];
      const F* T = poses_b + s * 16;
      const F* g_iu = grads.g_iu.data() + s * grads.block;
      const F* g_iv = grads.g_iv.data() + s * grads.block;
      F* pose_lanes = grads.pose_lanes.data() + s * kPosePartials * kLanes;
#pragma GCC ivdep
      for (int64_t l = 0; l < kLanes; ++l) {
        const int64_t i = i0 + l;
        const bool live = (in_block[l] != F(0)) & span.keep(i);
        F gT[kPosePartials] = {}, gK[kIntrinsicsPartials] = {}, gPi[2] = {}, gDi[2] = {};
        const Pixel<F> p = pixels.pixel(i, k);
        geometry_backward(span.geometry(i, p), p, g_iu[i], g_iv[i], T, gT, gK, gPi, gDi);
#pragma GCC unroll 16
        for (int q = 0; q < kPosePartials; ++q) pose_lanes[q * kLanes + l] += keep_if(live, gT[q]);
#pragma GCC unroll 4
        for (int q = 0; q < kIntrinsicsPartials; ++q) grads.k_lanes[q][l] += keep_if(live, gK[q]);
#pragma GCC unroll 2
        for (int q = 0; q < 2; ++q) gP[q][l] += keep_if(live, gPi[q]);
        gD[0][l] += keep_if(live, gDi[0]);
        gD[1][l] += keep_if(live, gDi[1]);
      }
    }
    F gd[kLanes];
#pragma GCC ivdep
    for (int64_t l = 0; l < kLanes; ++l) {
      const Pixel<F> p = pixels.pixel(i0 + l, k);
      const F gPi[2] = {gP[0][l], gP[1][l]}, gDi[2] = {gD[0][l], gD[1][l]};
      F gK[kIntrinsicsPartials] = {};
      gd[l] = depth_grad(p, gDi);
      ray_backward(p, gPi, gd[l], kNormalize, gK);
#pragma GCC unroll 4
      for (int q = 0; q < kIntrinsicsPartials; ++q) grads.k_lanes[q][l] += keep_if(in_block[l] != F(0), gK[q]);
    }
    if (grad_depth != nullptr) std::copy(gd, gd + std::min<int64_t>(kLanes, n - i0), grad_depth + i0);
  }
}

}  // namespace warp
}  // namespace fastdepth
