// The penalty op test: activity_penalty (L1 and KL sparsity) and contractive_penalty, checked the
// same ways as tests/test_ops.cpp checks the other ops:
//
//   PenaltyOps.CpuMatchesDoubleReference   the CPU op against float64 loops written here from the
//                                          comments in kernels/ops.hpp (not from penalty_math.hpp),
//                                          odd shapes, outputs poisoned with NaN, guard zones around
//                                          every buffer, written / accumulated / absent gradients;
//   PenaltyOps.CudaMatchesCpu              the CUDA op against the CPU op on the same inputs, CUDA
//                                          outputs poisoned first. Skipped, with the reason, when
//                                          there is no GPU;
//   PenaltyGradActivity, PenaltyGradContractive
//                                          the CPU gradients against central finite differences in
//                                          double of the penalty as a function of its inputs;
//   PenaltyContractiveChain                the contractive penalty through a real dense layer: the
//                                          op's value against the mean ‖J‖²_F of the explicit
//                                          Jacobians diag(a′(z))·W, and the op's grad_w plus the
//                                          layer backward of its grad_h against finite differences
//                                          of that explicit penalty in W and b;
//   PenaltyKL                              columns with ρ̂ = 0 or 1 (clamped) stay finite;
//   PenaltyValidation                      both backends reject the same bad arguments.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "common.hpp"
#include "cuae/error.hpp"
#include "host/runtime/backend.hpp"
#include "kernels/ops.hpp"
#include "op_case.hpp"

namespace {

using namespace cuae;
using namespace cuae::kern;
using namespace cuae::test;

// ================================================================================================
// Tolerances: normalised errors ‖a−b‖ / max(‖b‖, ‖magnitude‖) (tests/common.hpp). A wrong index,
// a missing term or a wrong formula gives 1e-3..1.
// ================================================================================================

// CPU float op vs the double formulas: per-element float formulas (a few ulp each), sums in double.
constexpr double kRefValueTol = 1e-6;
constexpr double kRefElemTol = 2e-6;
// CUDA vs CPU: the same float formulas; sums in a different order (in double), device libm and
// contracted multiply-adds differ by an ulp or so.
constexpr double kCudaTol = 1e-5;
// Finite differences: kGradRelTol, kGradStep and kMaxKinkFraction (tests/op_case.hpp).

constexpr float kLeakySlope = 0.1f;

// ================================================================================================
// Double-precision formulas, written from the comments in kernels/ops.hpp.
// ================================================================================================

// ρ̂ is clamped to [1e-6, 1 − 1e-6] as float32 holds those bounds: 1 − 1e-6 is not a float (the
// nearest is 1 − 17·2⁻²⁴), and 1 − ρ̂ at the upper bound depends on which float it is.
double clamp_rho_hat_d(double r) {
  const double lo = static_cast<double>(1e-6f);
  const double hi = static_cast<double>(static_cast<float>(1.0 - 1e-6));
  return std::min(std::max(r, lo), hi);
}

double kl_d(double rho, double r) { return rho * std::log(rho / r) + (1.0 - rho) * std::log((1.0 - rho) / (1.0 - r)); }
// Magnitude of the terms of kl_d, each log counted at least as 1 (its argument is a float ratio
// rounded to ~2⁻²⁴ relative, an absolute error of that size in the log).
double kl_mag_d(double rho, double r) {
  return rho * (1.0 + std::abs(std::log(rho / r))) + (1.0 - rho) * (1.0 + std::abs(std::log((1.0 - rho) / (1.0 - r))));
}
double kl_grad_d(double rho, double r) { return (1.0 - rho) / (1.0 - r) - rho / r; }
double kl_grad_mag_d(double rho, double r) { return (1.0 - rho) / (1.0 - r) + rho / r; }

double sign_d(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }

// a′(z)² as a function of the output h, and its derivative in h.
double contractive_g_d(Act a, double h, double slope) {
  switch (a) {
    case Act::Sigmoid: return std::pow(h - h * h, 2);
    case Act::Tanh: return std::pow(1.0 - h * h, 2);
    case Act::ReLU: return h > 0 ? 1.0 : 0.0;
    case Act::LeakyReLU: return h > 0 ? 1.0 : slope * slope;
    case Act::Identity: return 1.0;
    default: return NAN;
  }
}
double contractive_dg_d(Act a, double h) {
  switch (a) {
    case Act::Sigmoid: return 2.0 * (h - h * h) * (1.0 - 2.0 * h);
    case Act::Tanh: return 2.0 * (1.0 - h * h) * (-2.0 * h);
    case Act::ReLU:
    case Act::LeakyReLU:
    case Act::Identity: return 0.0;
    default: return NAN;
  }
}

// The derivative in z of the layer's activation (act_d, tests/op_case.hpp), for the chain test.
double act_dz_d(Act a, double z, double slope) {
  switch (a) {
    case Act::Identity: return 1.0;
    case Act::ReLU: return z > 0 ? 1.0 : 0.0;
    case Act::LeakyReLU: return z > 0 ? 1.0 : slope;
    case Act::Sigmoid: {
      const double s = 1.0 / (1.0 + std::exp(-z));
      return s * (1.0 - s);
    }
    case Act::Tanh: {
      const double c = std::cosh(z);
      return 1.0 / (c * c);
    }
    default: return NAN;
  }
}

struct ContractiveRef {
  double value = 0.0;
  std::vector<double> s, G, grad_h, grad_w;  // grad_* without any initial contents
};

ContractiveRef contractive_ref(std::span<const double> h, std::span<const double> w, int m, int n, int k, Act act,
                               double slope, double weight) {
  ContractiveRef r;
  r.s.assign(n, 0.0);
  r.G.assign(n, 0.0);
  r.grad_h.assign(static_cast<std::size_t>(m) * n, 0.0);
  r.grad_w.assign(static_cast<std::size_t>(n) * k, 0.0);
  for (int j = 0; j < n; ++j)
    for (int l = 0; l < k; ++l) r.s[j] += w[static_cast<std::size_t>(j) * k + l] * w[static_cast<std::size_t>(j) * k + l];
  const double per = weight / m;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      const std::size_t e = static_cast<std::size_t>(i) * n + j;
      const double g = contractive_g_d(act, h[e], slope);
      r.G[j] += g;
      r.value += per * g * r.s[j];
      r.grad_h[e] = per * contractive_dg_d(act, h[e]) * r.s[j];
    }
  for (int j = 0; j < n; ++j)
    for (int l = 0; l < k; ++l) {
      const std::size_t e = static_cast<std::size_t>(j) * k + l;
      r.grad_w[e] = 2.0 * per * r.G[j] * w[e];
    }
  return r;
}

