// The restricted-Boltzmann-machine op test: rbm_cd_workspace, rbm_cd and rbm_free_energy
// (kernels/ops.hpp, "Restricted Boltzmann machines"), checked the ways tests/test_ops_vae.cpp
// checks its ops:
//
//   RbmCd.CpuMatchesDoubleReference      rbm_cd on the CPU against a reference written here in
//                                        double from the contract: the positive phase, k Gibbs
//                                        steps with mean-field visibles, the hidden samples drawn
//                                        from kernels/philox.hpp with the contract's element
//                                        mapping (step t, element e -> draw e + t·m·nh; Bernoulli
//                                        h = 1 iff u < p, linear h = mean + the Box-Muller normal
//                                        of the draw), dW, db, dc (the negative of the CD
//                                        estimate) and recon. k = 1 and 3, all four unit
//                                        combinations, m = 1, 5, 17 × nv = 3, 7, 20 × nh = 2, 5, 9,
//                                        plus shapes past the OpenMP threshold. The same with
//                                        sample_visible (cases named _sv): every step's visible is
//                                        a sample of v|h from draw k·m·nh + (t − 1)·m·nv + e
//                                        (Bernoulli v = 1 iff u < p, Gaussian v = mean + normal),
//                                        k = 1, 2 and 3, all four unit combinations, m = 1, 5, 17 ×
//                                        nv = 3, 20 × nh = 2, 9 and past the OpenMP threshold; the
//                                        mean-field cases are the ones this test always had, under
//                                        the same names and tolerance. Outputs and the
//                                        workspace poisoned with NaN, every buffer between guard
//                                        zones, inputs checked unchanged; outputs absent (null) in
//                                        several combinations, all of them absent included.
//   RbmCd.CudaMatchesCpu                 the same cases on the GPU against the CPU (skipped without
//                                        a GPU).
//   RbmFe.*                              rbm_free_energy against the formula in double, all unit
//                                        combinations, on the CPU and (skipped here) the GPU.
//   RbmCdDraws                           a repeated call repeats bit for bit; another step or seed
//                                        changes the sample (and so dW), with and without
//                                        sample_visible; the flag selects the chain (false: the
//                                        mean-field result, unchanged; true: the sampled one, far
//                                        from it); k = 1 with nothing
//                                        random to decide (p ∈ {0, 1}) is the deterministic CD-1
//                                        statistic.
//   RbmValidation                        both backends reject the same bad calls (a too-small
//                                        workspace included) without touching memory, and accept
//                                        the workspace of exactly the reported size.
//
// Sample decisions: the reference computes p in double, the op in float, so a uniform within
// float rounding of p could be sampled differently. The reference counts the draws whose u lies
// within kMargin of p and every case asserts there are none (a case that met one would need a
// different seed, not a looser tolerance): the comparison is then exact in the samples and
// measures only float rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
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

// Both 32-bit halves nonzero, so a draw that dropped a high word would differ from the reference.
constexpr std::uint64_t kSeed = 0x0F1E2D3C4B5A6978ull;
constexpr std::uint64_t kStep = (std::uint64_t{3} << 32) + 5;

// |u − p| below this is a draw the float op and the double reference might decide differently
// (the op's p is within a few 1e-7 of the double value at these sizes).
constexpr double kMargin = 2e-6;

// Normalised error of the float op against the double reference, with the sum-of-|terms|
// magnitude as denominator: float GEMMs over ≤ 300 terms, a few passes, and k steps of
// propagation. Measured (ref_err properties, all cases): dw 1.6e-7, db 7.3e-8, dc 1.9e-7, recon
// 1.5e-7.
constexpr double kRefTol = 2e-6;
// CUDA against the CPU: cuBLASLt's summation order and the device's expf differ from OpenBLAS and
// glibc by rounding; samples agree unless a uniform lands within an ulp of p (see rbm.cu).
constexpr double kCudaTol = 1e-5;
constexpr double kFeTol = 1e-6;  // measured 9.2e-8 (sums in double, one float GEMM)

const char* unit_tag(RbmUnit u) { return u == RbmUnit::Bernoulli ? "b" : "g"; }

// ================================================================================================
// The reference, from the contract in kernels/ops.hpp
// ================================================================================================

