// CPU reference for the variational-autoencoder ops: the reparameterized sample of a diagonal
// Gaussian, its backward, and the KL divergence from the standard normal prior.
//
// The noise ε of element e = i·d + j of z [m, d] is drawn exactly as Corrupt's Gaussian noise draws
// its element e (kernels/cpu/random.cpp): the Box-Muller pair of words (0, 1) or (2, 3) of
// philox_group(seed, step, e / 4). A group of four consecutive elements may straddle two rows of
// z, so the loops run over groups and walk (i, j) along with e.
//
// Numerics, shared with kernels/cuda/vae.cu (same float expressions, so the two backends differ
// only by the ulps of their expf/logf/cosf/sinf):
//   σ = expf(½·lv) in float. lv is used as given: nothing is clamped, so an lv beyond ~±176 gives
//   σ = inf or 0 exactly as the formula says; bounding the log-variance is the model's business.
//   The KL terms are computed in double from the float inputs, with 1 + lv − exp(lv) written as
//   lv − expm1(lv): near the prior (lv ≈ 0) that difference is O(lv²) and the direct form would
//   cancel away most of its digits. The gradients are the double values rounded once to float.
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/parallel.hpp"
#include "kernels/ops.hpp"
#include "kernels/philox.hpp"
#include "kernels/step_math.hpp"
#include "kernels/vae_validate.hpp"

namespace cuae::kern::cpu {

namespace {

// The four normals of Philox group g of a draw keyed by (seed, step), as Corrupt draws them.
inline void group_normals(std::uint64_t seed, std::uint64_t step, std::int64_t g, float (&n)[4]) {
  const Philox4 r = philox_group(seed, step, static_cast<std::uint64_t>(g));
  philox_normal2(r.w[0], r.w[1], n[0], n[1]);
  philox_normal2(r.w[2], r.w[3], n[2], n[3]);
}

// Calls f(e, i, j, ε_e) for every element e of z [m, d] (e = i·d + j), one Philox group per
// iteration of a parallel loop over groups.
template <class F>
void for_each_normal(std::int64_t m, std::int64_t d, std::uint64_t seed, std::uint64_t step, F f) {
  const std::int64_t count = m * d, groups = (count + 3) / 4;
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (std::int64_t g = 0; g < groups; ++g) {
    float n[4];
    group_normals(seed, step, g, n);
    const std::int64_t e0 = 4 * g;
    const int len = static_cast<int>(count - e0 < 4 ? count - e0 : 4);
    std::int64_t i = e0 / d, j = e0 % d;
    for (int k = 0; k < len; ++k) {
      f(e0 + k, i, j, n[k]);
      if (++j == d) j = 0, ++i;
    }
  }
}

}  // namespace

void reparameterize(const Context&, const Reparameterize& a) {
  validate(a);
  const std::int64_t m = a.m, d = a.d;
  if (!a.sample) {
    // The posterior mean; nothing is drawn and eps is left alone.
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < d; ++j) a.z[i * d + j] = a.stats[i * 2 * d + j];
    return;
  }
  const std::uint64_t step = step_of(a.step, a.step_at);
  for_each_normal(m, d, a.seed, step, [&](std::int64_t e, std::int64_t i, std::int64_t j, float n) {
    const float* row = a.stats + i * 2 * d;
    const float sigma = std::exp(0.5f * row[d + j]);
    a.z[e] = row[j] + sigma * n;
    if (a.eps) a.eps[e] = n;
  });
}

void reparameterize_backward(const Context&, const ReparameterizeBackward& a) {
  validate(a);
  const std::int64_t d = a.d;
  const std::uint64_t step = step_of(a.step, a.step_at);
  for_each_normal(a.m, d, a.seed, step, [&](std::int64_t e, std::int64_t i, std::int64_t j, float n) {
    const float* row = a.stats + i * 2 * d;
    float* out = a.dstats + i * 2 * d;
    const float dz = a.dz[e];
    const float half_sigma = 0.5f * std::exp(0.5f * row[d + j]);
    const float g = (dz * n) * half_sigma;
    out[j] = a.acc ? out[j] + dz : dz;
    out[d + j] = a.acc ? out[d + j] + g : g;
  });
}

void gaussian_kl(const Context&, const GaussianKL& a) {
  validate(a);
  const std::int64_t m = a.m, d = a.d;
  const double per = TermFactor{a.weight, a.weight_at, 1.0f / static_cast<float>(a.m)}.per();
  std::vector<double> kl(static_cast<std::size_t>(m));
  // Rows in parallel; each row's sum runs over j in order, and the rows are added in order below,
  // so the value does not depend on the thread count.
#pragma omp parallel for schedule(static) if (m * d >= kParallelMin)
  for (std::int64_t i = 0; i < m; ++i) {
    const float* row = a.stats + i * 2 * d;
    float* g = a.grad ? a.grad + i * 2 * d : nullptr;
    double s = 0.0;
    for (std::int64_t j = 0; j < d; ++j) {
      const double mu = row[j], lv = row[d + j];
      const double em1 = std::expm1(lv);
      s += (lv - em1) - mu * mu;  // 1 + lv − exp(lv) − μ²
      if (g) {
        const float gm = static_cast<float>(per * mu);
        const float gl = static_cast<float>(per * 0.5 * em1);
        g[j] = a.acc_grad ? g[j] + gm : gm;
        g[d + j] = a.acc_grad ? g[d + j] + gl : gl;
      }
    }
    kl[static_cast<std::size_t>(i)] = -0.5 * s;
    if (a.per_row) a.per_row[i] = static_cast<float>(-0.5 * s);
  }
  double total = 0.0;
  for (std::int64_t i = 0; i < m; ++i) total += kl[static_cast<std::size_t>(i)];
  a.loss[0] = static_cast<float>(per * total);
}

}  // namespace cuae::kern::cpu
