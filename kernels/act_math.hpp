// Scalar activation formulas shared by the CPU reference and the CUDA kernels, so both backends
// compute the same function. GELU is the tanh approximation, the one cuBLASLt's GELU epilogues
// implement (PyTorch: gelu(approximate="tanh")).
#pragma once

#include <cmath>

#include "kernels/ops.hpp"

namespace cuae::kern {

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluA = 0.044715f;

CUAE_HD float sigmoidf_stable(float x) {
  // Never exponentiates a positive number, so no overflow for either sign.
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  const float e = expf(x);
  return e / (1.0f + e);
}

CUAE_HD float act_forward(Act a, float z, float slope) {
  switch (a) {
    case Act::Identity: return z;
    case Act::ReLU: return z > 0.0f ? z : 0.0f;
    case Act::LeakyReLU: return z > 0.0f ? z : slope * z;
    case Act::Sigmoid: return sigmoidf_stable(z);
    case Act::Tanh: return tanhf(z);
    case Act::GELU: {
      const float u = kGeluC * (z + kGeluA * z * z * z);
      return 0.5f * z * (1.0f + tanhf(u));
    }
  }
  return z;
}

// act'(z) given the output y (and z, needed only for GELU). Every activation but GELU has a
// derivative that is a function of its output, which saves storing the pre-activation.
CUAE_HD float act_derivative(Act a, float y, float z, float slope) {
  switch (a) {
    case Act::Identity: return 1.0f;
    case Act::ReLU: return y > 0.0f ? 1.0f : 0.0f;
    case Act::LeakyReLU: return y > 0.0f ? 1.0f : slope;
    case Act::Sigmoid: return y * (1.0f - y);
    case Act::Tanh: return 1.0f - y * y;
    case Act::GELU: {
      const float u = kGeluC * (z + kGeluA * z * z * z);
      const float t = tanhf(u);
      const float du = kGeluC * (1.0f + 3.0f * kGeluA * z * z);
      return 0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * du;
    }
  }
  return 1.0f;
}

// Per-element loss value and gradient (see kern::Loss).
CUAE_HD void loss_elem(LossKind k, float p, float t, float& value, float& grad) {
  switch (k) {
    case LossKind::MSE: {
      const float d = p - t;
      value = d * d;
      grad = 2.0f * d;
      return;
    }
    case LossKind::L1: {
      const float d = p - t;
      value = fabsf(d);
      grad = d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f);
      return;
    }
    case LossKind::BCEWithLogits: {
      value = fmaxf(p, 0.0f) - p * t + log1pf(expf(-fabsf(p)));
      grad = sigmoidf_stable(p) - t;
      return;
    }
  }
  value = 0.0f;
  grad = 0.0f;
}

}  // namespace cuae::kern
