// The CPU twins' vector math. Where the build links glibc's libmvec (FASTDEPTH_VECTOR_MATH, set by
// fastdepth/_cuda.py when a probe links), logf and log are declared with their SIMD variants, so that
// GCC vectorises the loops that call them (a libmvec call per 8 floats or 4 doubles at AVX2) instead
// of calling the scalar function once per pixel. libmvec's logs are within 4 ULP of the exact
// logarithm, the scalar libm's and the GPU's within 1: the twin's logs may differ from the GPU's in
// the last bits, as the host's scalar ones already may. No torch.
#pragma once

#include <cmath>

#ifdef FASTDEPTH_VECTOR_MATH
extern "C" float logf(float) noexcept __attribute__((simd("notinbranch")));
extern "C" double log(double) noexcept __attribute__((simd("notinbranch")));
#endif

namespace fastdepth {

#ifdef FASTDEPTH_VECTOR_MATH
constexpr bool kVectorMath = true;
#else
constexpr bool kVectorMath = false;
#endif

}  // namespace fastdepth
