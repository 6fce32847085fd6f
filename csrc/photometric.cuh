// Per-pixel math of the SSIM + L1 photometric loss and of the min-reprojection objective, shared
// by the CUDA kernels (photometric.cu) and the CPU twin (cpu.cpp). Mirrors kernels/photometric.py
// function by function; conventions in fastdepth/photometric.py. No torch, no CUDA runtime calls.
#pragma once

#include "common.cuh"

namespace fastdepth {
namespace photometric {

constexpr double kC1 = 0.01 * 0.01;
constexpr double kC2 = 0.03 * 0.03;

// Pixels per block: a kTileW x kTileH tile, as kernels/photometric.py's BW x BH.
constexpr int kTileW = 32;
constexpr int kTileH = 8;

// A candidate is compared with the target: the identity sources first, then the warped sources.
struct Shape {
  int64_t B, S_id, S_w, C;
  int H, W;
};

// ReflectionPad index map (i in [-1, n]); clamped so that any i stays a valid address.
FD_HD int reflect(int i, int n) {
  i = i < 0 ? -i : i;
  i = i > n - 1 ? 2 * (n - 1) - i : i;
  return i < 0 ? 0 : (i > n - 1 ? n - 1 : i);
}

template <typename F>
struct SsimTerms {
  F mx, my, a, b, c, d;  // box means, and SSIM = (a * b) / (c * d)
};

// The SSIM pieces from the window sums of x, y, x², y², xy. The means are the sums times 1/9 (folded
// at compile time): one multiplication where a correctly rounded division takes a dozen instructions
// on a GPU and several cycles on a CPU; within an ulp of the sum divided by 9.
template <typename F>
FD_HD SsimTerms<F> ssim_from_sums(F sx, F sy, F sxx, F syy, F sxy) {
  const F ninth = F(1) / F(9);
  SsimTerms<F> t;
  t.mx = sx * ninth;
  t.my = sy * ninth;
  t.a = F(2) * t.mx * t.my + F(kC1);
  t.b = F(2) * (sxy * ninth - t.mx * t.my) + F(kC2);
  t.c = t.mx * t.mx + t.my * t.my + F(kC1);
  t.d = (sxx * ninth - t.mx * t.mx) + (syy * ninth - t.my * t.my) + F(kC2);
  return t;
}

// Monodepth2's SSIM pieces over the reflected 3x3 window centred on (row, col).
template <typename F, typename Img>
FD_HD SsimTerms<F> ssim_terms(const Img* x, const Img* y, int row, int col, int H, int W) {
  F sx = F(0), sy = F(0), sxx = F(0), syy = F(0), sxy = F(0);
  for (int dy = -1; dy <= 1; ++dy) {
    const int64_t r = static_cast<int64_t>(reflect(row + dy, H)) * W;
    for (int dx = -1; dx <= 1; ++dx) {
      const int64_t off = r + reflect(col + dx, W);
      const F xv = load_as<F>(x + off);
      const F yv = load_as<F>(y + off);
      sx += xv;
      sy += yv;
      sxx += xv * xv;
      syy += yv * yv;
      sxy += xv * yv;
    }
  }
  return ssim_from_sums(sx, sy, sxx, syy, sxy);
}

// The clamped SSIM term (1 - SSIM) / 2 of one channel (NaN stays NaN).
template <typename F>
FD_HD F ssim_loss(const SsimTerms<F>& t) {
  return fd_clamp01((F(1) - (t.a * t.b) / (t.c * t.d)) * F(0.5));
}

// alpha * SSIM + (1 - alpha) * L1 from the sums of both terms over the C channels, averaged.
template <typename F>
FD_HD F mix_channels(F ssim, F l1, F alpha, int64_t C) {
  return (alpha * ssim + (F(1) - alpha) * l1) / F(C);
}

// Loss of one candidate x against the target y at one pixel, averaged over the C planes.
template <typename F, typename Img>
FD_HD F candidate_loss(const Img* x, const Img* y, int64_t plane_stride, int row, int col, const Shape& sh,
                       F alpha) {
  const int64_t off = static_cast<int64_t>(row) * sh.W + col;
  F ssim = F(0), l1 = F(0);
  for (int64_t c = 0; c < sh.C; ++c) {
    const Img* xc = x + c * plane_stride;
    const Img* yc = y + c * plane_stride;
    const SsimTerms<F> t = ssim_terms<F>(xc, yc, row, col, sh.H, sh.W);
    ssim += ssim_loss(t);
    l1 += fd_abs(load_as<F>(yc + off) - load_as<F>(xc + off));
  }
  return mix_channels(ssim, l1, alpha, sh.C);
}

// Candidate k's loss l replaces the best so far where strictly lower (ties: the lowest index), or
// where it is the first NaN (a NaN wins once and stays, as in torch.min).
template <typename F>
FD_HD void take_if_lower(F l, int64_t k, F& best, int64_t& best_k) {
  if (l < best || (l != l && best == best)) {
    best = l;
    best_k = k;
  }
}

// Forward of one pixel: the minimum over the candidates (take_if_lower) and its index.
template <typename F, typename Img>
FD_HD void forward_pixel(const Img* target, const Img* identity, const Img* warped, Img* loss, int64_t* index,
                         int64_t b, int row, int col, const Shape& sh, F alpha) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  const Img* y = target + b * sh.C * HW;
  F best = F(INFINITY);
  int64_t best_k = 0;
  for (int64_t k = 0; k < sh.S_id + sh.S_w; ++k) {
    const Img* x = k < sh.S_id ? identity + (b * sh.S_id + k) * sh.C * HW : warped + (b * sh.S_w + k - sh.S_id) * sh.C * HW;
    take_if_lower(candidate_loss(x, y, HW, row, col, sh, alpha), k, best, best_k);
  }
  const int64_t off = b * HW + static_cast<int64_t>(row) * sh.W + col;
  store_as(loss + off, best);
  if (index != nullptr) index[off] = best_k;
}

// How often input index r appears in the reflected 3-window of output index r + o (o in -1..1).
FD_HD int reflect_count(int r, int o, int n) {
  const int p = r + o;
  if (p < 0 || p >= n) return 0;
  return ((o == -1 && r == 1) || (o == 1 && r == n - 2)) ? 2 : 1;
}

// d loss(p) / d (the box means at output pixel p) for one candidate plane x against the target
// plane y, times the upstream gradient g at p and the box weight 1/9. Where the clamp of the SSIM
// term is inactive the gradient through it is 0 (torch.clamp passes it at and inside its bounds),
// and 0 times a non-finite term is NaN, as in PyTorch's autograd: a window that holds NaN or inf
// gives NaN to every pixel in it, whether or not its candidate won.
template <typename F>
struct StatGrads {
  F mx, my, var, cov;  // d/d E[x], d/d E[y], d/d E[x²] (= d/d E[y²]), d/d E[xy]
};

template <typename F>
FD_HD StatGrads<F> stat_grads_from_terms(const SsimTerms<F>& t, F g, F alpha_c) {
  const F ninth = F(1) / F(9);
  const F s = (t.a * t.b) / (t.c * t.d);  // as ssim_loss: the clamp's bounds hold where they held there
  const F inv_cd = F(1) / (t.c * t.d);    // 1 / c = d / (c d), 1 / d = c / (c d): two divisions, not six
  const F half = (F(1) - s) * F(0.5);
  const F g_s = keep_if((half >= F(0)) & (half <= F(1)), F(-0.5) * alpha_c * g * ninth);
  const F g_a = g_s * t.b * inv_cd;
  const F g_b = g_s * t.a * inv_cd;
  const F g_c = -g_s * s * (t.d * inv_cd);
  const F g_d = -g_s * s * (t.c * inv_cd);
  return {F(2) * (t.my * (g_a - g_b) + t.mx * (g_c - g_d)), F(2) * (t.mx * (g_a - g_b) + t.my * (g_c - g_d)), g_d,
          F(2) * g_b};
}

template <typename F, typename Img>
FD_HD StatGrads<F> stat_grads_at(const Img* x, const Img* y, int p_row, int p_col, int H, int W, F g, F alpha_c) {
  return stat_grads_from_terms(ssim_terms<F>(x, y, p_row, p_col, H, W), g, alpha_c);
}

// The gradients at one input pixel from the summed stat gradients of every window holding it and
// the L1 term: returns d/dx, adds d/dy to *g_y. d|y - x|/dx = -sign(y - x), 0 where equal.
template <typename F>
FD_HD F pixel_grads(const StatGrads<F>& sum, F xv, F yv, F g_here, F l1_c, F* g_y) {
  const F g_l1 = g_here * l1_c * (F(yv > xv) - F(yv < xv));  // no branch: the CPU twin vectorises it
  *g_y += sum.my + F(2) * yv * sum.var + xv * sum.cov + g_l1;
  return sum.mx + F(2) * xv * sum.var + yv * sum.cov - g_l1;
}

// The upstream gradient at an image offset of candidate k: where it won (index), or everywhere.
template <typename F, typename Img>
FD_HD F routed_grad(const Img* grad, const int64_t* index, int64_t k, int64_t off) {
  return (index == nullptr || index[off] == k) ? load_as<F>(grad + off) : F(0);
}

// Gradients of the loss map w.r.t. one plane of candidate x (returned in *g_x) and of the target
// y (added to *g_y) at one pixel: the stat gradients of every output pixel whose reflected window
// holds this pixel, recomputed, weighted by how often it appears there, then the L1 term.
// index == nullptr: a single candidate, else the upstream gradient counts only at the pixels that
// candidate k won (0 elsewhere: the windows of the others are still computed, see StatGrads).
template <typename F, typename Img>
FD_HD void candidate_grads(const Img* x, const Img* y, const Img* grad, const int64_t* index, int64_t k, int row,
                           int col, int H, int W, F alpha_c, F l1_c, F* g_x, F* g_y) {
  StatGrads<F> sum = {F(0), F(0), F(0), F(0)};
  for (int o = 0; o < 9; ++o) {
    const int oy = o / 3 - 1, ox = o % 3 - 1;
    const int count = reflect_count(row, oy, H) * reflect_count(col, ox, W);
    if (count == 0) continue;
    const int64_t p_off = static_cast<int64_t>(row + oy) * W + col + ox;
    const F g = routed_grad<F>(grad, index, k, p_off);
    const StatGrads<F> at = stat_grads_at(x, y, row + oy, col + ox, H, W, g, alpha_c);
    sum.mx += F(count) * at.mx;
    sum.my += F(count) * at.my;
    sum.var += F(count) * at.var;
    sum.cov += F(count) * at.cov;
  }
  const int64_t off = static_cast<int64_t>(row) * W + col;
  const F g_here = routed_grad<F>(grad, index, k, off);
  *g_x = pixel_grads(sum, load_as<F>(x + off), load_as<F>(y + off), g_here, l1_c, g_y);
}

// The candidates [first, last) whose gradients the backward computes: a candidate's gradient matters
// only for its own input's gradient and the target's (identity candidates are 0 .. S_id - 1).
struct CandidateRange {
  int64_t first, last;
};

FD_HD CandidateRange needed_candidates(const Shape& sh, bool need_target, bool need_identity, bool need_warped) {
  return {need_target || need_identity ? 0 : sh.S_id, need_target || need_warped ? sh.S_id + sh.S_w : sh.S_id};
}

// Backward of one pixel: every channel of every candidate, and the target. A null gradient
// pointer means that gradient is not needed.
template <typename F, typename Img, typename GImg>
FD_HD void backward_pixel(const Img* grad, const int64_t* index, const Img* target, const Img* identity,
                          const Img* warped, GImg* grad_target, GImg* grad_identity, GImg* grad_warped, int64_t b,
                          int row, int col, const Shape& sh, F alpha) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  const int64_t off = static_cast<int64_t>(row) * sh.W + col;
  const Img* g_map = grad + b * HW;
  const int64_t* i_map = index != nullptr ? index + b * HW : nullptr;
  const F alpha_c = alpha / F(sh.C);
  const F l1_c = (F(1) - alpha) / F(sh.C);
  const CandidateRange ks =
      needed_candidates(sh, grad_target != nullptr, grad_identity != nullptr, grad_warped != nullptr);
  for (int64_t c = 0; c < sh.C; ++c) {
    const int64_t y_plane = (b * sh.C + c) * HW;
    F g_target = F(0);
    for (int64_t k = ks.first; k < ks.last; ++k) {
      const bool is_identity = k < sh.S_id;
      const int64_t plane = is_identity ? ((b * sh.S_id + k) * sh.C + c) * HW : ((b * sh.S_w + k - sh.S_id) * sh.C + c) * HW;
      const Img* x = (is_identity ? identity : warped) + plane;
      F g_x;
      candidate_grads(x, target + y_plane, g_map, i_map, k, row, col, sh.H, sh.W, alpha_c, l1_c, &g_x, &g_target);
      GImg* g_out = is_identity ? grad_identity : grad_warped;
      if (g_out != nullptr) store_as(g_out + plane + off, g_x);
    }
    if (grad_target != nullptr) store_as(grad_target + y_plane + off, g_target);
  }
}

