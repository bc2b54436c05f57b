// The variational-autoencoder op test: reparameterize, reparameterize_backward and gaussian_kl
// (kernels/ops.hpp, "Variational autoencoders"), checked the ways tests/test_ops_penalty.cpp and
// tests/test_ops_random.cpp check their ops:
//
//   VaeOps.CpuMatchesDoubleReference   the CPU ops against references written here from the
//                                      comments in kernels/ops.hpp, at odd sizes (m = 1, 7, 33;
//                                      d = 1, 2, 3, 20, 37, and three larger shapes past the CPU's
//                                      OpenMP threshold), outputs poisoned with NaN, every buffer
//                                      between guard zones, inputs checked unchanged:
//                                      reparameterize: ε recomputed here from kernels/philox.hpp with
//                                        the element mapping of the contract (element e = i·d + j,
//                                        group e / 4, Box-Muller pair (0, 1) or (2, 3)); eps must equal
//                                        it bit for bit and z must be μ + exp(½·lv)·ε to a few ulp;
//                                        sample = false gives z = μ exactly and leaves eps untouched;
//                                      reparameterize_backward: dμ = dz exactly, d lv = dz·ε·½σ in
//                                        double, acc adds into what was there;
//                                      gaussian_kl: loss, per_row and both gradient halves against the
//                                        closed form in double, with grad and per_row absent, written
//                                        and accumulated, weights 1, 0.37, 2.5 and 0, |lv| up to 8 and
//                                        a posterior at the prior (lv, μ ~ 1e-3: the KL is O(lv²));
//   VaeOps.CudaMatchesCpu              the CUDA ops against the CPU ops on the same cases. Skipped,
//                                      with the reason, without a GPU;
//   VaeGradReparam, VaeGradKL          the CPU gradients against central finite differences in
//                                      double of L(stats) = Σ w⊙z (ε held fixed: the same seed and
//                                      step) and of the KL;
//   VaeReparamNoise                    z(μ = 0, lv = 0) is Corrupt's Gaussian noise bit for bit;
//                                      moments over ~1e6 draws (mean and variance within five
//                                      standard errors, for σ = 1 and σ = ½); different seeds or
//                                      steps draw uncorrelated ε, the same ones repeat exactly;
//   VaeCudaLayout                      CUDA with pointers off 16-byte alignment (the scalar paths at
//                                      d % 4 == 0) against the CPU (skipped without a GPU);
//   VaeValidation                      both backends reject the same bad calls and accept the edge
//                                      calls the contract allows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "common.hpp"
#include "cuae/error.hpp"
#include "host/runtime/backend.hpp"
#include "kernels/ops.hpp"
#include "kernels/philox.hpp"
#include "op_case.hpp"

