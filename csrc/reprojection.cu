// CUDA kernels of the fused objective and their launchers, on raw pointers (no torch: plain nvcc
// compiles this file). Structured like kernels/reprojection.py. The forward: one thread per pixel of
// a kTileW x kTileH tile, the taps of the 3x3 window computed once per source and sampled for every
// channel; only the minimum and its index are written. The tile forward: one thread per position
// of a block (a tile and its halo of 1), each position warped once per source and channel into
// shared memory, the windows of the tile's pixels read from it. The backward of the geometry: one
// thread per position of a block (a tile and its halo of 2), the warped plane and the windows' stat
// gradients in shared memory, the phases of reprojection.cuh between barriers; the pose and
// intrinsics gradients summed per block in a fixed order (block_sum.cuh).
#include <cuda_runtime.h>

#include "block_sum.cuh"
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

// The forward over blocks (reprojection.cuh: the forward's tile phases): each position warped once
// into the block's plane per source and channel, the windows of the tile's pixels read from it.
template <typename Img>
__global__ void __launch_bounds__(reprojection::kBlockPositions)
    reprojection_tile_fwd_kernel(const Img* target, const Img* sources, const float* depth, const float* pose,
                                 const float* K, const Img* identity, int64_t s_id, Img* loss, int64_t* index,
                                 warp::Shape sh, warp::Options opt, float alpha) {
  using namespace reprojection;
  __shared__ float x_s[kBlockPositions];
  const int64_t b = blockIdx.z;
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  const Position pos =
      block_position(threadIdx.x, blockIdx.y * (kBlockH - 2), blockIdx.x * (kBlockW - 2), sh.H, sh.W, 1);
  const warp::Pixel<float> p = warp::make_pixel_at(depth, K, b, pos.r_in, pos.c_in, sh, opt.normalize);
  const int64_t pix = static_cast<int64_t>(pos.r_in) * sh.W + pos.c_in;
  float best = INFINITY;
  int64_t best_k = 0;
  for (int64_t k = 0; pos.own && k < s_id; ++k) {
    photometric::take_if_lower(load_as<float>(identity + (b * s_id + k) * HW + pix), k, best, best_k);
  }
  for (int64_t s = 0; s < sh.S; ++s) {
    const int64_t bs = b * sh.S + s;
    const warp::Taps<float> taps = pixel_taps(p, pose + bs * 16, sh, opt);
    float ssim = 0.f, l1 = 0.f;
    for (int64_t c = 0; c < sh.C; ++c) {
      tile_sample_phase(taps, sources + (bs * sh.C + c) * HW, sh.W, pos, x_s);
      __syncthreads();
      tile_loss_phase(x_s, target + (b * sh.C + c) * HW, sh.H, sh.W, pos, ssim, l1);
      __syncthreads();  // before the next channel's phase A overwrites the plane
    }
    if (pos.own) photometric::take_if_lower(photometric::mix_channels(ssim, l1, alpha, sh.C), s_id + s, best, best_k);
  }
  if (pos.own) {
    store_as(loss + b * HW + pix, best);
    index[b * HW + pix] = best_k;
  }
}

template <typename Img>
__global__ void __launch_bounds__(reprojection::kBlockPositions)
    reprojection_bwd_kernel(const Img* grad, const int64_t* index, const Img* target, const Img* sources,
                            const float* depth, const float* pose, const float* K, float* grad_depth,
                            float* pose_partials, float* k_partials, int64_t s_id, warp::Shape sh, warp::Options opt,
                            float alpha) {
  using namespace reprojection;
  __shared__ float x_s[kBlockPositions];
  __shared__ float sg_s[3 * kBlockPositions];
  __shared__ float smem[warp::kPosePartials * 32];
  const int64_t b = blockIdx.z;
  const int64_t tiles = static_cast<int64_t>(gridDim.x) * gridDim.y;
  const int64_t tile = static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x;
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  const Position pos =
      block_position(threadIdx.x, blockIdx.y * (kBlockH - 4), blockIdx.x * (kBlockW - 4), sh.H, sh.W, 2);
  const warp::Pixel<float> p = warp::make_pixel_at(depth, K, b, pos.r_in, pos.c_in, sh, opt.normalize);
  const int64_t off = b * HW + static_cast<int64_t>(pos.r_in) * sh.W + pos.c_in;
  const float g_map = load_as<float>(grad + off);
  const int64_t winner = index[off];
  const float alpha_c = alpha / static_cast<float>(sh.C);
  const float l1_c = (1.f - alpha) / static_cast<float>(sh.C);
  float gK[warp::kIntrinsicsPartials] = {};
  float gP[2] = {};
  float gd[2] = {};
  for (int64_t s = 0; s < sh.S; ++s) {
    const int64_t bs = b * sh.S + s;
    const float* T = pose + bs * 16;
    SourceState<float> st = begin_source(p, pos, T, g_map, winner, s_id + s, sh, opt);
    for (int64_t c = 0; c < sh.C; ++c) {
      const Img* y = target + (b * sh.C + c) * HW;
      sample_phase(st, sources + (bs * sh.C + c) * HW, sh.W, pos, x_s);
      __syncthreads();
      stat_phase(st, x_s, y, sh.H, sh.W, pos, alpha_c, sg_s);
      __syncthreads();
      adjoint_phase(st, sg_s, y, sh.H, sh.W, pos, l1_c);
      // the next channel's phase A writes x_s, which no phase C reads; its phase B writes sg_s only
      // after the next barrier, which every thread reaches after this phase C
    }
    float gT[warp::kPosePartials] = {};
    if (st.live) {
      const warp::Geometry<float> g =
          warp::compute_geometry(p.d, p.ray, p.k, T, sh.W, sh.H, opt.mu, opt.mv, opt.border);
      warp::geometry_backward(g, p, st.g_iu, st.g_iv, T, gT, gK, gP, gd);
    }
    if (pose_partials != nullptr) block_sum(gT, pose_partials + (bs * tiles + tile) * warp::kPosePartials, smem);
  }
  if (pos.own && (grad_depth != nullptr || k_partials != nullptr)) {
    const float grad_d = warp::depth_grad(p, gd);
    warp::ray_backward(p, gP, grad_d, opt.normalize, gK);
    if (grad_depth != nullptr) grad_depth[b * HW + static_cast<int64_t>(pos.row) * sh.W + pos.col] = grad_d;
  }
  if (k_partials != nullptr) block_sum(gK, k_partials + (b * tiles + tile) * warp::kIntrinsicsPartials, smem);
}

