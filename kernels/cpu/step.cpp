// CPU reference of the step ops (kernels/ops.hpp): step_begin advances the step block, and
// record_scalars appends a step's scalar terms to the ring in backend memory.
#include <cstdint>

#include "kernels/ops.hpp"
#include "kernels/step_math.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern::cpu {

void step_begin(const Context&, const StepBegin& a) {
  validate(a);
  StepScalars& s = *a.s;
  s.updates += 1;
  s.rng_step = static_cast<std::uint64_t>(s.updates);
  s.bias1 = bias_correction(s.beta1, s.updates);
  s.bias2 = bias_correction(s.beta2, s.updates);
}

void record_scalars(const Context&, const RecordScalars& a) {
  validate(a);
  const std::int64_t slot = a.s->recorded % a.capacity;
  float* dst = a.ring + slot * a.n;
  for (int i = 0; i < a.n; ++i) dst[i] = a.src[i];
  a.s->recorded += 1;
}

}  // namespace cuae::kern::cpu