namespace {

using namespace cuae;
using namespace cuae::kern;
using namespace cuae::test;

// A seed and a step with both 32-bit halves nonzero, so a draw that dropped a high word would
// differ from the reference.
constexpr std::uint64_t kSeed = 0x0123456789ABCDEFull;
constexpr std::uint64_t kStep = (std::uint64_t{1} << 32) + 11;

// ================================================================================================
// Tolerances
// ================================================================================================

// Per element, |got − want| <= kUlpTol·(the magnitude of the terms). z = μ + σ·ε with σ = expf(½lv):
// expf within 1 ulp, one product and one sum rounded, so at most ~2 ulp of |μ| + σ|ε| (2.4e-7);
// the same for the backward's dz·ε·½σ (two products and expf). Measured (the worst_over_tol
// properties): z ≤ 0.53 of the bound, d lv ≤ 0.62.
constexpr double kUlpTol = 3e-7;
// gaussian_kl computes its terms in double and rounds once: loss, per_row and gradients are within
// an ulp or two of the double reference (normalised error ≤ ~1e-7; measured ≤ 5.6e-8, also at
// |lv| = 8 and next to the prior, where evaluating the formula in float is off by 1e-3..5e-2 in
// the value and ~2e-5 in the gradient).
constexpr double kKLTol = 1e-6;
// CUDA against the CPU: expf, logf, sinf and cosf of the device differ from glibc's by an ulp or
// two, which the noise carries into z (a few ulp, normalised ≤ ~2e-7); the KL differs only in the
// order of its double sums.
constexpr double kCudaTol = 1e-6;

// ================================================================================================
// References, written from the contract in kernels/ops.hpp
// ================================================================================================

// ε of element e of z: the standard normal Corrupt's Gaussian noise draws for its element e, i.e.
// philox_normal2 on words (0, 1) of group e / 4 for e % 4 ∈ {0, 1} and on words (2, 3) for
// e % 4 ∈ {2, 3}; the even element takes the first normal of the pair, the odd one the second.
float eps_ref(std::uint64_t seed, std::uint64_t step, std::int64_t e) {
  const Philox4 r = philox_group(seed, step, static_cast<std::uint64_t>(e / 4));
  const int pair = static_cast<int>(e % 4) / 2 * 2;
  float n0 = NAN, n1 = NAN;
  philox_normal2(r.w[pair], r.w[pair + 1], n0, n1);
  return e % 2 == 0 ? n0 : n1;
}

std::vector<float> eps_ref_all(std::int64_t count, std::uint64_t seed = kSeed, std::uint64_t step = kStep) {
  std::vector<float> v(static_cast<std::size_t>(count));
  for (std::int64_t e = 0; e < count; ++e) v[static_cast<std::size_t>(e)] = eps_ref(seed, step, e);
  return v;
}

// stats [m, 2d]: μ of element (i, j) at i·2d + j, lv at i·2d + d + j.
std::size_t mu_at(int d, std::int64_t i, std::int64_t j) { return static_cast<std::size_t>(i * 2 * d + j); }
std::size_t lv_at(int d, std::int64_t i, std::int64_t j) { return static_cast<std::size_t>(i * 2 * d + d + j); }

enum class StatsKind { Typical, LargeLv, NearPrior };
const char* stats_tag(StatsKind k) {
  return k == StatsKind::Typical ? "" : (k == StatsKind::LargeLv ? "_large_lv" : "_near_prior");
}

// Typical: μ ∈ [−2, 2), lv ∈ [−3, 3) (σ from 0.22 to 4.5). LargeLv: μ ∈ [−3, 3), lv ∈ [−8, 8) with
// every third lv exactly ±8 (σ² from 3e-4 to 3e3). NearPrior: μ, lv ∈ [−1e-3, 1e-3): each term
// 1 + lv − μ² − exp(lv) is O(1e-6), what a float evaluation of the formula would cancel away.
std::vector<float> make_stats(int m, int d, StatsKind kind, std::uint32_t seed) {
  const std::size_t n = static_cast<std::size_t>(m) * d;
  std::vector<float> mu, lv;
  switch (kind) {
    case StatsKind::Typical:
      mu = uniform(n, seed, -2.0f, 2.0f);
      lv = uniform(n, seed + 1, -3.0f, 3.0f);
      break;
    case StatsKind::LargeLv:
      mu = uniform(n, seed, -3.0f, 3.0f);
      lv = uniform(n, seed + 1, -8.0f, 8.0f);
      for (std::size_t e = 0; e < n; e += 3) lv[e] = (e / 3) % 2 ? 8.0f : -8.0f;
      break;
    case StatsKind::NearPrior:
      mu = uniform(n, seed, -1e-3f, 1e-3f);
      lv = uniform(n, seed + 1, -1e-3f, 1e-3f);
      break;
  }
  std::vector<float> stats(2 * n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < d; ++j) {
      stats[mu_at(d, i, j)] = mu[static_cast<std::size_t>(i) * d + j];
      stats[lv_at(d, i, j)] = lv[static_cast<std::size_t>(i) * d + j];
    }
  return stats;
}

// KL(N(μ, σ²) ‖ N(0, I)) per row, the weighted mean, and its gradient, all in double.
struct KLRef {
  std::vector<double> per_row, grad;  // grad without initial contents
  double loss = 0.0;
};

KLRef kl_ref(std::span<const double> stats, int m, int d, double weight) {
  KLRef r;
  r.per_row.assign(m, 0.0);
  r.grad.assign(2 * static_cast<std::size_t>(m) * d, 0.0);
  for (int i = 0; i < m; ++i) {
    double s = 0.0;
    for (int j = 0; j < d; ++j) {
      const double mu = stats[mu_at(d, i, j)], lv = stats[lv_at(d, i, j)];
      s += 1.0 + lv - mu * mu - std::exp(lv);
      r.grad[mu_at(d, i, j)] = weight / m * mu;
      r.grad[lv_at(d, i, j)] = weight / m * 0.5 * (std::exp(lv) - 1.0);
    }
    r.per_row[i] = -0.5 * s;
    r.loss += weight / m * r.per_row[i];
  }
  return r;
}

// ================================================================================================
// Comparison helpers
// ================================================================================================

std::string sci(double v) {
  std::ostringstream os;
  os << std::scientific;
  os.precision(2);
  os << v;
  return os.str();
}

// Every |got_e − want_e| <= bound_e (a NaN or an unwritten, poisoned element fails); the worst
// ratio is recorded as a test property.
void expect_within(const std::string& what, std::span<const float> got, std::span<const double> want,
                   std::span<const double> bound) {
  ASSERT_EQ(got.size(), want.size()) << what;
  std::size_t bad = 0;
  double worst = 0.0;
  std::ostringstream first;
  for (std::size_t e = 0; e < got.size(); ++e) {
    const double err = std::abs(static_cast<double>(got[e]) - want[e]);
    if (!(err <= bound[e])) {
      if (bad < 5) first << "  [" << e << "] got " << got[e] << " want " << want[e] << " bound " << bound[e] << "\n";
      ++bad;
    }
    if (std::isfinite(err)) worst = std::max(worst, bound[e] > 0 ? err / bound[e] : (err > 0 ? INFINITY : 0.0));
  }
  record_error("worst_over_tol " + what, worst);
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " elements off the reference\n" << first.str();
}

// The number of elements whose bits differ.
std::size_t bit_mismatches(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return std::max(a.size(), b.size());
  std::size_t n = 0;
  for (std::size_t e = 0; e < a.size(); ++e) n += std::memcmp(&a[e], &b[e], sizeof(float)) != 0;
  return n;
}

// ================================================================================================
// The cases (tests/op_case.hpp)
// ================================================================================================

struct Shape {
  int m, d;
};

// The odd sizes, and three past the CPU's OpenMP threshold (m·d >= 2^15), one of them with d a
// multiple of 4 and many rows (the CUDA float4 path), one with d = 128.
const Shape kShapes[] = {{1, 1}, {1, 2},  {1, 3},  {1, 20},  {1, 37},  {7, 1},      {7, 2},     {7, 3},    {7, 20},
                         {7, 37}, {33, 1}, {33, 2}, {33, 3}, {33, 20}, {33, 37}, {1031, 37}, {4099, 20}, {257, 128}};

std::string shape_tag(int m, int d) { return "m" + std::to_string(m) + "_d" + std::to_string(d); }

// How an output that may be absent or accumulated is passed.
enum class Mode { None, Write, Acc };
const char* mode_tag(Mode g) { return g == Mode::None ? "none" : (g == Mode::Write ? "write" : "acc"); }

class VaeOps : public ::testing::TestWithParam<CasePtr> {};

TEST_P(VaeOps, CpuMatchesDoubleReference) { expect_cpu_matches_reference(*GetParam(), InputCheck::Unchanged); }

TEST_P(VaeOps, CudaMatchesCpu) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_cuda_matches_cpu(*GetParam(), InputCheck::Unchanged);
}

