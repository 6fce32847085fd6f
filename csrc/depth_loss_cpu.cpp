// The CPU twin of the supervised depth losses' CUDA kernels: the same per-pixel math
// (depth_loss.cuh) over the same blocks of pixels, in OpenMP loops. No torch.
#include "depth_loss.cuh"

namespace fastdepth {
namespace {

// The pixels [begin, end) of block blk of image b.
void block_range(int64_t b, int blk, const depth_loss::Shape& sh, int64_t* begin, int64_t* end) {
  *begin = b * sh.N + static_cast<int64_t>(blk) * depth_loss::kBlock;
  *end = b * sh.N + (blk + 1 < sh.blocks ? static_cast<int64_t>(blk + 1) * depth_loss::kBlock : sh.N);
}

}  // namespace

// One row of partial sums per block of kBlock pixels of one image, as the GPU kernels write them:
// the per-pixel terms in F, their sums in double.
template <typename F>
void depth_loss_forward_cpu(const F* pred, const F* target, const bool* mask, const double* coeffs, double* partial,
                            int stage, const depth_loss::Shape& sh) {
  using namespace depth_loss;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < sh.B; ++b) {
    for (int blk = 0; blk < sh.blocks; ++blk) {
      const F a = static_cast<F>(coeffs[2 * b]), shift = static_cast<F>(coeffs[2 * b + 1]);
      double acc[kSums] = {0.0, 0.0, 0.0, 0.0, 0.0};
      int64_t begin, end;
      block_range(b, blk, sh, &begin, &end);
      for (int64_t i = begin; i < end; ++i) {
        const F t = target[i];
        if (!valid_pixel(t, mask, i)) continue;
        F s[kSums];
        pixel_sums(stage, pred[i], target_in_space(t, sh.disparity), a, shift, sh.squared, s);
        for (int k = 0; k < kSums; ++k) acc[k] += s[k];
      }
      for (int k = 0; k < kSums; ++k) partial[(b * sh.blocks + blk) * kSums + k] = acc[k];
    }
  }
}

template <typename F>
void depth_loss_backward_cpu(const double* coeffs, const F* pred, const F* target, const bool* mask, F* grad_pred,
                             int loss, const depth_loss::Shape& sh) {
  using namespace depth_loss;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < sh.B; ++b) {
    for (int blk = 0; blk < sh.blocks; ++blk) {
      F c[kCoeffs];
      for (int k = 0; k < kCoeffs; ++k) c[k] = static_cast<F>(coeffs[b * kCoeffs + k]);
      int64_t begin, end;
      block_range(b, blk, sh, &begin, &end);
      for (int64_t i = begin; i < end; ++i) {
        const F t = target[i];
        grad_pred[i] =
            valid_pixel(t, mask, i) ? pixel_grad(loss, pred[i], target_in_space(t, sh.disparity), c, sh.squared) : F(0);
      }
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
