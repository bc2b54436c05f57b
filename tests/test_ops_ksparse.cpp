// The k-sparse op test: ksparse_forward and ksparse_backward (kernels/ops.hpp, KSparse and
// KSparseBackward), checked four ways:
//
//   KSparseCpu.MatchesStableSortReference   the CPU op against a reference written here (a full
//                                           stable sort of the row, larger value first, so equal
//                                           values keep their column order), over many shapes,
//                                           k in {1, 3, n/2, n−1, n} and inputs chosen to tie
//                                           (small integers, all-equal rows, ±0, half zeros),
//                                           plus the backward against its definition;
//   KSparseCpu.* (signed zeros, NaN)        the two choices ops.hpp documents, on hand-made rows;
//   KSparseGrad                             the backward against central finite differences, in
//                                           double, of L = Σ r⊙y away from ties;
//   KSparseCuda.*                           the CUDA op against the CPU op on the same inputs:
//                                           y, index and dx bit for bit (the op has no arithmetic
//                                           but the accumulating add, so anything less is a bug).
//                                           Skipped, with the reason, when there is no GPU.
//
// Every output starts poisoned (NaN; an index poisoned with NaN's bits is far out of range) and
// every buffer sits between guard zones (tests/common.hpp). KSparseValidation checks that both
// backends reject the same bad arguments.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <ostream>
#include <random>
#include <span>
#include <sstream>
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

// The index buffers are int32 and a DeviceBuffer holds floats: indices travel as bit patterns
// (float_bits, bits_float, bits_int: tests/op_case.hpp).

// ================================================================================================
// Inputs
// ================================================================================================

enum class Data { Uniform, Integers, AllEqual, SignedZeros, HalfZeros, Negative };
constexpr Data kAllData[] = {Data::Uniform,     Data::Integers,  Data::AllEqual,
                             Data::SignedZeros, Data::HalfZeros, Data::Negative};

const char* data_name(Data d) {
  switch (d) {
    case Data::Uniform: return "uniform";
    case Data::Integers: return "integers";
    case Data::AllEqual: return "allequal";
    case Data::SignedZeros: return "signedzeros";
    case Data::HalfZeros: return "halfzeros";
    case Data::Negative: return "negative";
  }
  return "?";
}
void PrintTo(Data d, std::ostream* os) { *os << data_name(d); }

// m rows of n values.
//   uniform      [-1, 1): almost no ties
//   integers     {−3..3} \ {0}: nonzero, negative and positive, heavy ties
//   allequal     each row one nonzero value (its sign alternating by row): every entry ties
//   signedzeros  {−0, +0, −1, 1, 0.5}: −0 and +0 must tie
//   halfzeros    a ReLU-like layer: positive values, the rest exact zeros of either sign
//   negative     [−2, −0.25): only negatives, the largest is the one nearest 0
std::vector<float> make_input(Data d, int m, int n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<float> x(static_cast<std::size_t>(m) * n);
  for (int r = 0; r < m; ++r) {
    float* row = x.data() + static_cast<std::size_t>(r) * n;
    for (int c = 0; c < n; ++c) {
      float v = 0.0f;
      switch (d) {
        case Data::Uniform: v = uniform_float(gen, -1.0f, 1.0f); break;
        case Data::Integers: {
          const int t = static_cast<int>(gen() % 6u);  // 0..5 -> -3,-2,-1,1,2,3
          v = static_cast<float>(t < 3 ? t - 3 : t - 2);
          break;
        }
        case Data::AllEqual: v = (r % 2 ? -1.0f : 1.0f) * (0.5f + static_cast<float>(r % 5)); break;
        case Data::SignedZeros: {
          static constexpr float kVals[] = {-0.0f, 0.0f, -1.0f, 1.0f, 0.5f};
          v = kVals[gen() % 5u];
          break;
        }
        case Data::HalfZeros: {
          const float u = uniform_float(gen, -1.0f, 1.0f);
          v = u > 0.0f ? u : ((gen() & 1u) ? -0.0f : 0.0f);
          break;
        }
        case Data::Negative: v = uniform_float(gen, -2.0f, -0.25f); break;
      }
      row[c] = v;
    }
  }
  return x;
}

struct Shape {
  int m, n;
};
void PrintTo(const Shape& s, std::ostream* os) { *os << "m=" << s.m << " n=" << s.n; }
// Every size of {1, 2, 3, 17, 100, 1000, 4097} as rows and as columns, rows long enough to be
// split into many tiles (16384), the CUDA kernel's largest staged row (24576 columns) and the
// first re-read from global memory (24577, 40000), and more rows than a grid's y/z limit (70000).
const std::vector<Shape> kShapes = {{1, 1},     {1, 2},     {2, 3},     {3, 17},    {17, 3},     {17, 100},
                                    {100, 17},  {100, 1000}, {1000, 100}, {1000, 1000}, {4097, 2}, {4097, 17},
                                    {2, 4097},  {17, 4097}, {1, 16384}, {3, 24576}, {3, 24577},  {2, 40000},
                                    {70000, 5}};

