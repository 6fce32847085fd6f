// CUDA kernels of the depth warp and their launchers, on raw pointers (no torch: plain nvcc
// compiles this file). Structured like kernels/warp.py: one thread per destination pixel looping
// over sources and channels; the backward recomputes the geometry, scatters the image gradient
// with float atomics (or int64 fixed-point atomics: deterministic) and reduces pose and intrinsics
// gradients per block in a fixed order (deterministic partial sums, summed over blocks by the
// bindings).
#include <cuda_runtime.h>

#include "block_sum.cuh"
#include "warp.cuh"

namespace fastdepth {
namespace {

using warp::blocks_per_image;
using warp::kBlock;

template <typename Img>
__global__ void __launch_bounds__(kBlock) warp_fwd_kernel(const Img* image, const float* depth, const float* pose,
                                                              const float* K, Img* out, int8_t* mask, warp::Shape sh,
                                                              warp::Options opt) {
  const int64_t blocks = blocks_per_image(sh.H, sh.W);
  const int64_t b = blockIdx.x / blocks;
  const int64_t pix = (blockIdx.x % blocks) * blockDim.x + threadIdx.x;
  if (pix >= static_cast<int64_t>(sh.H) * sh.W) return;
  const warp::Pixel<float> p = warp::make_pixel(depth, K, b, pix, sh, opt.normalize);
  for (int64_t s = 0; s < sh.S; ++s) warp::forward_source(image, pose, out, mask, p, b * sh.S + s, pix, sh, opt);
}

// At least 5 blocks per SM (at most 102 registers): ptxas then fits the kernel without spilling, where
// left to itself it took 96 registers and spilled on sm_80.
template <typename Img>
__global__ void __launch_bounds__(kBlock, 5)
    warp_bwd_kernel(const Img* grad_out, const Img* image, const float* depth, const float* pose, const float* K,
                    float* grad_image, long long* grad_fixed, const float* fixed_scale, float* grad_depth,
                    float* pose_partials, float* k_partials, warp::Shape sh, warp::Options opt) {
  __shared__ float smem[warp::kPosePartials * 32];
  const int64_t blocks = blocks_per_image(sh.H, sh.W);
  const int64_t b = blockIdx.x / blocks;
  const int64_t block = blockIdx.x % blocks;
  const int64_t pix = block * blockDim.x + threadIdx.x;
  const bool in_range = pix < static_cast<int64_t>(sh.H) * sh.W;
  const bool need_geometry = grad_depth != nullptr || pose_partials != nullptr || k_partials != nullptr;
  const bool need_image = grad_image != nullptr || grad_fixed != nullptr;
  const float scale = grad_fixed != nullptr ? *fixed_scale : 1.f;
  // float atomics, or (deterministic) int64 atomics of fixed-point values: integer sums do not
  // depend on the order in which the atomics land
  auto scatter = [=](int64_t at, float v) {
    if (grad_fixed != nullptr) {
      atomicAdd(reinterpret_cast<unsigned long long*>(grad_fixed + at),
                static_cast<unsigned long long>(warp::to_fixed(v * scale)));
    } else {
      atomicAdd(grad_image + at, v);
    }
  };
  // out-of-range threads take part in the block sums with zeros
  const warp::Pixel<float> p = warp::make_pixel(depth, K, b, in_range ? pix : 0, sh, opt.normalize);
  float gK[warp::kIntrinsicsPartials] = {};
  float gP[2] = {};
  float gd[2] = {};
  for (int64_t s = 0; s < sh.S; ++s) {
    float gT[warp::kPosePartials] = {};
    if (in_range) {
      warp::backward_source(grad_out, image, pose, need_image, p, b * sh.S + s, pix, sh, opt, need_geometry, gT, gK,
                            gP, gd, scatter);
    }
    if (pose_partials != nullptr) {
      block_sum(gT, pose_partials + ((b * sh.S + s) * blocks + block) * warp::kPosePartials, smem);
    }
  }
  if (in_range && (grad_depth != nullptr || k_partials != nullptr)) {
    const float grad_d = warp::depth_grad(p, gd);
    warp::ray_backward(p, gP, grad_d, opt.normalize, gK);
    if (grad_depth != nullptr) grad_depth[b * sh.H * sh.W + pix] = grad_d;
  }
  if (k_partials != nullptr) block_sum(gK, k_partials + (b * blocks + block) * warp::kIntrinsicsPartials, smem);
}

// The batch is folded into grid dimension x (limit 2**31 - 1; y would cap it at 65535).
dim3 batch_grid(const warp::Shape& sh) { return dim3(static_cast<unsigned>(blocks_per_image(sh.H, sh.W) * sh.B)); }

template <typename Img>
void launch_forward(const void* image, const float* depth, const float* pose, const float* K, void* out, int8_t* mask,
                    const warp::Shape& sh, const warp::Options& opt, cudaStream_t stream) {
  const dim3 grid = batch_grid(sh);
  warp_fwd_kernel<Img><<<grid, kBlock, 0, stream>>>(static_cast<const Img*>(image), depth, pose, K,
                                                        static_cast<Img*>(out), mask, sh, opt);
}

template <typename Img>
void launch_backward(const void* grad_out, const void* image, const float* depth, const float* pose, const float* K,
                     float* grad_image, long long* grad_fixed, const float* fixed_scale, float* grad_depth,
                     float* pose_partials, float* k_partials, const warp::Shape& sh, const warp::Options& opt,
                     cudaStream_t stream) {
  const dim3 grid = batch_grid(sh);
  warp_bwd_kernel<Img><<<grid, kBlock, 0, stream>>>(static_cast<const Img*>(grad_out), static_cast<const Img*>(image),
                                                    depth, pose, K, grad_image, grad_fixed, fixed_scale, grad_depth,
                                                    pose_partials, k_partials, sh, opt);
}

}  // namespace

void warp_forward_cuda(ImageType type, const void* image, const float* depth, const float* pose, const float* K,
                       void* out, int8_t* mask, const warp::Shape& sh, const warp::Options& opt, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ImageType::F32: return launch_forward<float>(image, depth, pose, K, out, mask, sh, opt, s);
    case ImageType::F16: return launch_forward<__half>(image, depth, pose, K, out, mask, sh, opt, s);
    case ImageType::BF16: return launch_forward<__nv_bfloat16>(image, depth, pose, K, out, mask, sh, opt, s);
  }
}

void warp_backward_cuda(ImageType type, const void* grad_out, const void* image, const float* depth,
                        const float* pose, const float* K, float* grad_image, long long* grad_fixed,
                        const float* fixed_scale, float* grad_depth, float* pose_partials, float* k_partials,
                        const warp::Shape& sh, const warp::Options& opt, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ImageType::F32:
      return launch_backward<float>(grad_out, image, depth, pose, K, grad_image, grad_fixed, fixed_scale, grad_depth,
                                    pose_partials, k_partials, sh, opt, s);
    case ImageType::F16:
      return launch_backward<__half>(grad_out, image, depth, pose, K, grad_image, grad_fixed, fixed_scale, grad_depth,
                                     pose_partials, k_partials, sh, opt, s);
    case ImageType::BF16:
      return launch_backward<__nv_bfloat16>(grad_out, image, depth, pose, K, grad_image, grad_fixed, fixed_scale,
                                            grad_depth, pose_partials, k_partials, sh, opt, s);
  }
}

}  // namespace fastdepth