// ---- reparameterize -------------------------------------------------------------------------

class ReparamCase : public OpCase {
 public:
  // eps: None (null), Write (an output); with sample = false a present eps holds values that must
  // come back untouched.
  ReparamCase(int m, int d, Mode eps, bool sample, StatsKind kind = StatsKind::Typical)
      : m_(m), d_(d), eps_(eps), sample_(sample), kind_(kind) {}
  std::string name() const override {
    return "reparameterize_" + shape_tag(m_, d_) + "_eps_" + mode_tag(eps_) + (sample_ ? "" : "_mean") + stats_tag(kind_);
  }
  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    const std::size_t n = static_cast<std::size_t>(m_) * d_;
    Slot eps = null_slot("eps");
    if (eps_ != Mode::None)
      eps = sample_ ? output_slot("eps", n, kCudaTol) : inout_slot("eps", uniform(n, seed + 7, 5.0f, 6.0f), kCudaTol);
    return {input_slot("stats", make_stats(m_, d_, kind_, seed)), output_slot("z", n, kCudaTol), eps};
  }
  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    Reparameterize a;
    a.stats = p[0];
    a.z = p[1];
    a.eps = p[2];
    a.m = m_;
    a.d = d_;
    a.sample = sample_;
    a.seed = kSeed;
    a.step = kStep;
    t.reparameterize(ctx, a);
  }
  void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const override {
    const std::vector<float>& st = slots[0].host;
    const std::size_t n = static_cast<std::size_t>(m_) * d_;
    if (!sample_) {
      std::vector<float> mu(n);
      for (int i = 0; i < m_; ++i)
        for (int j = 0; j < d_; ++j) mu[static_cast<std::size_t>(i) * d_ + j] = st[mu_at(d_, i, j)];
      EXPECT_EQ(bit_mismatches(after[1], mu), 0u) << name() << ": z must be μ exactly";
      if (eps_ != Mode::None) EXPECT_EQ(bit_mismatches(after[2], slots[2].host), 0u) << name() << ": eps was written";
      return;
    }
    const std::vector<float> eps = eps_ref_all(static_cast<std::int64_t>(n));
    std::vector<double> want(n), mag(n), bound(n);
    for (int i = 0; i < m_; ++i)
      for (int j = 0; j < d_; ++j) {
        const std::size_t e = static_cast<std::size_t>(i) * d_ + j;
        const double mu = st[mu_at(d_, i, j)], sigma = std::exp(0.5 * st[lv_at(d_, i, j)]);
        want[e] = mu + sigma * eps[e];
        mag[e] = std::abs(mu) + sigma * std::abs(eps[e]);
        bound[e] = kUlpTol * mag[e];
      }
    expect_within(name() + " z", after[1], want, bound);
    expect_close(name() + " z", after[1], want, kUlpTol, mag);  // the same bound, as a norm (recorded)
    if (eps_ != Mode::None)
      EXPECT_EQ(bit_mismatches(after[2], eps), 0u) << name() << ": eps differs from the Philox draw of the contract";
  }

 private:
  int m_, d_;
  Mode eps_;
  bool sample_;
  StatsKind kind_;
};

std::vector<CasePtr> reparam_cases() {
  std::vector<CasePtr> cases;
  for (const Shape& s : kShapes) {
    cases.push_back(std::make_shared<ReparamCase>(s.m, s.d, Mode::Write, true));
    cases.push_back(std::make_shared<ReparamCase>(s.m, s.d, Mode::None, true));
    cases.push_back(std::make_shared<ReparamCase>(s.m, s.d, Mode::Write, false));
    cases.push_back(std::make_shared<ReparamCase>(s.m, s.d, Mode::None, false));
  }
  for (const Shape& s : {Shape{33, 37}, Shape{257, 128}})
    cases.push_back(std::make_shared<ReparamCase>(s.m, s.d, Mode::Write, true, StatsKind::LargeLv));
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Reparameterize, VaeOps, ::testing::ValuesIn(reparam_cases()), case_name);

// ---- reparameterize_backward ----------------------------------------------------------------

