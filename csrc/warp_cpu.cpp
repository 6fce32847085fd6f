// The CPU twin of the warp's CUDA kernels: the same per-pixel math (warp.cuh) driven by host loops,
// parallel over pixels with OpenMP. Structured like warp.cu: one loop body per CUDA thread, the
// per-block partial sums over the same blocks of pixels. No torch.
#include <algorithm>
#include <vector>

#include "warp.cuh"

namespace fastdepth {

template <typename F>
void warp_forward_cpu(const F* image, const F* depth, const F* pose, const F* K, F* out, int8_t* mask,
                      const warp::Shape& sh, const warp::Options& opt) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < sh.B; ++b) {
    for (int64_t pix = 0; pix < HW; ++pix) {
      const warp::Pixel<F> p = warp::make_pixel(depth, K, b, pix, sh, opt.normalize);
      for (int64_t s = 0; s < sh.S; ++s) warp::forward_source(image, pose, out, mask, p, b * sh.S + s, pix, sh, opt);
    }
  }
}

template <typename F>
void warp_backward_cpu(const F* grad_out, const F* image, const F* depth, const F* pose, const F* K, F* grad_image,
                       long long* grad_fixed, const F* fixed_scale, F* grad_depth, F* pose_partials, F* k_partials,
                       const warp::Shape& sh, const warp::Options& opt) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  const int64_t blocks = warp::blocks_per_image(sh.H, sh.W);
  const bool need_geometry = grad_depth != nullptr || pose_partials != nullptr || k_partials != nullptr;
  const bool need_image = grad_image != nullptr || grad_fixed != nullptr;
  const F scale = grad_fixed != nullptr ? *fixed_scale : F(1);
  // the image gradient is a scatter: atomic adds, as on the GPU (integer ones are deterministic)
  auto scatter = [=](int64_t at, F v) {
    if (grad_fixed != nullptr) {
      const long long q = warp::to_fixed(v * scale);
#pragma omp atomic
      grad_fixed[at] += q;
    } else {
#pragma omp atomic
      grad_image[at] += v;
    }
  };
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < sh.B; ++b) {
    for (int64_t block = 0; block < blocks; ++block) {
      F gK[warp::kIntrinsicsPartials] = {};
      std::vector<F> gT(sh.S * warp::kPosePartials, F(0));
      for (int64_t pix = block * warp::kBlock; pix < std::min<int64_t>(HW, (block + 1) * warp::kBlock); ++pix) {
        const warp::Pixel<F> p = warp::make_pixel(depth, K, b, pix, sh, opt.normalize);
        F gP[3] = {};
        for (int64_t s = 0; s < sh.S; ++s) {
          warp::backward_source(grad_out, image, pose, need_image, p, b * sh.S + s, pix, sh, opt, need_geometry,
                                gT.data() + s * warp::kPosePartials, gK, gP, scatter);
        }
        if (grad_depth != nullptr || k_partials != nullptr) {
          const F gd = warp::ray_backward(p.d, p.ray, p.k, gP, opt.normalize, gK);
          if (grad_depth != nullptr) grad_depth[b * HW + pix] = gd;
        }
      }
      if (pose_partials != nullptr) {
        for (int64_t s = 0; s < sh.S; ++s) {
          F* part = pose_partials + ((b * sh.S + s) * blocks + block) * warp::kPosePartials;
          for (int i = 0; i < warp::kPosePartials; ++i) part[i] = gT[s * warp::kPosePartials + i];
        }
      }
      if (k_partials != nullptr) {
        F* part = k_partials + (b * blocks + block) * warp::kIntrinsicsPartials;
        for (int i = 0; i < warp::kIntrinsicsPartials; ++i) part[i] = gK[i];
      }
    }
  }
}

template void warp_forward_cpu<float>(const float*, const float*, const float*, const float*, float*, int8_t*,
                                      const warp::Shape&, const warp::Options&);
template void warp_forward_cpu<double>(const double*, const double*, const double*, const double*, double*, int8_t*,
                                       const warp::Shape&, const warp::Options&);
template void warp_backward_cpu<float>(const float*, const float*, const float*, const float*, const float*, float*,
                                       long long*, const float*, float*, float*, float*, const warp::Shape&,
                                       const warp::Options&);
template void warp_backward_cpu<double>(const double*, const double*, const double*, const double*, const double*,
                                        double*, long long*, const double*, double*, double*, double*,
                                        const warp::Shape&, const warp::Options&);

}  // namespace fastdepth