// ================================================================================================
// The case framework (tests/op_case.hpp): a case declares its buffers with their roles, launches
// its op through an op table, and checks the CPU results against its double reference.
// ================================================================================================

// How a gradient output is passed: absent (null), written, or accumulated into.
enum class GradMode { None, Write, Acc };
const char* mode_tag(GradMode g) { return g == GradMode::None ? "none" : (g == GradMode::Write ? "write" : "acc"); }

Slot grad_slot(const std::string& name, GradMode mode, std::size_t n, std::uint32_t seed) {
  switch (mode) {
    case GradMode::None: return null_slot(name);
    case GradMode::Write: return output_slot(name, n, kCudaTol);
    case GradMode::Acc: return inout_slot(name, uniform(n, seed, -1.0f, 1.0f), kCudaTol);
  }
  return null_slot(name);
}

class PenaltyOps : public ::testing::TestWithParam<CasePtr> {};

// Both also expect every input to come back unchanged.
TEST_P(PenaltyOps, CpuMatchesDoubleReference) { expect_cpu_matches_reference(*GetParam(), InputCheck::Unchanged); }

TEST_P(PenaltyOps, CudaMatchesCpu) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_cuda_matches_cpu(*GetParam(), InputCheck::Unchanged);
}

// ================================================================================================
// activity_penalty
// ================================================================================================

// h for an activity penalty. L1: U(−1,1) with exact zeros (sign 0). KL: U(0.001, 0.3), the outputs
// of a sparse sigmoid layer (ρ̂ near ρ = 0.05 and far from 1, where 1 − ρ̂ in float would lose
// digits); with clamp, column 0 all 0 and the last column all 1 (ρ̂ clamped at both ends).
std::vector<float> activity_inputs(PenaltyKind kind, int m, int n, bool clamp, std::uint32_t seed) {
  const std::size_t count = static_cast<std::size_t>(m) * n;
  if (kind == PenaltyKind::L1) {
    std::vector<float> h = uniform(count, seed, -1.0f, 1.0f);
    for (std::size_t i = 2; i < count; i += 7) h[i] = 0.0f;
    return h;
  }
  std::vector<float> h = uniform(count, seed, 0.001f, 0.3f);
  if (clamp)
    for (int i = 0; i < m; ++i) {
      h[static_cast<std::size_t>(i) * n] = 0.0f;
      h[static_cast<std::size_t>(i) * n + n - 1] = 1.0f;
    }
  return h;
}

constexpr float kL1Weight = 0.7f;
constexpr float kKLWeight = 3.0f;
constexpr float kRho = 0.05f;

struct ActivityRef {
  double value = 0.0, value_mag = 0.0;
  std::vector<double> rho_hat, grad, grad_mag;  // grad without initial contents
};

ActivityRef activity_ref(PenaltyKind kind, std::span<const float> h, int m, int n, double weight, double rho) {
  ActivityRef r;
  const std::size_t count = static_cast<std::size_t>(m) * n;
  r.grad.assign(count, 0.0);
  r.grad_mag.assign(count, 0.0);
  if (kind == PenaltyKind::L1) {
    for (std::size_t i = 0; i < count; ++i) {
      r.value += weight / m * std::abs(static_cast<double>(h[i]));
      r.grad[i] = weight / m * sign_d(h[i]);
      r.grad_mag[i] = std::abs(r.grad[i]);
    }
    r.value_mag = std::abs(r.value);
    return r;
  }
  r.rho_hat.assign(n, 0.0);
  for (int j = 0; j < n; ++j) {
    double s = 0.0;
    for (int i = 0; i < m; ++i) s += h[static_cast<std::size_t>(i) * n + j];
    const double rh = clamp_rho_hat_d(s / m);
    r.rho_hat[j] = rh;
    r.value += weight * kl_d(rho, rh);
    r.value_mag += weight * kl_mag_d(rho, rh);
    for (int i = 0; i < m; ++i) {
      r.grad[static_cast<std::size_t>(i) * n + j] = weight / m * kl_grad_d(rho, rh);
      r.grad_mag[static_cast<std::size_t>(i) * n + j] = weight / m * kl_grad_mag_d(rho, rh);
    }
  }
  return r;
}

