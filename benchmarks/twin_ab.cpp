// The CPU twin's kernels of the training step's objective behind a C interface, for
// benchmarks/twin_ab.py, which builds this file once per revision of csrc/ (its namespace renamed
// there, so that two builds live in one process) and times the two side by side. float32, the
// geometry as the extension computes it; the pointers are contiguous arrays in the extension's
// layouts. No torch.
#include "photometric.cuh"
#include "reprojection.cuh"
#include "warp.cuh"

#define AB_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

fastdepth::warp::Shape warp_shape(int64_t B, int64_t S, int64_t C, int H, int W) { return {B, S, C, H, W}; }

fastdepth::warp::Options options(int H, int W, bool border, bool align_corners) {
  return {fastdepth::warp::axis_map(W, align_corners), fastdepth::warp::axis_map(H, align_corners), false, border};
}

}  // namespace

// The partial sums' slots: the fused backward's bands, the warp backward's blocks.
AB_EXPORT int64_t ab_bands(int H, int64_t B) { return fastdepth::twin_bands(H, B).count; }
AB_EXPORT int64_t ab_blocks(int H, int W) { return fastdepth::warp::blocks_per_image(H, W); }

// The fused objective: loss and index (B, H, W) of the S sources warped with depth (B, H, W), poses
// (B, S, 4, 4) and K (B, 3, 3), against the target and the S identity maps.
AB_EXPORT void ab_reprojection_forward(const float* target, const float* sources, const float* depth,
                                       const float* poses, const float* K, const float* identity, float* loss,
                                       int64_t* index, int64_t B, int64_t S, int64_t C, int H, int W, int border,
                                       int align_corners) {
  fastdepth::reprojection_forward_cpu<float>(target, sources, depth, poses, K, identity, S, loss, index,
                                             warp_shape(B, S, C, H, W), options(H, W, border, align_corners), 0.85f);
}

AB_EXPORT void ab_reprojection_backward(const float* grad, const int64_t* index, const float* target,
                                        const float* sources, const float* depth, const float* poses, const float* K,
                                        float* grad_depth, float* pose_partials, int64_t B, int64_t S, int64_t C,
                                        int H, int W, int border, int align_corners) {
  fastdepth::reprojection_backward_cpu<float>(grad, index, target, sources, depth, poses, K, S, grad_depth,
                                              pose_partials, nullptr, warp_shape(B, S, C, H, W),
                                              options(H, W, border, align_corners), 0.85f);
}

// The composed ops: the warp into warped (B, S, C, H, W), the loss with the sources as the identity
// candidates, its backward into grad_warped, the warp's backward into the depth and poses.
AB_EXPORT void ab_warp_forward(const float* sources, const float* depth, const float* poses, const float* K,
                               float* warped, int64_t B, int64_t S, int64_t C, int H, int W, int border,
                               int align_corners) {
  fastdepth::warp_forward_cpu<float>(sources, depth, poses, K, warped, nullptr, warp_shape(B, S, C, H, W),
                                     options(H, W, border, align_corners));
}

AB_EXPORT void ab_photometric_forward(const float* target, const float* sources, const float* warped, float* loss,
                                      int64_t* index, int64_t B, int64_t S, int64_t C, int H, int W) {
  fastdepth::photometric_forward_cpu<float>(target, sources, warped, loss, index, {B, S, S, C, H, W}, 0.85f);
}

AB_EXPORT void ab_photometric_backward(const float* grad, const int64_t* index, const float* target,
                                       const float* sources, const float* warped, float* grad_warped, int64_t B,
                                       int64_t S, int64_t C, int H, int W) {
  fastdepth::photometric_backward_cpu<float>(grad, index, target, sources, warped, nullptr, nullptr, grad_warped,
                                             {B, S, S, C, H, W}, 0.85f);
}

AB_EXPORT void ab_warp_backward(const float* grad_warped, const float* sources, const float* depth,
                                const float* poses, const float* K, float* grad_depth, float* pose_partials,
                                int64_t B, int64_t S, int64_t C, int H, int W, int border, int align_corners) {
  fastdepth::warp_backward_cpu<float>(grad_warped, sources, depth, poses, K, nullptr, nullptr, nullptr, grad_depth,
                                      pose_partials, nullptr, warp_shape(B, S, C, H, W),
                                      options(H, W, border, align_corners));
}