double sigmoid_d(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// The standard normal of draw d: philox_normal2 on words (0, 1) of group d / 4 for d % 4 ∈ {0, 1},
// (2, 3) otherwise; the even draw takes the first normal.
double normal_of(std::uint64_t seed, std::uint64_t step, std::uint64_t d) {
  const Philox4 r = philox_group(seed, step, d / 4);
  const int pair = static_cast<int>(d % 4) / 2 * 2;
  float n0 = NAN, n1 = NAN;
  philox_normal2(r.w[pair], r.w[pair + 1], n0, n1);
  return d % 2 == 0 ? n0 : n1;
}

double uniform_of(std::uint64_t seed, std::uint64_t step, std::uint64_t d) {
  return philox_uniform(philox_group(seed, step, d / 4).w[d % 4]);
}

struct CdParams {
  int m = 1, nv = 1, nh = 1, k = 1;
  RbmUnit visible = RbmUnit::Bernoulli, hidden = RbmUnit::Bernoulli;
  bool sample_visible = false;
  std::uint64_t seed = kSeed, step = kStep;
};

struct CdRef {
  std::vector<double> dw, db, dc;
  double recon = 0.0;
  std::vector<double> mag_dw, mag_db, mag_dc;  // Σ |terms| behind each output
  int ambiguous = 0;                           // Bernoulli draws (hidden or visible) with |u − p| < kMargin
};

CdRef cd_ref(const CdParams& P, const std::vector<float>& v0, const std::vector<float>& w, const std::vector<float>& b,
             const std::vector<float>& c) {
  const int m = P.m, nv = P.nv, nh = P.nh;
  CdRef r;
  auto hid = [&](const std::vector<double>& v) {  // E[h|v]
    std::vector<double> p(static_cast<std::size_t>(m) * nh);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < nh; ++j) {
        double x = c[j];
        for (int l = 0; l < nv; ++l) x += v[static_cast<std::size_t>(i) * nv + l] * w[static_cast<std::size_t>(j) * nv + l];
        p[static_cast<std::size_t>(i) * nh + j] = P.hidden == RbmUnit::Bernoulli ? sigmoid_d(x) : x;
      }
    return p;
  };
  auto vis = [&](const std::vector<double>& h) {  // E[v|h]
    std::vector<double> v(static_cast<std::size_t>(m) * nv);
    for (int i = 0; i < m; ++i)
      for (int l = 0; l < nv; ++l) {
        double x = b[l];
        for (int j = 0; j < nh; ++j) x += h[static_cast<std::size_t>(i) * nh + j] * w[static_cast<std::size_t>(j) * nv + l];
        v[static_cast<std::size_t>(i) * nv + l] = P.visible == RbmUnit::Bernoulli ? sigmoid_d(x) : x;
      }
    return v;
  };
  // A sample of units of kind u with means p, element e from draw base + e.
  auto sample = [&](const std::vector<double>& p, RbmUnit u, std::uint64_t base) {
    std::vector<double> h(p.size());
    for (std::size_t e = 0; e < p.size(); ++e) {
      const std::uint64_t d = base + e;
      if (u == RbmUnit::Bernoulli) {
        const double u = uniform_of(P.seed, P.step, d);
        if (std::abs(u - p[e]) < kMargin) ++r.ambiguous;
        h[e] = u < p[e] ? 1.0 : 0.0;
      } else {
        h[e] = p[e] + normal_of(P.seed, P.step, d);
      }
    }
    return h;
  };
  const std::vector<double> v0d(v0.begin(), v0.end());
  const std::vector<double> ph0 = hid(v0d);
  const std::uint64_t MH = static_cast<std::uint64_t>(m) * nh, MV = static_cast<std::uint64_t>(m) * nv;
  std::vector<double> h = sample(ph0, P.hidden, 0), vk, phk;
  for (int t = 1; t <= P.k; ++t) {
    vk = vis(h);
    // Visible draws come after all k·m·nh hidden ones (t = 0..k−1 use them; t = k's are unused).
    if (P.sample_visible) vk = sample(vk, P.visible, P.k * MH + static_cast<std::uint64_t>(t - 1) * MV);
    if (t == 1) {
      double s = 0.0;
      for (std::size_t e = 0; e < vk.size(); ++e) s += (v0d[e] - vk[e]) * (v0d[e] - vk[e]);
      r.recon = s / m;
    }
    phk = hid(vk);
    if (t < P.k) h = sample(phk, P.hidden, static_cast<std::uint64_t>(t) * MH);
  }
  r.dw.assign(static_cast<std::size_t>(nh) * nv, 0.0);
  r.mag_dw = r.dw;
  for (int j = 0; j < nh; ++j)
    for (int l = 0; l < nv; ++l) {
      double s = 0.0, a = 0.0;
      for (int i = 0; i < m; ++i) {
        const double pos = ph0[static_cast<std::size_t>(i) * nh + j] * v0d[static_cast<std::size_t>(i) * nv + l];
        const double neg = phk[static_cast<std::size_t>(i) * nh + j] * vk[static_cast<std::size_t>(i) * nv + l];
        s += pos - neg;
        a += std::abs(pos) + std::abs(neg);
      }
      r.dw[static_cast<std::size_t>(j) * nv + l] = -s / m;
      r.mag_dw[static_cast<std::size_t>(j) * nv + l] = a / m;
    }
  auto colmean = [&](const std::vector<double>& p, const std::vector<double>& q, int n, std::vector<double>& out,
                     std::vector<double>& mag) {
    out.assign(n, 0.0);
    mag.assign(n, 0.0);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        const std::size_t e = static_cast<std::size_t>(i) * n + j;
        out[j] -= (p[e] - q[e]) / m;
        mag[j] += (std::abs(p[e]) + std::abs(q[e])) / m;
      }
  };
  colmean(v0d, vk, nv, r.db, r.mag_db);
  colmean(ph0, phk, nh, r.dc, r.mag_dc);
  return r;
}

// Inputs of a case: v0 in [0, 1) for Bernoulli visibles (probabilities, as pixel intensities are
// used), in [−2, 2) for Gaussian ones; W in [−0.3, 0.3), b and c in [−0.5, 0.5).
struct CdInputs {
  std::vector<float> v0, w, b, c;
};

