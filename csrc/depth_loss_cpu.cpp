// The CPU twin of the supervised depth losses' CUDA kernels: the same per-pixel math
// (depth_loss.cuh) over the same blocks of pixels, in OpenMP loops. Unlike a GPU thread, the twin
// takes kLanes pixels at a time in loops the compiler vectorises, an invalid pixel's terms masked
// rather than skipped, each block's sums kept per lane and added in lane order (warp.cu's block sums
// add warps in order the same way). No torch.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu_math.h"  // before the math that calls log
#include "depth_loss.cuh"

namespace fastdepth {
namespace {

constexpr int kLanes = 8;

// The pixels [begin, end) of block blk of image b.
void block_range(int64_t b, int blk, const depth_loss::Shape& sh, int64_t* begin, int64_t* end) {
  *begin = b * sh.N + static_cast<int64_t>(blk) * depth_loss::kBlock;
  *end = b * sh.N + (blk + 1 < sh.blocks ? static_cast<int64_t>(blk + 1) * depth_loss::kBlock : sh.N);
}

// A pixel's input to a stage that takes a log (kLog), where the log is a vector call (cpu_math.h): x
// where the pixel is valid, else 1. An invalid pixel's own values (a zero or infinite target) would
// send its whole vector of pixels through the vector log's slow path for special values; its terms
// are masked off either way. A blend of bits, not a select: GCC moves a select past the division
// and the log to their result, which the mask reads anyway, and takes the log of the raw values.
template <bool kLog, typename F>
F log_input(bool ok, F x) {
  if constexpr (!kLog || !kVectorMath) {
    return x;
  } else {
    using Bits = std::conditional_t<sizeof(F) == 4, uint32_t, uint64_t>;
    const Bits keep = Bits(0) - Bits(ok);
    return __builtin_bit_cast(F, (__builtin_bit_cast(Bits, x) & keep) | (__builtin_bit_cast(Bits, F(1)) & ~keep));
  }
}

// The stage's sums over the pixels [begin, end): pixel i adds into lane (i - begin) % kLanes, in F
// converted to double as the GPU kernels do, and the lanes are added in order into acc.
template <typename F, int kStage, bool kMasked>
void block_sums(const F* pred, const F* target, const bool* mask, F a, F shift, const depth_loss::Shape& sh,
                int64_t begin, int64_t end, double acc[depth_loss::kSums]) {
  using namespace depth_loss;
  double lanes[kSums][kLanes] = {};
  for (int64_t i0 = begin; i0 < end; i0 += kLanes) {
    const int64_t n = std::min<int64_t>(kLanes, end - i0);
    if (n == kLanes) {
#pragma GCC ivdep
      for (int l = 0; l < kLanes; ++l) {
        const F t = target[i0 + l];
        const bool ok = valid_pixel(t, kMasked ? mask : nullptr, i0 + l);
        F s[kSums];
        constexpr bool kLog = kStage == kLogMoments;
        pixel_sums(kStage, log_input<kLog>(ok, pred[i0 + l]), log_input<kLog>(ok, target_in_space(t, sh.disparity)),
                   a, shift, sh.squared, s);
#pragma GCC unroll 5
        for (int k = 0; k < kSums; ++k) lanes[k][l] += keep_if(ok, s[k]);
      }
    } else {  // the block's last pixels
      for (int l = 0; l < n; ++l) {
        const F t = target[i0 + l];
        if (!valid_pixel(t, kMasked ? mask : nullptr, i0 + l)) continue;
        F s[kSums];
        pixel_sums(kStage, pred[i0 + l], target_in_space(t, sh.disparity), a, shift, sh.squared, s);
        for (int k = 0; k < kSums; ++k) lanes[k][l] += s[k];
      }
    }
  }
  for (int k = 0; k < kSums; ++k) {
    acc[k] = 0.0;
    for (int l = 0; l < kLanes; ++l) acc[k] += lanes[k][l];
  }
}

template <typename F>
using BlockSums = decltype(&block_sums<F, 0, false>);

template <typename F, int kStage>
BlockSums<F> block_sums_for(bool masked) {
  return masked ? block_sums<F, kStage, true> : block_sums<F, kStage, false>;
}

// grad_pred over the pixels [begin, end): pixel_grad where the pixel is valid, else 0.
template <typename F, int kLoss, bool kMasked>
void block_grads(const F* pred, const F* target, const bool* mask, const F c[depth_loss::kCoeffs],
                 const depth_loss::Shape& sh, int64_t begin, int64_t end, F* grad_pred) {
  using namespace depth_loss;
#pragma GCC ivdep
  for (int64_t i = begin; i < end; ++i) {
    const F t = target[i];
    const bool ok = valid_pixel(t, kMasked ? mask : nullptr, i);
    constexpr bool kLog = kLoss == kScaleInvariant;
    const F g = pixel_grad(kLoss, log_input<kLog>(ok, pred[i]), log_input<kLog>(ok, target_in_space(t, sh.disparity)),
                           c, sh.squared);
    grad_pred[i] = keep_if(ok, g);
  }
}

template <typename F>
using BlockGrads = decltype(&block_grads<F, 0, false>);

template <typename F, int kLoss>
BlockGrads<F> block_grads_for(bool masked) {
  return masked ? block_grads<F, kLoss, true> : block_grads<F, kLoss, false>;
}

}  // namespace

// One row of partial sums per block of kBlock pixels of one image, as the GPU kernels write them:
// the per-pixel terms in F, their sums in double.
template <typename F>
void depth_loss_forward_cpu(const F* pred, const F* target, const bool* mask, const double* coeffs, double* partial,
                            int stage, const depth_loss::Shape& sh) {
  using namespace depth_loss;
  const bool masked = mask != nullptr;
  const BlockSums<F> sums = stage == kLogMoments     ? block_sums_for<F, kLogMoments>(masked)
                            : stage == kAlignMoments ? block_sums_for<F, kAlignMoments>(masked)
                                                     : block_sums_for<F, kResidual>(masked);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < sh.B; ++b) {
    for (int blk = 0; blk < sh.blocks; ++blk) {
      const Alignment al = stage_alignment(stage, coeffs, b);
      const F a = static_cast<F>(al.a), shift = static_cast<F>(al.b);
      int64_t begin, end;
      block_range(b, blk, sh, &begin, &end);
      sums(pred, target, mask, a, shift, sh, begin, end, partial + (b * sh.blocks + blk) * kSums);
    }
  }
}

