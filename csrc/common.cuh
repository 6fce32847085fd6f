// Shared definitions of the fastdepth kernels: the host/device qualifier, the image storage types and
// loads/stores that convert them to the compute type F. No torch, no CUDA runtime calls.
// (The CPU twin handles float and double; the bindings convert 16-bit images on the CPU.)
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#ifdef __CUDACC__
#define FD_HD __host__ __device__ __forceinline__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#else
#define FD_HD inline
#endif

namespace fastdepth {

// Image storage of the CUDA launchers (the CPU twin takes float or double, typed).
enum class ImageType : int { F32 = 0, F16 = 1, BF16 = 2 };

// Loads and stores in the compute type F.
template <typename F>
FD_HD F load_as(const float* p) {
  return static_cast<F>(*p);
}
template <typename F>
FD_HD F load_as(const double* p) {
  return static_cast<F>(*p);
}
template <typename F>
FD_HD void store_as(float* p, F v) {
  *p = static_cast<float>(v);
}
template <typename F>
FD_HD void store_as(double* p, F v) {
  *p = static_cast<double>(v);
}
#ifdef __CUDACC__
template <typename F>
FD_HD F load_as(const __half* p) {
  return static_cast<F>(__half2float(*p));
}
template <typename F>
FD_HD F load_as(const __nv_bfloat16* p) {
  return static_cast<F>(__bfloat162float(*p));
}
template <typename F>
FD_HD void store_as(__half* p, F v) {
  *p = __float2half(static_cast<float>(v));
}
template <typename F>
FD_HD void store_as(__nv_bfloat16* p, F v) {
  *p = __float2bfloat16(static_cast<float>(v));
}
#endif

template <typename F>
FD_HD F fd_min(F a, F b) {
  return a < b ? a : b;
}
template <typename F>
FD_HD F fd_max(F a, F b) {
  return a > b ? a : b;
}
// clamp(v, 0, 1) that keeps NaN, as torch.clamp does (fd_min / fd_max return the other operand).
template <typename F>
FD_HD F fd_clamp01(F v) {
  return v != v ? v : fd_min(fd_max(v, F(0)), F(1));
}
// |a|. On the host without a branch: a compare-and-negate compiles to one there, mispredicted half
// of the time where the sign is random (the cost volume's l1 reduction). The device keeps the
// select it always compiled to (fabsf there changes the warp backward's register allocation).
template <typename F>
FD_HD F fd_abs(F a) {
#ifdef __CUDA_ARCH__
  return a < F(0) ? -a : a;
#else
  return std::fabs(a);
#endif
}
// floor(x) for |x| < 2**31. On the host it avoids libm: without SSE4.1 (the baseline x86-64 the
// extension is compiled for) std::floor is a library call, which made it the CPU twins' hot spot.
template <typename F>
FD_HD F fd_floor_small(F x) {
#ifdef __CUDA_ARCH__
  return floor(x);
#else
  const F truncated = static_cast<F>(static_cast<int>(x));
  return truncated > x ? truncated - F(1) : truncated;
#endif
}
// on ? v : 0. On the host as a bit mask: written as a select, GCC sinks the computation of v into a
// branch and then cannot vectorise the CPU twins' loops around it ("control flow in loop").
template <typename F>
FD_HD F keep_if(bool on, F v) {
#ifdef __CUDA_ARCH__
  return on ? v : F(0);
#else
  using Bits = std::conditional_t<sizeof(F) == 4, uint32_t, uint64_t>;
  return __builtin_bit_cast(F, __builtin_bit_cast(Bits, v) & (Bits(0) - Bits(on)));
#endif
}
// The natural log in the compute type on host and device (the host's global log is double only).
FD_HD float fd_log(float x) { return logf(x); }
FD_HD double fd_log(double x) { return log(x); }

}  // namespace fastdepth
