// The passes around a CPU GEMM shared by the dense and convolution references: the forward's bias
// + activation, and the backward's dZ = dY ⊙ act' with the bias gradient. Each is instantiated
// per activation (kernels/dispatch.hpp), so its inner loop carries no switch; the formulas are
// kernels/act_math.hpp's, the ones the CUDA kernels use.
#pragma once

#include <cstdint>

#include "kernels/ops.hpp"

namespace cuae::kern::cpu {

// y [rows, ch] holds the GEMM result: y = act(y + b), and z = y + b when z is given (b optional).
void bias_act_rows(float* y, float* z, const float* b, std::int64_t rows, int ch, Act act, float slope);

// dz = dy ⊙ act'(y, z) over [rows, ch] (identity reads neither y nor z, GELU only z), and
// db (+)= Σ_rows dz when db is given. The bias sums run in double over fixed blocks of rows, added
// in order: the same result for any thread count.
void act_backward_bias(const float* dy, const float* y, const float* z, float* dz, float* db, bool acc_db,
                       std::int64_t rows, int ch, Act act, float slope);

}  // namespace cuae::kern::cpu
