// Torch glue of the cost volume: checks, allocation, and dispatch to the CUDA launchers
// (cost_volume.cu) for CUDA tensors or to the CPU twin (cost_volume_cpu.cpp) for CPU tensors.
// Registers fastdepth_ext::cost_volume_projection, cost_volume_forward and cost_volume_backward,
// whose arguments are those of the Triton launchers in kernels/cost_volume.py.
#include "bindings.h"
#include "cost_volume.cuh"

namespace fastdepth {
namespace {

using at::Tensor;
using namespace bindings;

// Checks what the kernels read: features (B, C, H, W) and (B, S, C, H, W) of one dtype, the
// projections (B, S, D, H, W) of one float dtype.
cost_volume::Shape prepare(const Tensor& ft, const Tensor& fs, const Tensor& u, const Tensor& v,
                           c10::string_view reduction, int64_t groups) {
  check_same_device({&ft, &fs, &u, &v});
  check_shape("features_target", ft, {-1, -1, -1, -1});
  const int64_t B = ft.size(0), C = ft.size(1), H = ft.size(2), W = ft.size(3);
  check_shape("features_source", fs, {B, -1, C, H, W});
  const int64_t S = fs.size(1);
  check_shape("u", u, {B, S, -1, H, W});
  check_shape("v", v, {B, S, u.size(2), H, W});
  check_float("features_target", ft);
  check_float("u", u);
  TORCH_CHECK_TYPE(fs.scalar_type() == ft.scalar_type(), "fastdepth_ext: the features must share a dtype");
  TORCH_CHECK_TYPE(v.scalar_type() == u.scalar_type(), "fastdepth_ext: u and v must share a dtype");
  check_option(H * W < (int64_t(1) << 31), "H * W must be below 2**31");
  int64_t G = 0;
  if (reduction == "l1" || reduction == "dot") G = 1;
  if (reduction == "group_dot") G = groups;
  if (reduction == "variance") G = C;
  check_option(G > 0, "reduction must be l1, dot, group_dot or variance");
  check_option(C % G == 0, "groups must divide the channels");
  return {B, S, C, u.size(2), G, static_cast<int>(H), static_cast<int>(W)};
}

cost_volume::Options options(const cost_volume::Shape& sh, c10::string_view reduction, c10::string_view padding_mode,
                             bool align_corners) {
  check_option(padding_mode == "zeros" || padding_mode == "border", "padding_mode must be zeros or border");
  const int r = reduction == "l1" ? cost_volume::kL1 : reduction == "variance" ? cost_volume::kVariance : cost_volume::kDot;
  return {warp::axis_map(sh.W, align_corners), warp::axis_map(sh.H, align_corners), padding_mode == "border", r};
}

// The compute type on the CPU: float64 where the features or the projections are, else float32.
at::ScalarType cpu_type(const Tensor& features, const Tensor& u) {
  return features.scalar_type() == at::kDouble || u.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// The projections u, v (B, S, D, height, width) of every target pixel at every hypothesis, in the
// geometry's type (float32 on CUDA; float64 on the CPU where an input is float64).
std::tuple<Tensor, Tensor> cost_volume_projection(const Tensor& hyp_in, const Tensor& poses_in, const Tensor& K_in,
                                                  int64_t height, int64_t width) {
  check_same_device({&hyp_in, &poses_in, &K_in});
  check_option(hyp_in.dim() == 2 || hyp_in.dim() == 4, "depth_hypotheses must be (B, D) or (B, D, H, W)");
  const int64_t B = hyp_in.size(0), D = hyp_in.size(1);
  const bool per_pixel = hyp_in.dim() == 4;
  if (per_pixel) check_shape("depth_hypotheses", hyp_in, {B, D, height, width});
  check_shape("poses", poses_in, {B, -1, 4, 4});
  check_shape("K", K_in, {B, 3, 3});
  check_float("depth_hypotheses", hyp_in);
  check_float("poses", poses_in);
  check_float("K", K_in);
  check_option(height >= 1 && width >= 1 && height * width < (int64_t(1) << 31),
               "height and width must be positive, H * W below 2**31");
  const int64_t S = poses_in.size(1);
  const cost_volume::Shape sh{B, S, 0, D, 0, static_cast<int>(height), static_cast<int>(width)};
  const c10::DeviceGuard guard(hyp_in.device());
  const bool cuda = hyp_in.is_cuda();
  const bool f64 = !cuda && (hyp_in.scalar_type() == at::kDouble || poses_in.scalar_type() == at::kDouble ||
                             K_in.scalar_type() == at::kDouble);
  const at::ScalarType F = f64 ? at::kDouble : at::kFloat;
  const Tensor hyp = hyp_in.to(F).contiguous(), poses = poses_in.to(F).contiguous(), K = K_in.to(F).contiguous();
  Tensor u = at::empty({B, S, D, height, width}, hyp.options()), v = at::empty_like(u);
  if (u.numel() == 0) return {u, v};
  if (cuda) {
#ifdef FASTDEPTH_WITH_CUDA
    check_grid("depth_hypotheses", (height * width + cost_volume::kBlock - 1) / cost_volume::kBlock, D, B * S);
    cost_volume_projection_cuda(hyp.data_ptr<float>(), poses.data_ptr<float>(), K.data_ptr<float>(),
                                u.data_ptr<float>(), v.data_ptr<float>(), sh, per_pixel, current_stream(hyp));
    check_launch();
#else
    TORCH_CHECK(false, "fastdepth_ext was built without CUDA");
#endif
    return {u, v};
  }
  AT_DISPATCH_FLOATING_TYPES(F, "cost_volume_projection_cpu", [&] {
    cost_volume_projection_cpu<scalar_t>(hyp.data_ptr<scalar_t>(), poses.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(),
                                         u.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), sh, per_pixel);
  });
  return {u, v};
}

Tensor cost_volume_forward(const Tensor& ft_in, const Tensor& fs_in, const Tensor& u_in, const Tensor& v_in,
                           c10::string_view reduction, int64_t groups, c10::string_view padding_mode,
                           bool align_corners) {
  const cost_volume::Shape sh = prepare(ft_in, fs_in, u_in, v_in, reduction, groups);
  const cost_volume::Options o = options(sh, reduction, padding_mode, align_corners);
  const c10::DeviceGuard guard(ft_in.device());
  const bool cuda = ft_in.is_cuda();
  const at::ScalarType F = cuda ? at::kFloat : cpu_type(ft_in, u_in);
  const Tensor ft = cuda ? ft_in.contiguous() : ft_in.to(F).contiguous();
  const Tensor fs = cuda ? fs_in.contiguous() : fs_in.to(F).contiguous();
  const Tensor u = u_in.to(F).contiguous(), v = v_in.to(F).contiguous();
  Tensor out = at::empty({sh.B, sh.G, sh.D, sh.H, sh.W}, ft.options());
  const bool run = out.numel() > 0 && sh.S > 0;
  if (cuda) {
#ifdef FASTDEPTH_WITH_CUDA
    if (run) {
      check_grid("features_target", (int64_t(sh.H) * sh.W + cost_volume::kBlock - 1) / cost_volume::kBlock, sh.D, sh.B);
      cost_volume_forward_cuda(image_type(ft), ft.data_ptr(), fs.data_ptr(), u.data_ptr<float>(), v.data_ptr<float>(),
                               out.data_ptr(), sh, o, current_stream(ft));
      check_launch();
    }
    return out;
#else
    TORCH_CHECK(false, "fastdepth_ext was built without CUDA");
#endif
  }
  if (run) {
    AT_DISPATCH_FLOATING_TYPES(F, "cost_volume_forward_cpu", [&] {
      cost_volume_forward_cpu<scalar_t>(ft.data_ptr<scalar_t>(), fs.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(),
                                        v.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), sh, o);
    });
  }
  return out.to(ft_in.scalar_type());
}

std::tuple<Tensor, Tensor, Tensor, Tensor> cost_volume_backward(const Tensor& grad_in, const Tensor& ft_in,
                                                                const Tensor& fs_in, const Tensor& u_in,
                                                                const Tensor& v_in, c10::string_view reduction,
                                                                int64_t groups, c10::string_view padding_mode,
                                                                bool align_corners, const c10::List<bool>& needs,
                                                                bool sweep) {
  check_option(needs.size() == 2, "needs must hold 2 flags (features, geometry)");
  const bool need_features = needs[0], need_geometry = needs[1];
  const cost_volume::Shape sh = prepare(ft_in, fs_in, u_in, v_in, reduction, groups);
  const cost_volume::Options o = options(sh, reduction, padding_mode, align_corners);
  check_same_device({&grad_in, &ft_in});
  check_shape("grad", grad_in, {sh.B, sh.G, sh.D, sh.H, sh.W});
  const c10::DeviceGuard guard(ft_in.device());
  const bool cuda = ft_in.is_cuda();
  const at::ScalarType F = cuda ? at::kFloat : cpu_type(ft_in, u_in);
  const auto image = [&](const Tensor& t) { return cuda ? t.to(ft_in.scalar_type()).contiguous() : t.to(F).contiguous(); };
  const Tensor grad = image(grad_in), ft = image(ft_in), fs = image(fs_in);
  const Tensor u = u_in.to(F).contiguous(), v = v_in.to(F).contiguous();
  const auto accum = at::TensorOptions().dtype(F).device(ft_in.device());
  const bool run = grad.numel() > 0 && sh.S > 0 && (need_features || need_geometry);
  // the CUDA kernels add into the gradients; the twin writes every element of them
  const auto gradient = [&](const Tensor& like, bool needed) {
    if (!needed) return at::empty({0}, accum);
    return cuda || !run ? at::zeros(like.sizes(), accum) : at::empty(like.sizes(), accum);
  };
  Tensor g_ft = gradient(ft, need_features), g_fs = gradient(fs, need_features);
  Tensor g_u = gradient(u, need_geometry), g_v = gradient(v, need_geometry);
  if (run) {
    if (cuda) {
#ifdef FASTDEPTH_WITH_CUDA
      check_grid("features_target", (int64_t(sh.H) * sh.W + cost_volume::kBlock - 1) / cost_volume::kBlock,
                 sweep && o.reduction != cost_volume::kVariance ? cost_volume::sweep_chunks(sh) : sh.D, sh.B);
      cost_volume_backward_cuda(image_type(ft), grad.data_ptr(), ft.data_ptr(), fs.data_ptr(), u.data_ptr<float>(),
                                v.data_ptr<float>(), ptr_or_null<float>(g_ft), ptr_or_null<float>(g_fs),
                                ptr_or_null<float>(g_u), ptr_or_null<float>(g_v), sh, o, sweep, current_stream(ft));
      check_launch();
#else
      TORCH_CHECK(false, "fastdepth_ext was built without CUDA");
#endif
    } else {
      AT_DISPATCH_FLOATING_TYPES(F, "cost_volume_backward_cpu", [&] {
        cost_volume_backward_cpu<scalar_t>(grad.data_ptr<scalar_t>(), ft.data_ptr<scalar_t>(), fs.data_ptr<scalar_t>(),
                                           u.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(g_ft),
                                           ptr_or_null<scalar_t>(g_fs), ptr_or_null<scalar_t>(g_u),
                                           ptr_or_null<scalar_t>(g_v), sh, o);
      });
    }
  }
  const auto back = [](const Tensor& t, const Tensor& like) { return t.numel() > 0 ? t.to(like.scalar_type()) : t; };
  return {back(g_ft, ft_in), back(g_fs, fs_in), back(g_u, u_in), back(g_v, v_in)};
}

}  // namespace
}  // namespace fastdepth

