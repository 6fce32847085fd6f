// Torch glue of the reprojection op: checks, allocation, and dispatch to the CUDA launchers
// (reprojection.cu) for CUDA tensors or to the CPU twin for CPU tensors. Registers
// fastdepth_ext::reprojection_forward and reprojection_backward, whose arguments are those of the
// Triton launchers in kernels/reprojection.py. The twin's partial sums of the pose and intrinsics
// gradients are per band of rows (reprojection_cpu.cpp), the GPU kernels' per tile.
#include "bindings.h"
#include "reprojection.cuh"

namespace fastdepth {
namespace {

using at::Tensor;
using namespace bindings;

// Checks what both passes read; the warp's shape and options.
struct Prepared {
  warp::Shape sh;
  warp::Options opt;
};

Prepared prepare(const Tensor& target_in, const Tensor& sources_in, const Tensor& depth_in, const Tensor& poses_in,
                 const Tensor& K_in, bool normalize_points, const std::string& padding_mode, bool align_corners) {
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
  check_option(H >= 2 && W >= 2, "H and W must be at least 2 (reflection padding)");
  check_option(H * W < (int64_t(1) << 31), "H * W must be below 2**31");
  check_option(padding_mode == "zeros" || padding_mode == "border", "padding_mode must be 'zeros' or 'border'");
  const warp::Shape sh{B, S, C, static_cast<int>(H), static_cast<int>(W)};
  return {sh, {warp::axis_map(sh.W, align_corners), warp::axis_map(sh.H, align_corners), normalize_points,
               padding_mode == "border"}};
}

std::tuple<Tensor, Tensor> reprojection_forward(const Tensor& target_in, const Tensor& sources_in,
                                                const Tensor& depth_in, const Tensor& poses_in, const Tensor& K_in,
                                                const c10::optional<Tensor>& identity_in, double alpha,
                                                bool normalize_points, std::string padding_mode, bool align_corners,
                                                bool tile) {
  const Prepared prepared =
      prepare(target_in, sources_in, depth_in, poses_in, K_in, normalize_points, padding_mode, align_corners);
  const warp::Shape& sh = prepared.sh;
  const warp::Options& opt = prepared.opt;
  const int64_t B = sh.B, C = sh.C, H = sh.H, W = sh.W;
  const int64_t s_id = identity_in.has_value() ? identity_in->size(1) : 0;
  if (identity_in.has_value()) {
    check_same_device({&target_in, &*identity_in});
    check_shape("identity", *identity_in, {B, -1, H, W});
    check_float("identity", *identity_in);
  }
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
      if (tile) {
        check_grid("target", reprojection::forward_tiles_w(sh.W), reprojection::forward_tiles_h(sh.H), B);
      } else {
        check_grid("target", (W + photometric::kTileW - 1) / photometric::kTileW,
                   (H + photometric::kTileH - 1) / photometric::kTileH, B);
      }
      reprojection_forward_cuda(image_type(target), target.data_ptr(), sources.data_ptr(), depth.data_ptr<float>(),
                                poses.data_ptr<float>(), K.data_ptr<float>(), s_id ? identity.data_ptr() : nullptr,
                                s_id, loss.data_ptr(), index.data_ptr<int64_t>(), sh, opt, static_cast<float>(alpha),
                                tile, current_stream(target));
      check_launch();
    }
    return {loss, index};
#else
    TORCH_CHECK(false, "fastdepth_ext was built without CUDA");
#endif
  }
  // the twin's forward warps bands of rows once (the tile kernel's way) whatever tile says
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

std::tuple<Tensor, Tensor, Tensor> reprojection_backward(const Tensor& grad_in, const Tensor& index_in,
                                                         const Tensor& target_in, const Tensor& sources_in,
                                                         const Tensor& depth_in, const Tensor& poses_in,
                                                         const Tensor& K_in, int64_t s_id, double alpha,
                                                         bool normalize_points, std::string padding_mode,
                                                         bool align_corners, const c10::List<bool>& need_list) {
  check_option(need_list.size() == 3, "needs must hold 3 flags");
  const bool need_depth = need_list[0], need_poses = need_list[1], need_k = need_list[2];
  const Prepared prepared =
      prepare(target_in, sources_in, depth_in, poses_in, K_in, normalize_points, padding_mode, align_corners);
  const warp::Shape& sh = prepared.sh;
  const warp::Options& opt = prepared.opt;
  check_same_device({&target_in, &grad_in, &index_in});
  check_shape("grad", grad_in, {sh.B, 1, sh.H, sh.W});
  check_shape("index", index_in, {sh.B, 1, sh.H, sh.W});
  TORCH_CHECK_TYPE(index_in.scalar_type() == at::kLong, "fastdepth_ext: index must be int64");
  check_option(s_id >= 0, "s_id must not be negative");
  const c10::DeviceGuard guard(target_in.device());
  const bool run = sh.B > 0 && sh.C > 0 && (need_depth || need_poses || need_k);
  const Tensor index = index_in.contiguous(), depth = depth_in.contiguous(), poses = poses_in.contiguous(),
               K = K_in.contiguous();
  const auto sized = [](bool need, at::IntArrayRef shape, const at::TensorOptions& o) {
    return at::zeros(need ? shape : at::IntArrayRef{0}, o);
  };
  if (target_in.is_cuda()) {
#ifdef FASTDEPTH_WITH_CUDA
    TORCH_CHECK_TYPE(depth.scalar_type() == at::kFloat, "fastdepth_ext: CUDA kernels take float32 geometry");
    const auto f32 = depth.options();
    const Tensor target = target_in.contiguous(), sources = sources_in.contiguous();
    const Tensor grad = grad_in.to(target.scalar_type()).contiguous();
    const int64_t tiles_w = reprojection::backward_tiles_w(sh.W), tiles_h = reprojection::backward_tiles_h(sh.H);
    Tensor g_depth = sized(need_depth, depth.sizes(), f32);
    Tensor pose_part = sized(need_poses, {sh.B, sh.S, tiles_w * tiles_h, warp::kPosePartials}, f32);
    Tensor k_part = sized(need_k, {sh.B, tiles_w * tiles_h, warp::kIntrinsicsPartials}, f32);
    if (run) {
      check_grid("target", tiles_w, tiles_h, sh.B);
      reprojection_backward_cuda(image_type(target), grad.data_ptr(), index.data_ptr<int64_t>(), target.data_ptr(),
                                 sources.data_ptr(), depth.data_ptr<float>(), poses.data_ptr<float>(),
                                 K.data_ptr<float>(), ptr_or_null<float>(g_depth), ptr_or_null<float>(pose_part),
                                 ptr_or_null<float>(k_part), s_id, sh, opt, static_cast<float>(alpha),
                                 current_stream(target));
      check_launch();
    }
    auto [g_pose, g_k] = reduce_partials(pose_part, k_part, sh.B, sh.S, need_poses, need_k);
    return {g_depth, g_pose, g_k};
#else
    TORCH_CHECK(false, "fastdepth_ext was built without CUDA");
#endif
  }
  const at::ScalarType F = cpu_compute_type(depth);
  const auto opts = depth.options();
  const Tensor target = target_in.to(F).contiguous(), sources = sources_in.to(F).contiguous();
  const Tensor grad = grad_in.to(F).contiguous();
  const int64_t bands = twin_bands(sh.H, sh.B).count;
  Tensor g_depth = sized(need_depth, depth.sizes(), opts);
  Tensor pose_part = sized(need_poses, {sh.B, sh.S, bands, warp::kPosePartials}, opts);
  Tensor k_part = sized(need_k, {sh.B, bands, warp::kIntrinsicsPartials}, opts);
  if (run) {
    AT_DISPATCH_FLOATING_TYPES(F, "reprojection_backward_cpu", [&] {
      reprojection_backward_cpu<scalar_t>(grad.data_ptr<scalar_t>(), index.data_ptr<int64_t>(),
                                          target.data_ptr<scalar_t>(), sources.data_ptr<scalar_t>(),
                                          depth.data_ptr<scalar_t>(), poses.data_ptr<scalar_t>(),
                                          K.data_ptr<scalar_t>(), s_id, ptr_or_null<scalar_t>(g_depth),
                                          ptr_or_null<scalar_t>(pose_part), ptr_or_null<scalar_t>(k_part), sh, opt,
                                          static_cast<scalar_t>(alpha));
    });
  }
  auto [g_pose, g_k] = reduce_partials(pose_part, k_part, sh.B, sh.S, need_poses, need_k);
  return {g_depth, g_pose, g_k};
}

}  // namespace
}  // namespace fastdepth

TORCH_LIBRARY_FRAGMENT(fastdepth_ext, m) {
  m.def(
      "reprojection_forward(Tensor target, Tensor sources, Tensor depth, Tensor poses, Tensor K, Tensor? identity, "
      "float alpha, bool normalize_points, str padding_mode, bool align_corners, bool tile=False) "
      "-> (Tensor, Tensor)");
  m.def(
      "reprojection_backward(Tensor grad, Tensor index, Tensor target, Tensor sources, Tensor depth, Tensor poses, "
      "Tensor K, int s_id, float alpha, bool normalize_points, str padding_mode, bool align_corners, bool[] needs) "
      "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fastdepth_ext, CPU, m) {
  m.impl("reprojection_forward", &fastdepth::reprojection_forward);
  m.impl("reprojection_backward", &fastdepth::reprojection_backward);
}

#ifdef FASTDEPTH_WITH_CUDA
TORCH_LIBRARY_IMPL(fastdepth_ext, CUDA, m) {
  m.impl("reprojection_forward", &fastdepth::reprojection_forward);
  m.impl("reprojection_backward", &fastdepth::reprojection_backward);
}
#endif
