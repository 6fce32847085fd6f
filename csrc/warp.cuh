// Per-pixel math of the depth warp, shared by the CUDA kernels (warp.cu) and the CPU twin
// (warp_cpu.cpp, through warp_rows.h). Written without branches where a select does (the twin
// vectorises the geometry over rows). Mirrors kernels/warp.py function by function; conventions
// in fastdepth/warp.py. No torch, no CUDA runtime calls.
#pragma once

#include <cmath>

#include "common.cuh"

namespace fastdepth {
namespace warp {

using std::floor;
using std::sqrt;

// Kornia's threshold below which w and z are not divided by.
constexpr double kDivideEps = 1e-8;
constexpr int kPosePartials = 16;
constexpr int kIntrinsicsPartials = 4;  // fx, fy, cx, cy

// Threads (pixels) per block of the warp kernels, as kernels/warp.py's BLOCK: the backward writes one
// pose/intrinsics partial sum per block of this many pixels, so every backend (the CPU twin too)
// produces partials of the same shape, summed in the same fixed order.
constexpr int kBlock = 128;

FD_HD int64_t blocks_per_image(int H, int W) { return (static_cast<int64_t>(H) * W + kBlock - 1) / kBlock; }

// sample position = scale * projected pixel + offset, one per axis (conventions.sample_affine).
struct AxisMap {
  double scale;
  double offset;
};

// Kornia's pixel -> [-1, 1] normalisation by size - 1 (a singleton axis: scale 1, offset 0)
// composed with grid_sample's unnormalisation, with or without align_corners.
inline AxisMap axis_map(int size, bool align_corners) {
  const double s = size == 1 ? 1.0 : 2.0 / (size - 1), o = size == 1 ? 0.0 : -1.0;
  if (align_corners) return {s * (size - 1) / 2.0, (o + 1.0) * (size - 1) / 2.0};
  return {s * size / 2.0, ((o + 1.0) * size - 1.0) / 2.0};
}

template <typename F>
struct Intrinsics {
  F fx, fy, cx, cy;
};

template <typename F>
FD_HD Intrinsics<F> load_intrinsics(const F* K) {
  return {K[0], K[4], K[2], K[5]};
}

// Unnormalised ray (tx, ty, 1) through the pixel centre and the ray actually scaled by depth
// (unit length when normalize).
template <typename F>
struct Ray {
  F tx, ty, rx, ry, rz;
};

template <typename F>
FD_HD Ray<F> make_ray(F col, F row, Intrinsics<F> k, bool normalize) {
  const F tx = (col - k.cx) / k.fx;
  const F ty = (row - k.cy) / k.fy;
  const F inv_n = normalize ? F(1) / sqrt(tx * tx + ty * ty + F(1)) : F(1);
  return {tx, ty, tx * inv_n, ty * inv_n, inv_n};
}

template <typename F>
FD_HD bool is_finite(F v) {
  return fd_abs(v) <= F(3.4028234663852886e38);
}

// 1 / den where |den| > 1e-8, else 1 (Kornia's no-divide rule).
template <typename F>
FD_HD F safe_inverse(F den, bool* ok) {
  *ok = fd_abs(den) > F(kDivideEps);
  return F(1) / (*ok ? den : F(1));
}

// Sampling position on one axis from the projected pixel p, d(position)/dp and whether the
// unclipped position lies within [0, size - 1]. Far-outside positions are pinned to -2 so that the
// float -> int conversion stays defined (every tap there is outside the image or was clipped).
template <typename F>
FD_HD F sample_coord(F p, int size, AxisMap m, bool border, F* dpos, bool* inside) {
  F pos = p * F(m.scale) + F(m.offset);
  const F last = F(size - 1);
  *inside = (pos >= F(0)) & (pos <= last);
  *dpos = F(m.scale);
  if (border) {  // grid_sample's clip: gradient 0 at and beyond the edges
    *dpos = (pos > F(0)) & (pos < last) ? F(m.scale) : F(0);
    pos = fd_min(fd_max(pos, F(0)), last);
  }
  return (pos > F(-2)) & (pos < F(size + 1)) ? pos : F(-2);
}

// Everything the forward and backward passes need for one pixel and one source, recomputed.
template <typename F>
struct Geometry {
  F X, Y, Z;     // destination point
  F px, py, pz;  // source-frame point after the division by w
  F inv_w, inv_z;
  bool w_ok, z_ok;
  F x, y;       // normalised camera coordinates in the source
  F u, v;       // the projected pixel
  bool finite;  // projection finite
  bool inside;  // unclipped sample inside the image on both axes, and z > eps
  F iu, iv, du, dv;
};

// The projection of the point at depth d along ray r into the source (pose T): the fields of
// Geometry up to the projected pixel (u, v) and whether it is finite.
template <typename F>
FD_HD Geometry<F> project(F d, const Ray<F>& r, Intrinsics<F> k, const F* T) {
  Geometry<F> g;
  g.X = d * r.rx;
  g.Y = d * r.ry;
  g.Z = d * r.rz;
  const F qx = T[0] * g.X + T[1] * g.Y + T[2] * g.Z + T[3];
  const F qy = T[4] * g.X + T[5] * g.Y + T[6] * g.Z + T[7];
  const F qz = T[8] * g.X + T[9] * g.Y + T[10] * g.Z + T[11];
  const F w = T[12] * g.X + T[13] * g.Y + T[14] * g.Z + T[15];
  g.inv_w = safe_inverse(w, &g.w_ok);
  g.px = qx * g.inv_w;
  g.py = qy * g.inv_w;
  g.pz = qz * g.inv_w;
  g.inv_z = safe_inverse(g.pz, &g.z_ok);
  g.x = g.px * g.inv_z;
  g.y = g.py * g.inv_z;
  g.u = k.fx * g.x + k.cx;
  g.v = k.fy * g.y + k.cy;
  g.finite = is_finite(g.u) & is_finite(g.v);
  return g;
}

// project, then where the source is sampled.
template <typename F>
FD_HD Geometry<F> compute_geometry(F d, const Ray<F>& r, Intrinsics<F> k, const F* T, int W, int H, AxisMap mu,
                                   AxisMap mv, bool border) {
  Geometry<F> g = project(d, r, k, T);
  bool u_in, v_in;
  g.iu = sample_coord(g.u, W, mu, border, &g.du, &u_in);
  g.iv = sample_coord(g.v, H, mv, border, &g.dv, &v_in);
  g.inside = u_in & v_in & (g.pz > F(kDivideEps));
  return g;
}

// Bilinear taps: in-plane offsets of the four corners, their in-bounds flags and the fractions.
template <typename F>
struct Taps {
  int64_t o00;
  bool m00, m01, m10, m11;
  F fu, fv;
};

template <typename F>
FD_HD Taps<F> bilinear_taps(F iu, F iv, int W, int H) {
  // iu, iv lie in [-2, size + 1] (sample_coord pins them there)
  const F u0f = fd_floor_small(iu);
  const F v0f = fd_floor_small(iv);
  const int u0 = static_cast<int>(u0f);
  const int v0 = static_cast<int>(v0f);
  const bool mu0 = u0 >= 0 && u0 < W, mu1 = u0 + 1 >= 0 && u0 + 1 < W;
  const bool mv0 = v0 >= 0 && v0 < H, mv1 = v0 + 1 >= 0 && v0 + 1 < H;
  return {static_cast<int64_t>(v0) * W + u0, mu0 && mv0, mu1 && mv0, mu0 && mv1, mu1 && mv1, iu - u0f, iv - v0f};
}

// Bilinear sample of one plane (out-of-bounds taps read as zero).
template <typename F, typename Img>
FD_HD F sample(const Img* plane, const Taps<F>& t, int W) {
  F val = F(0);
  if (t.m00) val += (F(1) - t.fu) * (F(1) - t.fv) * load_as<F>(plane + t.o00);
  if (t.m01) val += t.fu * (F(1) - t.fv) * load_as<F>(plane + t.o00 + 1);
  if (t.m10) val += (F(1) - t.fu) * t.fv * load_as<F>(plane + t.o00 + W);
  if (t.m11) val += t.fu * t.fv * load_as<F>(plane + t.o00 + W + 1);
  return val;
}

// d sample / d (iu, iv) times the upstream gradient go, accumulated into g_iu, g_iv.
template <typename F, typename Img>
FD_HD void sample_position_grad(const Img* plane, const Taps<F>& t, int W, F go, F* g_iu, F* g_iv) {
  const F v00 = t.m00 ? load_as<F>(plane + t.o00) : F(0);
  const F v01 = t.m01 ? load_as<F>(plane + t.o00 + 1) : F(0);
  const F v10 = t.m10 ? load_as<F>(plane + t.o00 + W) : F(0);
  const F v11 = t.m11 ? load_as<F>(plane + t.o00 + W + 1) : F(0);
  *g_iu += go * ((v01 - v00) * (F(1) - t.fv) + (v11 - v10) * t.fv);
  *g_iv += go * ((v10 - v00) * (F(1) - t.fu) + (v11 - v01) * t.fu);
}

// The adjoint of the bilinear sample: go times each tap's weight, through scatter(offset, value)
// with offsets from the plane's start at ``plane``.
template <typename F, typename Scatter>
FD_HD void scatter_bilinear(const Taps<F>& t, int64_t plane, int W, F go, Scatter scatter) {
  const int64_t at = plane + t.o00;
  if (t.m00) scatter(at, (F(1) - t.fu) * (F(1) - t.fv) * go);
  if (t.m01) scatter(at + 1, t.fu * (F(1) - t.fv) * go);
  if (t.m10) scatter(at + W, (F(1) - t.fu) * t.fv * go);
  if (t.m11) scatter(at + W + 1, t.fu * t.fv * go);
}

// Per-pixel state shared by all sources: intrinsics, ray and the sanitised depth.
template <typename F>
struct Pixel {
  Intrinsics<F> k;
  Ray<F> ray;
  F d;
  bool d_ok;
};

// One source's share of d loss / d depth, gPs . ray, where gPs = d loss / d (X, Y, Z) through this
// source and gq = d loss / d (q, w), added to gd[0] (along the ray) or to gd[1] (across) as -gq . t:
// where z is divided, the projection ignores the scale of q (gq . q = 0) and q = d T[:3, :3] ray + t
// (t: the pose's translation column), so the share is also -gq . t / d. gPs . ray cancels as the
// point moves away from the translation (an error growing as |X| / |t|, as Kornia's does in
// float32); -gq . t / d does not, and is taken wherever |t| < |X| (max norms). depth_grad divides
// the sum by d once.
template <typename F>
FD_HD void depth_shares(const Geometry<F>& g, const Pixel<F>& p, const F* gq, const F* gPs, const F* T, F* gd) {
  const F t_max = fd_max(fd_max(fd_abs(T[3]), fd_abs(T[7])), fd_abs(T[11]));
  const F x_max = fd_max(fd_max(fd_abs(g.X), fd_abs(g.Y)), fd_abs(g.Z));
  const bool parallax = g.z_ok & (t_max < x_max);
  gd[0] += keep_if(!parallax, gPs[0] * p.ray.rx + gPs[1] * p.ray.ry + gPs[2] * p.ray.rz);
  gd[1] += keep_if(parallax, -(gq[0] * T[3] + gq[1] * T[7] + gq[2] * T[11]));
}

// d loss / d depth at pixel p from depth_shares' sums over the sources (gd[1] is 0 where d is).
template <typename F>
FD_HD F depth_grad(const Pixel<F>& p, const F* gd) {
  return gd[0] + keep_if(p.d != F(0), gd[1] / p.d);
}

// Chain rule from the sample position back to the pose, the projection intrinsics and the
// destination point of pixel p. Adds the pose gradient (16 values) to gT, the projection's share of
// the intrinsics gradient to gK (fx, fy, cx, cy), d/d(X, Y) to gP (the ray's K share needs no more)
// and the depth gradient's shares to gd[0..1] (depth_shares).
template <typename F>
FD_HD void geometry_backward(const Geometry<F>& g, const Pixel<F>& p, F g_iu, F g_iv, const F* T, F* gT, F* gK,
                             F* gP, F* gd) {
  // sample position -> projected pixel -> normalised camera coordinates
  const F gu = g_iu * g.du;
  const F gv = g_iv * g.dv;
  gK[0] += gu * g.x;
  gK[1] += gv * g.y;
  gK[2] += gu;
  gK[3] += gv;
  const F gx = p.k.fx * gu;
  const F gy = p.k.fy * gv;
  // camera coordinates -> point after /w (Kornia skips the divide where |z| <= eps)
  const F gpx = gx * g.inv_z;
  const F gpy = gy * g.inv_z;
  const F gpz = keep_if(g.z_ok, -(gx * g.x + gy * g.y) * g.inv_z);
  // point after /w -> homogeneous point q, w. Where z is divided, x = qx / qz and y = qy / qz do not
  // depend on w: its gradient is 0 there, not the rounding of a cancellation (times X in gT's last row).
  const F gq[4] = {gpx * g.inv_w, gpy * g.inv_w, gpz * g.inv_w,
                   keep_if(g.w_ok & !g.z_ok, -(gpx * g.px + gpy * g.py + gpz * g.pz) * g.inv_w)};
  const F point[4] = {g.X, g.Y, g.Z, F(1)};
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) gT[4 * i + j] += gq[i] * point[j];
  }
  F gPs[3];
  for (int j = 0; j < 3; ++j) gPs[j] = gq[0] * T[j] + gq[1] * T[4 + j] + gq[2] * T[8 + j] + gq[3] * T[12 + j];
  gP[0] += gPs[0];
  gP[1] += gPs[1];
  depth_shares(g, p, gq, gPs, T, gd);
}

