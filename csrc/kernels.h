// Entry points of the fused kernels on raw pointers: the CUDA launchers (warp.cu,
// photometric.cu) and their CPU twins (cpu.cpp). No torch; the bindings call these.
#pragma once

#include <cstdint>

#include "photometric.cuh"
#include "warp.cuh"

namespace fastdepth {

// Image storage of the CUDA launchers (the CPU twin takes float or double, typed).
enum class ImageType : int { F32 = 0, F16 = 1, BF16 = 2 };

// Threads per block of the warp kernels; the backward writes one pose/intrinsics partial sum per
// block of this many pixels (the CPU twin uses the same blocks).
constexpr int kWarpBlock = 256;
constexpr int kTileW = 32;  // photometric tiles: kTileW x kTileH pixels per block
constexpr int kTileH = 8;

FD_HD int64_t warp_blocks(int H, int W) { return (static_cast<int64_t>(H) * W + kWarpBlock - 1) / kWarpBlock; }

// ---- CUDA launchers; stream is a cudaStream_t. Geometry is float32. ----
void warp_forward_cuda(ImageType type, const void* image, const float* depth, const float* pose, const float* K,
                       void* out, int8_t* mask, const warp::Shape& shape, const warp::Options& options, void* stream);
// grad_image (float32), grad_depth, pose_partials (B, S, blocks, 16), k_partials (B, blocks, 4):
// each may be null when not needed.
void warp_backward_cuda(ImageType type, const void* grad_out, const void* image, const float* depth,
                        const float* pose, const float* K, float* grad_image, float* grad_depth, float* pose_partials,
                        float* k_partials, const warp::Shape& shape, const warp::Options& options, void* stream);
void photometric_forward_cuda(ImageType type, const void* target, const void* identity, const void* warped,
                              void* loss, int64_t* index, const photometric::Shape& shape, float alpha, void* stream);
void photometric_backward_cuda(ImageType type, const void* grad, const int64_t* index, const void* target,
                               const void* identity, const void* warped, void* grad_target, void* grad_identity,
                               void* grad_warped, const photometric::Shape& shape, float alpha, void* stream);

// ---- CPU twins (F = float or double), parallel over pixels with OpenMP. ----
template <typename F>
void warp_forward_cpu(const F* image, const F* depth, const F* pose, const F* K, F* out, int8_t* mask,
                      const warp::Shape& shape, const warp::Options& options);
template <typename F>
void warp_backward_cpu(const F* grad_out, const F* image, const F* depth, const F* pose, const F* K, F* grad_image,
                       F* grad_depth, F* pose_partials, F* k_partials, const warp::Shape& shape,
                       const warp::Options& options);
template <typename F>
void photometric_forward_cpu(const F* target, const F* identity, const F* warped, F* loss, int64_t* index,
                             const photometric::Shape& shape, F alpha);
template <typename F>
void photometric_backward_cpu(const F* grad, const int64_t* index, const F* target, const F* identity,
                              const F* warped, F* grad_target, F* grad_identity, F* grad_warped,
                              const photometric::Shape& shape, F alpha);

}  // namespace fastdepth