class ActivityCase : public OpCase {
 public:
  ActivityCase(PenaltyKind kind, int m, int n, GradMode mode, bool clamp = false)
      : kind_(kind), m_(m), n_(n), mode_(mode), clamp_(clamp) {}
  std::string name() const override {
    return std::string("activity_penalty_") + penalty_name(kind_) + "_m" + std::to_string(m_) + "_n" + std::to_string(n_) +
           "_grad_" + mode_tag(mode_) + (clamp_ ? "_clamp" : "");
  }
  float weight() const { return kind_ == PenaltyKind::L1 ? kL1Weight : kKLWeight; }

  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    const std::size_t count = static_cast<std::size_t>(m_) * n_;
    return {input_slot("h", activity_inputs(kind_, m_, n_, clamp_, seed)), grad_slot("grad", mode_, count, seed + 1),
            output_slot("loss", 1, kCudaTol),
            // ρ̂ is unused for L1: passed as null there, as the contract allows.
            kind_ == PenaltyKind::KL ? output_slot("rho_hat", n_, kCudaTol) : null_slot("rho_hat")};
  }

  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    ActivityPenalty a;
    a.h = p[0];
    a.grad = p[1];
    a.loss = p[2];
    a.rho_hat = p[3];
    a.m = m_;
    a.n = n_;
    a.kind = kind_;
    a.weight = weight();
    a.rho = kRho;
    a.acc_grad = mode_ == GradMode::Acc;
    t.activity_penalty(ctx, a);
  }

  std::vector<std::vector<double>> magnitudes(const std::vector<Slot>& slots) const override {
    const ActivityRef r = activity_ref(kind_, slots[0].host, m_, n_, weight(), kRho);
    std::vector<std::vector<double>> mags(slots.size());
    mags[1] = r.grad_mag;
    mags[2] = {r.value_mag};
    return mags;
  }

  void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const override {
    const ActivityRef r = activity_ref(kind_, slots[0].host, m_, n_, weight(), kRho);
    const std::vector<double> value{r.value}, value_mag{r.value_mag};
    expect_close(name() + " loss", after[2], value, kRefValueTol, value_mag);
    if (mode_ != GradMode::None) {
      const std::span<const float> init = mode_ == GradMode::Acc ? std::span<const float>(slots[1].host) : std::span<const float>{};
      expect_close(name() + " grad", after[1], plus(r.grad, init), kRefElemTol,
                   plus(abs_d(r.grad_mag), abs_d(init)));
    }
    if (kind_ == PenaltyKind::KL) expect_close(name() + " rho_hat", after[3], r.rho_hat, kRefElemTol);
  }

 private:
  PenaltyKind kind_;
  int m_, n_;
  GradMode mode_;
  bool clamp_;
};

struct Shape2 {
  int m, n;
};

std::vector<CasePtr> activity_cases() {
  // Odd sizes; 257×129 and 1000×37 reach the CPU's OpenMP branches (m·n ≥ 2^15). The last four
  // shape the CUDA launch: many row chunks (4099×67), n wider than the scratch holds column
  // partials for (3×40000), a single column (n = 1 tiles one column wide), a partial 32-wide tile.
  const Shape2 shapes[] = {{1, 1},      {3, 17},    {17, 3},       {257, 1},  {1, 257},
                           {257, 129},  {1000, 37}, {4099, 67},    {3, 40000}, {100003, 1}, {2, 33}};
  std::vector<CasePtr> cases;
  for (PenaltyKind kind : {PenaltyKind::L1, PenaltyKind::KL})
    for (const Shape2& s : shapes)
      for (GradMode g : {GradMode::Write, GradMode::Acc, GradMode::None})
        cases.push_back(std::make_shared<ActivityCase>(kind, s.m, s.n, g));
  for (const Shape2& s : {Shape2{17, 3}, Shape2{257, 129}, Shape2{3, 40000}})
    for (GradMode g : {GradMode::Write, GradMode::Acc, GradMode::None})
      cases.push_back(std::make_shared<ActivityCase>(PenaltyKind::KL, s.m, s.n, g, true));
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Activity, PenaltyOps, ::testing::ValuesIn(activity_cases()), case_name);

// ================================================================================================
// contractive_penalty
// ================================================================================================

// h as the layer's activation produces it: sigmoid in (0,1), tanh in (−1,1), relu ≥ 0 with exact
// zeros, leaky relu with negative outputs slope·z, identity anything.
std::vector<float> contractive_h(Act act, std::size_t count, std::uint32_t seed) {
  switch (act) {
    case Act::Sigmoid: return uniform(count, seed, 0.001f, 0.999f);
    case Act::Tanh: return uniform(count, seed, -0.999f, 0.999f);
    case Act::Identity: return uniform(count, seed, -2.0f, 2.0f);
    case Act::ReLU: {
      std::vector<float> h = uniform(count, seed, -1.0f, 1.0f);
      for (float& v : h) v = v > 0.0f ? v : 0.0f;
      return h;
    }
    case Act::LeakyReLU: {
      std::vector<float> h = uniform(count, seed, -1.0f, 1.0f);
      for (float& v : h) v = v > 0.0f ? v : kLeakySlope * v;
      return h;
    }
    default: return {};
  }
}

constexpr float kContractiveWeight = 0.3f;