CdInputs make_inputs(const CdParams& P, std::uint32_t seed) {
  CdInputs in;
  const std::size_t mv = static_cast<std::size_t>(P.m) * P.nv;
  in.v0 = P.visible == RbmUnit::Bernoulli ? uniform(mv, seed, 0.0f, 1.0f) : uniform(mv, seed, -2.0f, 2.0f);
  in.w = uniform(static_cast<std::size_t>(P.nh) * P.nv, seed + 1, -0.3f, 0.3f);
  in.b = uniform(P.nv, seed + 2, -0.5f, 0.5f);
  in.c = uniform(P.nh, seed + 3, -0.5f, 0.5f);
  return in;
}

std::size_t workspace_of(int m, int nv, int nh) {
  std::size_t n = 0;
  RbmCDWorkspace q;
  q.m = m, q.nv = nv, q.nh = nh, q.floats = &n;
  cpu_ops().rbm_cd_workspace(Context{}, q);
  return n;
}

// ================================================================================================
// rbm_cd cases
// ================================================================================================

// Which outputs a case asks for.
struct Outputs {
  bool dw = true, db = true, dc = true, recon = true;
  std::string tag() const {
    if (dw && db && dc && recon) return "";
    std::string s = "_only";
    if (dw) s += "_dw";
    if (db) s += "_db";
    if (dc) s += "_dc";
    if (recon) s += "_recon";
    if (!dw && !db && !dc && !recon) s += "_none";
    return s;
  }
};

enum SlotIx { kV0 = 0, kW, kB, kC, kDw, kDb, kDc, kRecon, kWs };

class CdCase : public OpCase {
 public:
  CdCase(CdParams p, Outputs o = {}) : p_(p), o_(o) {}
  std::string name() const override {
    return "rbm_cd_m" + std::to_string(p_.m) + "_nv" + std::to_string(p_.nv) + "_nh" + std::to_string(p_.nh) + "_k" +
           std::to_string(p_.k) + "_" + unit_tag(p_.visible) + unit_tag(p_.hidden) + (p_.sample_visible ? "_sv" : "") +
           o_.tag();
  }
  // Inputs whose Bernoulli draws all sit at least kMargin from their probabilities (there the float
  // op and the double reference could sample differently): those of the case's seed, or of the
  // next seed that gives such inputs.
  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    CdInputs in = make_inputs(p_, seed);
    for (std::uint32_t next = seed + 1; next < seed + 16 && cd_ref(p_, in.v0, in.w, in.b, in.c).ambiguous > 0; ++next)
      in = make_inputs(p_, next);
    std::vector<Slot> s;
    s.push_back(input_slot("v0", in.v0));
    s.push_back(input_slot("w", in.w));
    s.push_back(input_slot("b", in.b));
    s.push_back(input_slot("c", in.c));
    auto out = [&](const char* name, bool on, std::size_t n) {
      s.push_back(on ? output_slot(name, n, kCudaTol) : null_slot(name));
    };
    out("dw", o_.dw, static_cast<std::size_t>(p_.nh) * p_.nv);
    out("db", o_.db, p_.nv);
    out("dc", o_.dc, p_.nh);
    out("recon", o_.recon, 1);
    Slot ws = output_slot("ws", workspace_of(p_.m, p_.nv, p_.nh), 0.0);
    ws.compare = false;  // scratch, not part of the contract
    s.push_back(ws);
    return s;
  }
  std::vector<std::vector<double>> magnitudes(const std::vector<Slot>& s) const override {
    const CdRef r = cd_ref(p_, s[kV0].host, s[kW].host, s[kB].host, s[kC].host);
    std::vector<std::vector<double>> mags(s.size());
    mags[kDw] = r.mag_dw, mags[kDb] = r.mag_db, mags[kDc] = r.mag_dc;
    return mags;
  }
  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    RbmCD a;
    a.v0 = p[kV0], a.w = p[kW], a.b = p[kB], a.c = p[kC];
    a.dw = p[kDw], a.db = p[kDb], a.dc = p[kDc], a.recon = p[kRecon];
    a.ws = p[kWs], a.ws_floats = workspace_of(p_.m, p_.nv, p_.nh);
    a.m = p_.m, a.nv = p_.nv, a.nh = p_.nh, a.k = p_.k;
    a.visible = p_.visible, a.hidden = p_.hidden, a.sample_visible = p_.sample_visible;
    a.seed = p_.seed, a.step = p_.step;
    t.rbm_cd(ctx, a);
  }
  void check_reference(const std::vector<Slot>& s, const std::vector<std::vector<float>>& after) const override {
    const CdRef r = cd_ref(p_, s[kV0].host, s[kW].host, s[kB].host, s[kC].host);
    ASSERT_EQ(r.ambiguous, 0) << name() << ": a uniform within " << kMargin
                              << " of p; the float op and the double reference may sample it differently "
                                 "(even after 16 input seeds)";
    if (o_.dw) expect_close(name() + " dw", after[kDw], r.dw, kRefTol, r.mag_dw);
    if (o_.db) expect_close(name() + " db", after[kDb], r.db, kRefTol, r.mag_db);
    if (o_.dc) expect_close(name() + " dc", after[kDc], r.dc, kRefTol, r.mag_dc);
    if (o_.recon) {
      const std::vector<double> want{r.recon};
      expect_close(name() + " recon", after[kRecon], want, kRefTol);
    }
  }

 private:
  CdParams p_;
  Outputs o_;
};