class ReparamBackwardCase : public OpCase {
 public:
  ReparamBackwardCase(int m, int d, bool acc, StatsKind kind = StatsKind::Typical)
      : m_(m), d_(d), acc_(acc), kind_(kind) {}
  std::string name() const override {
    return "reparameterize_backward_" + shape_tag(m_, d_) + (acc_ ? "_acc" : "") + stats_tag(kind_);
  }
  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    const std::size_t n = static_cast<std::size_t>(m_) * d_;
    return {input_slot("dz", uniform(n, seed + 3, -1.0f, 1.0f)), input_slot("stats", make_stats(m_, d_, kind_, seed)),
            acc_ ? inout_slot("dstats", uniform(2 * n, seed + 4, -1.0f, 1.0f), kCudaTol)
                 : output_slot("dstats", 2 * n, kCudaTol)};
  }
  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    ReparameterizeBackward a;
    a.dz = p[0];
    a.stats = p[1];
    a.dstats = p[2];
    a.m = m_;
    a.d = d_;
    a.acc = acc_;
    a.seed = kSeed;
    a.step = kStep;
    t.reparameterize_backward(ctx, a);
  }
  void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const override {
    const std::vector<float>& dz = slots[0].host;
    const std::vector<float>& st = slots[1].host;
    const std::vector<float>& got = after[2];
    const std::size_t n = static_cast<std::size_t>(m_) * d_;
    const std::vector<float> eps = eps_ref_all(static_cast<std::int64_t>(n));
    // dμ = dz, a copy (or one float addition): exact. d lv = dz·ε·½σ, a few ulp.
    std::vector<float> dmu_got(n), dmu_want(n), dlv_got(n);
    std::vector<double> dlv_want(n), bound(n);
    for (int i = 0; i < m_; ++i)
      for (int j = 0; j < d_; ++j) {
        const std::size_t e = static_cast<std::size_t>(i) * d_ + j;
        const float init_mu = acc_ ? slots[2].host[mu_at(d_, i, j)] : 0.0f;
        const double init_lv = acc_ ? slots[2].host[lv_at(d_, i, j)] : 0.0;
        dmu_got[e] = got[mu_at(d_, i, j)];
        dmu_want[e] = acc_ ? init_mu + dz[e] : dz[e];
        dlv_got[e] = got[lv_at(d_, i, j)];
        const double g = static_cast<double>(dz[e]) * eps[e] * 0.5 * std::exp(0.5 * st[lv_at(d_, i, j)]);
        dlv_want[e] = init_lv + g;
        bound[e] = kUlpTol * (std::abs(g) + std::abs(init_lv));
      }
    EXPECT_EQ(bit_mismatches(dmu_got, dmu_want), 0u) << name() << ": dμ must be dz" << (acc_ ? " added to dstats" : "");
    expect_within(name() + " dlv", dlv_got, dlv_want, bound);
  }

 private:
  int m_, d_;
  bool acc_;
  StatsKind kind_;
};

std::vector<CasePtr> reparam_backward_cases() {
  std::vector<CasePtr> cases;
  for (const Shape& s : kShapes)
    for (bool acc : {false, true}) cases.push_back(std::make_shared<ReparamBackwardCase>(s.m, s.d, acc));
  for (const Shape& s : {Shape{33, 37}, Shape{257, 128}})
    cases.push_back(std::make_shared<ReparamBackwardCase>(s.m, s.d, true, StatsKind::LargeLv));
  return cases;
}

INSTANTIATE_TEST_SUITE_P(ReparameterizeBackward, VaeOps, ::testing::ValuesIn(reparam_backward_cases()), case_name);

// ---- gaussian_kl ----------------------------------------------------------------------------

class KLCase : public OpCase {
 public:
  KLCase(int m, int d, Mode grad, bool per_row, float weight, StatsKind kind = StatsKind::Typical)
      : m_(m), d_(d), grad_(grad), per_row_(per_row), weight_(weight), kind_(kind) {}
  std::string name() const override {
    std::ostringstream w;
    w << static_cast<int>(std::lround(weight_ * 100.0f));
    return "gaussian_kl_" + shape_tag(m_, d_) + "_grad_" + mode_tag(grad_) + (per_row_ ? "_per_row" : "") + "_w" + w.str() +
           stats_tag(kind_);
  }
  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    const std::size_t n2 = 2 * static_cast<std::size_t>(m_) * d_;
    Slot grad = null_slot("grad");
    if (grad_ == Mode::Write) grad = output_slot("grad", n2, kCudaTol);
    if (grad_ == Mode::Acc) grad = inout_slot("grad", uniform(n2, seed + 5, -0.1f, 0.1f), kCudaTol);
    return {input_slot("stats", make_stats(m_, d_, kind_, seed)), grad, output_slot("loss", 1, kCudaTol),
            per_row_ ? output_slot("per_row", m_, kCudaTol) : null_slot("per_row")};
  }
  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    GaussianKL a;
    a.stats = p[0];
    a.grad = p[1];
    a.loss = p[2];
    a.per_row = p[3];
    a.m = m_;
    a.d = d_;
    a.weight = weight_;
    a.acc_grad = grad_ == Mode::Acc;
    t.gaussian_kl(ctx, a);
  }
  void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const override {
    const KLRef r = kl_ref(to_double(slots[0].host), m_, d_, weight_);
    expect_close(name() + " loss", after[2], std::vector<double>{r.loss}, kKLTol);
    if (weight_ == 0.0f) EXPECT_EQ(after[2][0], 0.0f) << name() << ": a zero weight gives a zero loss";
    if (per_row_) expect_close(name() + " per_row", after[3], r.per_row, kKLTol);
    if (grad_ != Mode::None) {
      const std::span<const float> init = grad_ == Mode::Acc ? std::span<const float>(slots[1].host) : std::span<const float>{};
      expect_close(name() + " grad", after[1], plus(r.grad, init), kKLTol, plus(abs_d(r.grad), abs_d(init)));
      if (weight_ == 0.0f) {
        // Compared by value: 0·μ is −0 for a negative μ.
        std::size_t moved = 0;
        for (std::size_t e = 0; e < after[1].size(); ++e)
          moved += !(after[1][e] == (grad_ == Mode::Acc ? slots[1].host[e] : 0.0f));
        EXPECT_EQ(moved, 0u) << name() << ": a zero weight adds nothing to the gradient";
      }
    }
  }

 private:
  int m_, d_;
  Mode grad_;
  bool per_row_;
  float weight_;
  StatsKind kind_;
};

