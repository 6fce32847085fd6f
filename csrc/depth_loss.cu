// CUDA kernels of the supervised depth losses and their launchers, on raw pointers (no torch:
// plain nvcc compiles this file). Structured like kernels/depth_loss.py: one block per kBlock
// pixels of one image; the forward computes the per-pixel terms in float32 and reduces them in
// float64 (warp shuffles, then shared memory, a fixed order) into one row of partial sums; the
// backward is elementwise.
#include <cuda_runtime.h>

#include "depth_loss.cuh"

namespace fastdepth {
namespace {

using depth_loss::kBlock;
using depth_loss::kSums;
using depth_loss::kThreads;
constexpr int kPerThread = kBlock / kThreads;

template <typename Img>
__global__ void __launch_bounds__(kThreads)
    depth_loss_fwd_kernel(const Img* pred, const Img* target, const bool* mask, const double* coeffs,
                          double* partial, int stage, depth_loss::Shape sh) {
  using namespace depth_loss;
  const int64_t b = blockIdx.y;
  const Alignment al = stage_alignment(stage, coeffs, b);
  const float a = static_cast<float>(al.a), shift = static_cast<float>(al.b);
  double acc[kSums] = {0.0, 0.0, 0.0, 0.0, 0.0};
  for (int k = 0; k < kPerThread; ++k) {
    const int64_t local = static_cast<int64_t>(blockIdx.x) * kBlock + k * kThreads + threadIdx.x;
    if (local >= sh.N) break;
    const int64_t i = b * sh.N + local;
    const float t = load_as<float>(target + i);
    if (!valid_pixel(t, mask, i)) continue;
    float s[kSums];
    pixel_sums(stage, load_as<float>(pred + i), target_in_space(t, sh.disparity), a, shift, sh.squared, s);
    for (int j = 0; j < kSums; ++j) acc[j] += static_cast<double>(s[j]);
  }
  __shared__ double warp_sums[kThreads / 32][kSums];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int j = 0; j < kSums; ++j) {
    for (int o = 16; o > 0; o /= 2) acc[j] += __shfl_down_sync(0xffffffffu, acc[j], o);
    if (lane == 0) warp_sums[warp][j] = acc[j];
  }
  __syncthreads();
  if (threadIdx.x < kSums) {
    double total = 0.0;
    for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w][threadIdx.x];
    partial[(b * sh.blocks + blockIdx.x) * kSums + threadIdx.x] = total;
  }
}

template <typename Img>
__global__ void __launch_bounds__(kThreads)
    depth_loss_bwd_kernel(const double* coeffs, const Img* pred, const Img* target, const bool* mask, Img* grad_pred,
                          int loss, depth_loss::Shape sh) {
  using namespace depth_loss;
  const int64_t b = blockIdx.y;
  double c64[kCoeffs];
  image_coefficients(loss, coeffs, b, c64);
  float c[kCoeffs];
  for (int k = 0; k < kCoeffs; ++k) c[k] = static_cast<float>(c64[k]);
  for (int k = 0; k < kPerThread; ++k) {
    const int64_t local = static_cast<int64_t>(blockIdx.x) * kBlock + k * kThreads + threadIdx.x;
    if (local >= sh.N) break;
    const int64_t i = b * sh.N + local;
    const float t = load_as<float>(target + i);
    const float g = valid_pixel(t, mask, i)
                        ? pixel_grad(loss, load_as<float>(pred + i), target_in_space(t, sh.disparity), c, sh.squared)
                        : 0.f;
    store_as(grad_pred + i, g);
  }
}

dim3 block_grid(const depth_loss::Shape& sh) {
  return dim3(static_cast<unsigned>(sh.blocks), static_cast<unsigned>(sh.B));
}

template <typename Img>
void launch_forward(const void* pred, const void* target, const bool* mask, const double* coeffs, double* partial,
                    int stage, const depth_loss::Shape& sh, cudaStream_t stream) {
  depth_loss_fwd_kernel<Img><<<block_grid(sh), kThreads, 0, stream>>>(
      static_cast<const Img*>(pred), static_cast<const Img*>(target), mask, coeffs, partial, stage, sh);
}

template <typename Img>
void launch_backward(const double* coeffs, const void* pred, const void* target, const bool* mask, void* grad_pred,
                     int loss, const depth_loss::Shape& sh, cudaStream_t stream) {
  depth_loss_bwd_kernel<Img><<<block_grid(sh), kThreads, 0, stream>>>(
      coeffs, static_cast<const Img*>(pred), static_cast<const Img*>(target), mask, static_cast<Img*>(grad_pred),
      loss, sh);
}

}  // namespace

void depth_loss_forward_cuda(ImageType type, const void* pred, const void* target, const bool* mask,
                             const double* coeffs, double* partial, int stage, const depth_loss::Shape& sh,
                             void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ImageType::F32: return launch_forward<float>(pred, target, mask, coeffs, partial, stage, sh, s);
    case ImageType::F16: return launch_forward<__half>(pred, target, mask, coeffs, partial, stage, sh, s);
    case ImageType::BF16: return launch_forward<__nv_bfloat16>(pred, target, mask, coeffs, partial, stage, sh, s);
  }
}

void depth_loss_backward_cuda(ImageType type, const double* coeffs, const void* pred, const void* target,
                              const bool* mask, void* grad_pred, int loss, const depth_loss::Shape& sh,
                              void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ImageType::F32: return launch_backward<float>(coeffs, pred, target, mask, grad_pred, loss, sh, s);
    case ImageType::F16: return launch_backward<__half>(coeffs, pred, target, mask, grad_pred, loss, sh, s);
    case ImageType::BF16: return launch_backward<__nv_bfloat16>(coeffs, pred, target, mask, grad_pred, loss, sh, s);
  }
}

}  // namespace fastdepth