std::vector<CasePtr> cd_cases() {
  std::vector<CasePtr> v;
  const RbmUnit units[] = {RbmUnit::Bernoulli, RbmUnit::Gaussian};
  for (int k : {1, 3})
    for (RbmUnit vis : units)
      for (RbmUnit hid : units)
        for (int m : {1, 5, 17})
          for (int nv : {3, 7, 20})
            for (int nh : {2, 5, 9}) {
              CdParams p;
              p.m = m, p.nv = nv, p.nh = nh, p.k = k, p.visible = vis, p.hidden = hid;
              v.push_back(std::make_shared<CdCase>(p));
            }
  // Past the CPU's OpenMP threshold (m·nh and m·nv ≥ 2^15), and more than one reduction chunk
  // (m > 32) for the CUDA partial sums.
  for (RbmUnit vis : units)
    for (RbmUnit hid : units) {
      CdParams p;
      p.m = 129, p.nv = 300, p.nh = 257, p.k = 1, p.visible = vis, p.hidden = hid;
      v.push_back(std::make_shared<CdCase>(p));
    }
  {
    CdParams p;
    p.m = 70, p.nv = 33, p.nh = 17, p.k = 2;
    v.push_back(std::make_shared<CdCase>(p));
  }
  // Sampled visibles: k = 1 and 3 on a grid of sizes, all unit combinations.
  for (int k : {1, 3})
    for (RbmUnit vis : units)
      for (RbmUnit hid : units)
        for (int m : {1, 5, 17})
          for (int nv : {3, 20})
            for (int nh : {2, 9}) {
              CdParams p;
              p.m = m, p.nv = nv, p.nh = nh, p.k = k, p.visible = vis, p.hidden = hid, p.sample_visible = true;
              v.push_back(std::make_shared<CdCase>(p));
            }
  // ... past the OpenMP threshold and over several reduction chunks, k = 2 (both visible draw
  // blocks in use, and the second one starting past the hidden ones of a large batch).
  for (RbmUnit vis : units)
    for (RbmUnit hid : units) {
      CdParams p;
      p.m = 129, p.nv = 300, p.nh = 257, p.k = 2, p.visible = vis, p.hidden = hid, p.sample_visible = true;
      v.push_back(std::make_shared<CdCase>(p));
    }
  // Outputs absent: each alone, pairs, none at all.
  const Outputs only[] = {{true, false, false, false}, {false, true, false, false}, {false, false, true, false},
                          {false, false, false, true}, {true, false, true, false},  {false, true, false, true},
                          {false, false, false, false}};
  for (const Outputs& o : only)
    for (int k : {1, 3}) {
      CdParams p;
      p.m = 5, p.nv = 7, p.nh = 5, p.k = k, p.hidden = k == 3 ? RbmUnit::Gaussian : RbmUnit::Bernoulli;
      v.push_back(std::make_shared<CdCase>(p, o));
      p.sample_visible = true;
      p.visible = k == 3 ? RbmUnit::Bernoulli : RbmUnit::Gaussian;
      v.push_back(std::make_shared<CdCase>(p, o));
    }
  return v;
}

class RbmCd : public ::testing::TestWithParam<CasePtr> {};

TEST_P(RbmCd, CpuMatchesDoubleReference) { expect_cpu_matches_reference(*GetParam(), InputCheck::Unchanged); }

TEST_P(RbmCd, CudaMatchesCpu) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_cuda_matches_cpu(*GetParam(), InputCheck::Unchanged);
}

INSTANTIATE_TEST_SUITE_P(Cases, RbmCd, ::testing::ValuesIn(cd_cases()), case_name);

// ================================================================================================
// rbm_free_energy
// ================================================================================================

