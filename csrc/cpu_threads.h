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

// The (batch element, item) pairs of the elements [b0, b0 + nb), per_b items each, split into
// `shares` contiguous shares as schedule(static) would split them: share t holds the pairs
// [first(t), first(t + 1)). An element whose pairs all fall in one share is that share's own: its
// thread may write the element's outputs directly. An element split between shares is shared: its
// outputs go through per-share buffers, added in share order at the end; an own element's sums are
// what that would give, bit for bit (0 + x + 0 = x).
struct BatchShares {
  int64_t b0, nb, per_b, shares;
  int64_t first(int64_t t) const { return nb * per_b * t / shares; }
  int64_t share_of(int64_t pair) const {
    int64_t t = 0;
    while (t + 1 < shares && first(t + 1) <= pair) ++t;
    return t;
  }
  int64_t owner(int64_t b) const { return share_of((b - b0) * per_b); }
  bool shared(int64_t b) const { return owner(b) != share_of((b - b0 + 1) * per_b - 1); }
  bool any_shared() const {
    for (int64_t b = b0; b < b0 + nb; ++b) {
      if (shared(b)) return true;
    }
    return false;
  }
};

template <typename T>
void fill_zero(T* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = T(0);
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
