// The CPU twin of the warp's CUDA kernels: the same per-pixel math (warp.cuh) driven by host loops,
// parallel with OpenMP. Structured like warp.cu (the backward's per-block partial sums over the same
// blocks of pixels), except that the work of a row or block runs in vectorised loops (warp_rows.h)
// one stage at a time (geometry, samples, the backward's geometry, whose block sums are added in
// lanes: warp_rows.h's kLanes), and that the image gradient, a scatter, is added without atomics:
// its corners come from a vectorised loop, the additions go pixel by pixel into the output where
// one thread has a batch element to itself, else into per-thread buffers (cpu_threads.h:
// BatchShares). No torch.
#include <algorithm>
#include <vector>

#include "cpu_threads.h"
#include "warp_rows.h"

namespace fastdepth {

template <typename F>
void warp_forward_cpu(const F* image, const F* depth, const F* pose, const F* K, F* out, int8_t* mask,
                      const warp::Shape& sh, const warp::Options& opt) {
  using Span = warp::SpanGeometry<F>;
  const int64_t HW = static_cast<int64_t>(sh.H) * sh.W;
#pragma omp parallel
  {
    Span span(sh.W, false);
    warp::CornerTaps<F> taps(sh.W);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < sh.B; ++b) {
      for (int row = 0; row < sh.H; ++row) {
        const int64_t pix0 = static_cast<int64_t>(row) * sh.W;
        for (int64_t s = 0; s < sh.S; ++s) {
          const int64_t bs = b * sh.S + s;
          warp::span_geometry(depth, K, b, pix0, sh.W, pose + bs * 16, sh, opt, span, false);
          warp::sample_span(image + bs * sh.C * HW, span, sh.W, sh, taps, out + bs * sh.C * HW + pix0, HW);
          if (mask != nullptr) {
            const F* keep = span.field(Span::kKeep);
            const F* inside = span.field(Span::kInside);
            int8_t* m = mask + bs * HW + pix0;
            for (int col = 0; col < sh.W; ++col) {
              m[col] = static_cast<int8_t>((keep[col] != F(0)) & (inside[col] != F(0)));
            }
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
  using Span = warp::SpanGeometry<F>;
  // the image gradient is a scatter: float or (deterministic) fixed point, whose integer sums do
  // not depend on the order; into the output or the thread's own buffer (BatchShares)
  const int threads = thread_count();
  const int64_t image_b = sh.S * sh.C * HW;  // image elements of one batch element
  const int64_t per_pass =
      need_image ? std::clamp<int64_t>(kThreadPartBytes / std::max<int64_t>(threads * image_b * 8, 1), 1, sh.B) : sh.B;
  std::vector<F> parts;
  std::vector<long long> fixed_parts;
  for (int64_t b0 = 0; b0 < sh.B; b0 += per_pass) {
    const int64_t nb = std::min(per_pass, sh.B - b0), n_part = nb * image_b;
    // (element, block) pairs: an element one share has to itself gets its image gradient directly
    const BatchShares shares{b0, nb, blocks, threads};
    const bool any_shared = need_image && shares.any_shared();
    if (any_shared && grad_fixed == nullptr) parts.resize(threads * n_part);
    if (any_shared && grad_fixed != nullptr) fixed_parts.resize(threads * n_part);
#pragma omp parallel num_threads(threads)
    {
      std::vector<warp::SpanGeometry<F>> spans(sh.S, warp::SpanGeometry<F>(warp::kBlock, true));
      warp::PixelSpan<F> pixels(warp::kBlock);
      warp::CornerTaps<F> taps(warp::kBlock);
      warp::BlockGrads<F> grads(sh.S);
      // share t of `threads`, whatever the team's size
      for (int64_t t = thread_id(); t < threads; t += team_size()) {
        F* mine = parts.empty() ? nullptr : parts.data() + t * n_part;
        long long* mine_fixed = fixed_parts.empty() ? nullptr : fixed_parts.data() + t * n_part;
        // an element's image gradient, at its first element: the output's or the thread's buffer's
        const auto image_grad = [&](auto* out, auto* part, int64_t b) {
          return shares.shared(b) ? part + (b - b0) * image_b : out + b * image_b;
        };
        for (int64_t b = b0; b < b0 + nb && need_image; ++b) {
          if (!shares.shared(b) && shares.owner(b) != t) continue;
          if (grad_fixed != nullptr) fill_zero(image_grad(grad_fixed, mine_fixed, b), image_b);
          if (grad_image != nullptr) fill_zero(image_grad(grad_image, mine, b), image_b);
        }
        for (int64_t pair = shares.first(t); pair < shares.first(t + 1); ++pair) {
          const int64_t b = b0 + pair / blocks, block = pair % blocks;
          const int64_t pix0 = block * warp::kBlock;
          const int64_t n = std::min<int64_t>(HW, pix0 + warp::kBlock) - pix0;
          for (int64_t s = 0; s < sh.S; ++s) {
            warp::span_geometry(depth, K, b, pix0, n, pose + (b * sh.S + s) * 16, sh, opt, spans[s], need_geometry);
          }
          grads.clear();
          for (int64_t s = 0; s < sh.S; ++s) {
            warp::corner_taps(spans[s], n, sh.W, sh.H, taps);
            // sample_backward_at's scatter, a source at a time: the order per element is kept
            for (int64_t c = 0; c < sh.C && need_image; ++c) {
              const int64_t plane = (s * sh.C + c) * HW, at = ((b * sh.S + s) * sh.C + c) * HW + pix0;
              if (grad_fixed != nullptr) {
                long long* into = image_grad(grad_fixed, mine_fixed, b) + plane;
                warp::scatter_segment(grad_out + at, taps, n,
                                      [=](int32_t o, F v) { into[o] += warp::to_fixed(v * scale); });
              } else {
                F* into = image_grad(grad_image, mine, b) + plane;
                warp::scatter_segment(grad_out + at, taps, n, [=](int32_t o, F v) { into[o] += v; });
              }
            }
            if (!need_geometry) continue;
            // sample_backward_at's position gradients, vectorised
            const int64_t bs = b * sh.S + s;
            F* g_iu = grads.g_iu.data() + s * warp::kBlock;
            F* g_iv = grads.g_iv.data() + s * warp::kBlock;
            std::fill(g_iu, g_iu + n, F(0));
            std::fill(g_iv, g_iv + n, F(0));
            for (int64_t c = 0; c < sh.C; ++c) {
              const int64_t plane = (bs * sh.C + c) * HW;
              warp::position_grads(image + plane, taps, spans[s], grad_out + plane + pix0, n, g_iu, g_iv);
            }
          }
          if (!need_geometry) continue;
          warp::span_pixels(depth, K, b, pix0, n, sh, opt, pixels);
          const auto geometry_backward =
              opt.normalize ? warp::block_geometry_backward<F, true> : warp::block_geometry_backward<F, false>;
          geometry_backward(pixels, spans.data(), sh.S, n, K + b * 9, pose + b * sh.S * 16,
                            grad_depth != nullptr ? grad_depth + b * HW + pix0 : nullptr, grads);
          warp::store_partials(grads, sh.S, b, block, blocks, pose_partials, k_partials);
        }
      }
    }
    for (int64_t b = b0; b < b0 + nb && need_image; ++b) {
      if (!shares.shared(b)) continue;
      const int64_t off = (b - b0) * image_b;
      if (grad_image != nullptr) {
        sum_thread_parts(parts.data() + off, threads, image_b, n_part, grad_image + b * image_b);
      }
      if (grad_fixed != nullptr) {
        sum_thread_parts(fixed_parts.data() + off, threads, image_b, n_part, grad_fixed + b * image_b);
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