class FeCase : public OpCase {
 public:
  FeCase(int m, int nv, int nh, RbmUnit vis, RbmUnit hid) : m_(m), nv_(nv), nh_(nh), vis_(vis), hid_(hid) {}
  std::string name() const override {
    return "rbm_free_energy_m" + std::to_string(m_) + "_nv" + std::to_string(nv_) + "_nh" + std::to_string(nh_) + "_" +
           unit_tag(vis_) + unit_tag(hid_);
  }
  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    CdParams p;
    p.m = m_, p.nv = nv_, p.nh = nh_, p.visible = vis_, p.hidden = hid_;
    CdInputs in = make_inputs(p, seed);
    // Larger weights than the CD cases, so softplus is exercised well away from 0 on both sides.
    for (float& x : in.w) x *= 5.0f;
    std::vector<Slot> s;
    s.push_back(input_slot("v", in.v0));
    s.push_back(input_slot("w", in.w));
    s.push_back(input_slot("b", in.b));
    s.push_back(input_slot("c", in.c));
    s.push_back(output_slot("fe", m_, kCudaTol));
    Slot ws = output_slot("ws", static_cast<std::size_t>(m_) * nh_, 0.0);
    ws.compare = false;
    s.push_back(ws);
    return s;
  }
  // F(v) and Σ |terms| per row, in double from the formula in kernels/ops.hpp.
  void ref(const std::vector<Slot>& s, std::vector<double>& fe, std::vector<double>& mag) const {
    const auto &v = s[0].host, &w = s[1].host, &b = s[2].host, &c = s[3].host;
    fe.assign(m_, 0.0);
    mag.assign(m_, 0.0);
    for (int i = 0; i < m_; ++i) {
      double f = 0.0, a = 0.0;
      for (int l = 0; l < nv_; ++l) {
        const double x = v[static_cast<std::size_t>(i) * nv_ + l];
        const double t = vis_ == RbmUnit::Bernoulli ? -x * b[l] : 0.5 * (x - b[l]) * (x - b[l]);
        f += t;
        a += std::abs(t);
      }
      for (int j = 0; j < nh_; ++j) {
        double x = c[j];
        for (int l = 0; l < nv_; ++l) x += static_cast<double>(v[static_cast<std::size_t>(i) * nv_ + l]) * w[static_cast<std::size_t>(j) * nv_ + l];
        const double t = hid_ == RbmUnit::Bernoulli ? std::log(1.0 + std::exp(x)) : 0.5 * x * x;
        f -= t;
        a += std::abs(t);
      }
      fe[i] = f;
      mag[i] = a;
    }
  }
  std::vector<std::vector<double>> magnitudes(const std::vector<Slot>& s) const override {
    std::vector<double> fe, mag;
    ref(s, fe, mag);
    std::vector<std::vector<double>> m(s.size());
    m[4] = mag;
    return m;
  }
  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    RbmFreeEnergy a;
    a.v = p[0], a.w = p[1], a.b = p[2], a.c = p[3], a.fe = p[4], a.ws = p[5];
    a.m = m_, a.nv = nv_, a.nh = nh_, a.visible = vis_, a.hidden = hid_;
    t.rbm_free_energy(ctx, a);
  }
  void check_reference(const std::vector<Slot>& s, const std::vector<std::vector<float>>& after) const override {
    std::vector<double> fe, mag;
    ref(s, fe, mag);
    expect_close(name() + " fe", after[4], fe, kFeTol, mag);
  }

 private:
  int m_, nv_, nh_;
  RbmUnit vis_, hid_;
};

std::vector<CasePtr> fe_cases() {
  std::vector<CasePtr> v;
  const RbmUnit units[] = {RbmUnit::Bernoulli, RbmUnit::Gaussian};
  for (RbmUnit vis : units)
    for (RbmUnit hid : units) {
      for (int m : {1, 5, 17})
        for (int nv : {3, 20})
          for (int nh : {2, 9}) v.push_back(std::make_shared<FeCase>(m, nv, nh, vis, hid));
      v.push_back(std::make_shared<FeCase>(300, 130, 257, vis, hid));  // past the OpenMP threshold
    }
  return v;
}

class RbmFe : public ::testing::TestWithParam<CasePtr> {};

TEST_P(RbmFe, CpuMatchesDoubleReference) { expect_cpu_matches_reference(*GetParam(), InputCheck::Unchanged); }

TEST_P(RbmFe, CudaMatchesCpu) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_cuda_matches_cpu(*GetParam(), InputCheck::Unchanged);
}

INSTANTIATE_TEST_SUITE_P(Cases, RbmFe, ::testing::ValuesIn(fe_cases()), case_name);

// ---- rbm_cd_workspace: the query both backends answer alike -------------------------------------

struct WsShape {
  int m, nv, nh;
};
const WsShape kWsShapes[] = {{1, 1, 1}, {7, 13, 5}, {100, 784, 1000}, {1024, 784, 1000}, {257, 1000, 499}};

// The floats rbm_cd's workspace layout takes (kernels/ops.hpp): ph0, hs, phk [m, nh], vt [m, nv],
// and the per-chunk partials of db, dc and recon, which need at least one chunk.
std::size_t minimum_floats(const WsShape& s) {
  const std::size_t m = static_cast<std::size_t>(s.m), nv = static_cast<std::size_t>(s.nv),
                    nh = static_cast<std::size_t>(s.nh);
  return 3 * m * nh + m * nv + nv + nh + 1;
}

std::size_t ask_workspace(Backend& be, const WsShape& s) {
  std::size_t floats = 0;
  RbmCDWorkspace q;
  q.m = s.m, q.nv = s.nv, q.nh = s.nh, q.floats = &floats;
  be.ops().rbm_cd_workspace(be.ctx(), q);
  return floats;
}

class RbmWorkspace : public ::testing::TestWithParam<WsShape> {};

TEST_P(RbmWorkspace, CpuAnswerHoldsTheLayout) {
  Backend cpu(Device::CPU);
  EXPECT_GE(ask_workspace(cpu, GetParam()), minimum_floats(GetParam()));
}

