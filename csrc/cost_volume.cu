// CUDA kernels of the plane-sweep cost volume and their launchers, on raw pointers (no torch: plain
// nvcc compiles this file). Structured like kernels/cost_volume.py: one thread per target pixel of
// one (image, hypothesis), kBlock pixels per block (the projection: of one (image, source,
// hypothesis)); the backward scatters the features' gradients with float atomics and writes the
// projections' gradient. The sweep backward: one thread per target pixel of one (image, chunk of
// kSweepChannels channels), every source and hypothesis; it writes the target's gradient, scatters
// the sources' once per run of hypotheses with the same taps and adds the projections' with atomics.
#include <cuda_runtime.h>

#include "cost_volume.cuh"

namespace fastdepth {
namespace {

using cost_volume::kBlock;

template <typename F>
__global__ void __launch_bounds__(kBlock)
    cost_volume_proj_kernel(const F* hyp, const F* poses, const F* K, F* u, F* v, cost_volume::Shape sh,
                            bool per_pixel) {
  const int64_t pix = static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x;
  if (pix >= static_cast<int64_t>(sh.H) * sh.W) return;
  cost_volume::project_view(hyp, poses, K, u, v, blockIdx.z / sh.S, blockIdx.z % sh.S, blockIdx.y, pix, sh,
                            per_pixel);
}

template <typename Img>
__global__ void __launch_bounds__(kBlock)
    cost_volume_fwd_kernel(const Img* ft, const Img* fs, const float* u, const float* v, Img* out,
                           cost_volume::Shape sh, cost_volume::Options o) {
  const int64_t pix = static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x;
  if (pix >= static_cast<int64_t>(sh.H) * sh.W) return;
  cost_volume::forward_pixel(ft, fs, u, v, out, blockIdx.z, blockIdx.y, pix, sh, o);
}

// at least 4 blocks per SM: sm_80's register heuristic otherwise caps this kernel at 64 and spills
template <typename Img>
__global__ void __launch_bounds__(kBlock, 4)
    cost_volume_bwd_kernel(const Img* grad, const Img* ft, const Img* fs, const float* u, const float* v,
                           float* grad_ft, float* grad_fs, float* grad_u, float* grad_v, cost_volume::Shape sh,
                           cost_volume::Options o) {
  const int64_t pix = static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x;
  if (pix >= static_cast<int64_t>(sh.H) * sh.W) return;
  auto scatter_t = [=](int64_t at, float value) { atomicAdd(grad_ft + at, value); };
  auto scatter_s = [=](int64_t at, float value) { atomicAdd(grad_fs + at, value); };
  cost_volume::backward_pixel(grad, ft, fs, u, v, grad_u, grad_v, blockIdx.z, blockIdx.y, pix, sh, o,
                              grad_ft != nullptr, grad_u != nullptr, scatter_t, scatter_s);
}

template <typename Img>
__global__ void __launch_bounds__(kBlock)
    cost_volume_sweep_bwd_kernel(const Img* grad, const Img* ft, const Img* fs, const float* u, const float* v,
                                 float* grad_ft, float* grad_fs, float* grad_u, float* grad_v, cost_volume::Shape sh,
                                 cost_volume::Options o) {
  const int64_t pix = static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x;
  if (pix >= static_cast<int64_t>(sh.H) * sh.W) return;
  auto scatter_s = [=](int64_t at, float value) { atomicAdd(grad_fs + at, value); };
  auto add_uv = [=](int64_t at, float gu, float gv) {
    atomicAdd(grad_u + at, gu);
    atomicAdd(grad_v + at, gv);
  };
  cost_volume::backward_sweep_pixel(grad, ft, fs, u, v, grad_ft, blockIdx.z,
                                    static_cast<int64_t>(blockIdx.y) * cost_volume::kSweepChannels, pix, sh, o,
                                    grad_ft != nullptr, grad_u != nullptr, scatter_s, add_uv);
}

// Blocks of pixels x hypotheses x images (x sources: the projection).
dim3 pixel_grid(const cost_volume::Shape& sh, int64_t sources = 1) {
  const int64_t blocks = (static_cast<int64_t>(sh.H) * sh.W + kBlock - 1) / kBlock;
  return dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(sh.D), static_cast<unsigned>(sh.B * sources));
}

template <typename Img>
void launch_forward(const void* ft, const void* fs, const float* u, const float* v, void* out,
                    const cost_volume::Shape& sh, const cost_volume::Options& o, cudaStream_t stream) {
  cost_volume_fwd_kernel<Img><<<pixel_grid(sh), kBlock, 0, stream>>>(
      static_cast<const Img*>(ft), static_cast<const Img*>(fs), u, v, static_cast<Img*>(out), sh, o);
}

template <typename Img>
void launch_backward(const void* grad, const void* ft, const void* fs, const float* u, const float* v, float* grad_ft,
                     float* grad_fs, float* grad_u, float* grad_v, const cost_volume::Shape& sh,
                     const cost_volume::Options& o, bool sweep, cudaStream_t stream) {
  if (sweep && o.reduction != cost_volume::kVariance) {
    const dim3 grid(pixel_grid(sh).x, static_cast<unsigned>(cost_volume::sweep_chunks(sh)), static_cast<unsigned>(sh.B));
    cost_volume_sweep_bwd_kernel<Img><<<grid, kBlock, 0, stream>>>(
        static_cast<const Img*>(grad), static_cast<const Img*>(ft), static_cast<const Img*>(fs), u, v, grad_ft,
        grad_fs, grad_u, grad_v, sh, o);
    return;
  }
  cost_volume_bwd_kernel<Img><<<pixel_grid(sh), kBlock, 0, stream>>>(
      static_cast<const Img*>(grad), static_cast<const Img*>(ft), static_cast<const Img*>(fs), u, v, grad_ft, grad_fs,
      grad_u, grad_v, sh, o);
}

}  // namespace

void cost_volume_projection_cuda(const float* hyp, const float* poses, const float* K, float* u, float* v,
                                 const cost_volume::Shape& sh, bool per_pixel, void* stream) {
  cost_volume_proj_kernel<float>
      <<<pixel_grid(sh, sh.S), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(hyp, poses, K, u, v, sh, per_pixel);
}

void cost_volume_forward_cuda(ImageType type, const void* ft, const void* fs, const float* u, const float* v,
                              void* out, const cost_volume::Shape& sh, const cost_volume::Options& o, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ImageType::F32: return launch_forward<float>(ft, fs, u, v, out, sh, o, s);
    case ImageType::F16: return launch_forward<__half>(ft, fs, u, v, out, sh, o, s);
    case ImageType::BF16: return launch_forward<__nv_bfloat16>(ft, fs, u, v, out, sh, o, s);
  }
}

void cost_volume_backward_cuda(ImageType type, const void* grad, const void* ft, const void* fs, const float* u,
                               const float* v, float* grad_ft, float* grad_fs, float* grad_u, float* grad_v,
                               const cost_volume::Shape& sh, const cost_volume::Options& o, bool sweep,
                               void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ImageType::F32:
      return launch_backward<float>(grad, ft, fs, u, v, grad_ft, grad_fs, grad_u, grad_v, sh, o, sweep, s);
    case ImageType::F16:
      return launch_backward<__half>(grad, ft, fs, u, v, grad_ft, grad_fs, grad_u, grad_v, sh, o, sweep, s);
    case ImageType::BF16:
      return launch_backward<__nv_bfloat16>(grad, ft, fs, u, v, grad_ft, grad_fs, grad_u, grad_v, sh, o, sweep, s);
  }
}

}  // namespace fastdepth