// ---- a block of positions, one per GPU thread: a tile of pixels and the halo around it whose
// windows the tile's pixels need (the photometric tile backward and the fused objective's tile
// forward: halo 1; the fused objective's backward: halo 2). ----
constexpr int kBlockH = 16;
constexpr int kBlockW = 32;
constexpr int kBlockPositions = kBlockH * kBlockW;

// Position t of the block whose tile starts at image pixel (tile_row, tile_col), with a halo of
// `halo` positions around the tile.
struct Position {
  int t, row, col;          // the position's image pixel (possibly outside the image)
  int r_in, c_in;           // clamped into the image
  bool own, windows;        // a pixel of the tile; the centre of a window a tile pixel lies in
};

FD_HD Position block_position(int t, int tile_row, int tile_col, int H, int W, int halo) {
  Position p;
  const int bi = t / kBlockW, bj = t % kBlockW;
  p.t = t;
  p.row = tile_row - halo + bi;
  p.col = tile_col - halo + bj;
  const bool in_image = p.row >= 0 && p.row < H && p.col >= 0 && p.col < W;
  p.own = in_image && bi >= halo && bi < kBlockH - halo && bj >= halo && bj < kBlockW - halo;
  p.windows = in_image && bi >= halo - 1 && bi < kBlockH - halo + 1 && bj >= halo - 1 && bj < kBlockW - halo + 1;
  p.r_in = p.row < 0 ? 0 : (p.row > H - 1 ? H - 1 : p.row);
  p.c_in = p.col < 0 ? 0 : (p.col > W - 1 ? W - 1 : p.col);
  return p;
}

