// Scalar formulas of the penalties, shared by the CPU reference and the CUDA kernels (host and
// device), so both backends compute the same function.
#pragma once

#include <cmath>

#include "kernels/ops.hpp"

namespace cuae::kern {

constexpr float kRhoHatClamp = 1e-6f;  // ρ̂ is clamped to [ε, 1−ε]: no log(0), no division by 0

CUAE_HD float clamp_rho_hat(float r) {
  return r < kRhoHatClamp ? kRhoHatClamp : (r > 1.0f - kRhoHatClamp ? 1.0f - kRhoHatClamp : r);
}

// KL(ρ‖ρ̂) of Bernoulli means, and its derivative in ρ̂.
CUAE_HD float kl_bernoulli(float rho, float rho_hat) {
  return rho * logf(rho / rho_hat) + (1.0f - rho) * logf((1.0f - rho) / (1.0f - rho_hat));
}
CUAE_HD float kl_bernoulli_grad(float rho, float rho_hat) { return -rho / rho_hat + (1.0f - rho) / (1.0f - rho_hat); }

CUAE_HD float sign_of(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }

// Contractive penalty: g(h) = a′(z)² as a function of the layer's output h, and g′(h) = dg/dh.
CUAE_HD float contractive_g(Act a, float h, float slope) {
  switch (a) {
    case Act::Sigmoid: { const float d = h * (1.0f - h); return d * d; }
    case Act::Tanh: { const float d = 1.0f - h * h; return d * d; }
    case Act::ReLU: return h > 0.0f ? 1.0f : 0.0f;
    case Act::LeakyReLU: return h > 0.0f ? 1.0f : slope * slope;
    default: return 1.0f;
  }
}
CUAE_HD float contractive_dg(Act a, float h) {
  switch (a) {
    case Act::Sigmoid: return 2.0f * h * (1.0f - h) * (1.0f - 2.0f * h);
    case Act::Tanh: return -4.0f * h * (1.0f - h * h);
    default: return 0.0f;
  }
}

}  // namespace cuae::kern