// k in {1, 3, n/2, n−1, n}, each clamped to [1, n], without repeats.
std::vector<int> k_values(int n) {
  std::vector<int> ks = {1, std::min(3, n), std::max(1, n / 2), std::max(1, n - 1), n};
  std::sort(ks.begin(), ks.end());
  ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
  return ks;
}

// ================================================================================================
// The reference: per row a stable sort of the columns by value, larger first (float comparison,
// so −0 and +0 compare equal and stay in column order), the first k kept and listed ascending.
// NaN-free inputs only (NaN has its own hand-checked test).
// ================================================================================================

struct Ref {
  std::vector<float> y;
  std::vector<std::int32_t> index;
};

Ref reference(const std::vector<float>& x, int m, int n, int k) {
  Ref ref;
  ref.y.assign(x.size(), 0.0f);
  ref.index.resize(static_cast<std::size_t>(m) * k);
  std::vector<std::int32_t> order(static_cast<std::size_t>(n));
  for (int r = 0; r < m; ++r) {
    const float* row = x.data() + static_cast<std::size_t>(r) * n;
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) { return row[a] > row[b]; });
    std::sort(order.begin(), order.begin() + k);
    for (int t = 0; t < k; ++t) {
      const std::int32_t c = order[static_cast<std::size_t>(t)];
      ref.index[static_cast<std::size_t>(r) * k + t] = c;
      ref.y[static_cast<std::size_t>(r) * n + c] = row[c];
    }
  }
  return ref;
}

// ================================================================================================
// Running the ops on a backend
// ================================================================================================

struct Outputs {
  std::vector<float> y;
  std::vector<std::int32_t> index;
  std::vector<float> dx;      // backward, overwriting a poisoned dx
  std::vector<float> dx_acc;  // backward, accumulating into dx_init
};

// Forward, then both backwards from the forward's own index. Expects every guard zone intact.
Outputs run_ops(Backend& be, const std::vector<float>& x, const std::vector<float>& dy,
                const std::vector<float>& dx_init, int m, int n, int k) {
  const std::size_t mn = static_cast<std::size_t>(m) * n, mk = static_cast<std::size_t>(m) * k;
  DeviceBuffer bx(be, mn), by(be, mn), bi(be, mk), bdy(be, mn), bdx(be, mn), bdxa(be, mn);
  bx.upload(x);
  by.poison();
  bi.poison();
  bdy.upload(dy);
  bdx.poison();
  bdxa.upload(dx_init);

  KSparse f;
  f.x = bx.data();
  f.y = by.data();
  f.index = reinterpret_cast<std::int32_t*>(bi.data());
  f.m = m;
  f.n = n;
  f.k = k;
  be.ops().ksparse_forward(be.ctx(), f);

  KSparseBackward b;
  b.dy = bdy.data();
  b.index = f.index;
  b.dx = bdx.data();
  b.m = m;
  b.n = n;
  b.k = k;
  be.ops().ksparse_backward(be.ctx(), b);
  b.dx = bdxa.data();
  b.acc_dx = true;
  be.ops().ksparse_backward(be.ctx(), b);
  be.synchronize();

  Outputs o;
  o.y = by.download();
  const std::vector<float> ib = bi.download();
  o.index.resize(ib.size());
  for (std::size_t i = 0; i < ib.size(); ++i) o.index[i] = bits_int(ib[i]);
  o.dx = bdx.download();
  o.dx_acc = bdxa.download();
  const char* dev = device_name(be.device());
  EXPECT_TRUE(bx.guards_intact()) << dev << ": write out of bounds of x";
  EXPECT_TRUE(by.guards_intact()) << dev << ": write out of bounds of y";
  EXPECT_TRUE(bi.guards_intact()) << dev << ": write out of bounds of index";
  EXPECT_TRUE(bdy.guards_intact()) << dev << ": write out of bounds of dy";
  EXPECT_TRUE(bdx.guards_intact()) << dev << ": write out of bounds of dx";
  EXPECT_TRUE(bdxa.guards_intact()) << dev << ": write out of bounds of dx (acc)";
  EXPECT_EQ(count_nonfinite(o.y), 0u) << dev << ": y has unwritten (poisoned) entries";
  EXPECT_EQ(count_nonfinite(o.dx), 0u) << dev << ": dx has unwritten (poisoned) entries";
  return o;
}

