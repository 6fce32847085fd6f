// The CPU twin of the cost volume's CUDA kernels: the same per-pixel math (cost_volume.cuh) in
// OpenMP loops over (image, hypothesis, pixel). The backward's scatters go to per-thread gradient
// buffers (atomics would cost more than the arithmetic on a CPU), summed in thread order at the end:
// deterministic for a given thread count. No torch.
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cost_volume.cuh"

namespace fastdepth {

template <typename F>
void cost_volume_forward_cpu(const F* ft, const F* fs, const F* u, const F* v, F* out, const cost_volume::Shape& sh,
                             const cost_volume::Options& o) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
#pragma omp parallel for collapse(3) schedule(static)
  for (int64_t b = 0; b < sh.B; ++b) {
    for (int64_t d = 0; d < sh.D; ++d) {
      for (int64_t pix = 0; pix < HW; ++pix) cost_volume::forward_pixel(ft, fs, u, v, out, b, d, pix, sh, o);
    }
  }
}

template <typename F>
void cost_volume_backward_cpu(const F* grad, const F* ft, const F* fs, const F* u, const F* v, F* grad_ft, F* grad_fs,
                              F* grad_u, F* grad_v, const cost_volume::Shape& sh, const cost_volume::Options& o) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  const int64_t n_t = sh.B * sh.C * HW, n_s = sh.B * sh.S * sh.C * HW;
  const bool need_features = grad_ft != nullptr, need_geometry = grad_u != nullptr;
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
#else
  const int threads = 1;
#endif
  std::vector<F> part_t(need_features ? threads * n_t : 0), part_s(need_features ? threads * n_s : 0);
#pragma omp parallel num_threads(threads)
  {
#ifdef _OPENMP
    const int tid = omp_get_thread_num();
#else
    const int tid = 0;
#endif
    F* my_t = need_features ? part_t.data() + tid * n_t : nullptr;
    F* my_s = need_features ? part_s.data() + tid * n_s : nullptr;
    auto scatter_t = [=](int64_t at, F value) { my_t[at] += value; };
    auto scatter_s = [=](int64_t at, F value) { my_s[at] += value; };
#pragma omp for collapse(3) schedule(static)
    for (int64_t b = 0; b < sh.B; ++b) {
      for (int64_t d = 0; d < sh.D; ++d) {
        for (int64_t pix = 0; pix < HW; ++pix) {
          cost_volume::backward_pixel(grad, ft, fs, u, v, grad_u, grad_v, b, d, pix, sh, o, need_features,
                                      need_geometry, scatter_t, scatter_s);
        }
      }
    }
  }
  if (!need_features) return;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n_s; ++i) {
    F total = F(0);
    for (int t = 0; t < threads; ++t) total += part_s[t * n_s + i];
    grad_fs[i] = total;
    if (i < n_t) {
      F total_t = F(0);
      for (int t = 0; t < threads; ++t) total_t += part_t[t * n_t + i];
      grad_ft[i] = total_t;
    }
  }
}

template void cost_volume_forward_cpu<float>(const float*, const float*, const float*, const float*, float*,
                                             const cost_volume::Shape&, const cost_volume::Options&);
template void cost_volume_forward_cpu<double>(const double*, const double*, const double*, const double*, double*,
                                              const cost_volume::Shape&, const cost_volume::Options&);
template void cost_volume_backward_cpu<float>(const float*, const float*, const float*, const float*, const float*,
                                              float*, float*, float*, float*, const cost_volume::Shape&,
                                              const cost_volume::Options&);
template void cost_volume_backward_cpu<double>(const double*, const double*, const double*, const double*,
                                               const double*, double*, double*, double*, double*,
                                               const cost_volume::Shape&, const cost_volume::Options&);

}  // namespace fastdepth
