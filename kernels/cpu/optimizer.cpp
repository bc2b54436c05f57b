// CPU reference for the fused optimizer step over one flat parameter buffer (see kern::
// OptimizerStep). Index i < n_decay is a weight and is decayed; the rest are biases and are not.
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
  const float bc1 = a.at ? a.at->bias1 : bias_correction(a.beta1, a.step);
  const float bc2 = a.at ? a.at->bias2 : bias_correction(a.beta2, a.step);
  const bool decoupled = a.kind == OptKind::AdamW;
#pragma omp parallel for schedule(static) if (a.n >= kParallelMin)
  for (std::int64_t i = 0; i < a.n; ++i) {
    const bool w = i < a.n_decay;
    const float wd = w ? a.weight_decay : 0.0f;
    const float p = a.param[i];
    const float g1 = a.grad[i] + (w ? l1_term(a.l1, p) : 0.0f);
    const float g = decoupled ? g1 : g1 + wd * p;  // Adam: L2 decay folded into g
    const float m = a.beta1 * a.m[i] + (1.0f - a.beta1) * g;
    const float v = a.beta2 * a.v[i] + (1.0f - a.beta2) * g * g;
    a.m[i] = m;
    a.v[i] = v;
    const float mhat = m / bc1;
    const float vhat = v / bc2;
    float next = p - lr * mhat / (std::sqrt(vhat) + a.eps);
    // AdamW's decay is decoupled from the moments and uses the parameter as it was before this
    // step, as PyTorch does (p·(1 − lr·wd) − lr·m̂/(√v̂+ε)).
    if (decoupled) next -= lr * wd * p;
    a.param[i] = next;
  }
}

}  // namespace cuae::kern::cpu