// got == want bit for bit (so −0 ≠ +0 and a NaN equals only the same NaN); names the first
// difference as (row, column).
::testing::AssertionResult same_bits(const char* what, std::span<const float> got, std::span<const float> want,
                                     int n) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << what << ": size " << got.size() << " vs " << want.size();
  std::size_t diffs = 0, first = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (float_bits(got[i]) != float_bits(want[i]) && diffs++ == 0) first = i;
  if (diffs == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << diffs << " entries differ; first at row " << first / n
                                       << " column " << first % n << ": got " << got[first] << " (bits 0x"
                                       << std::hex << float_bits(got[first]) << "), want " << want[first]
                                       << " (bits 0x" << float_bits(want[first]) << std::dec << ")";
}

::testing::AssertionResult same_index(std::span<const std::int32_t> got, std::span<const std::int32_t> want, int k) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "index: size " << got.size() << " vs " << want.size();
  for (std::size_t i = 0; i < got.size(); ++i)
    if (got[i] != want[i])
      return ::testing::AssertionFailure() << "index: first difference at row " << i / k << " slot " << i % k
                                           << ": got " << got[i] << ", want " << want[i];
  return ::testing::AssertionSuccess();
}

// The index list's own contract, independent of any reference: per row strictly ascending columns
// in [0, n); y nonzero only at listed columns, equal to x there; and exactly k nonzeros in a row
// whose inputs are all nonzero.
void check_structure(const std::vector<float>& x, const Outputs& o, int m, int n, int k) {
  std::size_t bad_order = 0, bad_y = 0, bad_count = 0;
  std::vector<char> listed(static_cast<std::size_t>(n));
  for (int r = 0; r < m; ++r) {
    const std::int32_t* idx = o.index.data() + static_cast<std::size_t>(r) * k;
    const float* xr = x.data() + static_cast<std::size_t>(r) * n;
    const float* yr = o.y.data() + static_cast<std::size_t>(r) * n;
    std::fill(listed.begin(), listed.end(), 0);
    for (int t = 0; t < k; ++t) {
      const bool ok = idx[t] >= 0 && idx[t] < n && (t == 0 || idx[t] > idx[t - 1]);
      if (!ok) {
        ++bad_order;
        break;
      }
      listed[static_cast<std::size_t>(idx[t])] = 1;
    }
    bool row_nonzero = true;
    int nonzeros = 0;
    for (int c = 0; c < n; ++c) {
      row_nonzero = row_nonzero && xr[c] != 0.0f;
      nonzeros += yr[c] != 0.0f;
      const std::uint32_t want = listed[static_cast<std::size_t>(c)] ? float_bits(xr[c]) : 0u;
      bad_y += float_bits(yr[c]) != want;
    }
    if (row_nonzero && nonzeros != k) ++bad_count;
  }
  EXPECT_EQ(bad_order, 0u) << "rows whose index list is not strictly ascending within [0, n)";
  EXPECT_EQ(bad_y, 0u) << "entries of y that are not x at a listed column and +0 elsewhere";
  EXPECT_EQ(bad_count, 0u) << "rows of nonzero inputs without exactly k nonzero outputs";
}

// The backward's definition from an index list: dx = dy at the listed columns, +0 elsewhere;
// dx_acc = dx_init + dy there (one float add, as the op does) and dx_init elsewhere.
void expected_backward(const std::vector<float>& dy, const std::vector<float>& dx_init,
                       const std::vector<std::int32_t>& index, int m, int n, int k, std::vector<float>& dx,
                       std::vector<float>& dx_acc) {
  dx.assign(dy.size(), 0.0f);
  dx_acc = dx_init;
  for (int r = 0; r < m; ++r)
    for (int t = 0; t < k; ++t) {
      const std::size_t e = static_cast<std::size_t>(r) * n + index[static_cast<std::size_t>(r) * k + t];
      dx[e] = dy[e];
      dx_acc[e] = dx_init[e] + dy[e];
    }
}

std::string case_label(Data d, const Shape& s, int k) {
  std::ostringstream os;
  os << data_name(d) << " m=" << s.m << " n=" << s.n << " k=" << k;
  return os.str();
}

// ================================================================================================
// CPU against the reference
// ================================================================================================

// Both suites run the forward and then the backward on the forward's index (the backward cannot
// run without one); KSparseForwardCases checks y and the index, KSparseBackwardCases dx written and
// accumulated. Each case is named after the op it checks (tests/test_op_coverage.cpp).
class KSparseForwardCases : public ::testing::TestWithParam<std::tuple<Data, Shape>> {};
class KSparseBackwardCases : public ::testing::TestWithParam<std::tuple<Data, Shape>> {};

// The inputs of one (data, shape, k) case: x, the backward's dy, and dx before accumulating.
struct CaseInputs {
  std::vector<float> x, dy, dx_init;
};
CaseInputs case_inputs(Data d, const Shape& s, int k) {
  const std::uint32_t seed = seed_from(case_label(d, s, k));
  const std::size_t mn = static_cast<std::size_t>(s.m) * s.n;
  return {make_input(d, s.m, s.n, seed), uniform(mn, seed + 1), uniform(mn, seed + 2)};
}
Outputs run_case(Backend& be, const CaseInputs& in, const Shape& s, int k) {
  return run_ops(be, in.x, in.dy, in.dx_init, s.m, s.n, k);
}