class ContractiveCase : public OpCase {
 public:
  ContractiveCase(Act act, int m, int n, int k, GradMode gh, GradMode gw)
      : act_(act), m_(m), n_(n), k_(k), gh_(gh), gw_(gw) {}
  std::string name() const override {
    return std::string("contractive_penalty_") + act_name(act_) + "_m" + std::to_string(m_) + "_n" + std::to_string(n_) +
           "_k" + std::to_string(k_) + "_gh_" + mode_tag(gh_) + "_gw_" + mode_tag(gw_);
  }

  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    const std::size_t hn = static_cast<std::size_t>(m_) * n_, wn = static_cast<std::size_t>(n_) * k_;
    return {input_slot("h", contractive_h(act_, hn, seed)),
            input_slot("w", uniform(wn, seed + 1, -0.5f, 0.5f)),
            grad_slot("grad_h", gh_, hn, seed + 2),
            grad_slot("grad_w", gw_, wn, seed + 3),
            output_slot("loss", 1, kCudaTol),
            output_slot("ws", 2 * static_cast<std::size_t>(n_), kCudaTol)};
  }

  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    ContractivePenalty a;
    a.h = p[0];
    a.w = p[1];
    a.grad_h = p[2];
    a.grad_w = p[3];
    a.loss = p[4];
    a.ws = p[5];
    a.m = m_;
    a.n = n_;
    a.k = k_;
    a.act = act_;
    a.slope = kLeakySlope;
    a.weight = kContractiveWeight;
    a.acc_grad_h = gh_ == GradMode::Acc;
    a.acc_grad_w = gw_ == GradMode::Acc;
    t.contractive_penalty(ctx, a);
  }

  void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const override {
    const ContractiveRef r =
        contractive_ref(to_double(slots[0].host), to_double(slots[1].host), m_, n_, k_, act_, kLeakySlope, kContractiveWeight);
    const std::vector<double> value{r.value};
    expect_close(name() + " loss", after[4], value, kRefValueTol);
    if (gh_ != GradMode::None) {
      const std::span<const float> init = gh_ == GradMode::Acc ? std::span<const float>(slots[2].host) : std::span<const float>{};
      if (act_ == Act::ReLU || act_ == Act::LeakyReLU || act_ == Act::Identity) {
        // g′ = 0: the op adds nothing (accumulated: the initial values come back bit for bit).
        const std::vector<float> want = gh_ == GradMode::Acc ? slots[2].host : std::vector<float>(after[2].size(), 0.0f);
        EXPECT_EQ(after[2], want) << name() << ": grad_h of a piecewise-linear layer must be exactly 0";
      } else {
        expect_close(name() + " grad_h", after[2], plus(r.grad_h, init), kRefElemTol,
                     plus(abs_d(r.grad_h), abs_d(init)));
      }
    }
    if (gw_ != GradMode::None) {
      const std::span<const float> init = gw_ == GradMode::Acc ? std::span<const float>(slots[3].host) : std::span<const float>{};
      expect_close(name() + " grad_w", after[3], plus(r.grad_w, init), kRefElemTol,
                   plus(abs_d(r.grad_w), abs_d(init)));
    }
    // The workspace holds s and G (ops.hpp); checked so a CUDA comparison of it means something.
    const std::span<const float> ws(after[5]);
    expect_close(name() + " ws s", ws.subspan(0, n_), r.s, kRefElemTol);
    expect_close(name() + " ws G", ws.subspan(n_, n_), r.G, kRefElemTol);
  }

 private:
  Act act_;
  int m_, n_, k_;
  GradMode gh_, gw_;
};

const Act kContractiveActs[] = {Act::Identity, Act::ReLU, Act::LeakyReLU, Act::Sigmoid, Act::Tanh};

std::vector<CasePtr> contractive_cases() {
  struct Shape3 {
    int m, n, k;
    bool all_modes;  // every grad_h × grad_w combination, or three of them
  };
  // Odd sizes; 4099×67 gives many row chunks on CUDA, n = 40000 more columns than the scratch
  // holds partials for (G written directly), n = 1 a one-column tile.
  const Shape3 shapes[] = {{1, 1, 1, false},      {3, 17, 1, false},   {17, 3, 257, true}, {257, 17, 3, false},
                           {257, 129, 33, true},  {2, 40000, 3, false}, {4099, 67, 5, false}, {1000, 1, 7, false}};
  const GradMode modes[] = {GradMode::None, GradMode::Write, GradMode::Acc};
  std::vector<CasePtr> cases;
  for (Act act : kContractiveActs)
    for (const Shape3& s : shapes) {
      if (s.all_modes) {
        for (GradMode gh : modes)
          for (GradMode gw : modes) cases.push_back(std::make_shared<ContractiveCase>(act, s.m, s.n, s.k, gh, gw));
      } else {
        cases.push_back(std::make_shared<ContractiveCase>(act, s.m, s.n, s.k, GradMode::Write, GradMode::Write));
        cases.push_back(std::make_shared<ContractiveCase>(act, s.m, s.n, s.k, GradMode::Acc, GradMode::Acc));
        cases.push_back(std::make_shared<ContractiveCase>(act, s.m, s.n, s.k, GradMode::None, GradMode::None));
      }
    }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Contractive, PenaltyOps, ::testing::ValuesIn(contractive_cases()), case_name);

// ================================================================================================
// Finite differences
// ================================================================================================

// d(loss)/dh of the activity penalties: L1 away from 0 (|h| within 2 steps of 0 is a kink), KL
// with h in (0,1) and no column clamped.
class PenaltyGradActivity : public ::testing::TestWithParam<std::tuple<PenaltyKind, int, int>> {};

TEST_P(PenaltyGradActivity, GradientMatchesFiniteDifferences) {
  const auto [kind, m, n] = GetParam();
  const std::string tag = std::string(penalty_name(kind)) + " m" + std::to_string(m) + " n" + std::to_string(n);
  const std::uint32_t seed = seed_from("grad_activity_" + tag);
  const std::size_t count = static_cast<std::size_t>(m) * n;
  const std::vector<float> h =
      kind == PenaltyKind::L1 ? uniform(count, seed, -1.0f, 1.0f) : uniform(count, seed, 0.01f, 0.6f);
  const float weight = kind == PenaltyKind::L1 ? kL1Weight : kKLWeight;
  std::vector<float> grad(count), rho_hat(n);
  float value = NAN;
  ActivityPenalty a;
  a.h = h.data();
  a.grad = grad.data();
  a.loss = &value;
  a.rho_hat = rho_hat.data();
  a.m = m;
  a.n = n;
  a.kind = kind;
  a.weight = weight;
  a.rho = kRho;
  cpu::activity_penalty(Context{}, a);

  std::vector<double> hd = to_double(h);
  const double w = weight, rho = kRho;
  auto L = [&] {
    double v = 0.0;
    if (kind == PenaltyKind::L1) {
      for (double x : hd) v += std::abs(x);
      return w / m * v;
    }
    for (int j = 0; j < n; ++j) {
      double s = 0.0;
      for (int i = 0; i < m; ++i) s += hd[static_cast<std::size_t>(i) * n + j];
      v += kl_d(rho, clamp_rho_hat_d(s / m));
    }
    return w * v;
  };
  const ActivityRef r = activity_ref(kind, h, m, n, weight, kRho);
  const std::vector<double> want{L()}, want_mag{r.value_mag};
  expect_close(tag + " value", std::span<const float>(&value, 1), want, kRefValueTol, want_mag);
  std::function<bool(std::size_t, double)> kink;
  if (kind == PenaltyKind::L1) kink = [&](std::size_t i, double step) { return std::abs(hd[i]) <= 2.0 * step; };
  expect_grad_ok(tag + " grad",
                 check_gradient(L, hd, grad, sample_indices(count, 200, seed + 1), kink, grad_options()));
}

