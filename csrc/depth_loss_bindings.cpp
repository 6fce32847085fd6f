// Torch glue of the supervised depth losses: checks, allocation, and dispatch to the CUDA launchers
// (depth_loss.cu) for CUDA tensors or to the CPU twin (depth_loss_cpu.cpp) for CPU tensors.
// Registers fastdepth_ext::depth_loss_forward and fastdepth_ext::depth_loss_backward, whose
// arguments are those of the Triton launchers in kernels/depth_loss.py.
#include "bindings.h"
#include "depth_loss.cuh"

namespace fastdepth {
namespace {

using at::Tensor;
using namespace bindings;

// Checks what the kernels read: pred and target (B, N) of one float dtype, the mask (B, N) bool.
depth_loss::Shape prepare(const Tensor& pred, const Tensor& target, const c10::optional<Tensor>& mask,
                          bool disparity, bool squared) {
  check_same_device({&pred, &target});
  check_shape("pred", pred, {-1, -1});
  const int64_t B = pred.size(0), N = pred.size(1);
  check_shape("target", target, {B, N});
  check_float("pred", pred);
  TORCH_CHECK_TYPE(target.scalar_type() == pred.scalar_type(), "fastdepth_ext: target and pred must share a dtype");
  if (mask.has_value()) {
    check_same_device({&pred, &*mask});
    check_shape("mask", *mask, {B, N});
    TORCH_CHECK_TYPE(mask->scalar_type() == at::kBool, "fastdepth_ext: mask must be bool");
  }
  check_option(N < (int64_t(1) << 31), "N (pixels per image) must be below 2**31");
  const int blocks = static_cast<int>((N + depth_loss::kBlock - 1) / depth_loss::kBlock);
  return {B, N, blocks, disparity, squared};
}

void check_coeffs(const Tensor& coeffs, const Tensor& pred, int64_t columns) {
  check_same_device({&coeffs, &pred});
  check_shape("coeffs", coeffs, {pred.size(0), columns});
  TORCH_CHECK_TYPE(coeffs.scalar_type() == at::kDouble, "fastdepth_ext: coeffs must be float64");
}

// The compute type on the CPU: float64 stays, everything else is computed in float32.
at::ScalarType cpu_type(const Tensor& t) { return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

Tensor depth_loss_forward(const Tensor& pred_in, const Tensor& target_in, const c10::optional<Tensor>& mask_in,
                          const c10::optional<Tensor>& coeffs_in, c10::string_view stage_name, bool disparity,
                          bool squared) {
  const depth_loss::Shape sh = prepare(pred_in, target_in, mask_in, disparity, squared);
  int stage = -1;
  if (stage_name == "log_moments") stage = depth_loss::kLogMoments;
  if (stage_name == "align_moments") stage = depth_loss::kAlignMoments;
  if (stage_name == "residual") stage = depth_loss::kResidual;
  check_option(stage >= 0, "stage must be log_moments, align_moments or residual");
  check_option(coeffs_in.has_value() == (stage == depth_loss::kResidual),
               "coeffs (the alignment's moments) are for the residual stage");
  const c10::DeviceGuard guard(pred_in.device());
  const bool cuda = pred_in.is_cuda();
  const auto prepare_image = [&](const Tensor& t) { return cuda ? t.contiguous() : t.to(cpu_type(t)).contiguous(); };
  const Tensor pred = prepare_image(pred_in), target = prepare_image(target_in);
  const Tensor mask = mask_in.has_value() ? mask_in->contiguous() : Tensor();
  const bool* mask_ptr = mask_in.has_value() ? mask.data_ptr<bool>() : nullptr;
  Tensor coeffs = at::zeros({sh.B, depth_loss::kSums}, pred.options().dtype(at::kDouble));
  if (coeffs_in.has_value()) {
    check_coeffs(*coeffs_in, pred_in, depth_loss::kSums);
    coeffs = coeffs_in->contiguous();
  }
  Tensor partial = at::zeros({sh.B, sh.blocks, depth_loss::kSums}, pred.options().dtype(at::kDouble));
  const bool run = sh.B > 0 && sh.N > 0;
  if (cuda) {
#ifdef FASTDEPTH_WITH_CUDA
    if (run) {
      check_grid("pred", sh.blocks, sh.B, 1);
      depth_loss_forward_cuda(image_type(pred), pred.data_ptr(), target.data_ptr(), mask_ptr,
                              coeffs.data_ptr<double>(), partial.data_ptr<double>(), stage, sh, current_stream(pred));
      check_launch();
    }
    return partial.sum(1);
#else
    TORCH_CHECK(false, "fastdepth_ext was built without CUDA");
#endif
  }
  if (run) {
    AT_DISPATCH_FLOATING_TYPES(pred.scalar_type(), "depth_loss_forward_cpu", [&] {
      depth_loss_forward_cpu<scalar_t>(pred.data_ptr<scalar_t>(), target.data_ptr<scalar_t>(), mask_ptr,
                                       coeffs.data_ptr<double>(), partial.data_ptr<double>(), stage, sh);
    });
  }
  return partial.sum(1);
}

Tensor depth_loss_backward(const Tensor& coeffs_in, const Tensor& pred_in, const Tensor& target_in,
                           const c10::optional<Tensor>& mask_in, c10::string_view loss_name, bool disparity,
                           bool squared) {
  const depth_loss::Shape sh = prepare(pred_in, target_in, mask_in, disparity, squared);
  int loss = -1;
  if (loss_name == "scale_invariant") loss = depth_loss::kScaleInvariant;
  if (loss_name == "scale_shift_invariant") loss = depth_loss::kScaleShiftInvariant;
  check_option(loss >= 0, "loss must be scale_invariant or scale_shift_invariant");
  check_coeffs(coeffs_in, pred_in, loss == depth_loss::kScaleInvariant ? depth_loss::kCoeffs : depth_loss::kShiftInputs);
  const c10::DeviceGuard guard(pred_in.device());
  const bool cuda = pred_in.is_cuda();
  const auto prepare_image = [&](const Tensor& t) { return cuda ? t.contiguous() : t.to(cpu_type(t)).contiguous(); };
  const Tensor pred = prepare_image(pred_in), target = prepare_image(target_in), coeffs = coeffs_in.contiguous();
  const Tensor mask = mask_in.has_value() ? mask_in->contiguous() : Tensor();
  const bool* mask_ptr = mask_in.has_value() ? mask.data_ptr<bool>() : nullptr;
  Tensor grad_pred = at::empty_like(pred);
  const bool run = sh.B > 0 && sh.N > 0;
  if (cuda) {
#ifdef FASTDEPTH_WITH_CUDA
    if (run) {
      check_grid("pred", sh.blocks, sh.B, 1);
      depth_loss_backward_cuda(image_type(pred), coeffs.data_ptr<double>(), pred.data_ptr(), target.data_ptr(),
                               mask_ptr, grad_pred.data_ptr(), loss, sh, current_stream(pred));
      check_launch();
    }
    return grad_pred;
#else
    TORCH_CHECK(false, "fastdepth_ext was built without CUDA");
#endif
  }
  if (run) {
    AT_DISPATCH_FLOATING_TYPES(pred.scalar_type(), "depth_loss_backward_cpu", [&] {
      depth_loss_backward_cpu<scalar_t>(coeffs.data_ptr<double>(), pred.data_ptr<scalar_t>(),
                                        target.data_ptr<scalar_t>(), mask_ptr, grad_pred.data_ptr<scalar_t>(), loss,
                                        sh);
    });
  }
  return grad_pred.to(pred_in.scalar_type());
}

}  // namespace
}  // namespace fastdepth

TORCH_LIBRARY_FRAGMENT(fastdepth_ext, m) {
  m.def(
      "depth_loss_forward(Tensor pred, Tensor target, Tensor? mask, Tensor? coeffs, str stage, bool disparity, "
      "bool squared) -> Tensor");
  m.def(
      "depth_loss_backward(Tensor coeffs, Tensor pred, Tensor target, Tensor? mask, str loss, bool disparity, "
      "bool squared) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastdepth_ext, CPU, m) {
  m.impl("depth_loss_forward", &fastdepth::depth_loss_forward);
  m.impl("depth_loss_backward", &fastdepth::depth_loss_backward);
}

#ifdef FASTDEPTH_WITH_CUDA
TORCH_LIBRARY_IMPL(fastdepth_ext, CUDA, m) {
  m.impl("depth_loss_forward", &fastdepth::depth_loss_forward);
  m.impl("depth_loss_backward", &fastdepth::depth_loss_backward);
}
#endif