// Through the ray (rx, ry, rz) = normalise?((col - cx) / fx, (row - cy) / fy, 1) of pixel p: the
// ray's share of the intrinsics gradient added to gK, from d/d(X, Y) (gP) and the depth gradient
// gd (depth_grad's).
template <typename F>
FD_HD void ray_backward(const Pixel<F>& p, const F* gP, F gd, bool normalize, F* gK) {
  const Ray<F>& r = p.ray;
  const F grx = p.d * gP[0];
  const F gry = p.d * gP[1];
  F gtx = grx, gty = gry;
  if (normalize) {
    const F radial = p.d * gd;  // ray . d d/d(X, Y, Z)
    gtx = (grx - r.rx * radial) * r.rz;
    gty = (gry - r.ry * radial) * r.rz;
  }
  gK[0] += -gtx * r.tx / p.k.fx;
  gK[1] += -gty * r.ty / p.k.fy;
  gK[2] += -gtx / p.k.fx;
  gK[3] += -gty / p.k.fy;
}

// ---- shapes and options of one launch ----

struct Shape {
  int64_t B, S, C;
  int H, W;
};

struct Options {
  AxisMap mu, mv;
  bool normalize, border;
};

template <typename F>
FD_HD Pixel<F> make_pixel_at(const F* depth, const F* K, int64_t b, int row, int col, const Shape& sh, bool normalize) {
  Pixel<F> p;
  p.k = load_intrinsics(K + b * 9);
  p.ray = make_ray(F(col), F(row), p.k, normalize);
  p.d = depth[b * sh.H * sh.W + static_cast<int64_t>(row) * sh.W + col];
  p.d_ok = is_finite(p.d);
  p.d = p.d_ok ? p.d : F(0);
  return p;
}