INSTANTIATE_TEST_SUITE_P(Penalty, PenaltyGradActivity,
                         ::testing::Values(std::make_tuple(PenaltyKind::L1, 1, 1), std::make_tuple(PenaltyKind::L1, 7, 33),
                                           std::make_tuple(PenaltyKind::L1, 257, 129),
                                           std::make_tuple(PenaltyKind::KL, 1, 5), std::make_tuple(PenaltyKind::KL, 7, 33),
                                           std::make_tuple(PenaltyKind::KL, 64, 20),
                                           std::make_tuple(PenaltyKind::KL, 257, 129)),
                         [](const ::testing::TestParamInfo<std::tuple<PenaltyKind, int, int>>& i) {
                           return std::string(penalty_name(std::get<0>(i.param))) + "_m" +
                                  std::to_string(std::get<1>(i.param)) + "_n" + std::to_string(std::get<2>(i.param));
                         });

// The test name of an (activation, m, n, k) parameter.
std::string act_mnk_name(const ::testing::TestParamInfo<std::tuple<Act, int, int, int>>& i) {
  return std::string(act_name(std::get<0>(i.param))) + "_m" + std::to_string(std::get<1>(i.param)) + "_n" +
         std::to_string(std::get<2>(i.param)) + "_k" + std::to_string(std::get<3>(i.param));
}

// (a) The contractive penalty as a function of (h, W): grad_h and grad_w against finite
// differences of w/m·Σ g(h_ij)·s_j(W). For ReLU and leaky ReLU, g is piecewise constant in h (its
// jumps at 0 are kinks), so grad_h must be 0 and the differences are 0 away from the kinks.
class PenaltyGradContractive : public ::testing::TestWithParam<std::tuple<Act, int, int, int>> {};

TEST_P(PenaltyGradContractive, GradientsMatchFiniteDifferences) {
  const auto [act, m, n, k] = GetParam();
  const std::string tag = std::string(act_name(act)) + " m" + std::to_string(m) + " n" + std::to_string(n) + " k" +
                          std::to_string(k);
  const std::uint32_t seed = seed_from("grad_contractive_" + tag);
  std::vector<float> h = contractive_h(act, static_cast<std::size_t>(m) * n, seed);
  if (act == Act::ReLU || act == Act::LeakyReLU)  // keep the points off the kink at 0 (ReLU's zeros stay 0)
    for (float& v : h)
      if (v != 0.0f && std::abs(v) < 0.01f) v = v > 0 ? 0.01f : -0.01f;
  const std::vector<float> w = uniform(static_cast<std::size_t>(n) * k, seed + 1, -0.5f, 0.5f);
  std::vector<float> grad_h(h.size()), grad_w(w.size()), ws(2 * static_cast<std::size_t>(n));
  float value = NAN;
  ContractivePenalty a;
  a.h = h.data();
  a.w = w.data();
  a.grad_h = grad_h.data();
  a.grad_w = grad_w.data();
  a.loss = &value;
  a.ws = ws.data();
  a.m = m;
  a.n = n;
  a.k = k;
  a.act = act;
  a.slope = kLeakySlope;
  a.weight = kContractiveWeight;
  cpu::contractive_penalty(Context{}, a);

  std::vector<double> hd = to_double(h), wd = to_double(w);
  auto L = [&] { return contractive_ref(hd, wd, m, n, k, act, kLeakySlope, kContractiveWeight).value; };
  const std::vector<double> want{L()};
  expect_close(tag + " value", std::span<const float>(&value, 1), want, kRefValueTol);

  const GradCheckOptions opt = grad_options();
  if (act == Act::ReLU) {
    // Every inactive unit sits exactly on the kink: no difference quotient is meaningful there.
    EXPECT_EQ(grad_h, std::vector<float>(h.size(), 0.0f)) << tag << ": grad_h of ReLU must be 0";
  } else {
    std::function<bool(std::size_t, double)> kink;
    if (act == Act::LeakyReLU) kink = [&](std::size_t i, double step) { return std::abs(hd[i]) <= 2.0 * step; };
    expect_grad_ok(tag + " grad_h", check_gradient(L, hd, grad_h, sample_indices(hd.size(), 150, seed + 2), kink, opt));
  }
  expect_grad_ok(tag + " grad_w", check_gradient(L, wd, grad_w, sample_indices(wd.size(), 150, seed + 3), nullptr, opt));
}

INSTANTIATE_TEST_SUITE_P(Penalty, PenaltyGradContractive,
                         ::testing::Combine(::testing::ValuesIn(kContractiveActs), ::testing::Values(1, 7, 33),
                                            ::testing::Values(5, 17), ::testing::Values(1, 9)),
                         act_mnk_name);

