// Per-step values as the ops use them, shared by both backends (host and device): the step a
// random op draws with, Adam's bias correction, and a term's weight-dependent factor, each read
// from backend memory when the op runs if the caller gave a pointer (kernels/ops.hpp,
// StepScalars). One formula in one place, so both backends round alike.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/ops.hpp"

namespace cuae::kern {

// 1 − β^t in double, rounded once to float: the bias correction of Adam's update t.
CUAE_HD float bias_correction(float beta, std::int64_t t) {
  return static_cast<float>(1.0 - ::pow(static_cast<double>(beta), static_cast<double>(t)));
}

// The step a random op draws with: *at when given (read when the op runs), else its own.
CUAE_HD std::uint64_t step_of(std::uint64_t step, const std::uint64_t* at) { return at ? *at : step; }

// A scalar term's factor weight·f (f: 1/m, or the loss's 1/denominator), the weight read from
// weight_at when given: the same float product on both backends.
struct TermFactor {
  float weight = 1.0f;
  const float* weight_at = nullptr;
  float f = 1.0f;
  CUAE_HD float w() const { return weight_at ? *weight_at : weight; }
  CUAE_HD float per() const { return w() * f; }
};

}  // namespace cuae::kern
