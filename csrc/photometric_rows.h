// Row-at-a-time SSIM + L1 for the CPU twins (photometric_cpu.cpp, reprojection_cpu.cpp). The GPU
// kernels sum the 9 taps of each pixel's reflected 3x3 window (photometric.cuh); on a CPU the same
// window sums are cheaper separably: three rows added per column, then three columns, in straight
// loops over a row that the compiler vectorises. The forward sums the target's windows of a row
// once for all its candidates (TargetSums). The per-pixel formulas are photometric.cuh's own
// (ssim_from_sums, the clamp, pixel_grads); only the order of the nine additions differs. The
// backward's adjoint of the reflected box filter is separable the same way (reflect_count). No torch.
#pragma once

#include <cstdint>
#include <vector>

#include "photometric.cuh"

namespace fastdepth {
namespace photometric {

// One thread's scratch for rows of width W: five column sums and five window sums.
template <typename F>
struct RowScratch {
  explicit RowScratch(int W) : W(W), cols(5 * static_cast<size_t>(W)), sums(5 * static_cast<size_t>(W)) {}
  int W;
  std::vector<F> cols, sums;
  F* col(int q) { return cols.data() + static_cast<size_t>(q) * W; }
  F* sum(int q) { return sums.data() + static_cast<size_t>(q) * W; }
};

// s[j] = v[j - 1] + v[j] + v[j + 1] with the reflection at both ends (W >= 2).
template <typename F>
inline void reflected_sum3(const F* __restrict__ v, F* __restrict__ s, int W) {
  s[0] = v[1] + v[0] + v[1];
  for (int j = 1; j < W - 1; ++j) s[j] = v[j - 1] + v[j] + v[j + 1];
  s[W - 1] = v[W - 2] + v[W - 1] + v[W - 2];
}

// The column sums of three rows of x (x0, x1, x2) and of y: sums of x, y, x², y², xy, in one pass
// over the rows (window_sums on candidate_column_sums and target_column_sums below made the
// photometric backward 3% slower: benchmarks/results/twin-ab, cec4dce-e9c71a3). Not inlined: GCC
// honours restrict only on the arguments of a function called as one, and without it the loop
// stays scalar (the stores might alias the rows).
template <typename F>
__attribute__((noinline)) void column_sums(const F* __restrict__ x0, const F* __restrict__ x1,
                                           const F* __restrict__ x2, const F* __restrict__ y0,
                                           const F* __restrict__ y1, const F* __restrict__ y2, int W,
                                           F* __restrict__ cx, F* __restrict__ cy, F* __restrict__ cxx,
                                           F* __restrict__ cyy, F* __restrict__ cxy) {
  for (int j = 0; j < W; ++j) {
    const F a = x0[j], b = x1[j], c = x2[j];
    const F d = y0[j], e = y1[j], f = y2[j];
    cx[j] = a + b + c;
    cy[j] = d + e + f;
    cxx[j] = a * a + b * b + c * c;
    cyy[j] = d * d + e * e + f * f;
    cxy[j] = a * d + b * e + c * f;
  }
}

// The column sums of three rows of a candidate x (x0, x1, x2) with the target's (y0, y1, y2): sums
// of x, x², xy (column_sums without the target's own, which TargetSums holds). Not inlined, as
// column_sums.
template <typename F>
__attribute__((noinline)) void candidate_column_sums(const F* __restrict__ x0, const F* __restrict__ x1,
                                                     const F* __restrict__ x2, const F* __restrict__ y0,
                                                     const F* __restrict__ y1, const F* __restrict__ y2, int W,
                                                     F* __restrict__ cx, F* __restrict__ cxx, F* __restrict__ cxy) {
  for (int j = 0; j < W; ++j) {
    const F a = x0[j], b = x1[j], c = x2[j];
    cx[j] = a + b + c;
    cxx[j] = a * a + b * b + c * c;
    cxy[j] = a * y0[j] + b * y1[j] + c * y2[j];
  }
}

// The column sums of three target rows: sums of y, y² (column_sums' own for y). Not inlined, as
// column_sums.
template <typename F>
__attribute__((noinline)) void target_column_sums(const F* __restrict__ y0, const F* __restrict__ y1,
                                                  const F* __restrict__ y2, int W, F* __restrict__ cy,
                                                  F* __restrict__ cyy) {
  for (int j = 0; j < W; ++j) {
    const F d = y0[j], e = y1[j], f = y2[j];
    cy[j] = d + e + f;
    cyy[j] = d * d + e * e + f * f;
  }
}

// The three rows of a reflected 3x3 window centred on an output row: the row above, the row and the
// row below (reflected at the image's edges), each a pointer to W values.
template <typename F>
struct WindowRows {
  const F *up, *mid, *down;
};

// Rows row - 1, row, row + 1 (reflected in an image H x W) of a plane whose rows from `first` on
// are held at `rows` (first = 0: the whole plane; a band of rows with its halo otherwise).
template <typename F>
inline WindowRows<F> window_rows(const F* rows, int first, int row, int H, int W) {
  const auto at = [&](int r) { return rows + static_cast<int64_t>(r - first) * W; };
  return {at(reflect(row - 1, H)), at(row), at(reflect(row + 1, H))};
}

// The reflected 3x3 window sums of x, y, x², y², xy at every pixel of an output row whose window
// rows are x and y, into scratch.sum(0..4).
template <typename F>
inline void window_sums(const WindowRows<F>& x, const WindowRows<F>& y, int W, RowScratch<F>& scratch) {
  column_sums(x.up, x.mid, x.down, y.up, y.mid, y.down, W, scratch.col(0), scratch.col(1), scratch.col(2),
              scratch.col(3), scratch.col(4));
  for (int q = 0; q < 5; ++q) reflected_sum3(scratch.col(q), scratch.sum(q), W);
}

// A candidate's C planes, x_stride apart, whose rows from x_first on are held (window_rows).
template <typename F>
struct CandidateRows {
  const F* x;
  int64_t x_stride;
  int x_first;
};

// The target's window sums of y and y² along one output row, for each of its C planes: computed
// once (sum_row) for every candidate of the row (candidate_loss_row).
template <typename F>
struct TargetSums {
  TargetSums(int64_t C, int W) : W(W), sums(2 * static_cast<size_t>(C) * W) {}
  int W;
  std::vector<F> sums;
  F* sy(int64_t c) { return sums.data() + 2 * c * W; }
  F* syy(int64_t c) { return sums.data() + (2 * c + 1) * W; }