TEST_P(RbmWorkspace, CudaAnswersAsTheCpu) {
  CUAE_SKIP_WITHOUT_GPU();
  Backend cpu(Device::CPU), gpu(Device::CUDA);
  EXPECT_EQ(ask_workspace(gpu, GetParam()), ask_workspace(cpu, GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Cases, RbmWorkspace, ::testing::ValuesIn(kWsShapes),
                         [](const ::testing::TestParamInfo<WsShape>& i) {
                           return "rbm_cd_workspace_m" + std::to_string(i.param.m) + "_nv" +
                                  std::to_string(i.param.nv) + "_nh" + std::to_string(i.param.nh);
                         });

// ================================================================================================
// Draws: repeatability, and the seed and the step actually reaching the sample
// ================================================================================================

struct CdRun {
  std::vector<float> dw, db, dc, recon;
};

CdRun run_cd(Backend& be, const CdParams& P, const CdInputs& in) {
  DeviceBuffer v0(be, in.v0.size()), w(be, in.w.size()), b(be, in.b.size()), c(be, in.c.size());
  DeviceBuffer dw(be, in.w.size()), db(be, in.b.size()), dc(be, in.c.size()), rc(be, 1);
  const std::size_t nws = workspace_of(P.m, P.nv, P.nh);
  DeviceBuffer ws(be, nws);
  v0.upload(in.v0), w.upload(in.w), b.upload(in.b), c.upload(in.c);
  dw.poison(), db.poison(), dc.poison(), rc.poison(), ws.poison();
  RbmCD a;
  a.v0 = v0.data(), a.w = w.data(), a.b = b.data(), a.c = c.data();
  a.dw = dw.data(), a.db = db.data(), a.dc = dc.data(), a.recon = rc.data();
  a.ws = ws.data(), a.ws_floats = nws;
  a.m = P.m, a.nv = P.nv, a.nh = P.nh, a.k = P.k, a.visible = P.visible, a.hidden = P.hidden;
  a.sample_visible = P.sample_visible;
  a.seed = P.seed, a.step = P.step;
  be.ops().rbm_cd(be.ctx(), a);
  be.synchronize();
  return {dw.download(), db.download(), dc.download(), rc.download()};
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expect_draws_behave(Device device) {
  Backend be(device);
  for (bool sv : {false, true})
    for (RbmUnit hid : {RbmUnit::Bernoulli, RbmUnit::Gaussian}) {
      CdParams p;
      p.m = 17, p.nv = 20, p.nh = 9, p.k = 3, p.hidden = hid, p.sample_visible = sv;
      const std::string tag = std::string(device_name(device)) + " " + unit_tag(hid) + (sv ? " sample_visible" : "");
      const CdInputs in = make_inputs(p, 77);
      const CdRun a = run_cd(be, p, in), again = run_cd(be, p, in);
      EXPECT_TRUE(same_bits(a.dw, again.dw) && same_bits(a.db, again.db) && same_bits(a.dc, again.dc) &&
                  same_bits(a.recon, again.recon))
          << tag << ": a repeated call differs";
      CdParams q = p;
      q.step = p.step + 1;
      EXPECT_FALSE(same_bits(a.dw, run_cd(be, q, in).dw)) << tag << ": the step does not reach the draws";
      q = p;
      q.seed = p.seed ^ (std::uint64_t{1} << 40);  // a high-word change
      EXPECT_FALSE(same_bits(a.dw, run_cd(be, q, in).dw)) << tag << ": the seed does not reach the draws";
    }
}

TEST(RbmCdDraws, CpuRepeatsAndVariesWithSeedAndStep) { expect_draws_behave(Device::CPU); }

TEST(RbmCdDraws, CudaRepeatsAndVariesWithSeedAndStep) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_draws_behave(Device::CUDA);
}

// The flag selects the chain and leaves the mean-field one as it was: on the same inputs and draws,
// sample_visible = false matches the mean-field reference (the contract before the flag existed:
// no visible draw consumed, the hidden draws where they always were) and is far from the sampled
// reference, and sample_visible = true the other way round. "Far" is 100× the tolerance, so a flag
// that did not reach the op, or a visible sample that leaked into the mean-field chain, fails.
void expect_flag_selects_chain(Device device) {
  Backend be(device);
  const RbmUnit units[] = {RbmUnit::Bernoulli, RbmUnit::Gaussian};
  for (RbmUnit vis : units)
    for (RbmUnit hid : units)
      for (int k : {1, 3}) {
        CdParams p;
        p.m = 17, p.nv = 20, p.nh = 9, p.k = k, p.visible = vis, p.hidden = hid;
        const std::string tag = std::string(device_name(device)) + " k" + std::to_string(k) + "_" + unit_tag(vis) +
                                unit_tag(hid);
        const CdInputs in = make_inputs(p, 91);
        CdParams ps = p;
        ps.sample_visible = true;
        const CdRef mf = cd_ref(p, in.v0, in.w, in.b, in.c), sv = cd_ref(ps, in.v0, in.w, in.b, in.c);
        ASSERT_EQ(mf.ambiguous + sv.ambiguous, 0) << tag << ": pick another input seed";
        const double tol = device == Device::CPU ? kRefTol : kCudaTol;
        for (bool flag : {false, true}) {
          p.sample_visible = flag;
          const CdRun r = run_cd(be, p, in);
          const CdRef& same = flag ? sv : mf;
          const CdRef& other = flag ? mf : sv;
          const std::string t = tag + (flag ? " sample_visible" : " mean-field");
          expect_close(t + " dw", r.dw, same.dw, tol, same.mag_dw);
          expect_close(t + " db", r.db, same.db, tol, same.mag_db);
          EXPECT_GT(normalized_error(r.dw, other.dw, other.mag_dw), 100 * tol) << t << ": dW is the other chain's";
          EXPECT_GT(normalized_error(r.db, other.db, other.mag_db), 100 * tol) << t << ": db is the other chain's";
        }
      }
}

TEST(RbmCdDraws, CpuSampleVisibleFlagSelectsTheChain) { expect_flag_selects_chain(Device::CPU); }

TEST(RbmCdDraws, CudaSampleVisibleFlagSelectsTheChain) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_flag_selects_chain(Device::CUDA);
}

// The sign convention, checked against a closed form independent of the reference above: with
// W = 0 the reconstruction is vk = σ(b) whatever was sampled, and with c = ±30 every p(h|·) is 1 or
// ~1e-13, so dW[j,l] = −on_j·(mean_i v0[i,l] − σ(b_l)), db = −mean_i(v0 − σ(b)), dc = 0 (the
// op outputs the negative of the CD estimate).
TEST(RbmCdDraws, SaturatedHiddenGivesClosedForm) {
  CdParams p;
  p.m = 6, p.nv = 5, p.nh = 4, p.k = 1;
  CdInputs in = make_inputs(p, 5);
  std::fill(in.w.begin(), in.w.end(), 0.0f);
  in.c = {30.0f, -30.0f, 30.0f, -30.0f};
  Backend be(Device::CPU);
  const CdRun r = run_cd(be, p, in);
  for (int j = 0; j < p.nh; ++j)
    for (int l = 0; l < p.nv; ++l) {
      const double on = in.c[j] > 0 ? 1.0 : 0.0;
      double mean_v0 = 0.0;
      for (int i = 0; i < p.m; ++i) mean_v0 += in.v0[static_cast<std::size_t>(i) * p.nv + l] / p.m;
      const double want = -on * (mean_v0 - sigmoid_d(in.b[l]));
      EXPECT_NEAR(r.dw[static_cast<std::size_t>(j) * p.nv + l], want, 1e-6) << "dW[" << j << "," << l << "]";
    }
  for (int l = 0; l < p.nv; ++l) {
    double mean_v0 = 0.0;
    for (int i = 0; i < p.m; ++i) mean_v0 += in.v0[static_cast<std::size_t>(i) * p.nv + l] / p.m;
    EXPECT_NEAR(r.db[l], -(mean_v0 - sigmoid_d(in.b[l])), 1e-6) << "db[" << l << "]";
  }
  for (int j = 0; j < p.nh; ++j) EXPECT_EQ(r.dc[j], 0.0f) << "dc[" << j << "]";
}

// ================================================================================================
// Validation
// ================================================================================================

// The valid call the bad ones edit: m = 2, nv = 3, nh = 4, k = 1 in the 256-float buffer.
constexpr int kVm = 2, kVnv = 3, kVnh = 4;

RbmCD valid_cd(float* b) {
  RbmCD a;
  a.v0 = b, a.w = b + 8, a.b = b + 24, a.c = b + 28;
  a.dw = b + 32, a.db = b + 48, a.dc = b + 52, a.recon = b + 56;
  a.ws = b + 64, a.ws_floats = workspace_of(kVm, kVnv, kVnh);
  a.m = kVm, a.nv = kVnv, a.nh = kVnh, a.k = 1;
  return a;
}

RbmFreeEnergy valid_fe(float* b) {
  RbmFreeEnergy a;
  a.v = b, a.w = b + 8, a.b = b + 24, a.c = b + 28, a.fe = b + 32, a.ws = b + 64;
  a.m = kVm, a.nv = kVnv, a.nh = kVnh;
  return a;
}

std::vector<BadCall> bad_calls() {
  std::vector<BadCall> calls;
  auto cd = [&](std::string what, std::function<void(RbmCD&)> edit) {
    calls.push_back({"rbm_cd " + what, [=](const OpTable& t, const Context& c, float* b) {
                       RbmCD a = valid_cd(b);
                       edit(a);
                       t.rbm_cd(c, a);
                     }});
  };
  auto fe = [&](std::string what, std::function<void(RbmFreeEnergy&)> edit) {
    calls.push_back({"rbm_free_energy " + what, [=](const OpTable& t, const Context& c, float* b) {
                       RbmFreeEnergy a = valid_fe(b);
                       edit(a);
                       t.rbm_free_energy(c, a);
                     }});
  };
  auto wsq = [&](std::string what, int m, int nv, int nh, bool null_out) {
    calls.push_back({"rbm_cd_workspace " + what, [=](const OpTable& t, const Context& c, float*) {
                       std::size_t n = 0;
                       RbmCDWorkspace q;
                       q.m = m, q.nv = nv, q.nh = nh, q.floats = null_out ? nullptr : &n;
                       t.rbm_cd_workspace(c, q);
                     }});
  };
  struct Bad {
    const char* what;
    int m, nv, nh;
  };
  const Bad shapes[] = {{"m = 0", 0, 3, 4},           {"nv = 0", 2, 0, 4},          {"nh = 0", 2, 3, 0},
                        {"m negative", -2, 3, 4},     {"nv negative", 2, -3, 4},    {"nh negative", 2, 3, -4},
                        {"m·nv over 2^31", 65536, 65536, 1}, {"m·nh over 2^31", 65536, 1, 65536},
                        {"nh·nv over 2^31", 1, 65536, 65536}};
  for (const Bad& s : shapes) {
    cd(s.what, [=](RbmCD& a) { a.m = s.m, a.nv = s.nv, a.nh = s.nh; });
    fe(s.what, [=](RbmFreeEnergy& a) { a.m = s.m, a.nv = s.nv, a.nh = s.nh; });
    wsq(s.what, s.m, s.nv, s.nh, false);
  }
  wsq("null floats", kVm, kVnv, kVnh, true);
  cd("k = 0", [](RbmCD& a) { a.k = 0; });
  cd("k negative", [](RbmCD& a) { a.k = -1; });
  cd("null v0", [](RbmCD& a) { a.v0 = nullptr; });
  cd("null w", [](RbmCD& a) { a.w = nullptr; });
  cd("null b", [](RbmCD& a) { a.b = nullptr; });
  cd("null c", [](RbmCD& a) { a.c = nullptr; });
  cd("null ws", [](RbmCD& a) { a.ws = nullptr; });
  cd("workspace one float short", [](RbmCD& a) { --a.ws_floats; });
  cd("workspace size 0", [](RbmCD& a) { a.ws_floats = 0; });
  cd("unknown visible unit", [](RbmCD& a) { a.visible = static_cast<RbmUnit>(7); });
  cd("unknown hidden unit", [](RbmCD& a) { a.hidden = static_cast<RbmUnit>(-1); });
  cd("dw aliasing w", [](RbmCD& a) { a.dw = const_cast<float*>(a.w); });
  cd("db aliasing v0", [](RbmCD& a) { a.db = const_cast<float*>(a.v0); });
  cd("dc aliasing the workspace", [](RbmCD& a) { a.dc = a.ws; });
  cd("recon aliasing db", [](RbmCD& a) { a.recon = a.db; });
  fe("null v", [](RbmFreeEnergy& a) { a.v = nullptr; });
  fe("null w", [](RbmFreeEnergy& a) { a.w = nullptr; });
  fe("null b", [](RbmFreeEnergy& a) { a.b = nullptr; });
  fe("null c", [](RbmFreeEnergy& a) { a.c = nullptr; });
  fe("null fe", [](RbmFreeEnergy& a) { a.fe = nullptr; });
  fe("null ws", [](RbmFreeEnergy& a) { a.ws = nullptr; });
  fe("unknown visible unit", [](RbmFreeEnergy& a) { a.visible = static_cast<RbmUnit>(2); });
  fe("fe aliasing v", [](RbmFreeEnergy& a) { a.fe = const_cast<float*>(a.v); });
  return calls;
}

const std::vector<float> kValidationFill = uniform(256, 23, 0.0f, 1.0f);

TEST(RbmValidation, CpuRejectsBadArguments) { expect_rejects_bad_calls(Device::CPU, bad_calls(), kValidationFill); }

TEST(RbmValidation, CudaRejectsBadArguments) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_rejects_bad_calls(Device::CUDA, bad_calls(), kValidationFill);
}