std::vector<CasePtr> kl_cases() {
  std::vector<CasePtr> cases;
  for (const Shape& s : kShapes) {
    cases.push_back(std::make_shared<KLCase>(s.m, s.d, Mode::Write, true, 1.0f));
    cases.push_back(std::make_shared<KLCase>(s.m, s.d, Mode::Acc, false, 0.37f));
    cases.push_back(std::make_shared<KLCase>(s.m, s.d, Mode::None, true, 2.5f));
  }
  for (const Shape& s : {Shape{7, 3}, Shape{33, 37}, Shape{1031, 37}, Shape{257, 128}}) {
    for (StatsKind kind : {StatsKind::LargeLv, StatsKind::NearPrior}) {
      cases.push_back(std::make_shared<KLCase>(s.m, s.d, Mode::Write, true, 1.0f, kind));
      cases.push_back(std::make_shared<KLCase>(s.m, s.d, Mode::Acc, true, 0.37f, kind));
    }
  }
  for (const Shape& s : {Shape{1, 1}, Shape{33, 20}}) {
    cases.push_back(std::make_shared<KLCase>(s.m, s.d, Mode::Write, true, 0.0f));
    cases.push_back(std::make_shared<KLCase>(s.m, s.d, Mode::Acc, false, 0.0f));
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(GaussianKL, VaeOps, ::testing::ValuesIn(kl_cases()), case_name);

// ================================================================================================
// Finite differences (CPU)
// ================================================================================================

std::string mdk_name(const ::testing::TestParamInfo<std::tuple<int, int, int>>& i) {
  return shape_tag(std::get<0>(i.param), std::get<1>(i.param)) + stats_tag(static_cast<StatsKind>(std::get<2>(i.param)));
}

// L(stats) = Σ w_ij·z_ij with z = μ + exp(½lv)·ε in double, ε the draw of (kSeed, kStep) held fixed;
// the backward with dz = w must be its gradient in both halves of stats.
class VaeGradReparam : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(VaeGradReparam, BackwardMatchesFiniteDifferences) {
  const auto [m, d, k] = GetParam();
  const StatsKind kind = static_cast<StatsKind>(k);
  const std::string tag = "reparam " + shape_tag(m, d) + stats_tag(kind);
  const std::uint32_t seed = seed_from("grad_" + tag);
  const std::size_t n = static_cast<std::size_t>(m) * d;
  const std::vector<float> stats = make_stats(m, d, kind, seed);
  const std::vector<float> w = uniform(n, seed + 2, -1.0f, 1.0f);
  std::vector<float> dstats(2 * n, nan_value());
  ReparameterizeBackward a;
  a.dz = w.data();
  a.stats = stats.data();
  a.dstats = dstats.data();
  a.m = m;
  a.d = d;
  a.seed = kSeed;
  a.step = kStep;
  cpu::reparameterize_backward(Context{}, a);

  const std::vector<float> eps = eps_ref_all(static_cast<std::int64_t>(n));
  std::vector<double> sd = to_double(stats);
  const auto L = [&] {
    double v = 0.0;
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < d; ++j) {
        const std::size_t e = static_cast<std::size_t>(i) * d + j;
        v += w[e] * (sd[mu_at(d, i, j)] + std::exp(0.5 * sd[lv_at(d, i, j)]) * eps[e]);
      }
    return v;
  };
  expect_grad_ok(tag, check_gradient(L, sd, dstats, sample_indices(2 * n, 300, seed + 3), nullptr, grad_options()));
}

INSTANTIATE_TEST_SUITE_P(Vae, VaeGradReparam,
                         ::testing::Values(std::make_tuple(1, 1, 0), std::make_tuple(7, 3, 0), std::make_tuple(33, 20, 0),
                                           std::make_tuple(5, 37, 0), std::make_tuple(33, 37, 1)),
                         mdk_name);

// The KL's gradient against finite differences of weight/m·Σ_i kl_i in double.
class VaeGradKL : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(VaeGradKL, GradientMatchesFiniteDifferences) {
  const auto [m, d, k] = GetParam();
  const StatsKind kind = static_cast<StatsKind>(k);
  const std::string tag = "kl " + shape_tag(m, d) + stats_tag(kind);
  const std::uint32_t seed = seed_from("grad_" + tag);
  const std::size_t n2 = 2 * static_cast<std::size_t>(m) * d;
  const float weight = 0.37f;
  const std::vector<float> stats = make_stats(m, d, kind, seed);
  std::vector<float> grad(n2, nan_value());
  float loss = NAN;
  GaussianKL a;
  a.stats = stats.data();
  a.grad = grad.data();
  a.loss = &loss;
  a.m = m;
  a.d = d;
  a.weight = weight;
  cpu::gaussian_kl(Context{}, a);

  std::vector<double> sd = to_double(stats);
  const auto L = [&] { return kl_ref(sd, m, d, weight).loss; };
  expect_close(tag + " loss", std::span<const float>(&loss, 1), std::vector<double>{L()}, kKLTol);
  expect_grad_ok(tag, check_gradient(L, sd, grad, sample_indices(n2, 300, seed + 3), nullptr, grad_options()));
}

INSTANTIATE_TEST_SUITE_P(Vae, VaeGradKL,
                         ::testing::Values(std::make_tuple(1, 1, 0), std::make_tuple(7, 3, 0), std::make_tuple(33, 20, 0),
                                           std::make_tuple(5, 37, 0), std::make_tuple(33, 37, 1),
                                           std::make_tuple(7, 20, 2)),
                         mdk_name);

// ================================================================================================
// The noise
// ================================================================================================

std::vector<float> reparam_cpu(const std::vector<float>& stats, int m, int d, std::uint64_t seed, std::uint64_t step) {
  std::vector<float> z(static_cast<std::size_t>(m) * d, nan_value());
  Reparameterize a;
  a.stats = stats.data();
  a.z = z.data();
  a.m = m;
  a.d = d;
  a.seed = seed;
  a.step = step;
  cpu::reparameterize(Context{}, a);
  return z;
}

// stats with every μ = mu and every lv = lv.
std::vector<float> constant_stats(int m, int d, float mu, float lv) {
  std::vector<float> s(2 * static_cast<std::size_t>(m) * d);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < d; ++j) {
      s[mu_at(d, i, j)] = mu;
      s[lv_at(d, i, j)] = lv;
    }
  return s;
}

