// The CPU twin of the warp's CUDA kernels: the same per-pixel math (warp.cuh) driven by host loops,
// parallel with OpenMP. Structured like warp.cu (the backward's per-block partial sums over the same
// blocks of pixels, added in the same order), except that the geometry of a row or block is
// computed first, vectorised (warp_rows.h), and then sampled pixel by pixel, and that the image
// gradient goes to per-thread buffers, not atomics (cpu_threads.h). No torch.
#include <algorithm>
#include <vector>

#include "cpu_threads.h"
#include "warp_rows.h"

namespace fastdepth {

template <typename F>
void warp_forward_cpu(const F* image, const F* depth, const F* pose, const F* K, F* out, int8_t* mask,
                      const warp::Shape& sh, const warp::Options& opt) {
  using Span = warp::SpanGeometry<F>;
#pragma omp parallel
  {
    Span span(sh.W, false);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < sh.B; ++b) {
      for (int row = 0; row < sh.H; ++row) {
        const int64_t pix0 = static_cast<int64_t>(row) * sh.W;
        for (int64_t s = 0; s < sh.S; ++s) {
          const int64_t bs = b * sh.S + s;
          warp::span_geometry(depth, K, b, pix0, sh.W, pose + bs * 16, sh, opt, span, false);
          for (int col = 0; col < sh.W; ++col) {
            warp::forward_at(image, out, mask, span.keep(col), span.at(Span::kInside, col) != F(0),
                             span.at(Span::kIu, col), span.at(Span::kIv, col), bs, pix0 + col, sh);
          }
        }
      }
    }
  }
}

// Per-thread image gradients (cpu_threads.h) of a pass over the batch stay within this many bytes:
// the batch is taken in as many passes as that needs.
constexpr int64_t kThreadPartBytes = int64_t(64) << 20;

template <typename F>
void warp_backward_cpu(const F* grad_out, const F* image, const F* depth, const F* pose, const F* K, F* grad_image,
                       long long* grad_fixed, const F* fixed_scale, F* grad_depth, F* pose_partials, F* k_partials,
                       const warp::Shape& sh, const warp::Options& opt) {
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
  const int64_t blocks = warp::blocks_per_image(sh.H, sh.W);
  const bool need_geometry = grad_depth != nullptr || pose_partials != nullptr || k_partials != nullptr;
  const bool need_image = grad_image != nullptr || grad_fixed != nullptr;
  const F scale = grad_fixed != nullptr ? *fixed_scale : F(1);
  // the image gradient is a scatter: into the thread's own buffer, float or (deterministic) fixed
  // point, whose integer sums do not depend on the order
  const int threads = thread_count();
  const int64_t image_b = sh.S * sh.C * HW;  // image elements of one batch element
  const int64_t per_pass =
      need_image ? std::clamp<int64_t>(kThreadPartBytes / std::max<int64_t>(threads * image_b * 8, 1), 1, sh.B) : sh.B;
  std::vector<F> parts(need_image && grad_fixed == nullptr ? threads * per_pass * image_b : 0);
  std::vector<long long> fixed_parts(grad_fixed != nullptr ? threads * per_pass * image_b : 0);
  for (int64_t b0 = 0; b0 < sh.B; b0 += per_pass) {
    const int64_t nb = std::min(per_pass, sh.B - b0), n_part = nb * image_b;
#pragma omp parallel num_threads(threads)
    {
      F* mine = parts.empty() ? nullptr : parts.data() + thread_id() * n_part;
      long long* mine_fixed = fixed_parts.empty() ? nullptr : fixed_parts.data() + thread_id() * n_part;
      if (mine != nullptr) std::fill(mine, mine + n_part, F(0));
      if (mine_fixed != nullptr) std::fill(mine_fixed, mine_fixed + n_part, 0LL);
      auto scatter = [=](int64_t at, F v) {  // at: into the whole image
        if (mine_fixed != nullptr) {
          mine_fixed[at - b0 * image_b] += warp::to_fixed(v * scale);
        } else {
          mine[at - b0 * image_b] += v;
        }
      };
      std::vector<warp::SpanGeometry<F>> spans(sh.S, warp::SpanGeometry<F>(warp::kBlock, true));
      std::vector<F> gT(sh.S * warp::kPosePartials);
#pragma omp for collapse(2) schedule(static)
      for (int64_t b = b0; b < b0 + nb; ++b) {
        for (int64_t block = 0; block < blocks; ++block) {
          const int64_t pix0 = block * warp::kBlock;
          const int64_t n = std::min<int64_t>(HW, pix0 + warp::kBlock) - pix0;
          for (int64_t s = 0; s < sh.S; ++s) {
            warp::span_geometry(depth, K, b, pix0, n, pose + (b * sh.S + s) * 16, sh, opt, spans[s], true);
          }
          F gK[warp::kIntrinsicsPartials] = {};
          std::fill(gT.begin(), gT.end(), F(0));
          for (int64_t i = 0; i < n; ++i) {
            const warp::Pixel<F> p = warp::make_pixel(depth, K, b, pix0 + i, sh, opt.normalize);
            F gP[3] = {};
            for (int64_t s = 0; s < sh.S; ++s) {
              if (!spans[s].keep(i)) continue;
              warp::backward_at(grad_out, image, pose + (b * sh.S + s) * 16, need_image, p.k,
                                spans[s].geometry(i, p), b * sh.S + s, pix0 + i, sh, need_geometry,
                                gT.data() + s * warp::kPosePartials, gK, gP, scatter);
            }
            if (grad_depth != nullptr || k_partials != nullptr) {
              const F gd = warp::ray_backward(p.d, p.ray, p.k, gP, opt.normalize, gK);
              if (grad_depth != nullptr) grad_depth[b * HW + pix0 + i] = gd;
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
    if (grad_image != nullptr) sum_thread_parts(parts.data(), threads, n_part, grad_image + b0 * image_b);
    if (grad_fixed != nullptr) sum_thread_parts(fixed_parts.data(), threads, n_part, grad_fixed + b0 * image_b);
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