// ---- the backward over blocks (photometric_tile_bwd_kernel, the alternative to backward_pixel's
// recomputed windows that the benchmark times as BACKWARD = "tile"): one thread per position of a
// block, a tile of (kBlockH - 2) x (kBlockW - 2) pixels and its halo of 1, the centres of the
// windows the tile's pixels lie in. Per channel and candidate, (A) tile_stat_phase computes the
// stat gradients of the window centred on each position into the block's planes, once, where
// backward_pixel recomputes each window for each of its 9 pixels; (B) tile_adjoint_phase sums
// them at the tile's pixels with the reflection counts and adds the L1 term. The same sums in the
// same order as candidate_grads. ----

// Tiles across W and down H of the tile backward's grid.
FD_HD int tile_backward_tiles_w(int W) { return (W + kBlockW - 3) / (kBlockW - 2); }
FD_HD int tile_backward_tiles_h(int H) { return (H + kBlockH - 3) / (kBlockH - 2); }

// (A) the stat gradients of the window centred on the position (an image pixel), for candidate
// plane x against target plane y with the upstream gradient g there, into the four planes of
// sg_s: d/d E[x], E[y], E[x²], E[xy].
template <typename F, typename Img>
FD_HD void tile_stat_phase(const Img* x, const Img* y, F g, int H, int W, const Position& pos, F alpha_c, F* sg_s) {
  if (!pos.windows) return;
  const StatGrads<F> s = stat_grads_at(x, y, pos.row, pos.col, H, W, g, alpha_c);
  sg_s[pos.t] = s.mx;
  sg_s[kBlockPositions + pos.t] = s.my;
  sg_s[2 * kBlockPositions + pos.t] = s.var;
  sg_s[3 * kBlockPositions + pos.t] = s.cov;
}