template <typename Img>
void launch_forward(const void* target, const void* sources, const float* depth, const float* pose, const float* K,
                    const void* identity, int64_t s_id, void* loss, int64_t* index, const warp::Shape& sh,
                    const warp::Options& opt, float alpha, bool tile, cudaStream_t stream) {
  if (tile) {
    const dim3 grid(static_cast<unsigned>(reprojection::forward_tiles_w(sh.W)),
                    static_cast<unsigned>(reprojection::forward_tiles_h(sh.H)), static_cast<unsigned>(sh.B));
    reprojection_tile_fwd_kernel<Img><<<grid, reprojection::kBlockPositions, 0, stream>>>(
        static_cast<const Img*>(target), static_cast<const Img*>(sources), depth, pose, K,
        static_cast<const Img*>(identity), s_id, static_cast<Img*>(loss), index, sh, opt, alpha);
    return;
  }
  const dim3 grid(static_cast<unsigned>((sh.W + kTileW - 1) / kTileW), static_cast<unsigned>((sh.H + kTileH - 1) / kTileH),
                  static_cast<unsigned>(sh.B));
  reprojection_fwd_kernel<Img><<<grid, dim3(kTileW, kTileH), 0, stream>>>(
      static_cast<const Img*>(target), static_cast<const Img*>(sources), depth, pose, K,
      static_cast<const Img*>(identity), s_id, static_cast<Img*>(loss), index, sh, opt, alpha);
}

template <typename Img>
void launch_backward(const void* grad, const int64_t* index, const void* target, const void* sources,
                     const float* depth, const float* pose, const float* K, float* grad_depth, float* pose_partials,
                     float* k_partials, int64_t s_id, const warp::Shape& sh, const warp::Options& opt, float alpha,
                     cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(reprojection::backward_tiles_w(sh.W)),
                  static_cast<unsigned>(reprojection::backward_tiles_h(sh.H)), static_cast<unsigned>(sh.B));
  reprojection_bwd_kernel<Img><<<grid, reprojection::kBlockPositions, 0, stream>>>(
      static_cast<const Img*>(grad), index, static_cast<const Img*>(target), static_cast<const Img*>(sources), depth,
      pose, K, grad_depth, pose_partials, k_partials, s_id, sh, opt, alpha);
}

}  // namespace

void reprojection_forward_cuda(ImageType type, const void* target, const void* sources, const float* depth,
                               const float* pose, const float* K, const void* identity, int64_t s_id, void* loss,
                               int64_t* index, const warp::Shape& sh, const warp::Options& opt, float alpha,
                               bool tile, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ImageType::F32:
      return launch_forward<float>(target, sources, depth, pose, K, identity, s_id, loss, index, sh, opt, alpha, tile,
                                   s);
    case ImageType::F16:
      return launch_forward<__half>(target, sources, depth, pose, K, identity, s_id, loss, index, sh, opt, alpha, tile,
                                    s);
    case ImageType::BF16:
      return launch_forward<__nv_bfloat16>(target, sources, depth, pose, K, identity, s_id, loss, index, sh, opt,
                                           alpha, tile, s);
  }
}

void reprojection_backward_cuda(ImageType type, const void* grad, const int64_t* index, const void* target,
                                const void* sources, const float* depth, const float* pose, const float* K,
                                float* grad_depth, float* pose_partials, float* k_partials, int64_t s_id,
                                const warp::Shape& sh, const warp::Options& opt, float alpha, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ImageType::F32:
      return launch_backward<float>(grad, index, target, sources, depth, pose, K, grad_depth, pose_partials,
                                    k_partials, s_id, sh, opt, alpha, s);
    case ImageType::F16:
      return launch_backward<__half>(grad, index, target, sources, depth, pose, K, grad_depth, pose_partials,
                                     k_partials, s_id, sh, opt, alpha, s);
    case ImageType::BF16:
      return launch_backward<__nv_bfloat16>(grad, index, target, sources, depth, pose, K, grad_depth, pose_partials,
                                            k_partials, s_id, sh, opt, alpha, s);
  }
}

}  // namespace fastdepth