// The reference's y and index, and the backward's expected outputs from that index.
struct Expected {
  Ref ref;
  std::vector<float> dx, dx_acc;
};
Expected expected(const CaseInputs& in, const Shape& s, int k) {
  Expected e;
  e.ref = reference(in.x, s.m, s.n, k);
  expected_backward(in.dy, in.dx_init, e.ref.index, s.m, s.n, k, e.dx, e.dx_acc);
  return e;
}

// Every k of a case on the CPU: check(inputs, expected, outputs, k).
template <class F>
void each_k_on_cpu(Data d, const Shape& s, F&& check) {
  Backend cpu(Device::CPU);
  for (int k : k_values(s.n)) {
    SCOPED_TRACE(case_label(d, s, k));
    const CaseInputs in = case_inputs(d, s, k);
    check(in, expected(in, s, k), run_case(cpu, in, s, k), k);
  }
}

TEST_P(KSparseForwardCases, CpuMatchesStableSortReference) {
  const auto [d, s] = GetParam();
  each_k_on_cpu(d, s, [&](const CaseInputs& in, const Expected& e, const Outputs& o, int k) {
    EXPECT_TRUE(same_bits("y", o.y, e.ref.y, s.n));
    EXPECT_TRUE(same_index(o.index, e.ref.index, k));
    check_structure(in.x, o, s.m, s.n, k);
  });
}

TEST_P(KSparseBackwardCases, CpuMatchesStableSortReference) {
  const auto [d, s] = GetParam();
  each_k_on_cpu(d, s, [&](const CaseInputs&, const Expected& e, const Outputs& o, int) {
    EXPECT_TRUE(same_bits("dx", o.dx, e.dx, s.n));
    EXPECT_TRUE(same_bits("dx (acc)", o.dx_acc, e.dx_acc, s.n));
  });
}

// ================================================================================================
// CUDA against CPU, bit for bit
// ================================================================================================

// Every k of a case on both backends: check(inputs, CPU outputs, CUDA outputs, k).
template <class F>
void each_k_on_both(Data d, const Shape& s, F&& check) {
  Backend cpu(Device::CPU);
  Backend gpu(Device::CUDA);
  for (int k : k_values(s.n)) {
    SCOPED_TRACE(case_label(d, s, k));
    const CaseInputs in = case_inputs(d, s, k);
    check(in, run_case(cpu, in, s, k), run_case(gpu, in, s, k), k);
  }
}

TEST_P(KSparseForwardCases, CudaMatchesCpu) {
  CUAE_SKIP_WITHOUT_GPU();
  const auto [d, s] = GetParam();
  each_k_on_both(d, s, [&](const CaseInputs& in, const Outputs& want, const Outputs& got, int k) {
    EXPECT_TRUE(same_bits("y", got.y, want.y, s.n));
    EXPECT_TRUE(same_index(got.index, want.index, k));
    check_structure(in.x, got, s.m, s.n, k);
  });
}

TEST_P(KSparseBackwardCases, CudaMatchesCpu) {
  CUAE_SKIP_WITHOUT_GPU();
  const auto [d, s] = GetParam();
  each_k_on_both(d, s, [&](const CaseInputs&, const Outputs& want, const Outputs& got, int) {
    EXPECT_TRUE(same_bits("dx", got.dx, want.dx, s.n));
    EXPECT_TRUE(same_bits("dx (acc)", got.dx_acc, want.dx_acc, s.n));
  });
}

template <const char* kOp>
std::string param_name(const ::testing::TestParamInfo<std::tuple<Data, Shape>>& info) {
  const auto& [d, s] = info.param;
  return std::string(kOp) + "_" + data_name(d) + "_m" + std::to_string(s.m) + "_n" + std::to_string(s.n);
}
constexpr char kForwardName[] = "ksparse_forward";
constexpr char kBackwardName[] = "ksparse_backward";

// The backward is a scatter of the kept entries: every data kind over the shapes up to the first
// staged-row limit is plenty (the forward's index is what varies with the rest).
const std::vector<Shape> kBackwardShapes(kShapes.begin(), kShapes.begin() + 15);

INSTANTIATE_TEST_SUITE_P(KSparse, KSparseForwardCases,
                         ::testing::Combine(::testing::ValuesIn(kAllData), ::testing::ValuesIn(kShapes)),
                         param_name<kForwardName>);