// (B) at a tile pixel: the stat gradients of the windows it lies in, each counted as often as it
// holds the pixel, and the L1 term with the upstream gradient g there (candidate_grads): returns
// d/dx, adds d/dy to *g_y.
template <typename F, typename Img>
FD_HD F tile_adjoint_phase(const F* sg_s, const Img* x, const Img* y, F g, int H, int W, const Position& pos, F l1_c,
                           F* g_y) {
  StatGrads<F> sum = {F(0), F(0), F(0), F(0)};
  for (int o = 0; o < 9; ++o) {
    const int oy = o / 3 - 1, ox = o % 3 - 1;
    const int count = reflect_count(pos.row, oy, H) * reflect_count(pos.col, ox, W);
    if (count == 0) continue;
    const int at = pos.t + oy * kBlockW + ox;
    sum.mx += F(count) * sg_s[at];
    sum.my += F(count) * sg_s[kBlockPositions + at];
    sum.var += F(count) * sg_s[2 * kBlockPositions + at];
    sum.cov += F(count) * sg_s[3 * kBlockPositions + at];
  }
  const int64_t off = static_cast<int64_t>(pos.row) * W + pos.col;
  return pixel_grads(sum, load_as<F>(x + off), load_as<F>(y + off), g, l1_c, g_y);
}

}  // namespace photometric

// ---- entry points on raw pointers: CUDA launchers (photometric.cu; stream is a cudaStream_t) and
// the CPU twin (photometric_cpu.cpp; F = float or double). ----
void photometric_forward_cuda(ImageType type, const void* target, const void* identity, const void* warped,
                              void* loss, int64_t* index, const photometric::Shape& shape, float alpha, void* stream);
// tile: photometric_tile_bwd_kernel (each window's stat gradients computed once per block) instead
// of photometric_bwd_kernel (backward_pixel: each pixel's 9 windows recomputed).
void photometric_backward_cuda(ImageType type, const void* grad, const int64_t* index, const void* target,
                               const void* identity, const void* warped, void* grad_target, void* grad_identity,
                               void* grad_warped, const photometric::Shape& shape, float alpha, bool tile,
                               void* stream);
template <typename F>
void photometric_forward_cpu(const F* target, const F* identity, const F* warped, F* loss, int64_t* index,
                             const photometric::Shape& shape, F alpha);
template <typename F>
void photometric_backward_cpu(const F* grad, const int64_t* index, const F* target, const F* identity,
                              const F* warped, F* grad_target, F* grad_identity, F* grad_warped,
                              const photometric::Shape& shape, F alpha);

}  // namespace fastdepth
