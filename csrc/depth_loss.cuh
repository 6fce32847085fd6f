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
// coeffs: (B, 2) (a, b) in the forward, (B, kCoeffs) in the backward, float64. ----
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