template <typename F>
void depth_loss_backward_cpu(const double* coeffs, const F* pred, const F* target, const bool* mask, F* grad_pred,
                             int loss, const depth_loss::Shape& sh) {
  using namespace depth_loss;
  const bool masked = mask != nullptr;
  const BlockGrads<F> grads = loss == kScaleInvariant ? block_grads_for<F, kScaleInvariant>(masked)
                                                      : block_grads_for<F, kScaleShiftInvariant>(masked);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < sh.B; ++b) {
    for (int blk = 0; blk < sh.blocks; ++blk) {
      double c64[kCoeffs];
      image_coefficients(loss, coeffs, b, c64);
      F c[kCoeffs];
      for (int k = 0; k < kCoeffs; ++k) c[k] = static_cast<F>(c64[k]);
      int64_t begin, end;
      block_range(b, blk, sh, &begin, &end);
      grads(pred, target, mask, c, sh, begin, end, grad_pred);
    }
  }
}

template void depth_loss_forward_cpu<float>(const float*, const float*, const bool*, const double*, double*, int,
                                            const depth_loss::Shape&);
template void depth_loss_forward_cpu<double>(const double*, const double*, const bool*, const double*, double*, int,
                                             const depth_loss::Shape&);
template void depth_loss_backward_cpu<float>(const double*, const float*, const float*, const bool*, float*, int,
                                             const depth_loss::Shape&);
template void depth_loss_backward_cpu<double>(const double*, const double*, const double*, const bool*, double*, int,
                                              const depth_loss::Shape&);

}  // namespace fastdepth