// z(μ = 0, lv = 0) = 0 + 1·ε = ε must be Corrupt's Gaussian noise (x = 0, σ = 1) over the same
// count, element for element and bit for bit, on the given backend.
void expect_reparam_is_corrupt_noise(Device device) {
  constexpr int m = 33, d = 37;  // rows that do not align with the groups of four
  const std::size_t n = static_cast<std::size_t>(m) * d;
  Backend be(device);
  DeviceBuffer stats(be, 2 * n), z(be, n), x(be, n), y(be, n);
  stats.upload(constant_stats(m, d, 0.0f, 0.0f));
  x.fill(0.0f);
  z.poison();
  y.poison();
  Reparameterize r;
  r.stats = stats.data();
  r.z = z.data();
  r.m = m;
  r.d = d;
  r.seed = kSeed;
  r.step = kStep;
  be.ops().reparameterize(be.ctx(), r);
  Corrupt c;
  c.x = x.data();
  c.y = y.data();
  c.count = static_cast<std::int64_t>(n);
  c.kind = NoiseKind::Gaussian;
  c.level = 1.0f;
  c.seed = kSeed;
  c.step = kStep;
  be.ops().corrupt(be.ctx(), c);
  be.synchronize();
  const std::vector<float> zh = z.download(), yh = y.download();
  EXPECT_EQ(count_nonfinite(zh), 0u);
  EXPECT_EQ(bit_mismatches(zh, yh), 0u) << device_name(device) << ": reparameterize's ε is not Corrupt's noise";
  for (const DeviceBuffer* b : {&stats, &z, &x, &y}) EXPECT_TRUE(b->guards_intact());
}

TEST(VaeReparamNoise, IsCorruptsGaussianNoiseCpu) { expect_reparam_is_corrupt_noise(Device::CPU); }

TEST(VaeReparamNoise, IsCorruptsGaussianNoiseCuda) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_reparam_is_corrupt_noise(Device::CUDA);
}

constexpr int kStatM = 4099, kStatD = 257;  // ~1.05e6 draws
constexpr double kSigmas = 5.0;

// Sample mean and variance of z against N(μ, σ²), each within five standard errors
// (σ/√N for the mean, σ²·√(2/N) for the variance of a normal sample).
void expect_moments(const std::string& what, const std::vector<float>& z, double mu, double sigma) {
  const double N = static_cast<double>(z.size());
  double s = 0.0;
  for (float v : z) s += v;
  const double mean = s / N;
  double q = 0.0;
  for (float v : z) q += (v - mean) * (v - mean);
  const double var = q / (N - 1.0);
  record_error("mean " + what, mean);
  record_error("var " + what, var);
  EXPECT_LE(std::abs(mean - mu), kSigmas * sigma / std::sqrt(N)) << what << ": mean " << mean;
  EXPECT_LE(std::abs(var - sigma * sigma), kSigmas * sigma * sigma * std::sqrt(2.0 / N)) << what << ": variance " << var;
}

TEST(VaeReparamNoise, MomentsMatchTheGaussian) {
  expect_moments("standard", reparam_cpu(constant_stats(kStatM, kStatD, 0.0f, 0.0f), kStatM, kStatD, kSeed, kStep),
                 0.0, 1.0);
  // σ = exp(½·lv) = ½ (not exp(lv) = ¼, nor √lv): the log-variance convention.
  const float lv = static_cast<float>(std::log(0.25));
  expect_moments("mu 0.7 sigma 0.5", reparam_cpu(constant_stats(kStatM, kStatD, 0.7f, lv), kStatM, kStatD, kSeed, kStep),
                 0.7, 0.5);
}

// Different seeds or steps draw uncorrelated noise (|correlation| within five standard errors of
// 0, and almost no element repeats); the same (seed, step) repeats bit for bit.
TEST(VaeReparamNoise, SeedsAndStepsDrawIndependentNoiseAndRepeatExactly) {
  const std::vector<float> stats = constant_stats(kStatM, kStatD, 0.0f, 0.0f);
  const std::vector<float> base = reparam_cpu(stats, kStatM, kStatD, kSeed, kStep);
  const double N = static_cast<double>(base.size());
  struct Other {
    const char* what;
    std::uint64_t seed, step;
  };
  const Other others[] = {
      {"next step", kSeed, kStep + 1},
      {"step + 2^32", kSeed, kStep + (std::uint64_t{1} << 32)},
      {"seed ^ 1", kSeed ^ 1u, kStep},
      {"seed ^ 2^32", kSeed ^ (std::uint64_t{1} << 32), kStep},
  };
  for (const Other& o : others) {
    const std::vector<float> z = reparam_cpu(stats, kStatM, kStatD, o.seed, o.step);
    double sxy = 0.0, sxx = 0.0, syy = 0.0;
    std::size_t same = 0;
    for (std::size_t e = 0; e < z.size(); ++e) {
      sxy += static_cast<double>(z[e]) * base[e];
      sxx += static_cast<double>(base[e]) * base[e];
      syy += static_cast<double>(z[e]) * z[e];
      same += z[e] == base[e];
    }
    const double corr = sxy / std::sqrt(sxx * syy);
    record_error(std::string("corr ") + o.what, corr);
    EXPECT_LE(std::abs(corr), kSigmas / std::sqrt(N)) << o.what << ": correlation " << corr;
    EXPECT_LE(static_cast<double>(same), 1e-4 * N) << o.what << ": " << same << " elements repeat";
  }
  const std::vector<float> again = reparam_cpu(stats, kStatM, kStatD, kSeed, kStep);
  EXPECT_EQ(bit_mismatches(again, base), 0u) << "the same seed and step must draw the same ε";
}

