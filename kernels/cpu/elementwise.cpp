// CPU reference for the elementwise ops: the standalone activation and the reconstruction loss.
// Both use the scalar formulas of kernels/act_math.hpp, the same ones the CUDA kernels use.
#include <cstdint>

#include "kernels/act_math.hpp"
#include "kernels/cpu/parallel.hpp"
#include "kernels/ops.hpp"
#include "kernels/step_math.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern::cpu {

void activation_forward(const Context&, const Activation& a) {
  validate(a);
#pragma omp parallel for schedule(static) if (a.count >= kParallelMin)
  for (std::int64_t i = 0; i < a.count; ++i) a.y[i] = act_forward(a.act, a.x[i], a.slope);
}

void loss(const Context&, const Loss& a) {
  validate(a);
  // The sum runs in double: a float sum over a million terms would carry ~1e-4 relative error,
  // more than the GPU's tree reduction, and the oracle must be the more accurate side.
  const float scale = TermFactor{1.0f, a.weight_at, a.scale}.per();
  double sum = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : sum) if (a.count >= kParallelMin)
  for (std::int64_t i = 0; i < a.count; ++i) {
    float value = 0.0f, grad = 0.0f;
    loss_elem(a.kind, a.pred[i], a.target[i], value, grad);
    sum += value;
    if (a.grad) {
      const float g = scale * grad;
      a.grad[i] = a.acc_grad ? a.grad[i] + g : g;
    }
  }
  a.loss[0] = static_cast<float>(static_cast<double>(scale) * sum);
}

}  // namespace cuae::kern::cpu