INSTANTIATE_TEST_SUITE_P(KSparse, KSparseBackwardCases,
                         ::testing::Combine(::testing::ValuesIn(kAllData), ::testing::ValuesIn(kBackwardShapes)),
                         param_name<kBackwardName>);

// ================================================================================================
// The documented choices: −0 ties +0, NaN ranks above +∞. Hand-made rows, each with the index
// lists it must give; the same rows on CUDA must give the same bits.
// ================================================================================================

struct HandRow {
  std::vector<float> x;
  int k;
  std::vector<std::int32_t> index;
};

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();
const float kDenorm = std::numeric_limits<float>::denorm_min();

std::vector<HandRow> signed_zero_rows() {
  return {
      {{-0.0f, 0.0f, -0.0f, 0.0f}, 2, {0, 1}},
      {{-0.0f, 0.0f, -0.0f, 0.0f}, 3, {0, 1, 2}},
      {{0.0f, -0.0f}, 1, {0}},
      {{-0.0f, 0.0f}, 1, {0}},
      {{-0.0f, -1.0f, 0.0f, -2.0f}, 2, {0, 2}},
      {{-kDenorm, -0.0f, 0.0f, kDenorm}, 1, {3}},
      {{-kDenorm, -0.0f, 0.0f, kDenorm}, 2, {1, 3}},
      {{-kDenorm, -0.0f, 0.0f, kDenorm}, 3, {1, 2, 3}},
      {{-kInf, -0.0f, -kDenorm, -1.0f}, 2, {1, 2}},
  };
}

// A NaN with the sign bit set (the x86 default NaN) and one with a payload.
const float kNegNaN = bits_float(0xffc00000u);
const float kPayloadNaN = bits_float(0x7fc12345u);

std::vector<HandRow> nan_rows() {
  return {
      {{1.0f, kNaN, kInf, kNegNaN, 2.0f}, 1, {1}},
      {{1.0f, kNaN, kInf, kNegNaN, 2.0f}, 2, {1, 3}},
      {{1.0f, kNaN, kInf, kNegNaN, 2.0f}, 3, {1, 2, 3}},
      {{1.0f, kNaN, kInf, kNegNaN, 2.0f}, 4, {1, 2, 3, 4}},
      {{-kInf, kPayloadNaN, -1.0f}, 1, {1}},
      {{kNegNaN, kNegNaN, kNegNaN}, 2, {0, 1}},
      {{3.0f, 2.0f, kPayloadNaN}, 2, {0, 2}},
  };
}

// Runs each row alone (m = 1) and checks the index list, y's bits (x's at the kept columns, +0
// elsewhere) and the backward. On CUDA also against the CPU's bits.
void check_hand_rows(const std::vector<HandRow>& rows, bool with_cuda) {
  Backend cpu(Device::CPU);
  std::unique_ptr<Backend> gpu;
  if (with_cuda) gpu = std::make_unique<Backend>(Device::CUDA);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const HandRow& h = rows[i];
    const int n = static_cast<int>(h.x.size());
    SCOPED_TRACE("hand row " + std::to_string(i) + " k=" + std::to_string(h.k));
    const std::vector<float> dy = uniform(h.x.size(), 77 + static_cast<std::uint32_t>(i));
    const std::vector<float> dx_init = uniform(h.x.size(), 99 + static_cast<std::uint32_t>(i));
    const Outputs o = run_ops(cpu, h.x, dy, dx_init, 1, n, h.k);
    EXPECT_TRUE(same_index(o.index, h.index, h.k));
    std::vector<float> y(h.x.size(), 0.0f);
    for (std::int32_t c : h.index) y[static_cast<std::size_t>(c)] = h.x[static_cast<std::size_t>(c)];
    EXPECT_TRUE(same_bits("y", o.y, y, n));
    std::vector<float> dx, dx_acc;
    expected_backward(dy, dx_init, h.index, 1, n, h.k, dx, dx_acc);
    EXPECT_TRUE(same_bits("dx", o.dx, dx, n));
    EXPECT_TRUE(same_bits("dx (acc)", o.dx_acc, dx_acc, n));
    if (gpu) {
      const Outputs g = run_ops(*gpu, h.x, dy, dx_init, 1, n, h.k);
      EXPECT_TRUE(same_index(g.index, o.index, h.k)) << "cuda vs cpu";
      EXPECT_TRUE(same_bits("y (cuda vs cpu)", g.y, o.y, n));
      EXPECT_TRUE(same_bits("dx (cuda vs cpu)", g.dx, o.dx, n));
      EXPECT_TRUE(same_bits("dx acc (cuda vs cpu)", g.dx_acc, o.dx_acc, n));
    }
  }
}

TEST(KSparseCpu, SignedZerosTieAndKeepTheirSign) { check_hand_rows(signed_zero_rows(), false); }

TEST(KSparseCuda, SignedZerosTieAndKeepTheirSign) {
  CUAE_SKIP_WITHOUT_GPU();
  check_hand_rows(signed_zero_rows(), true);
}

