// CPU reference for the activity penalties (L1, KL sparsity) and the contractive penalty. Sums run
// in double so the reference is the more accurate side of every CUDA comparison.
#include <cstdint>
#include <vector>

#include "kernels/cpu/parallel.hpp"
#include "kernels/ops.hpp"
#include "kernels/penalty_math.hpp"
#include "kernels/step_math.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern::cpu {

void activity_penalty(const Context&, const ActivityPenalty& a) {
  validate(a);
  const std::int64_t m = a.m, n = a.n, count = m * n;
  const TermFactor tf{a.weight, a.weight_at, 1.0f / static_cast<float>(a.m)};
  const float per = tf.per();
  if (a.kind == PenaltyKind::L1) {
    double sum = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : sum) if (count >= kParallelMin)
    for (std::int64_t i = 0; i < count; ++i) {
      const float h = a.h[i];
      sum += std::fabs(static_cast<double>(h));
      if (a.grad) {
        const float g = per * sign_of(h);
        a.grad[i] = a.acc_grad ? a.grad[i] + g : g;
      }
    }
    a.loss[0] = static_cast<float>(static_cast<double>(per) * sum);
    return;
  }
  // KL: column means, then the penalty and the per-column gradient factor.
  std::vector<double> col(static_cast<std::size_t>(n), 0.0);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) col[static_cast<std::size_t>(j)] += a.h[i * n + j];
  std::vector<float> factor(static_cast<std::size_t>(n));
  double value = 0.0;
  for (std::int64_t j = 0; j < n; ++j) {
    const float r = clamp_rho_hat(static_cast<float>(col[static_cast<std::size_t>(j)] / static_cast<double>(m)));
    a.rho_hat[j] = r;
    value += kl_bernoulli(a.rho, r);
    factor[static_cast<std::size_t>(j)] = per * kl_bernoulli_grad(a.rho, r);
  }
  a.loss[0] = static_cast<float>(static_cast<double>(tf.w()) * value);
  if (!a.grad) return;
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      const float g = factor[static_cast<std::size_t>(j)];
      float& d = a.grad[i * n + j];
      d = a.acc_grad ? d + g : g;
    }
}

void contractive_penalty(const Context&, const ContractivePenalty& a) {
  validate(a);
  const std::int64_t m = a.m, n = a.n, k = a.k;
  float* s = a.ws;      // s_j = Σ_l W_jl²
  float* G = a.ws + n;  // G_j = Σ_i g(h_ij)
  for (std::int64_t j = 0; j < n; ++j) {
    double acc = 0.0;
    for (std::int64_t l = 0; l < k; ++l) acc += static_cast<double>(a.w[j * k + l]) * a.w[j * k + l];
    s[j] = static_cast<float>(acc);
  }
  const float per = TermFactor{a.weight, a.weight_at, 1.0f / static_cast<float>(a.m)}.per();
  std::vector<double> colg(static_cast<std::size_t>(n), 0.0);
  double value = 0.0;
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      const float h = a.h[i * n + j];
      const float g = contractive_g(a.act, h, a.slope);
      colg[static_cast<std::size_t>(j)] += g;
      value += static_cast<double>(g) * s[j];
      if (a.grad_h) {
        const float d = per * contractive_dg(a.act, h) * s[j];
        float& out = a.grad_h[i * n + j];
        out = a.acc_grad_h ? out + d : d;
      }
    }
  for (std::int64_t j = 0; j < n; ++j) G[j] = static_cast<float>(colg[static_cast<std::size_t>(j)]);
  a.loss[0] = static_cast<float>(static_cast<double>(per) * value);
  if (!a.grad_w) return;
  for (std::int64_t j = 0; j < n; ++j) {
    const float c = 2.0f * per * G[j];
    for (std::int64_t l = 0; l < k; ++l) {
      float& out = a.grad_w[j * k + l];
      const float d = c * a.w[j * k + l];
      out = a.acc_grad_w ? out + d : d;
    }
  }
}

}  // namespace cuae::kern::cpu
