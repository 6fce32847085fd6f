// Torch glue of the photometric op: checks, allocation, and dispatch to the CUDA launchers
// (photometric.cu) for CUDA tensors or to the CPU twin (photometric_cpu.cpp) for CPU tensors.
// Registers fastdepth_ext::photometric_forward and fastdepth_ext::photometric_backward, whose
// arguments are those of the Triton launchers in kernels/photometric.py.
#include "bindings.h"
#include "photometric.cuh"

namespace fastdepth {
namespace {

using at::Tensor;
using namespace bindings;

// Checks what the kernels read: the target (B, C, H, W) and the candidates (B, S, C, H, W), one dtype.
photometric::Shape prepare(const Tensor& target, const Tensor& warped, const c10::optional<Tensor>& identity) {
  check_same_device({&target, &warped});
  check_shape("target", target, {-1, -1, -1, -1});
  const int64_t B = target.size(0), C = target.size(1), H = target.size(2), W = target.size(3);
  check_shape("warped", warped, {B, -1, C, H, W});
  check_float("target", target);
  TORCH_CHECK_TYPE(warped.scalar_type() == target.scalar_type(), "fastdepth_ext: warped and target must share a dtype");
  if (identity.has_value()) {
    check_same_device({&target, &*identity});
    check_shape("identity", *identity, {B, -1, C, H, W});
    TORCH_CHECK_TYPE(identity->scalar_type() == target.scalar_type(),
                     "fastdepth_ext: identity and target must share a dtype");
  }
  check_option(H >= 2 && W >= 2, "H and W must be at least 2 (reflection padding)");
  check_option(H * W < (int64_t(1) << 31), "H * W must be below 2**31");
  return {B, identity.has_value() ? identity->size(1) : 0, warped.size(1), C, static_cast<int>(H),
          static_cast<int>(W)};
}

std::tuple<Tensor, Tensor> photometric_forward(const Tensor& target_in, const Tensor& warped_in,
                                               const c10::optional<Tensor>& identity_in, double alpha,
                                               bool want_index) {
  const photometric::Shape sh = prepare(target_in, warped_in, identity_in);
  const c10::DeviceGuard guard(target_in.device());
  Tensor index = at::zeros(want_index ? at::IntArrayRef{sh.B, 1, sh.H, sh.W} : at::IntArrayRef{0},
                           target_in.options().dtype(at::kLong));
  int64_t* index_ptr = want_index ? ptr_or_null<int64_t>(index) : nullptr;
  const bool run = sh.B > 0 && sh.C > 0;
  // the compute type on the CPU: float64 stays, everything else is computed in float32
  const bool cuda = target_in.is_cuda();
  const at::ScalarType F = cuda || target_in.scalar_type() != at::kDouble ? at::kFloat : at::kDouble;
  const auto prepare_image = [&](const Tensor& t) { return cuda ? t.contiguous() : t.to(F).contiguous(); };
  const Tensor target = prepare_image(target_in), warped = prepare_image(warped_in);
  const Tensor identity = identity_in.has_value() ? prepare_image(*identity_in) : warped;
  Tensor loss = at::empty({sh.B, 1, sh.H, sh.W}, target.options());
  if (cuda) {
#ifdef FASTDEPTH_WITH_CUDA
    if (run) {
      check_grid("target", (sh.W + photometric::kTileW - 1) / photometric::kTileW,
                 (sh.H + photometric::kTileH - 1) / photometric::kTileH, sh.B);
      photometric_forward_cuda(image_type(target), target.data_ptr(), identity.data_ptr(), warped.data_ptr(),
                               loss.data_ptr(), index_ptr, sh, static_cast<float>(alpha), current_stream(target));
      check_launch();
    }
    return {loss, index};
#else
    TORCH_CHECK(false, "fastdepth_ext was built without CUDA");
#endif
  }
  if (run) {
    AT_DISPATCH_FLOATING_TYPES(F, "photometric_forward_cpu", [&] {
      photometric_forward_cpu<scalar_t>(target.data_ptr<scalar_t>(), identity.data_ptr<scalar_t>(),
                                        warped.data_ptr<scalar_t>(), loss.data_ptr<scalar_t>(), index_ptr, sh,
                                        static_cast<scalar_t>(alpha));
    });
  }
  return {loss.to(target_in.scalar_type()), index};
}

std::tuple<Tensor, Tensor, Tensor> photometric_backward(const Tensor& grad_in, const c10::optional<Tensor>& index_in,
                                                        const Tensor& target_in, const Tensor& warped_in,
                                                        const c10::optional<Tensor>& identity_in, double alpha,
                                                        const c10::List<bool>& need_list, bool tile) {
  check_option(need_list.size() == 3, "needs must hold 3 flags");
  const bool needs[3] = {need_list[0], need_list[1], need_list[2]};
  const photometric::Shape sh = prepare(target_in, warped_in, identity_in);
  check_same_device({&grad_in, &target_in});
  check_shape("grad", grad_in, {sh.B, 1, sh.H, sh.W});
  if (index_in.has_value()) {
    check_same_device({&*index_in, &target_in});
    check_shape("index", *index_in, {sh.B, 1, sh.H, sh.W});
    TORCH_CHECK_TYPE(index_in->scalar_type() == at::kLong, "fastdepth_ext: index must be int64");
  }
  const c10::DeviceGuard guard(target_in.device());
  const bool cuda = target_in.is_cuda();
  const at::ScalarType F = cuda || target_in.scalar_type() != at::kDouble ? at::kFloat : at::kDouble;
  const auto prepare_image = [&](const Tensor& t) {
    return cuda ? t.to(target_in.scalar_type()).contiguous() : t.to(F).contiguous();
  };
  const Tensor grad = prepare_image(grad_in), target = prepare_image(target_in), warped = prepare_image(warped_in);
  const Tensor identity = identity_in.has_value() ? prepare_image(*identity_in) : warped;
  const Tensor index = index_in.has_value() ? index_in->contiguous() : Tensor();
  const int64_t* index_ptr = index_in.has_value() ? index.data_ptr<int64_t>() : nullptr;
  const bool need_identity = needs[2] && identity_in.has_value();
  Tensor g_target = needs[0] ? at::empty_like(target) : at::empty({0}, target.options());
  Tensor g_warped = needs[1] ? at::empty_like(warped) : at::empty({0}, target.options());
  Tensor g_identity = need_identity ? at::empty_like(identity) : at::empty({0}, target.options());
  const bool run = sh.B > 0 && sh.C > 0 && (needs[0] || needs[1] || need_identity);
  if (cuda) {
#ifdef FASTDEPTH_WITH_CUDA
    if (run) {
      if (tile) {
        check_grid("target", photometric::tile_backward_tiles_w(sh.W), photometric::tile_backward_tiles_h(sh.H), sh.B);
      } else {
        check_grid("target", (sh.W + photometric::kTileW - 1) / photometric::kTileW,
                   (sh.H + photometric::kTileH - 1) / photometric::kTileH, sh.B);
      }
      const auto ptr = [](Tensor& t) { return t.numel() > 0 ? t.data_ptr() : nullptr; };
      photometric_backward_cuda(image_type(target), grad.data_ptr(), index_ptr, target.data_ptr(),
                                identity.data_ptr(), warped.data_ptr(), ptr(g_target), ptr(g_identity),
                                ptr(g_warped), sh, static_cast<float>(alpha), tile, current_stream(target));
      check_launch();
    }
    return {g_target, g_warped, g_identity};
#else
    TORCH_CHECK(false, "fastdepth_ext was built without CUDA");
#endif
  }
  if (run) {
    AT_DISPATCH_FLOATING_TYPES(F, "photometric_backward_cpu", [&] {
      photometric_backward_cpu<scalar_t>(
          grad.data_ptr<scalar_t>(), index_ptr, target.data_ptr<scalar_t>(), identity.data_ptr<scalar_t>(),
          warped.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(g_target), ptr_or_null<scalar_t>(g_identity),
          ptr_or_null<scalar_t>(g_warped), sh, static_cast<scalar_t>(alpha));
    });
  }
  const auto back = [&](const Tensor& t) { return t.numel() > 0 ? t.to(target_in.scalar_type()) : t; };
  return {back(g_target), back(g_warped), back(g_identity)};
}

}  // namespace
}  // namespace fastdepth

TORCH_LIBRARY_FRAGMENT(fastdepth_ext, m) {
  m.def(
      "photometric_forward(Tensor target, Tensor warped, Tensor? identity, float alpha, bool want_index) "
      "-> (Tensor, Tensor)");
  m.def(
      "photometric_backward(Tensor grad, Tensor? index, Tensor target, Tensor warped, Tensor? identity, "
      "float alpha, bool[] needs, bool tile) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fastdepth_ext, CPU, m) {
  m.impl("photometric_forward", &fastdepth::photometric_forward);
  m.impl("photometric_backward", &fastdepth::photometric_backward);
}

#ifdef FASTDEPTH_WITH_CUDA
TORCH_LIBRARY_IMPL(fastdepth_ext, CUDA, m) {
  m.impl("photometric_forward", &fastdepth::photometric_forward);
  m.impl("photometric_backward", &fastdepth::photometric_backward);
}
#endif