// ---- NaN --------------------------------------------------------------------------------------
// run_ops takes a NaN in y for an unwritten entry, and these rows keep NaNs: they run through a
// forward-only runner whose y starts filled with a value no input holds.

struct RawOutputs {
  std::vector<float> y;
  std::vector<std::int32_t> index;
};

RawOutputs run_forward_raw(Backend& be, const std::vector<float>& x, int n, int k) {
  DeviceBuffer bx(be, x.size()), by(be, x.size()), bi(be, static_cast<std::size_t>(k));
  bx.upload(x);
  // Poisoned with a value no input holds, so an unwritten entry shows.
  by.fill(-12345.0f);
  bi.poison();
  KSparse f;
  f.x = bx.data();
  f.y = by.data();
  f.index = reinterpret_cast<std::int32_t*>(bi.data());
  f.m = 1;
  f.n = n;
  f.k = k;
  be.ops().ksparse_forward(be.ctx(), f);
  be.synchronize();
  RawOutputs o;
  o.y = by.download();
  for (float v : bi.download()) o.index.push_back(bits_int(v));
  EXPECT_TRUE(bx.guards_intact() && by.guards_intact() && bi.guards_intact())
      << device_name(be.device()) << ": write out of bounds";
  return o;
}

void check_nan_rows(bool with_cuda) {
  Backend cpu(Device::CPU);
  std::unique_ptr<Backend> gpu;
  if (with_cuda) gpu = std::make_unique<Backend>(Device::CUDA);
  const std::vector<HandRow> rows = nan_rows();
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const HandRow& h = rows[i];
    const int n = static_cast<int>(h.x.size());
    SCOPED_TRACE("NaN row " + std::to_string(i) + " k=" + std::to_string(h.k));
    const RawOutputs o = run_forward_raw(cpu, h.x, n, h.k);
    EXPECT_TRUE(same_index(o.index, h.index, h.k));
    std::vector<float> y(h.x.size(), 0.0f);
    for (std::int32_t c : h.index) y[static_cast<std::size_t>(c)] = h.x[static_cast<std::size_t>(c)];
    EXPECT_TRUE(same_bits("y", o.y, y, n)) << "a kept NaN keeps its bits";
    if (gpu) {
      const RawOutputs g = run_forward_raw(*gpu, h.x, n, h.k);
      EXPECT_TRUE(same_index(g.index, o.index, h.k)) << "cuda vs cpu";
      EXPECT_TRUE(same_bits("y (cuda vs cpu)", g.y, o.y, n));
    }
  }
}

TEST(KSparseCpu, NaNRanksAboveInfinity) { check_nan_rows(false); }

TEST(KSparseCuda, NaNRanksAboveInfinity) {
  CUAE_SKIP_WITHOUT_GPU();
  check_nan_rows(true);
}

// Long rows with NaNs scattered in them, where the selection runs all its passes: every NaN is kept
// before any number (row r holds up to 10·r NaNs, row 4 up to k = 40 of them).
struct NanRows {
  int m = 5, n = 3000, k = 40;
  std::vector<float> x;
  std::vector<std::vector<std::int32_t>> nan_cols;
};

NanRows make_nan_rows() {
  NanRows d;
  d.x = uniform(static_cast<std::size_t>(d.m) * d.n, 4242, -1.0f, 1.0f);
  d.nan_cols.resize(static_cast<std::size_t>(d.m));
  std::mt19937 gen(17);
  for (int r = 0; r < d.m; ++r) {
    for (int t = 0; t < 10 * r; ++t) {
      const int c = static_cast<int>(gen() % static_cast<unsigned>(d.n));
      d.x[static_cast<std::size_t>(r) * d.n + c] = (t % 2) ? kNaN : kNegNaN;
    }
    for (int c = 0; c < d.n; ++c)
      if (std::isnan(d.x[static_cast<std::size_t>(r) * d.n + c])) d.nan_cols[static_cast<std::size_t>(r)].push_back(c);
  }
  return d;
}

// The forward's index list [m, k] on a backend (y is not inspected here).
std::vector<std::int32_t> forward_index(Backend& be, const std::vector<float>& x, int m, int n, int k) {
  DeviceBuffer bx(be, x.size()), by(be, x.size()), bi(be, static_cast<std::size_t>(m) * k);
  bx.upload(x);
  by.poison();
  bi.poison();
  KSparse f;
  f.x = bx.data();
  f.y = by.data();
  f.index = reinterpret_cast<std::int32_t*>(bi.data());
  f.m = m;
  f.n = n;
  f.k = k;
  be.ops().ksparse_forward(be.ctx(), f);
  be.synchronize();
  EXPECT_TRUE(bx.guards_intact() && by.guards_intact() && bi.guards_intact())
      << device_name(be.device()) << ": write out of bounds";
  std::vector<std::int32_t> idx;
  for (float v : bi.download()) idx.push_back(bits_int(v));
  return idx;
}

