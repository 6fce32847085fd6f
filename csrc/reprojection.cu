// CUDA kernel of the fused objective (the reprojection op's forward) and its launcher, on raw
// pointers (no torch: plain nvcc compiles this file). Structured like kernels/reprojection.py: one
// thread per pixel of a kTileW x kTileH tile, the taps of the 3x3 window computed once per source
// and sampled for every channel; only the minimum and its index are written.
#include <cuda_runtime.h>

#include "reprojection.cuh"

namespace fastdepth {
namespace {

using photometric::kTileH;
using photometric::kTileW;

// at least 2 blocks per SM (at most 128 registers): without the hint ptxas gave the 16-bit
// variants 40 registers and spilled on sm_80 (the compile report)
template <typename Img>
__global__ void __launch_bounds__(kTileW* kTileH, 2)
    reprojection_fwd_kernel(const Img* target, const Img* sources, const float* depth, const float* pose,
                            const float* K, const Img* identity, int64_t s_id, Img* loss, int64_t* index,
                            warp::Shape sh, warp::Options opt, float alpha) {
  const int col = blockIdx.x * kTileW + threadIdx.x;
  const int row = blockIdx.y * kTileH + threadIdx.y;
  if (row >= sh.H || col >= sh.W) return;
  reprojection::forward_pixel(target, sources, depth, pose, K, identity, s_id, loss, index, blockIdx.z, row, col, sh,
                              opt, alpha);
}

template <typename Img>
void launch_forward(const void* target, const void* sources, const float* depth, const float* pose, const float* K,
                    const void* identity, int64_t s_id, void* loss, int64_t* index, const warp::Shape& sh,
                    const warp::Options& opt, float alpha, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((sh.W + kTileW - 1) / kTileW), static_cast<unsigned>((sh.H + kTileH - 1) / kTileH),
                  static_cast<unsigned>(sh.B));
  reprojection_fwd_kernel<Img><<<grid, dim3(kTileW, kTileH), 0, stream>>>(
      static_cast<const Img*>(target), static_cast<const Img*>(sources), depth, pose, K,
      static_cast<const Img*>(identity), s_id, static_cast<Img*>(loss), index, sh, opt, alpha);
}

}  // namespace

void reprojection_forward_cuda(ImageType type, const void* target, const void* sources, const float* depth,
                               const float* pose, const float* K, const void* identity, int64_t s_id, void* loss,
                               int64_t* index, const warp::Shape& sh, const warp::Options& opt, float alpha,
                               void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ImageType::F32:
      return launch_forward<float>(target, sources, depth, pose, K, identity, s_id, loss, index, sh, opt, alpha, s);
    case ImageType::F16:
      return launch_forward<__half>(target, sources, depth, pose, K, identity, s_id, loss, index, sh, opt, alpha, s);
    case ImageType::BF16:
      return launch_forward<__nv_bfloat16>(target, sources, depth, pose, K, identity, s_id, loss, index, sh, opt,
                                           alpha, s);
  }
}

}  // namespace fastdepth
