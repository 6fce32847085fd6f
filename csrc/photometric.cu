// CUDA kernels of the photometric loss and the min-reprojection objective, and their launchers,
// on raw pointers (no torch: plain nvcc compiles this file). Structured like
// kernels/photometric.py: one thread per pixel of a kTileW x kTileH tile, looping over channels
// and candidates; the backward recomputes the window statistics of the 3x3 neighbours.
#include <cuda_runtime.h>

#include "photometric.cuh"

namespace fastdepth {
namespace {

using photometric::kTileH;
using photometric::kTileW;

template <typename Img>
__global__ void __launch_bounds__(kTileW* kTileH)
    photometric_fwd_kernel(const Img* target, const Img* identity, const Img* warped, Img* loss, int64_t* index,
                           photometric::Shape sh, float alpha) {
  const int col = blockIdx.x * kTileW + threadIdx.x;
  const int row = blockIdx.y * kTileH + threadIdx.y;
  if (row >= sh.H || col >= sh.W) return;
  photometric::forward_pixel(target, identity, warped, loss, index, blockIdx.z, row, col, sh, alpha);
}

template <typename Img>
__global__ void __launch_bounds__(kTileW* kTileH)
    photometric_bwd_kernel(const Img* grad, const int64_t* index, const Img* target, const Img* identity,
                           const Img* warped, Img* grad_target, Img* grad_identity, Img* grad_warped,
                           photometric::Shape sh, float alpha) {
  const int col = blockIdx.x * kTileW + threadIdx.x;
  const int row = blockIdx.y * kTileH + threadIdx.y;
  if (row >= sh.H || col >= sh.W) return;
  photometric::backward_pixel(grad, index, target, identity, warped, grad_target, grad_identity, grad_warped,
                              blockIdx.z, row, col, sh, alpha);
}

dim3 tile_grid(const photometric::Shape& sh) {
  return dim3(static_cast<unsigned>((sh.W + kTileW - 1) / kTileW), static_cast<unsigned>((sh.H + kTileH - 1) / kTileH),
              static_cast<unsigned>(sh.B));
}

template <typename Img>
void launch_forward(const void* target, const void* identity, const void* warped, void* loss, int64_t* index,
                    const photometric::Shape& sh, float alpha, cudaStream_t stream) {
  photometric_fwd_kernel<Img><<<tile_grid(sh), dim3(kTileW, kTileH), 0, stream>>>(
      static_cast<const Img*>(target), static_cast<const Img*>(identity), static_cast<const Img*>(warped),
      static_cast<Img*>(loss), index, sh, alpha);
}

template <typename Img>
void launch_backward(const void* grad, const int64_t* index, const void* target, const void* identity,
                     const void* warped, void* grad_target, void* grad_identity, void* grad_warped,
                     const photometric::Shape& sh, float alpha, cudaStream_t stream) {
  photometric_bwd_kernel<Img><<<tile_grid(sh), dim3(kTileW, kTileH), 0, stream>>>(
      static_cast<const Img*>(grad), index, static_cast<const Img*>(target), static_cast<const Img*>(identity),
      static_cast<const Img*>(warped), static_cast<Img*>(grad_target), static_cast<Img*>(grad_identity),
      static_cast<Img*>(grad_warped), sh, alpha);
}

}  // namespace

void photometric_forward_cuda(ImageType type, const void* target, const void* identity, const void* warped,
                              void* loss, int64_t* index, const photometric::Shape& sh, float alpha, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ImageType::F32: return launch_forward<float>(target, identity, warped, loss, index, sh, alpha, s);
    case ImageType::F16: return launch_forward<__half>(target, identity, warped, loss, index, sh, alpha, s);
    case ImageType::BF16: return launch_forward<__nv_bfloat16>(target, identity, warped, loss, index, sh, alpha, s);
  }
}

void photometric_backward_cuda(ImageType type, const void* grad, const int64_t* index, const void* target,
                               const void* identity, const void* warped, void* grad_target, void* grad_identity,
                               void* grad_warped, const photometric::Shape& sh, float alpha, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ImageType::F32:
      return launch_backward<float>(grad, index, target, identity, warped, grad_target, grad_identity, grad_warped,
                                    sh, alpha, s);
    case ImageType::F16:
      return launch_backward<__half>(grad, index, target, identity, warped, grad_target, grad_identity, grad_warped,
                                     sh, alpha, s);
    case ImageType::BF16:
      return launch_backward<__nv_bfloat16>(grad, index, target, identity, warped, grad_target, grad_identity,
                                            grad_warped, sh, alpha, s);
  }
}

}  // namespace fastdepth
