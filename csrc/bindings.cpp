// Torch glue of the CUDA C++ backend: argument checks, allocation, the current stream, and
// dispatch to the CUDA launchers (CUDA tensors) or the CPU twin (CPU tensors). Registers the ops
// torch.ops.fastdepth_ext.* for the CPU and CUDA dispatch keys. The public checks (shapes, dtypes,
// values) are in Python; these are the last line of defence against a crash.
#include <torch/library.h>

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>

#ifdef FASTDEPTH_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

#include "kernels.h"

namespace fastdepth {
namespace {

using at::Tensor;

void check_same_device(const std::vector<Tensor>& tensors) {
  for (const auto& t : tensors) {
    TORCH_CHECK(t.device() == tensors.front().device(), "fastdepth_ext: all tensors must be on one device, got ",
                t.device(), " and ", tensors.front().device());
  }
}

#ifdef FASTDEPTH_WITH_CUDA
ImageType image_type(const Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return ImageType::F32;
    case at::kHalf: return ImageType::F16;
    case at::kBFloat16: return ImageType::BF16;
    default: TORCH_CHECK(false, "fastdepth_ext: CUDA images must be float32, float16 or bfloat16, got ", t.scalar_type());
  }
}

void* current_stream(const Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

// CUDA's grid limits: the warp folds the batch into x; the photometric grid is (W tiles, H tiles, batch).
void check_grid(const char* name, int64_t x, int64_t y, int64_t z) {
  TORCH_CHECK_VALUE(x <= 2147483647 && y <= 65535 && z <= 65535, name, " is too large for one launch: it needs a grid of ",
                    x, " x ", y, " x ", z, " blocks, above CUDA's limits of 2147483647 x 65535 x 65535 (split the batch or the image)");
}

void check_launch() {
  const cudaError_t err = cudaGetLastError();
  TORCH_CHECK(err == cudaSuccess, "fastdepth_ext: kernel launch failed: ", cudaGetErrorString(err));
}
#endif

template <typename T>
T* ptr_or_null(const Tensor& t) {
  return t.numel() > 0 ? t.data_ptr<T>() : nullptr;
}

// The twin computes in the geometry dtype; 16-bit images are widened here and narrowed back.
at::ScalarType cpu_compute_type(const Tensor& geometry) {
  TORCH_CHECK(geometry.scalar_type() == at::kFloat || geometry.scalar_type() == at::kDouble,
              "fastdepth_ext: depth, pose and intrinsics must be float32 or float64, got ", geometry.scalar_type());
  return geometry.scalar_type();
}

warp::Shape warp_shape(const Tensor& image) {
  TORCH_CHECK(image.dim() == 5, "fastdepth_ext: image must be (B, S, C, H, W)");
  return {image.size(0), image.size(1), image.size(2), static_cast<int>(image.size(3)),
          static_cast<int>(image.size(4))};
}

std::tuple<Tensor, Tensor> warp_forward(const Tensor& image_in, const Tensor& depth_in, const Tensor& pose_in,
                                        const Tensor& K_in, bool normalize, bool border, double su, double ou,
                                        double sv, double ov, bool want_mask) {
  check_same_device({image_in, depth_in, pose_in, K_in});
  const c10::DeviceGuard guard(image_in.device());
  const warp::Shape sh = warp_shape(image_in);
  const warp::Options opt{{su, ou}, {sv, ov}, normalize, border};
  const Tensor depth = depth_in.contiguous(), pose = pose_in.contiguous(), K = K_in.contiguous();
  Tensor mask = at::empty(want_mask ? at::IntArrayRef{sh.B, sh.S, 1, sh.H, sh.W} : at::IntArrayRef{0},
                          image_in.options().dtype(at::kChar));
  int8_t* mask_ptr = want_mask ? mask.data_ptr<int8_t>() : nullptr;
  if (image_in.is_cuda()) {
#ifdef FASTDEPTH_WITH_CUDA
    TORCH_CHECK(depth.scalar_type() == at::kFloat, "fastdepth_ext: CUDA kernels take float32 geometry");
    const Tensor image = image_in.contiguous();
    Tensor out = at::empty_like(image);
    if (out.numel() > 0) {
      check_grid("image_src", warp_blocks(sh.H, sh.W) * sh.B, 1, 1);
      warp_forward_cuda(image_type(image), image.data_ptr(), depth.data_ptr<float>(), pose.data_ptr<float>(),
                        K.data_ptr<float>(), out.data_ptr(), mask_ptr, sh, opt, current_stream(image));
      check_launch();
    }
    return {out, mask.to(at::kBool)};
#else
    TORCH_CHECK(false, "fastdepth_ext was built without CUDA");
#endif
  }
  const at::ScalarType F = cpu_compute_type(depth);
  const Tensor image = image_in.to(F).contiguous();
  Tensor out = at::empty_like(image);
  if (out.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(F, "warp_forward_cpu", [&] {
      warp_forward_cpu<scalar_t>(image.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(), pose.data_ptr<scalar_t>(),
                                 K.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), mask_ptr, sh, opt);
    });
  }
  return {out.to(image_in.scalar_type()), mask.to(at::kBool)};
}

// Sums the per-block partials in a fixed order and lays out the pose and intrinsics gradients.
std::tuple<Tensor, Tensor> reduce_partials(const Tensor& pose_part, const Tensor& k_part, const warp::Shape& sh,
                                           bool need_pose, bool need_k) {
  Tensor g_pose = need_pose ? pose_part.sum(2).reshape({sh.B, sh.S, 4, 4}) : pose_part;
  Tensor g_k = k_part;
  if (need_k) {
    const Tensor g4 = k_part.sum(1);
    g_k = at::zeros({sh.B, 3, 3}, k_part.options());
    g_k.select(1, 0).select(1, 0).copy_(g4.select(1, 0));
    g_k.select(1, 1).select(1, 1).copy_(g4.select(1, 1));
    g_k.select(1, 0).select(1, 2).copy_(g4.select(1, 2));
    g_k.select(1, 1).select(1, 2).copy_(g4.select(1, 3));
  }
  return {g_pose, g_k};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> warp_backward(const Tensor& grad_in, const Tensor& image_in,
                                                         const Tensor& depth_in, const Tensor& pose_in,
                                                         const Tensor& K_in, bool normalize, bool border, double su,
                                                         double ou, double sv, double ov, const c10::List<bool>& need_list) {
  TORCH_CHECK(need_list.size() == 4, "fastdepth_ext: needs must hold 4 flags");
  const bool needs[4] = {need_list[0], need_list[1], need_list[2], need_list[3]};
  check_same_device({grad_in, image_in, depth_in, pose_in, K_in});
  const c10::DeviceGuard guard(image_in.device());
  const warp::Shape sh = warp_shape(image_in);
  const warp::Options opt{{su, ou}, {sv, ov}, normalize, border};
  const Tensor depth = depth_in.contiguous(), pose = pose_in.contiguous(), K = K_in.contiguous();
  const int64_t blocks = warp_blocks(sh.H, sh.W);
  const bool run = image_in.numel() > 0;
  const auto sized = [&](bool need, at::IntArrayRef shape, const at::TensorOptions& o) {
    return at::zeros(need ? shape : at::IntArrayRef{0}, o);
  };
  if (image_in.is_cuda()) {
#ifdef FASTDEPTH_WITH_CUDA
    TORCH_CHECK(depth.scalar_type() == at::kFloat, "fastdepth_ext: CUDA kernels take float32 geometry");
    const auto f32 = image_in.options().dtype(at::kFloat);
    const Tensor grad = grad_in.contiguous(), image = image_in.contiguous();
    Tensor g_image = sized(needs[0], image.sizes(), f32);
    Tensor g_depth = sized(needs[1], depth.sizes(), f32);
    Tensor pose_part = sized(needs[2], {sh.B, sh.S, blocks, warp::kPosePartials}, f32);
    Tensor k_part = sized(needs[3], {sh.B, blocks, warp::kIntrinsicsPartials}, f32);
    if (run) {
      check_grid("image_src", warp_blocks(sh.H, sh.W) * sh.B, 1, 1);
      warp_backward_cuda(image_type(image), grad.data_ptr(), image.data_ptr(), depth.data_ptr<float>(),
                         pose.data_ptr<float>(), K.data_ptr<float>(), ptr_or_null<float>(g_image),
                         ptr_or_null<float>(g_depth), ptr_or_null<float>(pose_part), ptr_or_null<float>(k_part), sh,
                         opt, current_stream(image));
      check_launch();
    }
    auto [g_pose, g_k] = reduce_partials(pose_part, k_part, sh, needs[2], needs[3]);
    return {needs[0] ? g_image.to(image_in.scalar_type()) : g_image, g_depth, g_pose, g_k};
#else
    TORCH_CHECK(false, "fastdepth_ext was built without CUDA");
#endif
  }
  const at::ScalarType F = cpu_compute_type(depth);
  const auto opts = depth.options();
  const Tensor grad = grad_in.to(F).contiguous(), image = image_in.to(F).contiguous();
  Tensor g_image = sized(needs[0], image.sizes(), opts);
  Tensor g_depth = sized(needs[1], depth.sizes(), opts);
  Tensor pose_part = sized(needs[2], {sh.B, sh.S, blocks, warp::kPosePartials}, opts);
  Tensor k_part = sized(needs[3], {sh.B, blocks, warp::kIntrinsicsPartials}, opts);
  if (run) {
    AT_DISPATCH_FLOATING_TYPES(F, "warp_backward_cpu", [&] {
      warp_backward_cpu<scalar_t>(grad.data_ptr<scalar_t>(), image.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(),
                                  pose.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(g_image),
                                  ptr_or_null<scalar_t>(g_depth), ptr_or_null<scalar_t>(pose_part),
                                  ptr_or_null<scalar_t>(k_part), sh, opt);
    });
  }
  auto [g_pose, g_k] = reduce_partials(pose_part, k_part, sh, needs[2], needs[3]);
  return {needs[0] ? g_image.to(image_in.scalar_type()) : g_image, g_depth, g_pose, g_k};
}

photometric::Shape photometric_shape(const Tensor& warped, const c10::optional<Tensor>& identity) {
  TORCH_CHECK(warped.dim() == 5, "fastdepth_ext: warped must be (B, S, C, H, W)");
  return {warped.size(0), identity.has_value() ? identity->size(1) : 0, warped.size(1), warped.size(2),
          static_cast<int>(warped.size(3)), static_cast<int>(warped.size(4))};
}

std::tuple<Tensor, Tensor> photometric_forward(const Tensor& target_in, const Tensor& warped_in,
                                               const c10::optional<Tensor>& identity_in, double alpha,
                                               bool want_index) {
  check_same_device({target_in, warped_in});
  const c10::DeviceGuard guard(target_in.device());
  const photometric::Shape sh = photometric_shape(warped_in, identity_in);
  Tensor index = at::empty(want_index ? at::IntArrayRef{sh.B, 1, sh.H, sh.W} : at::IntArrayRef{0},
                           target_in.options().dtype(at::kLong));
  int64_t* index_ptr = want_index ? index.data_ptr<int64_t>() : nullptr;
  const bool run = sh.B > 0 && sh.C > 0;
  // the compute type on the CPU: float64 stays, everything else is computed in float32
  const at::ScalarType F = target_in.is_cuda() || target_in.scalar_type() != at::kDouble ? at::kFloat : at::kDouble;
  const Tensor target = target_in.is_cuda() ? target_in.contiguous() : target_in.to(F).contiguous();
  const Tensor warped = target_in.is_cuda() ? warped_in.contiguous() : warped_in.to(F).contiguous();
  const Tensor identity = !identity_in.has_value() ? warped
                          : target_in.is_cuda()    ? identity_in->contiguous()
                                                   : identity_in->to(F).contiguous();
  Tensor loss = at::empty({sh.B, 1, sh.H, sh.W}, target.options());
  if (target_in.is_cuda()) {
#ifdef FASTDEPTH_WITH_CUDA
    if (run) {
      check_grid("target", (sh.W + kTileW - 1) / kTileW, (sh.H + kTileH - 1) / kTileH, sh.B);
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
                                                        const c10::List<bool>& need_list) {
  TORCH_CHECK(need_list.size() == 3, "fastdepth_ext: needs must hold 3 flags");
  const bool needs[3] = {need_list[0], need_list[1], need_list[2]};
  check_same_device({grad_in, target_in, warped_in});
  const c10::DeviceGuard guard(target_in.device());
  const photometric::Shape sh = photometric_shape(warped_in, identity_in);
  const bool cuda = target_in.is_cuda();
  const at::ScalarType F = cuda || target_in.scalar_type() != at::kDouble ? at::kFloat : at::kDouble;
  const auto prepare = [&](const Tensor& t) { return cuda ? t.contiguous() : t.to(F).contiguous(); };
  const Tensor grad = prepare(grad_in), target = prepare(target_in), warped = prepare(warped_in);
  const Tensor identity = identity_in.has_value() ? prepare(*identity_in) : warped;
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
      check_grid("target", (sh.W + kTileW - 1) / kTileW, (sh.H + kTileH - 1) / kTileH, sh.B);
      const auto ptr = [](Tensor& t) { return t.numel() > 0 ? t.data_ptr() : nullptr; };
      photometric_backward_cuda(image_type(target), grad.data_ptr(), index_ptr, target.data_ptr(),
                                identity.data_ptr(), warped.data_ptr(), ptr(g_target), ptr(g_identity),
                                ptr(g_warped), sh, static_cast<float>(alpha), current_stream(target));
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

TORCH_LIBRARY(fastdepth_ext, m) {
  m.def(
      "warp_forward(Tensor image, Tensor depth, Tensor pose, Tensor K, bool normalize, bool border, float su, "
      "float ou, float sv, float ov, bool want_mask) -> (Tensor, Tensor)");
  m.def(
      "warp_backward(Tensor grad_out, Tensor image, Tensor depth, Tensor pose, Tensor K, bool normalize, "
      "bool border, float su, float ou, float sv, float ov, bool[] needs) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "photometric_forward(Tensor target, Tensor warped, Tensor? identity, float alpha, bool want_index) "
      "-> (Tensor, Tensor)");
  m.def(
      "photometric_backward(Tensor grad, Tensor? index, Tensor target, Tensor warped, Tensor? identity, "
      "float alpha, bool[] needs) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fastdepth_ext, CPU, m) {
  m.impl("warp_forward", &fastdepth::warp_forward);
  m.impl("warp_backward", &fastdepth::warp_backward);
  m.impl("photometric_forward", &fastdepth::photometric_forward);
  m.impl("photometric_backward", &fastdepth::photometric_backward);
}

#ifdef FASTDEPTH_WITH_CUDA
TORCH_LIBRARY_IMPL(fastdepth_ext, CUDA, m) {
  m.impl("warp_forward", &fastdepth::warp_forward);
  m.impl("warp_backward", &fastdepth::warp_backward);
  m.impl("photometric_forward", &fastdepth::photometric_forward);
  m.impl("photometric_backward", &fastdepth::photometric_backward);
}
#endif