TEST(KSparseCpu, NaNsInLongRowsAreKeptFirst) {
  const NanRows d = make_nan_rows();
  Backend cpu(Device::CPU);
  const std::vector<std::int32_t> idx = forward_index(cpu, d.x, d.m, d.n, d.k);
  for (int r = 0; r < d.m; ++r) {
    const auto row = idx.begin() + static_cast<std::ptrdiff_t>(r) * d.k;
    EXPECT_TRUE(std::is_sorted(row, row + d.k)) << "row " << r;
    for (std::int32_t c : d.nan_cols[static_cast<std::size_t>(r)])
      EXPECT_TRUE(std::binary_search(row, row + d.k, c)) << "row " << r << ": NaN at column " << c << " dropped";
  }
}

TEST(KSparseCuda, NaNsInLongRowsAreKeptFirst) {
  CUAE_SKIP_WITHOUT_GPU();
  const NanRows d = make_nan_rows();
  Backend cpu(Device::CPU);
  Backend gpu(Device::CUDA);
  EXPECT_TRUE(same_index(forward_index(gpu, d.x, d.m, d.n, d.k), forward_index(cpu, d.x, d.m, d.n, d.k), d.k));
}

// ================================================================================================
// Backward against finite differences. L(x) = Σ r⊙y(x) in double, y selected by the double
// values; away from ties the selection is locally constant, so ∂L/∂x = r at the kept entries and
// 0 elsewhere, which the op computes from dy = r.
// ================================================================================================

struct GradShape {
  int m, n, k;
};

TEST(KSparseGrad, BackwardMatchesFiniteDifferences) {
  for (const GradShape& g : {GradShape{1, 1, 1}, GradShape{3, 17, 5}, GradShape{2, 100, 50}, GradShape{4, 33, 32},
                             GradShape{2, 257, 1}, GradShape{3, 40, 40}}) {
    SCOPED_TRACE("m=" + std::to_string(g.m) + " n=" + std::to_string(g.n) + " k=" + std::to_string(g.k));
    const std::size_t mn = static_cast<std::size_t>(g.m) * g.n;
    const std::uint32_t seed = seed_from("ksparse_grad_" + std::to_string(g.n) + "_" + std::to_string(g.k));
    // Distinct values 0.01 apart (a shuffled ramp) plus noise below 0.002: ties are at least
    // 0.006 away, far beyond the step.
    std::mt19937 gen(seed);
    std::vector<float> xf(mn);
    for (int r = 0; r < g.m; ++r) {
      std::vector<int> perm(static_cast<std::size_t>(g.n));
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), gen);
      for (int c = 0; c < g.n; ++c)
        xf[static_cast<std::size_t>(r) * g.n + c] =
            0.01f * static_cast<float>(perm[static_cast<std::size_t>(c)] - g.n / 2) + uniform_float(gen, -0.002f, 0.002f);
    }
    const std::vector<float> rw = uniform(mn, seed + 1);

    // Analytic: the op's forward index, then its backward with dy = r.
    Backend cpu(Device::CPU);
    DeviceBuffer bx(cpu, mn), by(cpu, mn), bi(cpu, static_cast<std::size_t>(g.m) * g.k), br(cpu, mn), bdx(cpu, mn);
    bx.upload(xf);
    br.upload(rw);
    bdx.poison();
    KSparse f;
    f.x = bx.data();
    f.y = by.data();
    f.index = reinterpret_cast<std::int32_t*>(bi.data());
    f.m = g.m;
    f.n = g.n;
    f.k = g.k;
    cpu.ops().ksparse_forward(cpu.ctx(), f);
    KSparseBackward b;
    b.dy = br.data();
    b.index = f.index;
    b.dx = bdx.data();
    b.m = g.m;
    b.n = g.n;
    b.k = g.k;
    cpu.ops().ksparse_backward(cpu.ctx(), b);
    const std::vector<float> analytic = bdx.download();

    std::vector<double> x = to_double(xf);
    const auto loss = [&] {
      double s = 0.0;
      std::vector<int> order(static_cast<std::size_t>(g.n));
      for (int r = 0; r < g.m; ++r) {
        const double* row = x.data() + static_cast<std::size_t>(r) * g.n;
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int p, int q) { return row[p] > row[q]; });
        for (int t = 0; t < g.k; ++t) {
          const std::size_t e = static_cast<std::size_t>(r) * g.n + order[static_cast<std::size_t>(t)];
          s += rw[e] * x[e];
        }
      }
      return s;
    };
    // A kink: moving x[i] by h could swap it with another value of its row.
    const auto near_kink = [&](std::size_t i, double h) {
      const std::size_t r = i / g.n;
      for (int c = 0; c < g.n; ++c) {
        const std::size_t e = r * g.n + c;
        if (e != i && std::abs(x[e] - x[i]) <= 2.0 * h) return true;
      }
      return false;
    };
    const GradCheckOptions opt = grad_options();
    const std::vector<std::size_t> idx = sample_indices(mn, 300, seed + 2);
    const GradCheckResult res = check_gradient(loss, x, analytic, idx, near_kink, opt);
    EXPECT_EQ(res.failures, 0u) << res.report;
    EXPECT_EQ(res.kinks, 0u) << "the inputs were built without near-ties";
    EXPECT_EQ(res.checked, idx.size());
  }
}

