// Per-pixel math of the supervised depth losses, shared by the CUDA kernels (depth_loss.cu) and the
// CPU twin (depth_loss_cpu.cpp). Mirrors kernels/depth_loss.py function by function; conventions in
// fastdepth/depth_loss.py. No torch, no CUDA runtime calls.
#pragma once

#include "common.cuh"

namespace fastdepth {
namespace depth_loss {

// Pixels per block (kernels/depth_loss.py: BLOCK): every backend writes one row of partial sums per
// block of one image, so the partial sums have one shape everywhere.
constexpr int kBlock = 1024;
constexpr int kThreads = 256;
// Sums per pixel of every forward stage (unused ones stay 0).
constexpr int kSums = 5;
// Coefficients of the backward per image.
constexpr int kCoeffs = 8;
// What the scale-and-shift-invariant backward reads per image, from which its kernels compute the
// coefficients (shift_coefficients): the forward's ten sums (the alignment's moments, then the
// residual sums), the image's weight in the loss and the upstream gradient.
constexpr int kShiftInputs = 2 * kSums + 2;

// The forward stages: the log-ratio moments of the scale-invariant loss, the moments of the
// least-squares alignment, the residual sums after it.
enum Stage : int { kLogMoments = 0, kAlignMoments = 1, kResidual = 2 };
// The backward: scale-invariant or scale-and-shift-invariant.
enum Loss : int { kScaleInvariant = 0, kScaleShiftInvariant = 1 };

struct Shape {
  int64_t B, N;  // images, pixels per image
  int blocks;    // blocks per image
  bool disparity, squared;
};

// A pixel with ground truth: target > 0 and finite, and the mask where one is given.
template <typename F>
FD_HD bool valid_pixel(F t, const bool* mask, int64_t i) {
  return t > F(0) && t < F(INFINITY) && (mask == nullptr || mask[i]);
}

// The target in the loss's space: depth, or its inverse (MiDaS aligns disparity).
template <typename F>
FD_HD F target_in_space(F t, bool disparity) {
  return disparity ? F(1) / t : t;
}

// sign(r) (0 at 0, as the gradient of |r|) or 2r: the derivative of the residual penalty.
template <typename F>
FD_HD F residual_slope(F r, bool squared) {
  return squared ? F(2) * r : F((r > F(0)) - (r < F(0)));
}

// The contributions of one valid pixel to the stage's sums.
template <typename F>
FD_HD void pixel_sums(int stage, F p, F t, F a, F b, bool squared, F s[kSums]) {
  if (stage == kLogMoments) {
    const F d = fd_log(p / t);
    s[0] = F(1), s[1] = d, s[2] = d * d, s[3] = F(0), s[4] = F(0);
  } else if (stage == kAlignMoments) {
    s[0] = F(1), s[1] = p, s[2] = t, s[3] = p * p, s[4] = p * t;
  } else {
    const F r = a * p + b - t;
    const F slope = residual_slope(r, squared);
    s[0] = squared ? r * r : fd_abs(r), s[1] = slope, s[2] = slope * p, s[3] = F(0), s[4] = F(0);
  }
}

// The least-squares a p + b ~ t of one image from its masked sums m = n, Σp, Σt, Σp², Σpt
// (fastdepth/reference/depth_loss.py: alignment_from_sums): where the prediction is constant (det =
// nΣp² - (Σp)² vanishes relative to nΣp²) a = 0 and b = mean(t), and b = 0 without a valid pixel.
struct Alignment {
  double a, b, det;
  bool ok;
};

FD_HD Alignment alignment_from_sums(const double m[kSums]) {
  const double n = m[0], sp = m[1], st = m[2], spp = m[3], spt = m[4];
  Alignment al;
  al.det = n * spp - sp * sp;
  const double size = fd_abs(n * spp);
  al.ok = fd_abs(al.det) > 1e-12 * (size < 1e-30 ? 1e-30 : size);
  al.a = al.ok ? (n * spt - sp * st) / al.det : 0.0;
  al.b = n > 0.0 ? (st - al.a * sp) / (n < 1.0 ? 1.0 : n) : 0.0;
  return al;
}

// The scale-and-shift-invariant backward's coefficients of one image from its kShiftInputs inputs:
// c = a, b, c2, c3, c4, c5, mean t, mean p, with d loss / d p_j = c2 ρ'(r_j) + c3 (t_j - mean t) +
// c4 (p_j - mean p) + c5 (pixel_grad). With w the image weight, P = Σρ'(r)p, Q = Σρ'(r) and
// E = P - Q Σp / n, the chain through r_k = a p_k + b - t_k and the closed-form a, b gives
// w (a ρ'_j + E ∂a/∂p_j - Q a / n), where ∂a/∂p_j = (n t_j - Σt - 2 a n p_j + 2 a Σp) / det: c2 = w a,
// c3 = w E n / det, c4 = -2 a c3 and, with t and p centred (which keeps the float32 sum of the terms
// from cancelling), c5 = -w Q a / n; c2..c5 times the upstream gradient. Where the alignment is
// degenerate (a = 0) the prediction does not reach the loss: c2..c7 are 0 (times the gradient).
FD_HD void shift_coefficients(const double in[kShiftInputs], double c[kCoeffs]) {
  const Alignment al = alignment_from_sums(in);
  const double n = in[0], sp = in[1], st = in[2], q = in[6], p = in[7], w = in[2 * kSums], g = in[2 * kSums + 1];
  const double nc = n < 1.0 ? 1.0 : n;
  const double mean_t = st / nc, mean_p = sp / nc;
  const double e = p - q * mean_p;
  const double scale = al.ok ? w * e * n / al.det : 0.0;
  c[0] = al.a;
  c[1] = al.b;
  c[2] = (al.ok ? w * al.a : 0.0) * g;
  c[3] = (al.ok ? scale : 0.0) * g;
  c[4] = (al.ok ? -2.0 * scale * al.a : 0.0) * g;
  c[5] = (al.ok ? -w * q * al.a / nc : 0.0) * g;
  c[6] = al.ok ? mean_t : 0.0;
  c[7] = al.ok ? mean_p : 0.0;
}

// Image b's alignment (a, b) for the residual stage, from the moments in coeffs (B, kSums); (0, 0)
// for the other stages, which do not read it.
FD_HD Alignment stage_alignment(int stage, const double* coeffs, int64_t b) {
  return stage == kResidual ? alignment_from_sums(coeffs + b * kSums) : Alignment{0.0, 0.0, 0.0, false};
}

// Image b's backward coefficients: given (scale-invariant, coeffs (B, kCoeffs)) or computed
// (scale-and-shift-invariant, coeffs (B, kShiftInputs): shift_coefficients).
FD_HD void image_coefficients(int loss, const double* coeffs, int64_t b, double c[kCoeffs]) {
  if (loss == kScaleInvariant) {
    for (int k = 0; k < kCoeffs; ++k) c[k] = coeffs[b * kCoeffs + k];
  } else {
    shift_coefficients(coeffs + b * kShiftInputs, c);
  }
}

// The gradient of the loss to a valid pixel's prediction, from its image's coefficients c:
// scale-invariant (c0 + c1 d) / p; scale-and-shift-invariant, with (a, b) = (c0, c1) and the means of t
// and p in c6, c7: c2 rho'(a p + b - t) + c3 (t - c6) + c4 (p - c7) + c5.
template <typename F>
FD_HD F pixel_grad(int loss, F p, F t, const F c[kCoeffs], bool squared) {
  if (loss == kScaleInvariant) return (c[0] + c[1] * fd_log(p / t)) / p;
  const F r = c[0] * p + c[1] - t;
  return c[2] * residual_slope(r, squared) + c[3] * (t - c[6]) + c[4] * (p - c[7]) + c[5];
}

}  // namespace depth_loss

// ---- entry points on raw pointers: CUDA launchers (depth_loss.cu; stream is a cudaStream_t) and
// the CPU twin (depth_loss_cpu.cpp; F = float or double). partial: (B, blocks, kSums) float64;
// coeffs: in the forward (B, kSums), the alignment's moments (read by the residual stage); in the
// backward (B, kCoeffs) the scale-invariant coefficients or (B, kShiftInputs) the
// scale-and-shift-invariant inputs (shift_coefficients); float64. ----
void depth_loss_forward_cuda(ImageType type, const void* pred, const void* target, const bool* mask,
                             const double* coeffs, double* partial, int stage, const depth_loss::Shape& shape,
                             void* stream);
void depth_loss_backward_cuda(ImageType type, const double* coeffs, const void* pred, const void* target,
                              const bool* mask, void* grad_pred, int loss, const depth_loss::Shape& shape,
                              void* stream);
template <typename F>
void depth_loss_forward_cpu(const F* pred, const F* target, const bool* mask, const double* coeffs, double* partial,
                            int stage, const depth_loss::Shape& shape);
template <typename F>
void depth_loss_backward_cpu(const double* coeffs, const F* pred, const F* target, const bool* mask, F* grad_pred,
                             int loss, const depth_loss::Shape& shape);

}  // namespace fastdepth