// (b) The exact chain through a dense layer h = act(x·Wᵀ + b), all in double from float inputs:
// the penalty P(W, b) = w/m · Σ_i ‖J_i‖²_F with J_i = diag(a′(z_i))·W computed explicitly, its
// finite differences in W and b against the op's grad_w plus the layer backward of the op's
// grad_h (dz = grad_h ⊙ a′(z), dW += dzᵀ·x, db = Σ_i dz), and the op's value against P.
class PenaltyContractiveChain : public ::testing::TestWithParam<std::tuple<Act, int, int, int>> {};

TEST_P(PenaltyContractiveChain, MatchesExplicitJacobianPenalty) {
  const auto [act, m, n, k] = GetParam();
  const std::string tag = std::string(act_name(act)) + " m" + std::to_string(m) + " n" + std::to_string(n) + " k" +
                          std::to_string(k);
  const std::uint32_t seed = seed_from("chain_contractive_" + tag);
  const std::vector<float> xf = uniform(static_cast<std::size_t>(m) * k, seed, -1.0f, 1.0f);
  const std::vector<float> wf = uniform(static_cast<std::size_t>(n) * k, seed + 1, -0.8f, 0.8f);
  const std::vector<float> bf = uniform(n, seed + 2, -0.5f, 0.5f);
  const std::vector<double> x = to_double(xf);
  std::vector<double> wd = to_double(wf), bd = to_double(bf);
  const double weight = kContractiveWeight, slope = kLeakySlope;

  auto pre = [&](const std::vector<double>& W, const std::vector<double>& B) {
    std::vector<double> z(static_cast<std::size_t>(m) * n);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double s = B[j];
        for (int l = 0; l < k; ++l) s += x[static_cast<std::size_t>(i) * k + l] * W[static_cast<std::size_t>(j) * k + l];
        z[static_cast<std::size_t>(i) * n + j] = s;
      }
    return z;
  };
  // P from the explicit Jacobian of each sample: J_i[j][l] = a′(z_ij)·W_jl.
  auto P = [&] {
    const std::vector<double> z = pre(wd, bd);
    double total = 0.0;
    for (int i = 0; i < m; ++i) {
      double fro = 0.0;
      for (int j = 0; j < n; ++j) {
        const double d = act_dz_d(act, z[static_cast<std::size_t>(i) * n + j], slope);
        for (int l = 0; l < k; ++l) {
          const double jac = d * wd[static_cast<std::size_t>(j) * k + l];
          fro += jac * jac;
        }
      }
      total += fro;
    }
    return weight * total / m;
  };

  // The layer's forward, and the op on its (float) output.
  const std::vector<double> z = pre(wd, bd);
  std::vector<float> h(z.size());
  for (std::size_t e = 0; e < z.size(); ++e) h[e] = static_cast<float>(act_d(act, z[e], slope));
  std::vector<float> grad_h(h.size()), grad_w(wf.size()), ws(2 * static_cast<std::size_t>(n));
  float value = NAN;
  ContractivePenalty a;
  a.h = h.data();
  a.w = wf.data();
  a.grad_h = grad_h.data();
  a.grad_w = grad_w.data();
  a.loss = &value;
  a.ws = ws.data();
  a.m = m;
  a.n = n;
  a.k = k;
  a.act = act;
  a.slope = kLeakySlope;
  a.weight = kContractiveWeight;
  cpu::contractive_penalty(Context{}, a);

  const std::vector<double> want{P()};
  expect_close(tag + " value = w·mean ‖J‖²", std::span<const float>(&value, 1), want, kRefValueTol);

  // The layer backward of grad_h, added to the op's direct grad_w.
  std::vector<double> dw = to_double(grad_w), db(n, 0.0);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      const std::size_t e = static_cast<std::size_t>(i) * n + j;
      const double dz = grad_h[e] * act_dz_d(act, z[e], slope);
      db[j] += dz;
      for (int l = 0; l < k; ++l) dw[static_cast<std::size_t>(j) * k + l] += dz * x[static_cast<std::size_t>(i) * k + l];
    }
  std::vector<float> dwf(dw.begin(), dw.end()), dbf(db.begin(), db.end());

  // For ReLU, moving W_jl or b_j may flip a unit whose z_ij is near 0: a kink.
  std::function<bool(std::size_t, double)> w_kink, b_kink;
  if (act == Act::ReLU || act == Act::LeakyReLU) {
    auto row_near_zero = [&](int j, double reach) {
      for (int i = 0; i < m; ++i)
        if (std::abs(z[static_cast<std::size_t>(i) * n + j]) <= reach) return true;
      return false;
    };
    w_kink = [=](std::size_t e, double step) { return row_near_zero(static_cast<int>(e / k), 2.0 * step); };
    b_kink = [=](std::size_t j, double step) { return row_near_zero(static_cast<int>(j), 2.0 * step); };
  }
  const GradCheckOptions opt = grad_options();
  expect_grad_ok(tag + " dP/dW", check_gradient(P, wd, dwf, sample_indices(wd.size(), 150, seed + 3), w_kink, opt));
  expect_grad_ok(tag + " dP/db", check_gradient(P, bd, dbf, sample_indices(bd.size(), 150, seed + 4), b_kink, opt));
}

INSTANTIATE_TEST_SUITE_P(Penalty, PenaltyContractiveChain,
                         ::testing::Combine(::testing::Values(Act::Sigmoid, Act::Tanh, Act::ReLU, Act::LeakyReLU,
                                                              Act::Identity),
                                            ::testing::Values(1, 6, 17), ::testing::Values(1, 4, 9),
                                            ::testing::Values(1, 3, 13)),
                         act_mnk_name);