// ================================================================================================
// CUDA with pointers off 16-byte alignment (skipped without a GPU)
// ================================================================================================

// Runs the three ops on a backend with every buffer starting `off` floats past its (256-byte
// aligned) start; returns z, eps, dstats (accumulated into init), grad, per_row and loss.
std::vector<std::vector<float>> run_all(Backend& be, int m, int d, std::size_t off, const std::vector<float>& stats,
                                        const std::vector<float>& dz, const std::vector<float>& init) {
  const std::size_t n = static_cast<std::size_t>(m) * d;
  auto padded = [&](const std::vector<float>& v) {
    std::vector<float> p(v.size() + off, 0.0f);
    std::copy(v.begin(), v.end(), p.begin() + static_cast<std::ptrdiff_t>(off));
    return p;
  };
  DeviceBuffer sb(be, 2 * n + off), zb(be, n + off), eb(be, n + off), dzb(be, n + off), dsb(be, 2 * n + off),
      gb(be, 2 * n + off), pb(be, m + off), lb(be, 1 + off);
  sb.upload(padded(stats));
  dzb.upload(padded(dz));
  dsb.upload(padded(init));
  for (DeviceBuffer* b : {&zb, &eb, &gb, &pb, &lb}) b->poison();
  Reparameterize r;
  r.stats = sb.data() + off;
  r.z = zb.data() + off;
  r.eps = eb.data() + off;
  r.m = m;
  r.d = d;
  r.seed = kSeed;
  r.step = kStep;
  be.ops().reparameterize(be.ctx(), r);
  ReparameterizeBackward rb;
  rb.dz = dzb.data() + off;
  rb.stats = sb.data() + off;
  rb.dstats = dsb.data() + off;
  rb.m = m;
  rb.d = d;
  rb.acc = true;
  rb.seed = kSeed;
  rb.step = kStep;
  be.ops().reparameterize_backward(be.ctx(), rb);
  GaussianKL k;
  k.stats = sb.data() + off;
  k.grad = gb.data() + off;
  k.per_row = pb.data() + off;
  k.loss = lb.data() + off;
  k.m = m;
  k.d = d;
  k.weight = 0.5f;
  be.ops().gaussian_kl(be.ctx(), k);
  be.synchronize();
  std::vector<std::vector<float>> out;
  for (DeviceBuffer* b : {&zb, &eb, &dsb, &gb, &pb, &lb}) {
    EXPECT_TRUE(b->guards_intact()) << device_name(be.device()) << " m" << m << " d" << d << " offset " << off;
    const std::vector<float> h = b->download();
    out.emplace_back(h.begin() + static_cast<std::ptrdiff_t>(off), h.end());
  }
  return out;
}

TEST(VaeCudaLayout, MisalignedPointersMatchCpu) {
  CUAE_SKIP_WITHOUT_GPU();
  Backend cpu(Device::CPU), gpu(Device::CUDA);
  const char* names[] = {"z", "eps", "dstats", "grad", "per_row", "loss"};
  for (const Shape& s : {Shape{33, 20}, Shape{257, 128}, Shape{7, 37}}) {
    const std::size_t n = static_cast<std::size_t>(s.m) * s.d;
    const std::uint32_t seed = seed_from("layout " + shape_tag(s.m, s.d));
    const std::vector<float> stats = make_stats(s.m, s.d, StatsKind::Typical, seed);
    const std::vector<float> dz = uniform(n, seed + 1), init = uniform(2 * n, seed + 2);
    const auto want = run_all(cpu, s.m, s.d, 0, stats, dz, init);
    for (std::size_t off : {std::size_t{0}, std::size_t{1}, std::size_t{2}}) {
      const auto got = run_all(gpu, s.m, s.d, off, stats, dz, init);
      for (std::size_t o = 0; o < want.size(); ++o) {
        const double err = normalized_error(got[o], want[o]);
        record_error(std::string("cuda_err ") + names[o] + " " + shape_tag(s.m, s.d) + " offset " + std::to_string(off), err);
        EXPECT_LE(err, kCudaTol) << names[o] << " " << shape_tag(s.m, s.d) << " offset " << off;
      }
    }
  }
}

// ================================================================================================
// Validation: both backends reject the same bad calls with cuae::Error, before touching memory.
// ================================================================================================

// Valid calls on the 256-float test buffer: m = 4, d = 8 (stats 64 floats).
Reparameterize valid_reparam(float* b) {
  Reparameterize a;
  a.stats = b;
  a.z = b + 64;
  a.eps = b + 96;
  a.m = 4;
  a.d = 8;
  return a;
}
ReparameterizeBackward valid_backward(float* b) {
  ReparameterizeBackward a;
  a.dz = b;
  a.stats = b + 32;
  a.dstats = b + 96;
  a.m = 4;
  a.d = 8;
  return a;
}
GaussianKL valid_kl(float* b) {
  GaussianKL a;
  a.stats = b;
  a.grad = b + 64;
  a.loss = b + 128;
  a.per_row = b + 132;
  a.m = 4;
  a.d = 8;
  return a;
}