template <typename F>
FD_HD Pixel<F> make_pixel(const F* depth, const F* K, int64_t b, int64_t pix, const Shape& sh, bool normalize) {
  return make_pixel_at(depth, K, b, static_cast<int>(pix / sh.W), static_cast<int>(pix % sh.W), sh, normalize);
}

// Forward of one destination pixel and one source: all channels, and the mask.
template <typename F, typename Img>
FD_HD void forward_source(const Img* image, const F* pose, Img* out, int8_t* mask, const Pixel<F>& p, int64_t bs,
                          int64_t pix, const Shape& sh, const Options& opt) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  const Geometry<F> g = compute_geometry(p.d, p.ray, p.k, pose + bs * 16, sh.W, sh.H, opt.mu, opt.mv, opt.border);
  const bool keep = p.d_ok && g.finite;
  const Taps<F> t = bilinear_taps(g.iu, g.iv, sh.W, sh.H);
  for (int64_t c = 0; c < sh.C; ++c) {
    const int64_t plane = (bs * sh.C + c) * HW;
    store_as(out + plane + pix, keep ? sample(image + plane, t, sh.W) : F(0));
  }
  if (mask != nullptr) mask[bs * HW + pix] = static_cast<int8_t>(keep && g.inside);
}

// Backward of the sampling of one destination pixel and one source at (iu, iv): scatters the image
// gradient through scatter(offset, value), offset into the image (an atomic add on the GPU, float or
// fixed point), when need_image; adds d loss / d (iu, iv) to g_iu, g_iv when need_geometry.
template <typename F, typename Img, typename Scatter>
FD_HD void sample_backward_at(const Img* grad_out, const Img* image, bool need_image, F iu, F iv, int64_t bs,
                              int64_t pix, const Shape& sh, bool need_geometry, F* g_iu, F* g_iv, Scatter scatter) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  const Taps<F> t = bilinear_taps(iu, iv, sh.W, sh.H);
  for (int64_t c = 0; c < sh.C; ++c) {
    const int64_t plane = (bs * sh.C + c) * HW;
    const F go = load_as<F>(grad_out + plane + pix);
    if (need_image) scatter_bilinear(t, plane, sh.W, go, scatter);
    if (need_geometry) sample_position_grad(image + plane, t, sh.W, go, g_iu, g_iv);
  }
}

