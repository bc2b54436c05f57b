// CPU reference: activation backward and row gather. Plain loops: this is the oracle.
#include <cstring>

#include "cuae/error.hpp"
#include "kernels/act_math.hpp"

namespace cuae::kern::cpu {

void activation_backward(const Context&, const ActivationBackward& a) {
  CUAE_CHECK(a.count >= 0, "activation_backward: negative count");
  CUAE_CHECK(a.act != Act::GELU || a.z, "activation_backward: GELU needs the pre-activation z");
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < a.count; ++i) {
    const float g = a.dy[i] * act_derivative(a.act, a.y[i], a.z ? a.z[i] : 0.0f, a.slope);
    a.dx[i] = a.acc_dx ? a.dx[i] + g : g;
  }
}

void gather_rows(const Context&, const GatherRows& a) {
  CUAE_CHECK(a.rows >= 0 && a.cols >= 0, "gather_rows: negative size");
  const std::size_t row_bytes = static_cast<std::size_t>(a.cols) * sizeof(float);
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < a.rows; ++r)
    std::memcpy(a.dst + r * a.cols, a.src + static_cast<std::int64_t>(a.index[r]) * a.cols, row_bytes);
}

}  // namespace cuae::kern::cpu