// ReLU: the value is w/m · Σ_i Σ_{j active} s_j (only the active units' rows of W count) and
// grad_h is exactly 0, whatever h's active values are.
TEST(PenaltyContractive, ReluValueCountsActiveUnitsAndGradHIsZero) {
  constexpr int m = 9, n = 13, k = 7;
  const std::uint32_t seed = seed_from("contractive_relu_active");
  const std::vector<float> h = contractive_h(Act::ReLU, static_cast<std::size_t>(m) * n, seed);
  const std::vector<float> w = uniform(static_cast<std::size_t>(n) * k, seed + 1, -0.5f, 0.5f);
  std::vector<float> grad_h(h.size(), NAN), grad_w(w.size(), NAN), ws(2 * n, NAN);
  float value = NAN;
  ContractivePenalty a;
  a.h = h.data();
  a.w = w.data();
  a.grad_h = grad_h.data();
  a.grad_w = grad_w.data();
  a.loss = &value;
  a.ws = ws.data();
  a.m = m;
  a.n = n;
  a.k = k;
  a.act = Act::ReLU;
  a.weight = kContractiveWeight;
  cpu::contractive_penalty(Context{}, a);
  double sum = 0.0;
  int active = 0;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      if (!(h[static_cast<std::size_t>(i) * n + j] > 0.0f)) continue;
      ++active;
      for (int l = 0; l < k; ++l) sum += static_cast<double>(w[static_cast<std::size_t>(j) * k + l]) * w[static_cast<std::size_t>(j) * k + l];
    }
  ASSERT_GT(active, 0);
  ASSERT_LT(active, m * n);  // both kinds of unit present
  const std::vector<double> want{static_cast<double>(kContractiveWeight) / m * sum};
  expect_close("relu value", std::span<const float>(&value, 1), want, kRefValueTol);
  EXPECT_EQ(grad_h, std::vector<float>(h.size(), 0.0f));
}

// ================================================================================================
// KL clamping
// ================================================================================================

// Columns with ρ̂ = 0 and ρ̂ = 1 (a dead and a saturated unit) are clamped to [1e-6, 1−1e-6]: the
// value and every gradient stay finite and follow the formula at the clamped ρ̂.
void check_kl_clamp(Device device) {
  constexpr int m = 5, n = 4;
  // Column 0 all 0, column 1 all 1, column 2 mixed, column 3 all 0.5.
  std::vector<float> h(m * n);
  for (int i = 0; i < m; ++i) {
    h[i * n + 0] = 0.0f;
    h[i * n + 1] = 1.0f;
    h[i * n + 2] = 0.1f * static_cast<float>(i + 1);
    h[i * n + 3] = 0.5f;
  }
  Backend be(device);
  DeviceBuffer hb(be, h.size()), gb(be, h.size()), lb(be, 1), rb(be, n);
  hb.upload(h);
  gb.poison();
  lb.poison();
  rb.poison();
  ActivityPenalty a;
  a.h = hb.data();
  a.grad = gb.data();
  a.loss = lb.data();
  a.rho_hat = rb.data();
  a.m = m;
  a.n = n;
  a.kind = PenaltyKind::KL;
  a.weight = kKLWeight;
  a.rho = kRho;
  be.ops().activity_penalty(be.ctx(), a);
  be.synchronize();
  const std::vector<float> grad = gb.download(), loss = lb.download(), rho_hat = rb.download();
  for (const DeviceBuffer* b : {&hb, &gb, &lb, &rb}) EXPECT_TRUE(b->guards_intact());
  EXPECT_EQ(count_nonfinite(grad), 0u);
  EXPECT_EQ(count_nonfinite(loss), 0u);
  EXPECT_EQ(rho_hat[0], 1e-6f);
  EXPECT_EQ(rho_hat[1], 1.0f - 1e-6f);
  EXPECT_FLOAT_EQ(rho_hat[2], 0.3f);
  EXPECT_EQ(rho_hat[3], 0.5f);
  const ActivityRef r = activity_ref(PenaltyKind::KL, h, m, n, kKLWeight, kRho);
  const std::vector<double> value{r.value}, value_mag{r.value_mag};
  expect_close(std::string(device_name(device)) + " clamp loss", loss, value, kRefValueTol, value_mag);
  expect_close(std::string(device_name(device)) + " clamp grad", grad, r.grad, kRefElemTol, r.grad_mag);
  // The clamped columns push the way the formula says: a dead unit up (negative gradient), a
  // saturated one down.
  EXPECT_LT(grad[0], 0.0f);
  EXPECT_GT(grad[1], 0.0f);
}

TEST(PenaltyKL, ClampedColumnsStayFiniteCpu) { check_kl_clamp(Device::CPU); }

TEST(PenaltyKL, ClampedColumnsStayFiniteCuda) {
  CUAE_SKIP_WITHOUT_GPU();
  check_kl_clamp(Device::CUDA);
}

// ================================================================================================
// Validation: both backends reject the same bad calls with cuae::Error, before touching memory.
// ================================================================================================

ActivityPenalty valid_activity(float* b, PenaltyKind kind) {
  ActivityPenalty a;
  a.h = b;
  a.grad = b + 64;
  a.loss = b + 128;
  a.rho_hat = b + 192;
  a.m = 4;
  a.n = 16;
  a.kind = kind;
  a.weight = 1.0f;
  a.rho = 0.05f;
  return a;
}

ContractivePenalty valid_contractive(float* b) {
  ContractivePenalty a;
  a.h = b;
  a.w = b + 64;
  a.grad_h = b + 96;
  a.grad_w = b + 160;
  a.loss = b + 192;
  a.ws = b + 200;
  a.m = 4;
  a.n = 8;
  a.k = 4;
  a.act = Act::Sigmoid;
  a.weight = 1.0f;
  return a;
}