// Backward of one destination pixel and one source: the sampling's backward, then this source's
// pose gradient added to gT, and gK, gP (d/d (X, Y) of the destination point) and gd (the depth gradient's
// shares, depth_shares) accumulated across sources.
template <typename F, typename Img, typename Scatter>
FD_HD void backward_source(const Img* grad_out, const Img* image, const F* pose, bool need_image, const Pixel<F>& p,
                           int64_t bs, int64_t pix, const Shape& sh, const Options& opt, bool need_geometry, F* gT,
                           F* gK, F* gP, F* gd, Scatter scatter) {
  const F* T = pose + bs * 16;
  const Geometry<F> g = compute_geometry(p.d, p.ray, p.k, T, sh.W, sh.H, opt.mu, opt.mv, opt.border);
  if (!(p.d_ok && g.finite)) return;
  F g_iu = F(0), g_iv = F(0);
  sample_backward_at(grad_out, image, need_image, g.iu, g.iv, bs, pix, sh, need_geometry, &g_iu, &g_iv, scatter);
  if (need_geometry) geometry_backward(g, p, g_iu, g_iv, T, gT, gK, gP, gd);
}

// A scaled contribution as int64 fixed point, rounded to nearest (kernels/warp.py: _fixed).
template <typename F>
FD_HD long long to_fixed(F scaled) {
  return static_cast<long long>(floor(scaled + F(0.5)));
}

}  // namespace warp

