// A block's sums in a fixed order, for the CUDA kernels whose pose and intrinsics gradients are
// per-block partial sums (warp.cu, reprojection.cu): deterministic, no float atomics. Device code
// only: included by .cu files.
#pragma once

namespace fastdepth {

// Sum of N values over the block in a fixed order (warp shuffles, then warps in order); thread 0..N-1
// write the N sums to out. Every thread of the block must call it.
template <int N>
__device__ void block_sum(const float (&v)[N], float* out, float* smem) {
  const int lane = threadIdx.x & 31;
  const int warp_id = threadIdx.x >> 5;
  for (int i = 0; i < N; ++i) {
    float x = v[i];
    for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_down_sync(0xffffffffu, x, offset);
    if (lane == 0) smem[i * 32 + warp_id] = x;
  }
  __syncthreads();
  if (threadIdx.x < N) {
    float total = 0.f;
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) total += smem[threadIdx.x * 32 + w];
    out[threadIdx.x] = total;
  }
  __syncthreads();
}

}  // namespace fastdepth