  // The sums of the target y (C planes, y_stride apart) along output row `row` (window_sums' own).
  void sum_row(const F* y, int64_t y_stride, int row, int64_t C, int H, RowScratch<F>& scratch) {
    for (int64_t c = 0; c < C; ++c) {
      const WindowRows<F> yr = window_rows(y + c * y_stride, 0, row, H, W);
      target_column_sums(yr.up, yr.mid, yr.down, W, scratch.col(1), scratch.col(3));
      reflected_sum3(scratch.col(1), sy(c), W);
      reflected_sum3(scratch.col(3), syy(c), W);
    }
  }
};

// The candidate's loss against the target y (C planes, y_stride apart, whose sums along the row
// `ys` holds) along output row `row`, averaged over the channels, into out[0..W): candidate_loss of
// every pixel of the row.
template <typename F>
inline void candidate_loss_row(const CandidateRows<F>& cand, const F* y, int64_t y_stride, TargetSums<F>& ys,
                               int row, int64_t C, int H, int W, F alpha, RowScratch<F>& scratch,
                               F* __restrict__ ssim, F* __restrict__ l1, F* __restrict__ out) {
  for (int j = 0; j < W; ++j) ssim[j] = l1[j] = F(0);
  for (int64_t c = 0; c < C; ++c) {
    const WindowRows<F> xr = window_rows(cand.x + c * cand.x_stride, cand.x_first, row, H, W);
    const WindowRows<F> yr = window_rows(y + c * y_stride, 0, row, H, W);
    candidate_column_sums(xr.up, xr.mid, xr.down, yr.up, yr.mid, yr.down, W, scratch.col(0), scratch.col(2),
                          scratch.col(4));
    for (int q : {0, 2, 4}) reflected_sum3(scratch.col(q), scratch.sum(q), W);
    const F *sx = scratch.sum(0), *sy = ys.sy(c), *sxx = scratch.sum(2), *syy = ys.syy(c), *sxy = scratch.sum(4);
    for (int j = 0; j < W; ++j) {
      const SsimTerms<F> t = ssim_from_sums(sx[j], sy[j], sxx[j], syy[j], sxy[j]);
      ssim[j] += ssim_loss(t);
      l1[j] += fd_abs(yr.mid[j] - xr.mid[j]);
    }
  }
  for (int j = 0; j < W; ++j) out[j] = mix_channels(ssim[j], l1[j], alpha, C);
}

// The running minimum of forward_pixel along a row: candidate k's losses l replace best where
// strictly lower, or where l is the first NaN.
template <typename F>
inline void take_min_row(const F* __restrict__ l, int64_t k, F* __restrict__ best, int64_t* __restrict__ best_k,
                         int W) {
  for (int j = 0; j < W; ++j) {
    const bool wins = (l[j] < best[j]) | ((l[j] != l[j]) & (best[j] == best[j]));  // no branch
    best[j] = wins ? l[j] : best[j];
    best_k[j] = wins ? k : best_k[j];
  }
}

// g_won[j] = g[j] where candidate k won (index[j] == k, or index null: a single candidate), else 0.
template <typename F>
inline void where_won_row(const F* __restrict__ g, const int64_t* __restrict__ index, int64_t k, int W,
                          F* __restrict__ g_won) {
  if (index == nullptr) {
    for (int j = 0; j < W; ++j) g_won[j] = g[j];
  } else {
    for (int j = 0; j < W; ++j) g_won[j] = keep_if(index[j] == k, g[j]);
  }
}

// The stat gradients (stat_grads_at) of a candidate against the target along an output row whose
// window rows are x and y (g: the upstream gradient where the candidate won, else 0), into the rows
// mx, my, var, cov.
template <typename F>
inline void stat_grads_row(const WindowRows<F>& x, const WindowRows<F>& y, int W, const F* __restrict__ g, F alpha_c,
                           RowScratch<F>& scratch, F* __restrict__ mx, F* __restrict__ my, F* __restrict__ var,
                           F* __restrict__ cov) {
  window_sums(x, y, W, scratch);
  const F *sx = scratch.sum(0), *sy = scratch.sum(1), *sxx = scratch.sum(2), *syy = scratch.sum(3),
          *sxy = scratch.sum(4);
  for (int j = 0; j < W; ++j) {
    const StatGrads<F> sg = stat_grads_from_terms(ssim_from_sums(sx[j], sy[j], sxx[j], syy[j], sxy[j]), g[j], alpha_c);
    mx[j] = sg.mx;
    my[j] = sg.my;
    var[j] = sg.var;
    cov[j] = sg.cov;
  }
}

// The adjoint of the reflected box filter at input row `row`: for each of the four stat planes
// (rows[q]: its rows row - 1, row and row + 1, as window_rows gives them), the sum over the output
// pixels whose window holds each input pixel, weighted by how often it appears there
// (reflect_count), into scratch.sum(0..3).
template <typename F>
inline void adjoint_box_row(const WindowRows<F> rows[4], int row, int H, int W, RowScratch<F>& scratch) {
  const F w_up = F(reflect_count(row, -1, H)), w_down = F(reflect_count(row, 1, H));
  for (int q = 0; q < 4; ++q) {
    const F* __restrict__ up = rows[q].up;
    const F* __restrict__ mid = rows[q].mid;
    const F* __restrict__ down = rows[q].down;
    F* __restrict__ v = scratch.col(q);
    F* __restrict__ s = scratch.sum(q);
    // a row outside the image is skipped, not weighted by 0: its neighbour may hold NaN
    if (row == 0) {
      for (int j = 0; j < W; ++j) v[j] = mid[j] + w_down * down[j];
    } else if (row == H - 1) {
      for (int j = 0; j < W; ++j) v[j] = w_up * up[j] + mid[j];
    } else {
      for (int j = 0; j < W; ++j) v[j] = w_up * up[j] + mid[j] + w_down * down[j];
    }
    for (int j : {0, 1, W - 2, W - 1}) {
      if (j < 0 || j >= W) continue;
      F acc = v[j];
      if (reflect_count(j, -1, W) != 0) acc += F(reflect_count(j, -1, W)) * v[j - 1];
      if (reflect_count(j, 1, W) != 0) acc += F(reflect_count(j, 1, W)) * v[j + 1];
      s[j] = acc;
    }
    for (int j = 2; j < W - 2; ++j) s[j] = v[j - 1] + v[j] + v[j + 1];
  }
}

// pixel_grads along a row: the adjoint sums s0..s3 (adjoint_box_row), the candidate x, the target
// y and g (the upstream gradient where the candidate won, else 0); d/dx into g_x, d/dy added to g_y.
template <typename F>
inline void pixel_grads_row(const F* __restrict__ s0, const F* __restrict__ s1, const F* __restrict__ s2,
                                 const F* __restrict__ s3, const F* __restrict__ x, const F* __restrict__ y,
                                 const F* __restrict__ g, F l1_c, int W, F* __restrict__ g_x, F* __restrict__ g_y) {
  for (int j = 0; j < W; ++j) g_x[j] = pixel_grads<F>({s0[j], s1[j], s2[j], s3[j]}, x[j], y[j], g[j], l1_c, &g_y[j]);
}

}  // namespace photometric
}  // namespace fastdepth
