// CPU reference for the restricted-Boltzmann-machine ops: one contrastive-divergence gradient
// (rbm_cd) and the free energy (rbm_free_energy). The GEMMs go to OpenBLAS, the sampling and
// bias/activation passes are OpenMP loops, the column sums and the reconstruction error are summed
// in double in row order (so the oracle is more accurate than what it is compared against).
//
// Workspace (rbm_cd_workspace; the one definition is rbm_cd_workspace_floats in
// kernels/rbm_validate.hpp): 3·m·nh + m·nv + ceil(m/32)·(nv + nh + 1) floats, laid out
//   ph0 [m,nh] | hs [m,nh] | phk [m,nh] | vt [m,nv] | partials
// The partials are the CUDA backend's per-row-chunk reduction buffer; this backend leaves them
// untouched but asks for the same size, so a caller sizes one buffer for either device.
//
// Random draws (kernels/philox.hpp): the hidden sample of Gibbs step t (t = 0 for the positive
// phase) at element e = i·nh + j uses draw d = e + t·m·nh: word d % 4 of Philox group d / 4 keyed by
// (seed, step). Bernoulli: h = 1 iff philox_uniform(word) < p. Linear: h = mean + n, n the
// Box-Muller normal of draw d exactly as Corrupt's Gaussian noise draws its element d (pair (0,1)
// or (2,3) of the group, the even draw taking the first normal). With sample_visible, step t's
// (t = 1..k) visible sample of element e = i·nv + l uses draw k·m·nh + (t − 1)·m·nv + e, the same
// two kinds (Bernoulli: v = 1 iff u < p; Gaussian: v = mean + normal). It is drawn in place over
// the mean in vt: nothing downstream needs the mean once the sample exists (pht, the negative
// statistics and recon all read the sample), so the workspace does not grow.
#include <cblas.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/act_math.hpp"
#include "kernels/cpu/parallel.hpp"
#include "kernels/ops.hpp"
#include "kernels/philox.hpp"
#include "kernels/rbm_validate.hpp"
#include "kernels/step_math.hpp"

namespace cuae::kern::cpu {

namespace {

// The hidden unit's mean from its pre-activation: σ(x) (Bernoulli) or x (linear).
inline float hidden_mean(RbmUnit u, float x) { return u == RbmUnit::Bernoulli ? sigmoidf_stable(x) : x; }

// The sample of a unit (hidden or visible) with mean p from draw d.
inline float unit_sample(RbmUnit u, float p, std::uint64_t seed, std::uint64_t step, std::uint64_t d) {
  const Philox4 r = philox_group(seed, step, d / 4);
  const int w = static_cast<int>(d % 4);
  if (u == RbmUnit::Bernoulli) return philox_uniform(r.w[w]) < p ? 1.0f : 0.0f;
  const int pair = w / 2 * 2;
  float n0, n1;
  philox_normal2(r.w[pair], r.w[pair + 1], n0, n1);
  return p + (w % 2 == 0 ? n0 : n1);
}

// x [m,nh] holds v·Wᵀ; adds c and replaces it by the mean. With hs, also samples draw t (t ≥ 0).
void hidden_pass(const RbmCD& a, float* x, float* hs, std::int64_t t) {
  const std::int64_t count = static_cast<std::int64_t>(a.m) * a.nh;
  const std::uint64_t base = static_cast<std::uint64_t>(t) * static_cast<std::uint64_t>(count);
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (std::int64_t e = 0; e < count; ++e) {
    const float p = hidden_mean(a.hidden, x[e] + a.c[e % a.nh]);
    x[e] = p;
    if (hs) hs[e] = unit_sample(a.hidden, p, a.seed, a.step, base + static_cast<std::uint64_t>(e));
  }
}

// v [m,nv] holds h·W; adds b and replaces it by the visible mean (σ for Bernoulli, identity for
// Gaussian), or with sample_visible by a sample of it from step t's visible draws (t = 1..k).
void visible_pass(const RbmCD& a, float* v, int t) {
  const std::int64_t count = static_cast<std::int64_t>(a.m) * a.nv;
  const std::uint64_t base = static_cast<std::uint64_t>(a.k) * static_cast<std::uint64_t>(a.m) * static_cast<std::uint64_t>(a.nh) +
                             static_cast<std::uint64_t>(t - 1) * static_cast<std::uint64_t>(count);
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (std::int64_t e = 0; e < count; ++e) {
    const float x = v[e] + a.b[e % a.nv];
    const float p = a.visible == RbmUnit::Bernoulli ? sigmoidf_stable(x) : x;
    v[e] = a.sample_visible ? unit_sample(a.visible, p, a.seed, a.step, base + static_cast<std::uint64_t>(e)) : p;
  }
}

// y [m,n] = x [m,k] · W'ᵀ with W' [n,k] (trans_w) or y = x · W' with W' [k,n].
void gemm_xw(const float* x, const float* w, float* y, int m, int n, int k, bool trans_w) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_w ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, x, k, w,
              trans_w ? k : n, 0.0f, y, n);
}

