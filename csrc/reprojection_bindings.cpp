// Torch glue of the reprojection op's forward: checks, allocation, and dispatch to the CUDA launcher
// (reprojection.cu) for CUDA tensors or to the CPU twin (reprojection_cpu.cpp) for CPU tensors.
// Registers fastdepth_ext::reprojection_forward, whose arguments are those of the Triton launcher in
// kernels/reprojection.py. (The backward is composed of the warp and photometric ops.)
#include "bindings.h"
#include "reprojection.cuh"

namespace fastdepth {
namespace {

using at::Tensor;
using namespace bindings;

std::tuple<Tensor, Tensor> reprojection_forward(const Tensor& target_in, const Tensor& sources_in,
                                                const Tensor& depth_in, const Tensor& poses_in, const Tensor& K_in,
                                                const c10::optional<Tensor>& identity_in, double alpha,
                                                bool normalize_points, std::string padding_mode, bool align_corners) {
  check_same_device({&target_in, &sources_in, &depth_in, &poses_in, &K_in});
  check_shape("sources", sources_in, {-1, -1, -1, -1, -1});
  const int64_t B = sources_in.size(0), S = sources_in.size(1), C = sources_in.size(2), H = sources_in.size(3),
                W = sources_in.size(4);
  check_shape("target", target_in, {B, C, H, W});
  check_shape("depth", depth_in, {B, 1, H, W});
  check_shape("poses", poses_in, {B, S, 4, 4});
  check_shape("K", K_in, {B, 3, 3});
  check_float("target", target_in);
  TORCH_CHECK_TYPE(sources_in.scalar_type() == target_in.scalar_type(), "fastdepth_ext: sources and target must share a dtype");
  TORCH_CHECK_TYPE(poses_in.scalar_type() == depth_in.scalar_type() && K_in.scalar_type() == depth_in.scalar_type(),
                   "fastdepth_ext: depth, poses and K must share a dtype");
  const int64_t s_id = identity_in.has_value() ? identity_in->size(1) : 0;
  if (identity_in.has_value()) {
    check_same_device({&target_in, &*identity_in});
    check_shape("identity", *identity_in, {B, -1, H, W});
    check_float("identity", *identity_in);
  }
  check_option(H >= 2 && W >= 2, "H and W must be at least 2 (reflection padding)");
  check_option(H * W < (int64_t(1) << 31), "H * W must be below 2**31");
  check_option(padding_mode == "zeros" || padding_mode == "border", "padding_mode must be 'zeros' or 'border'");
  const warp::Shape sh{B, S, C, static_cast<int>(H), static_cast<int>(W)};
  const warp::Options opt{warp::axis_map(sh.W, align_corners), warp::axis_map(sh.H, align_corners),
                          normalize_points, padding_mode == "border"};
  const c10::DeviceGuard guard(target_in.device());
  const Tensor depth = depth_in.contiguous(), poses = poses_in.contiguous(), K = K_in.contiguous();
  const bool run = B > 0 && C > 0;
  // the kernels write every pixel's index when they run
  const auto index_options = target_in.options().dtype(at::kLong);
  Tensor index = run ? at::empty({B, 1, H, W}, index_options) : at::zeros({B, 1, H, W}, index_options);
  if (target_in.is_cuda()) {
#ifdef FASTDEPTH_WITH_CUDA
    TORCH_CHECK_TYPE(depth.scalar_type() == at::kFloat, "fastdepth_ext: CUDA kernels take float32 geometry");
    const Tensor target = target_in.contiguous(), sources = sources_in.contiguous();
    const Tensor identity = identity_in.has_value() ? identity_in->to(target.scalar_type()).contiguous() : Tensor();
    Tensor loss = at::empty({B, 1, H, W}, target.options());
    if (run) {
      check_grid("target", (W + photometric::kTileW - 1) / photometric::kTileW,
                 (H + photometric::kTileH - 1) / photometric::kTileH, B);
      reprojection_forward_cuda(image_type(target), target.data_ptr(), sources.data_ptr(), depth.data_ptr<float>(),
                                poses.data_ptr<float>(), K.data_ptr<float>(), s_id ? identity.data_ptr() : nullptr,
                                s_id, loss.data_ptr(), index.data_ptr<int64_t>(), sh, opt, static_cast<float>(alpha),
                                current_stream(target));
      check_launch();
    }
    return {loss, index};
#else
    TORCH_CHECK(false, "fastdepth_ext was built without CUDA");
#endif
  }
  const at::ScalarType F = cpu_compute_type(depth);
  const Tensor target = target_in.to(F).contiguous(), sources = sources_in.to(F).contiguous();
  const Tensor identity = identity_in.has_value() ? identity_in->to(F).contiguous() : Tensor();
  Tensor loss = at::empty({B, 1, H, W}, target.options());
  if (run) {
    AT_DISPATCH_FLOATING_TYPES(F, "reprojection_forward_cpu", [&] {
      reprojection_forward_cpu<scalar_t>(target.data_ptr<scalar_t>(), sources.data_ptr<scalar_t>(),
                                         depth.data_ptr<scalar_t>(), poses.data_ptr<scalar_t>(),
                                         K.data_ptr<scalar_t>(), s_id ? identity.data_ptr<scalar_t>() : nullptr, s_id,
                                         loss.data_ptr<scalar_t>(), index.data_ptr<int64_t>(), sh, opt,
                                         static_cast<scalar_t>(alpha));
    });
  }
  return {loss.to(target_in.scalar_type()), index};
}

}  // namespace
}  // namespace fastdepth

TORCH_LIBRARY_FRAGMENT(fastdepth_ext, m) {
  m.def(
      "reprojection_forward(Tensor target, Tensor sources, Tensor depth, Tensor poses, Tensor K, Tensor? identity, "
      "float alpha, bool normalize_points, str padding_mode, bool align_corners) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fastdepth_ext, CPU, m) { m.impl("reprojection_forward", &fastdepth::reprojection_forward); }

#ifdef FASTDEPTH_WITH_CUDA
TORCH_LIBRARY_IMPL(fastdepth_ext, CUDA, m) { m.impl("reprojection_forward", &fastdepth::reprojection_forward); }
#endif
