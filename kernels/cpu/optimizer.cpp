// CPU reference for the fused optimizer step over one flat parameter buffer (see kern::
// OptimizerStep). Index i < n_decay is a weight and is decayed; the rest are biases and are not.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu/parallel.hpp"
#include "kernels/ops.hpp"
#include "kernels/step_math.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern::cpu {

namespace {
// The L1 penalty's subgradient λ₁·sign(p), 0 at p = 0.
inline float l1_term(float l1, float p) { return p > 0.0f ? l1 : (p < 0.0f ? -l1 : 0.0f); }

struct AdamArgs {
  float lr = 0.0f, bc1 = 1.0f, bc2 = 1.0f;
};

// Adam/AdamW over [b, e), all weights (kDecay: decay and L1) or all biases. The same operations in
// the same order whatever the vector width (division and square root are correctly rounded, and no
// clone enables FMA contraction), so the AVX2 clone and the baseline give identical floats.
template <bool kDecay, bool kDecoupled>
__attribute__((target_clones("avx2", "default"))) void adam_range(const OptimizerStep& a, const AdamArgs& x,
                                                                  std::int64_t b, std::int64_t e) {
  float* __restrict param = a.param;
  float* __restrict m1 = a.m;
  float* __restrict m2 = a.v;
  const float* __restrict grad = a.grad;
  const float wd = kDecay ? a.weight_decay : 0.0f, l1 = kDecay ? a.l1 : 0.0f;
  const float beta1 = a.beta1, beta2 = a.beta2, eps = a.eps, lr = x.lr, bc1 = x.bc1, bc2 = x.bc2;
#pragma omp simd
  for (std::int64_t i = b; i < e; ++i) {
    const float p = param[i];
    const float g1 = grad[i] + (kDecay ? l1_term(l1, p) : 0.0f);
    const float g = kDecoupled ? g1 : g1 + wd * p;  // Adam: L2 decay folded into g
    const float m = beta1 * m1[i] + (1.0f - beta1) * g;
    const float v = beta2 * m2[i] + (1.0f - beta2) * g * g;
    m1[i] = m;
    m2[i] = v;
    const float mhat = m / bc1;
    const float vhat = v / bc2;
    float next = p - lr * mhat / (__builtin_sqrtf(vhat) + eps);
    // AdamW's decay is decoupled from the moments and uses the parameter as it was before this
    // step, as PyTorch does (p·(1 − lr·wd) − lr·m̂/(√v̂+ε)).
    if (kDecoupled) next -= lr * wd * p;
    param[i] = next;
  }
}
}  // namespace

void optimizer_step(const Context&, const OptimizerStep& a) {
  validate(a);
  const float lr = a.at ? a.at->lr : a.lr;
  if (a.kind == OptKind::SGD) {
    const float mu = a.at ? a.at->momentum : a.momentum;
#pragma omp parallel for schedule(static) if (a.n >= kParallelMin)
    for (std::int64_t i = 0; i < a.n; ++i) {
      const bool w = i < a.n_decay;
      const float wd = w ? a.weight_decay : 0.0f;
      const float g = a.grad[i] + wd * a.param[i] + (w ? l1_term(a.l1, a.param[i]) : 0.0f);
      // With momentum 0 the velocity is just g' and v may be absent.
      const float vel = a.v ? mu * a.v[i] + g : g;
      if (a.v) a.v[i] = vel;
      const float update = a.nesterov ? g + mu * vel : vel;
      a.param[i] -= lr * update;
    }
    return;
  }

  // Adam / AdamW. The bias corrections are per-step constants: computed once, in double, so
  // 1 - beta^step keeps its digits when beta2 = 0.999 and step is small.
  AdamArgs x;
  x.lr = lr;
  x.bc1 = a.at ? a.at->bias1 : bias_correction(a.beta1, a.step);
  x.bc2 = a.at ? a.at->bias2 : bias_correction(a.beta2, a.step);
  // Chunks of the flat buffer across the threads, each cut at n_decay into a decayed and an
  // undecayed range with no branch per element (the loops vectorize).
  constexpr std::int64_t kChunk = 1 << 14;
  const std::int64_t chunks = (a.n + kChunk - 1) / kChunk;
  const bool decoupled = a.kind == OptKind::AdamW;
#pragma omp parallel for schedule(static) if (a.n >= kParallelMin)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t b = c * kChunk, e = std::min(a.n, b + kChunk), cut = std::clamp(a.n_decay, b, e);
    if (decoupled) {
      adam_range<true, true>(a, x, b, cut);
      adam_range<false, true>(a, x, cut, e);
    } else {
      adam_range<true, false>(a, x, b, cut);
      adam_range<false, false>(a, x, cut, e);
    }
  }
}

}  // namespace cuae::kern::cpu
