// Torch glue of the warp op: checks, allocation, and dispatch to the CUDA launchers (warp.cu) for
// CUDA tensors or to the CPU twin (warp_cpu.cpp) for CPU tensors. Registers
// fastdepth_ext::warp_forward and fastdepth_ext::warp_backward, whose arguments are those of the
// Triton launchers in kernels/warp.py (one interface per op; tests/test_registry.py checks it).
#include <limits>

#include "bindings.h"
#include "warp.cuh"

namespace fastdepth {
namespace {

using at::Tensor;
using namespace bindings;

struct Prepared {
  warp::Shape shape;
  warp::Options options;
  Tensor depth, pose, K;
};

// Checks what the kernels read and returns the contiguous geometry, shape and sampling options.
Prepared prepare(const Tensor& image, const Tensor& depth, const Tensor& pose, const Tensor& K,
                 bool normalize_points, const std::string& padding_mode, bool align_corners) {
  check_same_device({&image, &depth, &pose, &K});
  check_shape("image", image, {-1, -1, -1, -1, -1});
  const int64_t B = image.size(0), S = image.size(1), H = image.size(3), W = image.size(4);
  check_shape("depth", depth, {B, 1, H, W});
  check_shape("pose", pose, {B, S, 4, 4});
  check_shape("K", K, {B, 3, 3});
  check_float("image", image);
  TORCH_CHECK_TYPE(pose.scalar_type() == depth.scalar_type() && K.scalar_type() == depth.scalar_type(),
                   "fastdepth_ext: depth, pose and K must share a dtype");
  check_option(padding_mode == "zeros" || padding_mode == "border", "padding_mode must be 'zeros' or 'border'");
  check_option(H * W < (int64_t(1) << 31), "H * W must be below 2**31");
  const warp::Shape sh{B, S, image.size(2), static_cast<int>(H), static_cast<int>(W)};
  const warp::Options opt{warp::axis_map(sh.W, align_corners), warp::axis_map(sh.H, align_corners),
                          normalize_points, padding_mode == "border"};
  return {sh, opt, depth.contiguous(), pose.contiguous(), K.contiguous()};
}

std::tuple<Tensor, Tensor> warp_forward(const Tensor& image_in, const Tensor& depth_in, const Tensor& pose_in,
                                        const Tensor& K_in, bool normalize_points, std::string padding_mode,
                                        bool align_corners, bool want_mask) {
  const Prepared p = prepare(image_in, depth_in, pose_in, K_in, normalize_points, padding_mode, align_corners);
  const warp::Shape& sh = p.shape;
  const c10::DeviceGuard guard(image_in.device());
  Tensor mask = at::zeros(want_mask ? at::IntArrayRef{sh.B, sh.S, 1, sh.H, sh.W} : at::IntArrayRef{0},
                          image_in.options().dtype(at::kChar));
  int8_t* mask_ptr = want_mask ? ptr_or_null<int8_t>(mask) : nullptr;
  if (image_in.is_cuda()) {
#ifdef FASTDEPTH_WITH_CUDA
    TORCH_CHECK_TYPE(p.depth.scalar_type() == at::kFloat, "fastdepth_ext: CUDA kernels take float32 geometry");
    const Tensor image = image_in.contiguous();
    Tensor out = at::empty_like(image);
    if (out.numel() > 0) {
      check_grid("image_src", warp::blocks_per_image(sh.H, sh.W) * sh.B, 1, 1);
      warp_forward_cuda(image_type(image), image.data_ptr(), p.depth.data_ptr<float>(), p.pose.data_ptr<float>(),
                        p.K.data_ptr<float>(), out.data_ptr(), mask_ptr, sh, p.options, current_stream(image));
      check_launch();
    }
    return {out, mask.to(at::kBool)};
#else
    TORCH_CHECK(false, "fastdepth_ext was built without CUDA");
#endif
  }
  const at::ScalarType F = cpu_compute_type(p.depth);
  const Tensor image = image_in.to(F).contiguous();
  Tensor out = at::empty_like(image);
  if (out.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(F, "warp_forward_cpu", [&] {
      warp_forward_cpu<scalar_t>(image.data_ptr<scalar_t>(), p.depth.data_ptr<scalar_t>(),
                                 p.pose.data_ptr<scalar_t>(), p.K.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                 mask_ptr, sh, p.options);
    });
  }
  return {out.to(image_in.scalar_type()), mask.to(at::kBool)};
}

// The deterministic scatter's scale and its inverse, as fastdepth/conventions.py: fixed_point_scale,
// from_fixed_point. The largest mass one source plane can receive bounds every sum: each destination
// pixel spreads weights summing to at most 1 over the taps.
Tensor fixed_point_scale(const Tensor& grad, at::ScalarType dtype) {
  if (grad.numel() == 0) return at::ones({1}, grad.options().dtype(dtype));
  const Tensor bound = grad.to(dtype).abs().sum({-2, -1}).amax().reshape({1});
  return (4611686018427387904.0 / bound).clamp_max(1.2676506002282294e30).nan_to_num(0.0);
}

Tensor from_fixed_point(const Tensor& total, const Tensor& scale, at::ScalarType dtype) {
  const Tensor values = (total / scale.to(at::kDouble)).to(dtype);  // int64 / float64 in float64
  return at::where(scale > 0, values, std::numeric_limits<double>::quiet_NaN());
}

std::tuple<Tensor, Tensor, Tensor, Tensor> warp_backward(const Tensor& grad_in, const Tensor& image_in,
                                                         const Tensor& depth_in, const Tensor& pose_in,
                                                         const Tensor& K_in, bool normalize_points,
                                                         std::string padding_mode, bool align_corners,
                                                         const c10::List<bool>& need_list, bool deterministic) {
  check_option(need_list.size() == 4, "needs must hold 4 flags");
  const bool needs[4] = {need_list[0], need_list[1], need_list[2], need_list[3]};
  const Prepared p = prepare(image_in, depth_in, pose_in, K_in, normalize_points, padding_mode, align_corners);
  const warp::Shape& sh = p.shape;
  check_same_device({&grad_in, &image_in});
  TORCH_CHECK_VALUE(grad_in.sizes() == image_in.sizes(), "fastdepth_ext: grad_out has shape ", grad_in.sizes(),
                    ", expected the image's ", image_in.sizes());
  const c10::DeviceGuard guard(image_in.device());
  const int64_t blocks = warp::blocks_per_image(sh.H, sh.W);
  const bool run = image_in.numel() > 0;
  const auto sized = [&](bool need, at::IntArrayRef shape, const at::TensorOptions& o) {
    return at::zeros(need ? shape : at::IntArrayRef{0}, o);
  };
  const bool fixed = needs[0] && deterministic;
  const auto i64 = image_in.options().dtype(at::kLong);
  if (image_in.is_cuda()) {
#ifdef FASTDEPTH_WITH_CUDA
    TORCH_CHECK_TYPE(p.depth.scalar_type() == at::kFloat, "fastdepth_ext: CUDA kernels take float32 geometry");
    const auto f32 = image_in.options().dtype(at::kFloat);
    const Tensor grad = grad_in.to(image_in.scalar_type()).contiguous(), image = image_in.contiguous();
    Tensor g_image = sized(needs[0] && !fixed, image.sizes(), f32);
    Tensor g_fixed = sized(fixed, image.sizes(), i64);
    const Tensor scale = fixed ? fixed_point_scale(grad, at::kFloat) : Tensor();
    // every pixel's depth gradient is written where the kernel runs
    Tensor g_depth = needs[1] && run ? at::empty(p.depth.sizes(), f32) : sized(needs[1], p.depth.sizes(), f32);
    Tensor pose_part = sized(needs[2], {sh.B, sh.S, blocks, warp::kPosePartials}, f32);
    Tensor k_part = sized(needs[3], {sh.B, blocks, warp::kIntrinsicsPartials}, f32);
    if (run) {
      check_grid("image_src", blocks * sh.B, 1, 1);
      warp_backward_cuda(image_type(image), grad.data_ptr(), image.data_ptr(), p.depth.data_ptr<float>(),
                         p.pose.data_ptr<float>(), p.K.data_ptr<float>(), ptr_or_null<float>(g_image),
                         fixed ? reinterpret_cast<long long*>(g_fixed.data_ptr<int64_t>()) : nullptr,
                         fixed ? scale.data_ptr<float>() : nullptr,
                         ptr_or_null<float>(g_depth), ptr_or_null<float>(pose_part), ptr_or_null<float>(k_part), sh,
                         p.options, current_stream(image));
      check_launch();
    }
    if (fixed) g_image = from_fixed_point(g_fixed, scale, at::kFloat);
    auto [g_pose, g_k] = reduce_partials(pose_part, k_part, sh.B, sh.S, needs[2], needs[3]);
    return {needs[0] ? g_image.to(image_in.scalar_type()) : g_image, g_depth, g_pose, g_k};
#else
    TORCH_CHECK(false, "fastdepth_ext was built without CUDA");
#endif
  }
  const at::ScalarType F = cpu_compute_type(p.depth);
  const auto opts = p.depth.options();
  const Tensor grad = grad_in.to(F).contiguous(), image = image_in.to(F).contiguous();
  Tensor g_image = sized(needs[0] && !fixed, image.sizes(), opts);
  Tensor g_fixed = sized(fixed, image.sizes(), i64);
  const Tensor scale = fixed ? fixed_point_scale(grad, F) : Tensor();
  Tensor g_depth = sized(needs[1], p.depth.sizes(), opts);
  Tensor pose_part = sized(needs[2], {sh.B, sh.S, blocks, warp::kPosePartials}, opts);
  Tensor k_part = sized(needs[3], {sh.B, blocks, warp::kIntrinsicsPartials}, opts);
  if (run) {
    AT_DISPATCH_FLOATING_TYPES(F, "warp_backward_cpu", [&] {
      warp_backward_cpu<scalar_t>(grad.data_ptr<scalar_t>(), image.data_ptr<scalar_t>(),
                                  p.depth.data_ptr<scalar_t>(), p.pose.data_ptr<scalar_t>(), p.K.data_ptr<scalar_t>(),
                                  ptr_or_null<scalar_t>(g_image),
                                  fixed ? reinterpret_cast<long long*>(g_fixed.data_ptr<int64_t>()) : nullptr,
                                  fixed ? scale.data_ptr<scalar_t>() : nullptr, ptr_or_null<scalar_t>(g_depth),
                                  ptr_or_null<scalar_t>(pose_part), ptr_or_null<scalar_t>(k_part), sh, p.options);
    });
  }
  if (fixed) g_image = from_fixed_point(g_fixed, scale, F);
  auto [g_pose, g_k] = reduce_partials(pose_part, k_part, sh.B, sh.S, needs[2], needs[3]);
  return {needs[0] ? g_image.to(image_in.scalar_type()) : g_image, g_depth, g_pose, g_k};
}

}  // namespace
}  // namespace fastdepth

TORCH_LIBRARY_FRAGMENT(fastdepth_ext, m) {
  m.def(
      "warp_forward(Tensor image, Tensor depth, Tensor pose, Tensor K, bool normalize_points, str padding_mode, "
      "bool align_corners, bool want_mask) -> (Tensor, Tensor)");
  m.def(
      "warp_backward(Tensor grad_out, Tensor image, Tensor depth, Tensor pose, Tensor K, bool normalize_points, "
      "str padding_mode, bool align_corners, bool[] needs, bool deterministic) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fastdepth_ext, CPU, m) {
  m.impl("warp_forward", &fastdepth::warp_forward);
  m.impl("warp_backward", &fastdepth::warp_backward);
}

#ifdef FASTDEPTH_WITH_CUDA
TORCH_LIBRARY_IMPL(fastdepth_ext, CUDA, m) {
  m.impl("warp_forward", &fastdepth::warp_forward);
  m.impl("warp_backward", &fastdepth::warp_backward);
}
#endif