// The workspace of exactly the reported size is enough; the reported size follows the documented
// layout (3·m·nh + m·nv + ceil(m/32)·(nv + nh + 1)); both backends report the same number.
void expect_exact_workspace_accepted(Device device) {
  Backend be(device);
  DeviceBuffer buf(be, 256);
  buf.upload(kValidationFill);
  RbmCD a = valid_cd(buf.data());
  EXPECT_EQ(a.ws_floats, std::size_t{3 * 2 * 4 + 2 * 3 + 1 * (3 + 4 + 1)});
  std::size_t n = 0;
  RbmCDWorkspace q;
  q.m = 1000, q.nv = 784, q.nh = 500, q.floats = &n;
  be.ops().rbm_cd_workspace(be.ctx(), q);
  EXPECT_EQ(n, std::size_t{3} * 1000 * 500 + std::size_t{1000} * 784 + std::size_t{32} * (784 + 500 + 1));
  EXPECT_NO_THROW({
    be.ops().rbm_cd(be.ctx(), a);
    be.synchronize();
  });
  // Sampled visibles are drawn in place over the means: the same workspace, no more.
  a.sample_visible = true, a.k = 3;
  EXPECT_NO_THROW({
    be.ops().rbm_cd(be.ctx(), a);
    be.synchronize();
  });
  EXPECT_TRUE(buf.guards_intact());
}

TEST(RbmValidation, CpuAcceptsExactWorkspace) { expect_exact_workspace_accepted(Device::CPU); }

TEST(RbmValidation, CudaAcceptsExactWorkspace) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_exact_workspace_accepted(Device::CUDA);
}

}  // namespace