// ---- entry points on raw pointers: CUDA launchers (warp.cu; stream is a cudaStream_t, geometry
// float32) and the CPU twin (warp_cpu.cpp; F = float or double). ----
void warp_forward_cuda(ImageType type, const void* image, const float* depth, const float* pose, const float* K,
                       void* out, int8_t* mask, const warp::Shape& shape, const warp::Options& options, void* stream);
// grad_image (float32) or, deterministic, grad_fixed (int64 fixed point with the scale at
// fixed_scale), grad_depth, pose_partials (B, S, blocks, 16), k_partials (B, blocks, 4): each may
// be null when not needed.
void warp_backward_cuda(ImageType type, const void* grad_out, const void* image, const float* depth,
                        const float* pose, const float* K, float* grad_image, long long* grad_fixed,
                        const float* fixed_scale, float* grad_depth, float* pose_partials, float* k_partials,
                        const warp::Shape& shape, const warp::Options& options, void* stream);
template <typename F>
void warp_forward_cpu(const F* image, const F* depth, const F* pose, const F* K, F* out, int8_t* mask,
                      const warp::Shape& shape, const warp::Options& options);
template <typename F>
void warp_backward_cpu(const F* grad_out, const F* image, const F* depth, const F* pose, const F* K, F* grad_image,
                       long long* grad_fixed, const F* fixed_scale, F* grad_depth, F* pose_partials, F* k_partials,
                       const warp::Shape& shape, const warp::Options& options);

}  // namespace fastdepth
