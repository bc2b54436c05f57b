// CPU reference: activation backward and row gather. Plain loops: this is the oracle.
#include <cstring>

#include "cuae/error.hpp"
#include "kernels/act_math.hpp"
#include "kernels/validate.hpp"
#include "kernels/cpu/parallel.hpp"

namespace cuae::kern::cpu {

void activation_backward(const Context&, const ActivationBackward& a) {
  validate(a);
#pragma omp parallel for schedule(static) if (a.count >= kParallelMin)
  for (std::int64_t i = 0; i < a.count; ++i) {
    const float g = a.dy[i] * act_derivative(a.act, a.y[i], a.z ? a.z[i] : 0.0f, a.slope);
    a.dx[i] = a.acc_dx ? a.dx[i] + g : g;
  }
}

void gather_rows(const Context&, const GatherRows& a) {
  validate(a);
  const std::size_t row_bytes = static_cast<std::size_t>(a.cols) * sizeof(float);
#pragma omp parallel for schedule(static) if (a.rows * a.cols >= kParallelMin)
  for (std::int64_t r = 0; r < a.rows; ++r)
    std::memcpy(a.dst + r * a.cols, a.src + static_cast<std::int64_t>(a.index[r]) * a.cols, row_bytes);
}

}  // namespace cuae::kern::cpu
