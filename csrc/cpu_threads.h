// OpenMP helpers of the CPU twins. Where a GPU kernel scatters a gradient with atomics, a twin
// adds into a buffer of its own thread instead (an atomic float add is a compare-and-swap loop on
// a CPU, dearer than the arithmetic around it); the buffers are then summed in thread order, so the
// result is deterministic for a given thread count. No torch.
#pragma once

#include <cstdint>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastdepth {

inline int thread_count() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// The threads of the current parallel region (OpenMP may give it fewer than thread_count()).
inline int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// out[i] = the sum over threads t, in order, of parts[t * stride + i], for i in [0, n).
template <typename T>
void sum_thread_parts(const T* parts, int threads, int64_t n, int64_t stride, T* out) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T total = T(0);
    for (int t = 0; t < threads; ++t) total += parts[t * stride + i];
    out[i] = total;
  }
}

}  // namespace fastdepth