std::vector<BadCall> bad_calls() {
  std::vector<BadCall> calls;
  auto act = [&](std::string what, PenaltyKind kind, std::function<void(ActivityPenalty&)> edit) {
    calls.push_back({std::move(what), [=](const OpTable& t, const Context& c, float* b) {
                       ActivityPenalty a = valid_activity(b, kind);
                       edit(a);
                       t.activity_penalty(c, a);
                     }});
  };
  auto con = [&](std::string what, std::function<void(ContractivePenalty&)> edit) {
    calls.push_back({std::move(what), [=](const OpTable& t, const Context& c, float* b) {
                       ContractivePenalty a = valid_contractive(b);
                       edit(a);
                       t.contractive_penalty(c, a);
                     }});
  };
  for (PenaltyKind kind : {PenaltyKind::L1, PenaltyKind::KL}) {
    const std::string k = penalty_name(kind);
    act(k + " m = 0", kind, [](ActivityPenalty& a) { a.m = 0; });
    act(k + " n negative", kind, [](ActivityPenalty& a) { a.n = -3; });
    act(k + " m·n over 2^31-1", kind, [](ActivityPenalty& a) { a.m = a.n = 65536; });
    act(k + " null h", kind, [](ActivityPenalty& a) { a.h = nullptr; });
    act(k + " null loss", kind, [](ActivityPenalty& a) { a.loss = nullptr; });
    act(k + " negative weight", kind, [](ActivityPenalty& a) { a.weight = -1.0f; });
    act(k + " NaN weight", kind, [](ActivityPenalty& a) { a.weight = NAN; });
    act(k + " infinite weight", kind, [](ActivityPenalty& a) { a.weight = INFINITY; });
  }
  act("unknown penalty kind", PenaltyKind::L1, [](ActivityPenalty& a) { a.kind = static_cast<PenaltyKind>(7); });
  act("KL rho = 0", PenaltyKind::KL, [](ActivityPenalty& a) { a.rho = 0.0f; });
  act("KL rho = 1", PenaltyKind::KL, [](ActivityPenalty& a) { a.rho = 1.0f; });
  act("KL rho negative", PenaltyKind::KL, [](ActivityPenalty& a) { a.rho = -0.1f; });
  act("KL rho above 1", PenaltyKind::KL, [](ActivityPenalty& a) { a.rho = 1.5f; });
  act("KL rho NaN", PenaltyKind::KL, [](ActivityPenalty& a) { a.rho = NAN; });
  act("KL without rho_hat", PenaltyKind::KL, [](ActivityPenalty& a) { a.rho_hat = nullptr; });

  con("contractive GELU layer", [](ContractivePenalty& a) { a.act = Act::GELU; });
  con("contractive unknown activation", [](ContractivePenalty& a) { a.act = static_cast<Act>(42); });
  con("contractive null ws", [](ContractivePenalty& a) { a.ws = nullptr; });
  con("contractive null h", [](ContractivePenalty& a) { a.h = nullptr; });
  con("contractive null w", [](ContractivePenalty& a) { a.w = nullptr; });
  con("contractive null loss", [](ContractivePenalty& a) { a.loss = nullptr; });
  con("contractive m = 0", [](ContractivePenalty& a) { a.m = 0; });
  con("contractive n = 0", [](ContractivePenalty& a) { a.n = 0; });
  con("contractive k negative", [](ContractivePenalty& a) { a.k = -1; });
  con("contractive m·n over 2^31-1", [](ContractivePenalty& a) { a.m = a.n = 65536; });
  con("contractive n·k over 2^31-1", [](ContractivePenalty& a) {
    a.n = 65536;
    a.k = 65536;
    a.m = 1;
  });
  con("contractive leaky slope 0", [](ContractivePenalty& a) {
    a.act = Act::LeakyReLU;
    a.slope = 0.0f;
  });
  con("contractive leaky slope NaN", [](ContractivePenalty& a) {
    a.act = Act::LeakyReLU;
    a.slope = NAN;
  });
  con("contractive negative weight", [](ContractivePenalty& a) { a.weight = -0.5f; });
  con("contractive NaN weight", [](ContractivePenalty& a) { a.weight = NAN; });
  return calls;
}


// Rejected calls touch no memory: the buffer keeps its contents.
const std::vector<float> kValidationFill(256, 0.25f);

TEST(PenaltyValidation, CpuRejectsBadArguments) {
  expect_rejects_bad_calls(Device::CPU, bad_calls(), kValidationFill);
}

TEST(PenaltyValidation, CudaRejectsBadArguments) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_rejects_bad_calls(Device::CUDA, bad_calls(), kValidationFill);
}

// The minimal valid calls (no gradient; L1 ignores rho and rho_hat; ReLU layer) must not throw.
void expect_accepts_valid_calls(Device device) {
  Backend be(device);
  DeviceBuffer buf(be, 256);
  buf.fill(0.25f);
  float* b = buf.data();
  ActivityPenalty l1 = valid_activity(b, PenaltyKind::L1);
  l1.grad = nullptr;
  l1.rho_hat = nullptr;
  l1.rho = 0.0f;  // not read by L1
  EXPECT_NO_THROW(be.ops().activity_penalty(be.ctx(), l1));
  ActivityPenalty kl = valid_activity(b, PenaltyKind::KL);
  kl.grad = nullptr;
  kl.weight = 0.0f;
  EXPECT_NO_THROW(be.ops().activity_penalty(be.ctx(), kl));
  ContractivePenalty c = valid_contractive(b);
  c.grad_h = c.grad_w = nullptr;
  for (Act act : kContractiveActs) {
    c.act = act;
    EXPECT_NO_THROW(be.ops().contractive_penalty(be.ctx(), c)) << act_name(act);
  }
  EXPECT_NO_THROW(be.synchronize());
  EXPECT_TRUE(buf.guards_intact());
}

TEST(PenaltyValidation, CpuAcceptsMinimalValidCalls) { expect_accepts_valid_calls(Device::CPU); }

TEST(PenaltyValidation, CudaAcceptsMinimalValidCalls) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_accepts_valid_calls(Device::CUDA);
}

}  // namespace