TORCH_LIBRARY_FRAGMENT(fastdepth_ext, m) {
  m.def(
      "cost_volume_projection(Tensor depth_hypotheses, Tensor poses, Tensor K, int height, int width) -> (Tensor, "
      "Tensor)");
  m.def(
      "cost_volume_forward(Tensor features_target, Tensor features_source, Tensor u, Tensor v, str reduction, "
      "int groups, str padding_mode, bool align_corners) -> Tensor");
  m.def(
      "cost_volume_backward(Tensor grad, Tensor features_target, Tensor features_source, Tensor u, Tensor v, "
      "str reduction, int groups, str padding_mode, bool align_corners, bool[] needs, bool sweep) -> (Tensor, Tensor, "
      "Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fastdepth_ext, CPU, m) {
  m.impl("cost_volume_projection", &fastdepth::cost_volume_projection);
  m.impl("cost_volume_forward", &fastdepth::cost_volume_forward);
  m.impl("cost_volume_backward", &fastdepth::cost_volume_backward);
}

#ifdef FASTDEPTH_WITH_CUDA
TORCH_LIBRARY_IMPL(fastdepth_ext, CUDA, m) {
  m.impl("cost_volume_projection", &fastdepth::cost_volume_projection);
  m.impl("cost_volume_forward", &fastdepth::cost_volume_forward);
  m.impl("cost_volume_backward", &fastdepth::cost_volume_backward);
}
#endif
