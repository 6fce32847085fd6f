// Torch glue shared by the per-op binding files (<op>_bindings.cpp): argument checks, the image
// type, the current stream and launch checks. Each binding file registers its own ops in the
// fastdepth_ext library (TORCH_LIBRARY_FRAGMENT) for the CPU (the twin) and CUDA dispatch keys. The
// public checks are in Python; these are the last line of defence: every raw op checks the shapes,
// dtypes and devices of what it reads.
#pragma once

#include <torch/library.h>

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>

#include <initializer_list>
#include <string>
#include <tuple>

#ifdef FASTDEPTH_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

#include "common.cuh"

namespace fastdepth {
namespace bindings {

using at::Tensor;

inline void check_same_device(std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    TORCH_CHECK_VALUE(t->device() == (*tensors.begin())->device(),
                      "fastdepth_ext: all tensors must be on one device, got ", t->device(), " and ",
                      (*tensors.begin())->device());
  }
}

// sizes: the expected size per dimension, -1 for any.
inline void check_shape(const char* name, const Tensor& t, std::initializer_list<int64_t> sizes) {
  bool ok = t.dim() == static_cast<int64_t>(sizes.size());
  int64_t i = 0;
  for (int64_t s : sizes) {
    ok = ok && (s < 0 || t.size(i) == s);
    ++i;
  }
  TORCH_CHECK_VALUE(ok, "fastdepth_ext: ", name, " has shape ", t.sizes(), ", expected ", c10::IntArrayRef(sizes),
                    " (-1: any)");
}

inline void check_float(const char* name, const Tensor& t) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), "fastdepth_ext: ", name, " must be a float tensor, got ",
                   t.scalar_type());
}

inline void check_option(bool ok, const char* what) { TORCH_CHECK_VALUE(ok, "fastdepth_ext: ", what); }

template <typename T>
T* ptr_or_null(const Tensor& t) {
  return t.numel() > 0 ? t.data_ptr<T>() : nullptr;
}

// The twin computes in the geometry dtype; 16-bit images are widened to it and narrowed back.
inline at::ScalarType cpu_compute_type(const Tensor& geometry) {
  TORCH_CHECK_TYPE(geometry.scalar_type() == at::kFloat || geometry.scalar_type() == at::kDouble,
                   "fastdepth_ext: depth, pose and intrinsics must be float32 or float64, got ",
                   geometry.scalar_type());
  return geometry.scalar_type();
}

// Sums the per-block partials of the geometry's gradients, (B, S, blocks, 16) and (B, blocks, 4) [fx,
// fy, cx, cy], in a fixed order and lays out the pose (B, S, 4, 4) and intrinsics (B, 3, 3)
// gradients; a gradient not needed stays as its (empty) partials.
inline std::tuple<Tensor, Tensor> reduce_partials(const Tensor& pose_part, const Tensor& k_part, int64_t B, int64_t S,
                                                  bool need_pose, bool need_k) {
  Tensor g_pose = need_pose ? pose_part.sum(2).reshape({B, S, 4, 4}) : pose_part;
  Tensor g_k = k_part;
  if (need_k) {
    const Tensor g4 = k_part.sum(1);
    g_k = at::zeros({B, 3, 3}, k_part.options());
    g_k.select(1, 0).select(1, 0).copy_(g4.select(1, 0));
    g_k.select(1, 1).select(1, 1).copy_(g4.select(1, 1));
    g_k.select(1, 0).select(1, 2).copy_(g4.select(1, 2));
    g_k.select(1, 1).select(1, 2).copy_(g4.select(1, 3));
  }
  return {g_pose, g_k};
}

#ifdef FASTDEPTH_WITH_CUDA
inline ImageType image_type(const Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return ImageType::F32;
    case at::kHalf: return ImageType::F16;
    case at::kBFloat16: return ImageType::BF16;
    default:
      TORCH_CHECK_TYPE(false, "fastdepth_ext: CUDA images must be float32, float16 or bfloat16, got ",
                       t.scalar_type());
  }
}

inline void* current_stream(const Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

inline void check_launch() {
  const cudaError_t err = cudaGetLastError();
  TORCH_CHECK(err == cudaSuccess, "fastdepth_ext: kernel launch failed: ", cudaGetErrorString(err));
}

// CUDA's limits on the blocks per grid dimension.
inline void check_grid(const char* name, int64_t x, int64_t y, int64_t z) {
  TORCH_CHECK_VALUE(x <= 2147483647 && y <= 65535 && z <= 65535, name,
                    " is too large for one launch: it needs a grid of ", x, " x ", y, " x ", z,
                    " blocks, above CUDA's limits of 2147483647 x 65535 x 65535 (split the batch or the image)");
}
#endif

}  // namespace bindings
}  // namespace fastdepth
