// CUDA kernels of the photometric loss and the min-reprojection objective, and their launchers,
// on raw pointers (no torch: plain nvcc compiles this file). Structured like
// kernels/photometric.py: one thread per pixel of a kTileW x kTileH tile, looping over channels
// and candidates; the backward recomputes the window statistics of the 3x3 neighbours, or (the tile
// backward) one thread per position of a block computes its window's once into shared memory.
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

// The tile backward: per channel and candidate, (A) the stat gradients of the window centred on
// every position into shared memory, (B) at the tile's pixels their adjoint and the L1 term
// (photometric.cuh: tile_stat_phase, tile_adjoint_phase).
template <typename Img>
__global__ void __launch_bounds__(photometric::kBlockPositions)
    photometric_tile_bwd_kernel(const Img* grad, const int64_t* index, const Img* target, const Img* identity,
                                const Img* warped, Img* grad_target, Img* grad_identity, Img* grad_warped,
                                photometric::Shape sh, float alpha) {
  using namespace photometric;
  __shared__ float sg_s[4 * kBlockPositions];
  const int64_t b = blockIdx.z;
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  const Position pos =
      block_position(threadIdx.x, blockIdx.y * (kBlockH - 2), blockIdx.x * (kBlockW - 2), sh.H, sh.W, 1);
  const int64_t off = static_cast<int64_t>(pos.r_in) * sh.W + pos.c_in;
  const Img* g_map = grad + b * HW;
  const int64_t* i_map = index != nullptr ? index + b * HW : nullptr;
  const float alpha_c = alpha / static_cast<float>(sh.C);
  const float l1_c = (1.f - alpha) / static_cast<float>(sh.C);
  const CandidateRange ks =
      needed_candidates(sh, grad_target != nullptr, grad_identity != nullptr, grad_warped != nullptr);
  for (int64_t c = 0; c < sh.C; ++c) {
    const int64_t y_plane = (b * sh.C + c) * HW;
    float g_target = 0.f;
    for (int64_t k = ks.first; k < ks.last; ++k) {
      const bool is_identity = k < sh.S_id;
      const int64_t plane = is_identity ? ((b * sh.S_id + k) * sh.C + c) * HW : ((b * sh.S_w + k - sh.S_id) * sh.C + c) * HW;
      const Img* x = (is_identity ? identity : warped) + plane;
      const float g = routed_grad<float>(g_map, i_map, k, off);
      tile_stat_phase(x, target + y_plane, g, sh.H, sh.W, pos, alpha_c, sg_s);
      __syncthreads();
      if (pos.own) {
        const float g_x = tile_adjoint_phase(sg_s, x, target + y_plane, g, sh.H, sh.W, pos, l1_c, &g_target);
        Img* g_out = is_identity ? grad_identity : grad_warped;
        if (g_out != nullptr) store_as(g_out + plane + off, g_x);
      }
      __syncthreads();  // before the next candidate's phase A writes sg_s
    }
    if (grad_target != nullptr && pos.own) store_as(grad_target + y_plane + off, g_target);
  }
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
                     const photometric::Shape& sh, float alpha, bool tile, cudaStream_t stream) {
  if (tile) {
    const dim3 grid(static_cast<unsigned>(photometric::tile_backward_tiles_w(sh.W)),
                    static_cast<unsigned>(photometric::tile_backward_tiles_h(sh.H)), static_cast<unsigned>(sh.B));
    photometric_tile_bwd_kernel<Img><<<grid, photometric::kBlockPositions, 0, stream>>>(
        static_cast<const Img*>(grad), index, static_cast<const Img*>(target), static_cast<const Img*>(identity),
        static_cast<const Img*>(warped), static_cast<Img*>(grad_target), static_cast<Img*>(grad_identity),
        static_cast<Img*>(grad_warped), sh, alpha);
    return;
  }
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
                               void* grad_warped, const photometric::Shape& sh, float alpha, bool tile,
                               void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ImageType::F32:
      return launch_backward<float>(grad, index, target, identity, warped, grad_target, grad_identity, grad_warped,
                                    sh, alpha, tile, s);
    case ImageType::F16:
      return launch_backward<__half>(grad, index, target, identity, warped, grad_target, grad_identity, grad_warped,
                                     sh, alpha, tile, s);
    case ImageType::BF16:
      return launch_backward<__nv_bfloat16>(grad, index, target, identity, warped, grad_target, grad_identity,
                                            grad_warped, sh, alpha, tile, s);
  }
}

}  // namespace fastdepth