// out[j] = −Σ_i (p[i,j] − q[i,j]) / m, in double, rows in order.
void neg_mean_diff(const float* p, const float* q, int m, int n, float* out) {
  std::vector<double> s(static_cast<std::size_t>(n), 0.0);
  for (int i = 0; i < m; ++i) {
    const std::size_t row = static_cast<std::size_t>(i) * n;
    for (int j = 0; j < n; ++j) s[j] += static_cast<double>(p[row + j]) - static_cast<double>(q[row + j]);
  }
  for (int j = 0; j < n; ++j) out[j] = static_cast<float>(-s[j] / m);
}

}  // namespace

void rbm_cd_workspace(const Context&, const RbmCDWorkspace& a) {
  validate(a);
  *a.floats = rbm_cd_workspace_floats(a.m, a.nv, a.nh);
}

void rbm_cd(const Context&, const RbmCD& args) {
  validate(args);
  if (!args.dw && !args.db && !args.dc && !args.recon) return;
  RbmCD a = args;
  a.step = step_of(args.step, args.step_at);  // the passes below draw with a.step
  const int m = a.m, nv = a.nv, nh = a.nh;
  const std::size_t MH = static_cast<std::size_t>(m) * nh;
  float* ph0 = a.ws;
  float* hs = ph0 + MH;
  float* phk = hs + MH;
  float* vt = phk + MH;

  // Positive phase: ph0 = E[h|v0], hs ~ h|v0 (draw t = 0).
  gemm_xw(a.v0, a.w, ph0, m, nh, nv, true);
  hidden_pass(a, ph0, hs, 0);
  for (int t = 1; t <= a.k; ++t) {
    gemm_xw(hs, a.w, vt, m, nv, nh, false);  // vt = E[v|hs], or a sample of v|hs
    visible_pass(a, vt, t);
    if (t == 1 && a.recon) {
      double s = 0.0;
      const std::size_t MV = static_cast<std::size_t>(m) * nv;
      for (std::size_t e = 0; e < MV; ++e) {
        const double d = static_cast<double>(a.v0[e]) - vt[e];
        s += d * d;
      }
      a.recon[0] = static_cast<float>(s / m);
    }
    gemm_xw(vt, a.w, phk, m, nh, nv, true);  // phk = E[h|vt]; sample only while another step follows
    hidden_pass(a, phk, t < a.k ? hs : nullptr, t);
  }

  if (a.dw) {  // dW [nh,nv] = −(ph0ᵀ·v0 − phkᵀ·vk)/m
    const float inv_m = 1.0f / static_cast<float>(m);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nh, nv, m, -inv_m, ph0, nh, a.v0, nv, 0.0f, a.dw, nv);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nh, nv, m, inv_m, phk, nh, vt, nv, 1.0f, a.dw, nv);
  }
  if (a.db) neg_mean_diff(a.v0, vt, m, nv, a.db);
  if (a.dc) neg_mean_diff(ph0, phk, m, nh, a.dc);
}

void rbm_free_energy(const Context&, const RbmFreeEnergy& a) {
  validate(a);
  const int m = a.m, nv = a.nv, nh = a.nh;
  gemm_xw(a.v, a.w, a.ws, m, nh, nv, true);  // x = v·Wᵀ (c added below)
#pragma omp parallel for schedule(static) if (static_cast<std::int64_t>(m) * (nv + nh) >= kParallelMin)
  for (int i = 0; i < m; ++i) {
    const float* v = a.v + static_cast<std::size_t>(i) * nv;
    const float* x = a.ws + static_cast<std::size_t>(i) * nh;
    double f = 0.0;
    for (int j = 0; j < nv; ++j) {
      if (a.visible == RbmUnit::Bernoulli) {
        f -= static_cast<double>(v[j]) * a.b[j];
      } else {
        const double d = static_cast<double>(v[j]) - a.b[j];
        f += 0.5 * d * d;
      }
    }
    for (int j = 0; j < nh; ++j) {
      const double z = static_cast<double>(x[j]) + a.c[j];
      // softplus(z) = max(z, 0) + log1p(exp(−|z|)): no overflow for either sign.
      f -= a.hidden == RbmUnit::Bernoulli ? (z > 0 ? z : 0.0) + std::log1p(std::exp(-std::abs(z))) : 0.5 * z * z;
    }
    a.fe[i] = static_cast<float>(f);
  }
}

}  // namespace cuae::kern::cpu