std::vector<BadCall> bad_calls() {
  std::vector<BadCall> calls;
  auto rep = [&](std::string what, std::function<void(Reparameterize&)> edit) {
    calls.push_back({"reparameterize " + what, [=](const OpTable& t, const Context& c, float* b) {
                       Reparameterize a = valid_reparam(b);
                       edit(a);
                       t.reparameterize(c, a);
                     }});
  };
  auto bwd = [&](std::string what, std::function<void(ReparameterizeBackward&)> edit) {
    calls.push_back({"reparameterize_backward " + what, [=](const OpTable& t, const Context& c, float* b) {
                       ReparameterizeBackward a = valid_backward(b);
                       edit(a);
                       t.reparameterize_backward(c, a);
                     }});
  };
  auto kl = [&](std::string what, std::function<void(GaussianKL&)> edit) {
    calls.push_back({"gaussian_kl " + what, [=](const OpTable& t, const Context& c, float* b) {
                       GaussianKL a = valid_kl(b);
                       edit(a);
                       t.gaussian_kl(c, a);
                     }});
  };
  // Shapes: m or d not positive; m·2d over 2^31-1 (also where m·d alone would fit).
  struct Bad {
    const char* what;
    int m, d;
  };
  const Bad shapes[] = {{"m = 0", 0, 8},       {"m negative", -4, 8},          {"d = 0", 4, 0},
                        {"d negative", 4, -1}, {"m·2d = 2^31", 32768, 32768},   {"m·2d over 2^31", 65536, 65536},
                        {"d = 2^30", 1, 1 << 30}};
  for (const Bad& s : shapes) {
    for (bool sample : {true, false})
      rep(std::string(s.what) + (sample ? "" : " (mean)"), [=](Reparameterize& a) {
        a.m = s.m;
        a.d = s.d;
        a.sample = sample;
      });
    bwd(s.what, [=](ReparameterizeBackward& a) {
      a.m = s.m;
      a.d = s.d;
    });
    kl(s.what, [=](GaussianKL& a) {
      a.m = s.m;
      a.d = s.d;
    });
  }
  rep("null stats", [](Reparameterize& a) { a.stats = nullptr; });
  rep("null z", [](Reparameterize& a) { a.z = nullptr; });
  rep("null z (mean)", [](Reparameterize& a) {
    a.z = nullptr;
    a.sample = false;
  });
  rep("z aliasing stats", [](Reparameterize& a) { a.z = const_cast<float*>(a.stats); });
  rep("eps aliasing z", [](Reparameterize& a) { a.eps = a.z; });
  bwd("null dz", [](ReparameterizeBackward& a) { a.dz = nullptr; });
  bwd("null stats", [](ReparameterizeBackward& a) { a.stats = nullptr; });
  bwd("null dstats", [](ReparameterizeBackward& a) { a.dstats = nullptr; });
  bwd("dstats aliasing stats", [](ReparameterizeBackward& a) { a.dstats = const_cast<float*>(a.stats); });
  kl("null stats", [](GaussianKL& a) { a.stats = nullptr; });
  kl("null loss", [](GaussianKL& a) { a.loss = nullptr; });
  kl("negative weight", [](GaussianKL& a) { a.weight = -1.0f; });
  kl("NaN weight", [](GaussianKL& a) { a.weight = NAN; });
  kl("infinite weight", [](GaussianKL& a) { a.weight = INFINITY; });
  kl("grad aliasing stats", [](GaussianKL& a) { a.grad = const_cast<float*>(a.stats); });
  return calls;
}

// Rejected calls touch no memory: the buffer keeps its (random) contents, bit for bit.
const std::vector<float> kValidationFill = uniform(256, 17, -1.0f, 1.0f);

TEST(VaeValidation, CpuRejectsBadArguments) { expect_rejects_bad_calls(Device::CPU, bad_calls(), kValidationFill); }

TEST(VaeValidation, CudaRejectsBadArguments) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_rejects_bad_calls(Device::CUDA, bad_calls(), kValidationFill);
}

// The smallest and the optional forms the contract allows: m = d = 1, eps null, sample = false
// with eps null, grad and per_row null, weight 0.
void expect_accepts_edge_calls(Device device) {
  Backend be(device);
  DeviceBuffer buf(be, 256);
  buf.upload(kValidationFill);
  float* b = buf.data();
  Reparameterize r = valid_reparam(b);
  r.eps = nullptr;
  EXPECT_NO_THROW(be.ops().reparameterize(be.ctx(), r));
  r.sample = false;
  EXPECT_NO_THROW(be.ops().reparameterize(be.ctx(), r));
  r.m = r.d = 1;
  EXPECT_NO_THROW(be.ops().reparameterize(be.ctx(), r));
  ReparameterizeBackward rb = valid_backward(b);
  rb.m = rb.d = 1;
  rb.acc = true;
  EXPECT_NO_THROW(be.ops().reparameterize_backward(be.ctx(), rb));
  GaussianKL k = valid_kl(b);
  k.grad = nullptr;
  k.per_row = nullptr;
  k.weight = 0.0f;
  EXPECT_NO_THROW(be.ops().gaussian_kl(be.ctx(), k));
  k.m = k.d = 1;
  EXPECT_NO_THROW(be.ops().gaussian_kl(be.ctx(), k));
  EXPECT_NO_THROW(be.synchronize());
  EXPECT_TRUE(buf.guards_intact());
}

TEST(VaeValidation, CpuAcceptsEdgeCalls) { expect_accepts_edge_calls(Device::CPU); }

TEST(VaeValidation, CudaAcceptsEdgeCalls) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_accepts_edge_calls(Device::CUDA);
}

}  // namespace