// ================================================================================================
// Validation: both backends reject the same bad arguments, before touching memory.
// ================================================================================================

// b points at 256 valid floats: x = b, y = b + 64, index = b + 128 (int32), dy = b, dx = b + 64.
KSparse fwd(float* b) {
  KSparse a;
  a.x = b;
  a.y = b + 64;
  a.index = reinterpret_cast<std::int32_t*>(b + 128);
  a.m = 2;
  a.n = 8;
  a.k = 3;
  return a;
}
KSparseBackward bwd(float* b) {
  KSparseBackward a;
  a.dy = b;
  a.index = reinterpret_cast<const std::int32_t*>(b + 128);
  a.dx = b + 64;
  a.m = 2;
  a.n = 8;
  a.k = 3;
  return a;
}

std::vector<BadCall> bad_calls() {
  std::vector<BadCall> calls;
  const auto f = [&](std::string what, std::function<void(KSparse&)> edit) {
    calls.push_back({std::move(what), [edit](const OpTable& t, const Context& c, float* b) {
                       KSparse a = fwd(b);
                       edit(a);
                       t.ksparse_forward(c, a);
                     }});
  };
  const auto g = [&](std::string what, std::function<void(KSparseBackward&)> edit) {
    calls.push_back({std::move(what), [edit](const OpTable& t, const Context& c, float* b) {
                       KSparseBackward a = bwd(b);
                       edit(a);
                       t.ksparse_backward(c, a);
                     }});
  };
  f("forward k = 0", [](KSparse& a) { a.k = 0; });
  f("forward k = -1", [](KSparse& a) { a.k = -1; });
  f("forward k > n", [](KSparse& a) { a.k = a.n + 1; });
  f("forward y == x", [](KSparse& a) { a.y = const_cast<float*>(a.x); });
  f("forward null index", [](KSparse& a) { a.index = nullptr; });
  f("forward null x", [](KSparse& a) { a.x = nullptr; });
  f("forward null y", [](KSparse& a) { a.y = nullptr; });
  f("forward m = 0", [](KSparse& a) { a.m = 0; });
  f("forward n = 0", [](KSparse& a) { a.n = 0; });
  f("forward m·n >= 2^31", [](KSparse& a) { a.m = 65536; a.n = 32768; });
  g("backward k = 0", [](KSparseBackward& a) { a.k = 0; });
  g("backward k > n", [](KSparseBackward& a) { a.k = a.n + 1; });
  g("backward null index", [](KSparseBackward& a) { a.index = nullptr; });
  g("backward null dy", [](KSparseBackward& a) { a.dy = nullptr; });
  g("backward null dx", [](KSparseBackward& a) { a.dx = nullptr; });
  g("backward m = -1", [](KSparseBackward& a) { a.m = -1; });
  g("backward m·n >= 2^31", [](KSparseBackward& a) { a.m = 65536; a.n = 32768; });
  return calls;
}

// The valid call the bad ones were edited from must pass, or the rejections above prove nothing.
void expect_accepts_base_calls(Device device) {
  Backend be(device);
  DeviceBuffer buf(be, 256);
  buf.fill(0.5f);
  EXPECT_NO_THROW({
    be.ops().ksparse_forward(be.ctx(), fwd(buf.data()));
    be.ops().ksparse_backward(be.ctx(), bwd(buf.data()));
    be.synchronize();
  }) << device_name(device);
}

// Rejected calls touch no memory: the buffer keeps its contents.
const std::vector<float> kValidationFill(256, 0.5f);

TEST(KSparseValidation, CpuRejectsBadArguments) {
  expect_rejects_bad_calls(Device::CPU, bad_calls(), kValidationFill);
}
TEST(KSparseValidation, CpuAcceptsTheValidBase) { expect_accepts_base_calls(Device::CPU); }

TEST(KSparseValidation, CudaRejectsBadArguments) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_rejects_bad_calls(Device::CUDA, bad_calls(), kValidationFill);
}
TEST(KSparseValidation, CudaAcceptsTheValidBase) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_accepts_base_calls(Device::CUDA);
}

}  // namespace
