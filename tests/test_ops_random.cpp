// The random ops (corrupt, dropout_forward, dropout_backward) and the Philox generator behind them:
//
//   OpsRandomPhilox        Random123's known-answer vectors for Philox4x32-10, and cuae's mapping of
//                          (seed, step, element) onto Philox's key and counter (kernels/philox.hpp);
//   OpsRandomCpu           the CPU ops against a naive double reference written here element by
//                          element from the Philox words, at odd sizes (1 … 40001, the last above the
//                          OpenMP threshold), in place and not, outputs poisoned with NaN first and
//                          every buffer between guard zones. Masks (and every value that is a copy,
//                          0, lo or hi) must match exactly; OpsRandomCpuEdges: ν = σ = p = 0 is the
//                          identity, ν = 1 replaces every element;
//   OpsRandomStats         over ~1e6 elements: the masked fraction, the salt/pepper split, the
//                          Gaussian's mean, variance and shape, dropout's keep fraction and E[y] = x,
//                          each within five standard errors; different seeds and steps draw
//                          independent masks and the same (seed, step) repeats exactly;
//   OpsRandomDropoutBackward  the backward draws the forward's mask, accumulates with acc_dx, and is
//                          the adjoint of the forward by central differences (the op is linear given
//                          the mask, so a large step is exact);
//   OpsRandomCuda          the CUDA ops against the CPU ops (aligned, misaligned and in-place
//                          buffers, sizes around every multiple of 4): identical bits for every mask
//                          op, a few ulp for the Gaussian. Skipped, with the reason, without a GPU;
//   OpsRandomValidation    both backends reject the same bad arguments.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iomanip>
#include <limits>
#include <numbers>
#include <ostream>
#include <span>
#include <sstream>
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

// A seed and a step with both 32-bit halves nonzero, so a convention that dropped a high word would
// still draw different words from the reference.
constexpr std::uint64_t kSeed = 0x0123456789ABCDEFull;
constexpr std::uint64_t kStep = (std::uint64_t{1} << 32) + 7;
constexpr float kLo = -2.0f, kHi = 3.0f;  // salt-and-pepper values, outside the inputs' range

// ================================================================================================
// Philox known answers
// ================================================================================================

struct Kat {
  std::uint32_t ctr[4], key[2], out[4];
};
// Random123 1.14, kat_vectors: philox4x32 10 rounds.
constexpr Kat kKats[] = {
    {{0u, 0u, 0u, 0u}, {0u, 0u}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

std::uint64_t join(std::uint32_t lo, std::uint32_t hi) { return (std::uint64_t{hi} << 32) | lo; }

TEST(OpsRandomPhilox, KnownAnswerVectors) {
  for (const Kat& k : kKats) {
    const Philox4 r = philox4x32_10(k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3], k.key[0], k.key[1]);
    for (int j = 0; j < 4; ++j)
      EXPECT_EQ(r.w[j], k.out[j]) << "counter " << std::hex << k.ctr[0] << " key " << k.key[0] << " word " << j;
  }
}

// The convention of kernels/philox.hpp: key = {lo(seed), hi(seed)}, counter = {lo(g), hi(g),
// lo(step), hi(step)}. The same vectors, reached through philox_group.
TEST(OpsRandomPhilox, GroupMapsSeedStepAndGroupOntoKeyAndCounter) {
  for (const Kat& k : kKats) {
    const Philox4 r = philox_group(join(k.key[0], k.key[1]), join(k.ctr[2], k.ctr[3]), join(k.ctr[0], k.ctr[1]));
    for (int j = 0; j < 4; ++j) EXPECT_EQ(r.w[j], k.out[j]) << "word " << j;
  }
}

TEST(OpsRandomPhilox, UniformIsTheTop24BitsOfAWord) {
  EXPECT_EQ(philox_uniform(0u), 0.0f);
  EXPECT_EQ(philox_uniform(0xFFu), 0.0f);  // the low 8 bits are dropped
  EXPECT_EQ(philox_uniform(0x100u), std::ldexp(1.0f, -24));
  EXPECT_EQ(philox_uniform(0x80000000u), 0.5f);
  EXPECT_EQ(philox_uniform(0xFFFFFFFFu), 1.0f - std::ldexp(1.0f, -24));  // < 1
  EXPECT_EQ(philox_uniform_pos(0u), std::ldexp(1.0f, -24));              // > 0, so log is finite
  EXPECT_EQ(philox_uniform_pos(0xFFFFFFFFu), 1.0f);
  float n0 = NAN, n1 = NAN;
  philox_normal2(0u, 0u, n0, n1);  // the largest radius, sqrt(-2 log 2^-24) ≈ 5.77, at angle 0
  EXPECT_NEAR(n0, std::sqrt(48.0 * std::numbers::ln2), 1e-5);
  EXPECT_EQ(n1, 0.0f);
}

// ================================================================================================
// The naive double reference, element by element from the Philox words
// ================================================================================================

std::uint32_t word_of(std::uint64_t seed, std::uint64_t step, std::int64_t e) {
  return philox_group(seed, step, static_cast<std::uint64_t>(e) / 4).w[e % 4];
}
double u_d(std::uint32_t w) { return std::ldexp(static_cast<double>(w >> 8), -24); }              // [0, 1)
double upos_d(std::uint32_t w) { return std::ldexp(static_cast<double>((w >> 8) + 1u), -24); }    // (0, 1]

// Box-Muller on the element's word pair: (0, 1) for elements 4g, 4g+1, (2, 3) for 4g+2, 4g+3; the
// even element takes the cosine, the odd one the sine.
double normal_d(std::uint64_t seed, std::uint64_t step, std::int64_t e) {
  const Philox4 r = philox_group(seed, step, static_cast<std::uint64_t>(e) / 4);
  const int pair = static_cast<int>(e % 4) / 2 * 2;
  const double radius = std::sqrt(-2.0 * std::log(upos_d(r.w[pair])));
  const double angle = 2.0 * std::numbers::pi * u_d(r.w[pair + 1]);
  return e % 2 == 0 ? radius * std::cos(angle) : radius * std::sin(angle);
}

enum class RandOp { Mask, SaltPepper, Gaussian, Dropout, DropoutBackward, DropoutBackwardAcc };

const char* rand_op_name(RandOp op) {
  switch (op) {
    case RandOp::Mask: return "corrupt_mask";
    case RandOp::SaltPepper: return "corrupt_salt_pepper";
    case RandOp::Gaussian: return "corrupt_gaussian";
    case RandOp::Dropout: return "dropout_forward";
    case RandOp::DropoutBackward: return "dropout_backward";
    case RandOp::DropoutBackwardAcc: return "dropout_backward_acc";
  }
  return "?";
}

bool is_backward(RandOp op) { return op == RandOp::DropoutBackward || op == RandOp::DropoutBackwardAcc; }

struct RandCase {
  RandOp op;
  float level;  // ν (mask, salt-and-pepper), σ (Gaussian) or p (dropout)
  std::string name() const {
    std::ostringstream os;
    os << rand_op_name(op) << "_" << static_cast<int>(std::lround(level * 100.0f));
    return os.str();
  }
  friend void PrintTo(const RandCase& c, std::ostream* os) { *os << c.name(); }
};

// in: x (dy for the backward); init: dx before an accumulating backward (ignored otherwise).
std::vector<double> reference(const RandCase& c, std::span<const float> in, std::span<const float> init,
                              std::uint64_t seed, std::uint64_t step) {
  std::vector<double> out(in.size());
  const double level = c.level;
  for (std::int64_t e = 0; e < static_cast<std::int64_t>(in.size()); ++e) {
    const double x = in[e];
    const double u = u_d(word_of(seed, step, e));
    double y = 0.0;
    switch (c.op) {
      case RandOp::Mask: y = u < level ? 0.0 : x; break;
      case RandOp::SaltPepper: y = u < level / 2 ? kLo : (u < level ? kHi : x); break;
      case RandOp::Gaussian: y = x + level * normal_d(seed, step, e); break;
      case RandOp::Dropout:
      case RandOp::DropoutBackward: y = u >= level ? x / (1.0 - level) : 0.0; break;
      case RandOp::DropoutBackwardAcc: y = init[e] + (u >= level ? x / (1.0 - level) : 0.0); break;
    }
    out[e] = y;
  }
  return out;
}

// The op of case c through an op table: y = op(x) (dx (+)= op(dy) for the backward).
void launch(const OpTable& t, const Context& ctx, const RandCase& c, const float* x, float* y, std::int64_t count,
            std::uint64_t seed = kSeed, std::uint64_t step = kStep) {
  if (is_backward(c.op)) {
    DropoutBackward a;
    a.dy = x;
    a.dx = y;
    a.count = count;
    a.p = c.level;
    a.acc_dx = c.op == RandOp::DropoutBackwardAcc;
    a.seed = seed;
    a.step = step;
    t.dropout_backward(ctx, a);
  } else if (c.op == RandOp::Dropout) {
    Dropout a;
    a.x = x;
    a.y = y;
    a.count = count;
    a.p = c.level;
    a.seed = seed;
    a.step = step;
    t.dropout_forward(ctx, a);
  } else {
    Corrupt a;
    a.x = x;
    a.y = y;
    a.count = count;
    a.kind = c.op == RandOp::Mask ? NoiseKind::Mask : c.op == RandOp::Gaussian ? NoiseKind::Gaussian : NoiseKind::SaltPepper;
    a.level = c.level;
    a.lo = kLo;
    a.hi = kHi;
    a.seed = seed;
    a.step = step;
    t.corrupt(ctx, a);
  }
}

// Inputs in ±[0.5, 1.5): never 0, lo or hi, so the output of every element tells whether it was
// masked, salted, peppered or kept.
std::vector<float> nonzero_inputs(std::size_t n, std::uint32_t seed) {
  std::vector<float> v = uniform(n, seed);
  for (float& f : v) f += f >= 0.0f ? 0.5f : -0.5f;
  return v;
}

enum class Layout { Aligned, Misaligned, InPlace };
const char* layout_name(Layout l) {
  return l == Layout::Aligned ? "aligned" : l == Layout::Misaligned ? "misaligned" : "in place";
}

// Runs case c on a backend over `in` (and `init` for an accumulating backward): buffers between
// guards, the output poisoned with NaN unless it accumulates (or is the input, in place), and
// Misaligned starting one float past a 16-byte boundary (the CUDA kernels' scalar path).
std::vector<float> run_on(Backend& be, const RandCase& c, const std::vector<float>& in, const std::vector<float>& init,
                          Layout layout, std::uint64_t seed = kSeed, std::uint64_t step = kStep) {
  const std::size_t n = in.size(), off = layout == Layout::Misaligned ? 1 : 0;
  DeviceBuffer xb(be, n + off), yb(be, n + off);
  std::vector<float> padded(n + off, 0.0f);
  std::copy(in.begin(), in.end(), padded.begin() + static_cast<std::ptrdiff_t>(off));
  xb.upload(padded);
  if (c.op == RandOp::DropoutBackwardAcc) {
    std::copy(init.begin(), init.end(), padded.begin() + static_cast<std::ptrdiff_t>(off));
    yb.upload(padded);
  } else {
    yb.poison();
  }
  float* x = xb.data() + off;
  float* y = layout == Layout::InPlace ? x : yb.data() + off;
  launch(be.ops(), be.ctx(), c, x, y, static_cast<std::int64_t>(n), seed, step);
  be.synchronize();
  std::vector<float> out = (layout == Layout::InPlace ? xb : yb).download();
  EXPECT_TRUE(xb.guards_intact() && yb.guards_intact())
      << device_name(be.device()) << " " << c.name() << " n=" << n << " " << layout_name(layout)
      << ": write out of bounds";
  return {out.begin() + static_cast<std::ptrdiff_t>(off), out.end()};
}

// ================================================================================================
// CPU against the double reference
// ================================================================================================

// Bounds on |got − want| per element, from float rounding alone (largest measured in brackets):
// dropout's x·fl(1/fl(1−p)) is three roundings, ≤ 3·2^-24 ≈ 1.8e-7 relative              [1.0e-7]
constexpr double kDropoutRelTol = 2.4e-7;
// Gaussian: x + σ·n with n from float logf/cosf/sinf of a float angle 2π·u (the angle carries up
// to ~2^-24·2π ≈ 4e-7 absolute, times a radius up to 5.8), so the bound is |x|·2^-23 +
// σ·kNormalAbsTol. Measured over 1.6e7 normals of the seed used here:                   [2.0e-6]
constexpr double kNormalAbsTol = 1e-5;
// ... and the normalised error ‖n_float − n‖ / ‖n‖ of the noise over a whole tensor.      [1.4e-7]
constexpr double kNormalNormTol = 1e-6;

// Per-element bound on |got − want| for case c (0 = exact).
double element_tol(const RandCase& c, double in, double init) {
  switch (c.op) {
    case RandOp::Mask:
    case RandOp::SaltPepper: return 0.0;
    case RandOp::Gaussian: return std::abs(in) * 1.2e-7 + c.level * kNormalAbsTol;
    case RandOp::Dropout:
    case RandOp::DropoutBackward: return kDropoutRelTol * std::abs(in) / (1.0 - c.level);
    case RandOp::DropoutBackwardAcc: return kDropoutRelTol * (std::abs(in) / (1.0 - c.level) + std::abs(init));
  }
  return 0.0;
}

// Errors are recorded as test properties (--gtest_output=json), so the tolerances can be re-measured.
std::string sci(double v) {
  std::ostringstream os;
  os << std::scientific << std::setprecision(2) << v;
  return os.str();
}

// Which branch of its op an output value took: 0 kept, 1 zeroed (mask, dropout) or pepper, 2 salt.
// With inputs from nonzero_inputs the value alone tells. The Gaussian has no branches.
int branch(const RandCase& c, double y, double init) {
  switch (c.op) {
    case RandOp::Mask:
    case RandOp::Dropout:
    case RandOp::DropoutBackward: return y == 0.0 ? 1 : 0;
    case RandOp::SaltPepper: return y == kLo ? 1 : (y == kHi ? 2 : 0);
    case RandOp::DropoutBackwardAcc: return y == init ? 1 : 0;  // dx0 + 0 = dx0
    case RandOp::Gaussian: return 0;
  }
  return 0;
}

// Every element of got against the reference; a NaN (an element left poisoned) always fails.
// Elements the reference says are masked (dropped, salted, peppered) must match bit for bit.
void expect_matches_reference(const std::string& what, const RandCase& c, std::span<const float> in,
                              std::span<const float> init, std::span<const float> got,
                              const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size()) << what;
  std::size_t bad = 0, mask_bad = 0;
  double worst = 0.0;
  std::ostringstream first;
  for (std::size_t e = 0; e < got.size(); ++e) {
    const double ini = c.op == RandOp::DropoutBackwardAcc ? init[e] : 0.0;
    const double tol = element_tol(c, in[e], ini);
    const double err = std::abs(static_cast<double>(got[e]) - want[e]);
    if (branch(c, want[e], ini) != branch(c, got[e], ini)) ++mask_bad;
    if (!(err <= tol)) {
      if (bad < 5) first << "  [" << e << "] got " << got[e] << " want " << want[e] << " (in " << in[e] << ")\n";
      ++bad;
    }
    if (tol > 0.0 && std::isfinite(err)) worst = std::max(worst, err / tol);
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " elements off the reference\n" << first.str();
  EXPECT_EQ(mask_bad, 0u) << what << ": " << mask_bad << " elements took the other branch of the mask";
  if (c.op == RandOp::Gaussian && c.level > 0.0f) {
    std::vector<float> noise(got.size());
    std::vector<double> noise_d(got.size());
    for (std::size_t e = 0; e < got.size(); ++e) {
      noise[e] = static_cast<float>((static_cast<double>(got[e]) - in[e]) / c.level);
      noise_d[e] = (want[e] - in[e]) / c.level;
    }
    const double ne = normalized_error(noise, noise_d);
    ::testing::Test::RecordProperty("noise_err " + what, sci(ne));
    EXPECT_LE(ne, kNormalNormTol) << what << ": normalised error of the noise " << ne;
  }
  ::testing::Test::RecordProperty("worst_err_over_tol " + what, sci(worst));
}

const RandCase kCases[] = {
    {RandOp::Mask, 0.3f},          {RandOp::Mask, 0.0f},           {RandOp::Mask, 1.0f},
    {RandOp::SaltPepper, 0.3f},    {RandOp::SaltPepper, 1.0f},     {RandOp::Gaussian, 0.5f},
    {RandOp::Gaussian, 0.0f},      {RandOp::Dropout, 0.3f},        {RandOp::Dropout, 0.0f},
    {RandOp::Dropout, 0.9f},       {RandOp::DropoutBackward, 0.3f}, {RandOp::DropoutBackward, 0.0f},
    {RandOp::DropoutBackwardAcc, 0.3f},
};
// Odd sizes: a single element, partial groups, and 40001 (> the CPU's OpenMP threshold of 2^15).
constexpr std::int64_t kCpuSizes[] = {1, 3, 5, 1027, 40001};

class OpsRandomCpu : public ::testing::TestWithParam<RandCase> {};

TEST_P(OpsRandomCpu, MatchesDoubleReference) {
  const RandCase& c = GetParam();
  Backend cpu(Device::CPU);
  for (std::int64_t n : kCpuSizes) {
    const std::uint32_t seed = seed_from(c.name() + std::to_string(n));
    const std::vector<float> in = nonzero_inputs(static_cast<std::size_t>(n), seed);
    const std::vector<float> init = uniform(static_cast<std::size_t>(n), seed + 1, -2.0f, 2.0f);
    const std::vector<double> want = reference(c, in, init, kSeed, kStep);
    for (Layout layout : {Layout::Aligned, Layout::InPlace}) {
      if (layout == Layout::InPlace && is_backward(c.op)) continue;  // dy and dx are distinct tensors
      const std::string what = c.name() + " n=" + std::to_string(n) + " " + layout_name(layout);
      const std::vector<float> got = run_on(cpu, c, in, init, layout);
      expect_matches_reference(what, c, in, init, got, want);
    }
  }
}

// σ = 0, ν = 0 and p = 0 are the identity, bit for bit (y = x + 0·n, x·1).
TEST(OpsRandomCpuEdges, ZeroLevelsAreTheIdentityAndFullMaskZeroesAll) {
  Backend cpu(Device::CPU);
  const std::vector<float> in = nonzero_inputs(1027, 7);
  for (RandOp op : {RandOp::Mask, RandOp::Gaussian, RandOp::Dropout, RandOp::DropoutBackward}) {
    const std::vector<float> got = run_on(cpu, {op, 0.0f}, in, {}, Layout::Aligned);
    EXPECT_EQ(0, std::memcmp(got.data(), in.data(), in.size() * sizeof(float))) << rand_op_name(op) << " at level 0";
  }
  const std::vector<float> all = run_on(cpu, {RandOp::Mask, 1.0f}, in, {}, Layout::Aligned);
  EXPECT_EQ(std::count(all.begin(), all.end(), 0.0f), static_cast<std::ptrdiff_t>(all.size())) << "mask at level 1";
  const std::vector<float> sp = run_on(cpu, {RandOp::SaltPepper, 1.0f}, in, {}, Layout::Aligned);
  EXPECT_EQ(std::count(sp.begin(), sp.end(), kLo) + std::count(sp.begin(), sp.end(), kHi),
            static_cast<std::ptrdiff_t>(sp.size()))
      << "salt-and-pepper at level 1";
}

std::string rand_case_name(const ::testing::TestParamInfo<RandCase>& i) { return i.param.name(); }

INSTANTIATE_TEST_SUITE_P(Random, OpsRandomCpu, ::testing::ValuesIn(kCases), rand_case_name);

// ================================================================================================
// Statistics (CPU; the CUDA ops draw the same words, which OpsRandomCuda checks)
// ================================================================================================

constexpr std::int64_t kStatN = std::int64_t{1} << 20;
constexpr double kSigmas = 5.0;  // every statistic within five standard errors

std::vector<float> corrupt_cpu(NoiseKind kind, float level, const std::vector<float>& x, std::uint64_t seed,
                               std::uint64_t step) {
  std::vector<float> y(x.size(), nan_value());
  Corrupt a;
  a.x = x.data();
  a.y = y.data();
  a.count = static_cast<std::int64_t>(x.size());
  a.kind = kind;
  a.level = level;
  a.lo = kLo;
  a.hi = kHi;
  a.seed = seed;
  a.step = step;
  cpu::corrupt(Context{}, a);
  return y;
}

std::vector<float> dropout_cpu(float p, const std::vector<float>& x, std::uint64_t seed, std::uint64_t step) {
  std::vector<float> y(x.size(), nan_value());
  Dropout a;
  a.x = x.data();
  a.y = y.data();
  a.count = static_cast<std::int64_t>(x.size());
  a.p = p;
  a.seed = seed;
  a.step = step;
  cpu::dropout_forward(Context{}, a);
  return y;
}

// |count − n·q| within kSigmas binomial standard errors.
void expect_fraction(const std::string& what, std::int64_t count, std::int64_t n, double q) {
  const double sd = std::sqrt(static_cast<double>(n) * q * (1.0 - q));
  EXPECT_LE(std::abs(static_cast<double>(count) - n * q), kSigmas * sd + 1e-9)
      << what << ": " << count << " of " << n << ", expected " << n * q << " ± " << sd;
}

std::int64_t count_equal(const std::vector<float>& v, float value) {
  return static_cast<std::int64_t>(std::count(v.begin(), v.end(), value));
}

TEST(OpsRandomStats, MaskedFractionIsNu) {
  const std::vector<float> x(kStatN, 1.0f);
  for (float nu : {0.01f, 0.25f, 0.5f, 0.9f}) {
    const std::vector<float> y = corrupt_cpu(NoiseKind::Mask, nu, x, kSeed, kStep);
    expect_fraction("mask nu=" + std::to_string(nu), count_equal(y, 0.0f), kStatN, nu);
    EXPECT_EQ(count_equal(y, 0.0f) + count_equal(y, 1.0f), kStatN) << "mask: every value is 0 or x";
  }
}

TEST(OpsRandomStats, SaltAndPepperSplitEvenly) {
  const std::vector<float> x(kStatN, 1.0f);
  const float nu = 0.3f;
  const std::vector<float> y = corrupt_cpu(NoiseKind::SaltPepper, nu, x, kSeed, kStep);
  expect_fraction("pepper (lo)", count_equal(y, kLo), kStatN, nu / 2);
  expect_fraction("salt (hi)", count_equal(y, kHi), kStatN, nu / 2);
  expect_fraction("kept", count_equal(y, 1.0f), kStatN, 1.0 - nu);
}

TEST(OpsRandomStats, GaussianHasMeanZeroAndVarianceSigmaSquared) {
  const float sigma = 0.5f;
  const std::vector<float> x(kStatN, 0.0f);
  const std::vector<float> y = corrupt_cpu(NoiseKind::Gaussian, sigma, x, kSeed, kStep);
  double sum = 0.0, sq = 0.0, q4 = 0.0, pair = 0.0, cross = 0.0;
  std::int64_t within1 = 0;
  for (std::int64_t i = 0; i < kStatN; ++i) {
    const double n = y[i] / static_cast<double>(sigma);
    sum += n;
    sq += n * n;
    q4 += n * n * n * n;
    within1 += std::abs(n) < 1.0;
    if (i % 2 == 0) pair += n * (y[i + 1] / static_cast<double>(sigma));  // the two normals of one word pair
    else if (i % 4 == 1) cross += n * (y[i + 1] / static_cast<double>(sigma));  // across the pairs of a group
  }
  const double N = static_cast<double>(kStatN);
  const double mean = sum / N, var = sq / N - mean * mean;
  EXPECT_LE(std::abs(mean), kSigmas / std::sqrt(N)) << "mean " << mean;
  EXPECT_LE(std::abs(var - 1.0), kSigmas * std::sqrt(2.0 / N)) << "variance/sigma^2 " << var;
  EXPECT_LE(std::abs(q4 / N - 3.0), kSigmas * std::sqrt(96.0 / N)) << "fourth moment " << q4 / N;  // Var n⁴ = 105 − 9
  expect_fraction("|n| < 1", within1, kStatN, 0.6826894921370859);
  EXPECT_LE(std::abs(pair / (N / 2)), kSigmas / std::sqrt(N / 2)) << "correlation within a Box-Muller pair";
  EXPECT_LE(std::abs(cross / (N / 4)), kSigmas / std::sqrt(N / 4)) << "correlation across the pairs of a group";
}

TEST(OpsRandomStats, DropoutKeepsOneMinusPAndPreservesTheMean) {
  const std::vector<float> x(kStatN, 1.0f);
  for (float p : {0.1f, 0.5f, 0.8f}) {
    const std::vector<float> y = dropout_cpu(p, x, kSeed, kStep);
    const float scale = 1.0f / (1.0f - p);
    const std::int64_t kept = count_equal(y, scale);
    expect_fraction("dropout p=" + std::to_string(p) + " kept", kept, kStatN, 1.0 - p);
    EXPECT_EQ(kept + count_equal(y, 0.0f), kStatN) << "dropout: every value is 0 or x/(1-p)";
    // E[y] = x = 1; each y has variance p/(1−p).
    double sum = 0.0;
    for (float v : y) sum += v;
    const double mean = sum / static_cast<double>(kStatN);
    EXPECT_LE(std::abs(mean - 1.0), kSigmas * std::sqrt(p / (1.0 - p) / static_cast<double>(kStatN)))
        << "dropout p=" << p << " mean " << mean;
  }
}

// Two masks of fraction ν drawn independently agree on ν² + (1−ν)² of the elements; the same
// (seed, step) draws the same mask, bit for bit.
TEST(OpsRandomStats, SeedsAndStepsDrawIndependentMasksAndRepeatExactly) {
  const float nu = 0.5f;
  const std::vector<float> x(kStatN, 1.0f);
  const std::vector<float> base = corrupt_cpu(NoiseKind::Mask, nu, x, kSeed, kStep);
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
    const std::vector<float> y = corrupt_cpu(NoiseKind::Mask, nu, x, o.seed, o.step);
    std::int64_t agree = 0;
    for (std::int64_t i = 0; i < kStatN; ++i) agree += (y[i] == 0.0f) == (base[i] == 0.0f);
    expect_fraction(std::string("agreement with ") + o.what, agree, kStatN, nu * nu + (1 - nu) * (1 - nu));
  }
  const std::vector<float> again = corrupt_cpu(NoiseKind::Mask, nu, x, kSeed, kStep);
  EXPECT_EQ(0, std::memcmp(again.data(), base.data(), base.size() * sizeof(float))) << "mask repeat";
  const std::vector<float> xg = uniform(kStatN, 3);
  const std::vector<float> g1 = corrupt_cpu(NoiseKind::Gaussian, 0.3f, xg, kSeed, kStep);
  const std::vector<float> g2 = corrupt_cpu(NoiseKind::Gaussian, 0.3f, xg, kSeed, kStep);
  EXPECT_EQ(0, std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(float))) << "Gaussian repeat";
  const std::vector<float> d1 = dropout_cpu(0.4f, xg, kSeed, kStep);
  const std::vector<float> d2 = dropout_cpu(0.4f, xg, kSeed, kStep);
  EXPECT_EQ(0, std::memcmp(d1.data(), d2.data(), d1.size() * sizeof(float))) << "dropout repeat";
}

// ================================================================================================
// Dropout backward
// ================================================================================================

std::vector<float> dropout_backward_cpu(float p, const std::vector<float>& dy, std::vector<float> dx, bool acc) {
  DropoutBackward a;
  a.dy = dy.data();
  a.dx = dx.data();
  a.count = static_cast<std::int64_t>(dy.size());
  a.p = p;
  a.acc_dx = acc;
  a.seed = kSeed;
  a.step = kStep;
  cpu::dropout_backward(Context{}, a);
  return dx;
}

TEST(OpsRandomDropoutBackward, UsesTheForwardMaskAndAccumulates) {
  const float p = 0.3f;
  for (std::int64_t n : kCpuSizes) {
    const std::size_t N = static_cast<std::size_t>(n);
    // Forward of ones: y = keep·s with s = fl(1/(1−p)), so y holds the mask and its scale.
    const std::vector<float> mask = dropout_cpu(p, std::vector<float>(N, 1.0f), kSeed, kStep);
    const std::vector<float> dy = nonzero_inputs(N, 11);
    const std::vector<float> dx0 = uniform(N, 12, -2.0f, 2.0f);
    const std::vector<float> dx = dropout_backward_cpu(p, dy, std::vector<float>(N, nan_value()), false);
    const std::vector<float> acc = dropout_backward_cpu(p, dy, dx0, true);
    std::size_t bad = 0, bad_acc = 0;
    for (std::size_t i = 0; i < N; ++i) {
      const float g = mask[i] != 0.0f ? dy[i] * mask[i] : 0.0f;  // dy·s, the same float product
      if (std::memcmp(&dx[i], &g, sizeof g) != 0) ++bad;
      const float a = dx0[i] + g;
      if (std::memcmp(&acc[i], &a, sizeof a) != 0) ++bad_acc;
    }
    EXPECT_EQ(bad, 0u) << "n=" << n << ": dx != dy·mask/(1-p)";
    EXPECT_EQ(bad_acc, 0u) << "n=" << n << ": acc_dx is not dx0 + dy·mask/(1-p)";
  }
}

// dropout_backward is the adjoint of dropout_forward: for L = Σ r⊙y, ∂L/∂x = backward(r). The
// forward is linear given the mask, so a central difference with a large step is exact up to the
// float rounding of y; x holds multiples of 2^-10 so x ± h is exact in float.
TEST(OpsRandomDropoutBackward, IsTheAdjointOfTheForwardByFiniteDifferences) {
  constexpr std::int64_t n = 1027;
  constexpr float p = 0.3f;
  const std::vector<float> r = uniform(n, 21);
  std::vector<double> x(n);
  {
    const std::vector<float> u = uniform(n, 22);
    for (std::int64_t i = 0; i < n; ++i) x[i] = std::round(u[i] * 1024.0) / 1024.0;
  }
  const auto loss = [&] {
    const std::vector<float> xf(x.begin(), x.end());
    const std::vector<float> y = dropout_cpu(p, xf, kSeed, kStep);
    double s = 0.0;
    for (std::int64_t i = 0; i < n; ++i) s += static_cast<double>(r[i]) * y[i];
    return s;
  };
  const std::vector<float> grad = dropout_backward_cpu(p, r, std::vector<float>(n, nan_value()), false);
  const std::vector<std::size_t> idx = sample_indices(n, 400, 23);
  GradCheckOptions opt;
  opt.step = 0.5;
  opt.rel_tol = 1e-6;
  const GradCheckResult res = check_gradient(loss, x, grad, idx, nullptr, opt);
  EXPECT_EQ(res.failures, 0u) << "worst " << res.worst << " at " << res.worst_index << "\n" << res.report;
  EXPECT_EQ(res.checked, idx.size());
  std::size_t dropped = 0;
  for (std::size_t i : idx) dropped += grad[i] == 0.0f;
  EXPECT_GT(dropped, 0u);  // both branches of the mask were checked
  EXPECT_LT(dropped, idx.size());
}

// ================================================================================================
// CUDA against the CPU
// ================================================================================================

// Sizes around multiples of 4 (the float4 groups), one past the OpenMP threshold, ~1e6.
constexpr std::int64_t kCudaSizes[] = {1, 2, 3, 4, 5, 7, 8, 1027, 4096, 40001, (std::int64_t{1} << 20) + 3};

class OpsRandomCuda : public ::testing::TestWithParam<RandCase> {};

TEST_P(OpsRandomCuda, MatchesCpu) {
  CUAE_SKIP_WITHOUT_GPU();
  const RandCase& c = GetParam();
  Backend cpu(Device::CPU);
  Backend gpu(Device::CUDA);
  for (std::int64_t n : kCudaSizes) {
    const std::uint32_t seed = seed_from("cuda " + c.name() + std::to_string(n));
    const std::vector<float> in = nonzero_inputs(static_cast<std::size_t>(n), seed);
    const std::vector<float> init = uniform(static_cast<std::size_t>(n), seed + 1, -2.0f, 2.0f);
    const std::vector<float> want = run_on(cpu, c, in, init, Layout::Aligned);
    for (Layout layout : {Layout::Aligned, Layout::Misaligned, Layout::InPlace}) {
      if (layout == Layout::InPlace && is_backward(c.op)) continue;
      const std::string what = c.name() + " n=" + std::to_string(n) + " " + layout_name(layout);
      const std::vector<float> got = run_on(gpu, c, in, init, layout);
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(count_nonfinite(got), 0u) << what;
      if (c.op == RandOp::Gaussian && c.level > 0.0f) {
        // The device's logf/sinf/cosf against glibc's: a few ulp of the noise.
        std::vector<float> noise(got.size());
        std::vector<double> noise_cpu(got.size());
        double worst = 0.0;
        for (std::size_t e = 0; e < got.size(); ++e) {
          noise[e] = static_cast<float>((static_cast<double>(got[e]) - in[e]) / c.level);
          noise_cpu[e] = (static_cast<double>(want[e]) - in[e]) / c.level;
          worst = std::max(worst, std::abs(static_cast<double>(got[e]) - want[e]));
        }
        const double ne = normalized_error(noise, noise_cpu);
        RecordProperty("cuda_noise_err " + what, sci(ne));
        RecordProperty("cuda_max_abs " + what, sci(worst));
        EXPECT_LE(ne, kNormalNormTol) << what << ": normalised error of the noise " << ne;
        EXPECT_LE(worst, 2.0 * c.level * kNormalAbsTol + 1e-6) << what << ": max abs difference " << worst;
      } else {
        // Same words, same thresholds, same float operations: identical bits.
        std::size_t diff = 0, first = got.size();
        for (std::size_t e = 0; e < got.size(); ++e)
          if (std::memcmp(&got[e], &want[e], sizeof(float)) != 0 && diff++ == 0) first = e;
        EXPECT_EQ(diff, 0u) << what << ": " << diff << " elements differ from the CPU, first at " << first
                            << (first < got.size() ? " (cuda " + std::to_string(got[first]) + ", cpu " +
                                                         std::to_string(want[first]) + ")"
                                                   : std::string());
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Random, OpsRandomCuda, ::testing::ValuesIn(kCases), rand_case_name);

// ================================================================================================
// Argument validation: both backends reject the same bad calls with cuae::Error, before touching
// memory.
// ================================================================================================

std::vector<BadCall> bad_calls() {
  auto corrupt_args = [](float* b, NoiseKind kind, float level) {
    Corrupt a;
    a.x = b;
    a.y = b + 64;
    a.count = 16;
    a.kind = kind;
    a.level = level;
    return a;
  };
  auto drop_args = [](float* b, float p) {
    Dropout a;
    a.x = b;
    a.y = b + 64;
    a.count = 16;
    a.p = p;
    return a;
  };
  auto back_args = [](float* b, float p) {
    DropoutBackward a;
    a.dy = b;
    a.dx = b + 64;
    a.count = 16;
    a.p = p;
    return a;
  };
  std::vector<BadCall> calls;
  auto add = [&](std::string what, std::function<void(const OpTable&, const Context&, float*)> f) {
    calls.push_back({std::move(what), std::move(f)});
  };
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();

  for (std::int64_t count : {std::int64_t{0}, std::int64_t{-1}, std::int64_t{1} << 31}) {
    add("corrupt count " + std::to_string(count), [=](const OpTable& t, const Context& c, float* b) {
      auto a = corrupt_args(b, NoiseKind::Mask, 0.1f);
      a.count = count;
      t.corrupt(c, a);
    });
    add("dropout_forward count " + std::to_string(count), [=](const OpTable& t, const Context& c, float* b) {
      auto a = drop_args(b, 0.1f);
      a.count = count;
      t.dropout_forward(c, a);
    });
    add("dropout_backward count " + std::to_string(count), [=](const OpTable& t, const Context& c, float* b) {
      auto a = back_args(b, 0.1f);
      a.count = count;
      t.dropout_backward(c, a);
    });
  }
  add("corrupt null x", [=](const OpTable& t, const Context& c, float* b) {
    auto a = corrupt_args(b, NoiseKind::Mask, 0.1f);
    a.x = nullptr;
    t.corrupt(c, a);
  });
  add("corrupt null y", [=](const OpTable& t, const Context& c, float* b) {
    auto a = corrupt_args(b, NoiseKind::Gaussian, 0.1f);
    a.y = nullptr;
    t.corrupt(c, a);
  });
  add("corrupt unknown kind", [=](const OpTable& t, const Context& c, float* b) {
    t.corrupt(c, corrupt_args(b, static_cast<NoiseKind>(7), 0.1f));
  });
  for (NoiseKind kind : {NoiseKind::Mask, NoiseKind::SaltPepper})
    for (float level : {1.5f, -0.1f, nan, inf})
      add(std::string("corrupt ") + noise_name(kind) + " level " + std::to_string(level),
          [=](const OpTable& t, const Context& c, float* b) { t.corrupt(c, corrupt_args(b, kind, level)); });
  for (float sigma : {-0.1f, nan, inf})
    add("corrupt gaussian sigma " + std::to_string(sigma), [=](const OpTable& t, const Context& c, float* b) {
      t.corrupt(c, corrupt_args(b, NoiseKind::Gaussian, sigma));
    });
  for (float bad : {nan, inf}) {
    add("corrupt salt_pepper lo " + std::to_string(bad), [=](const OpTable& t, const Context& c, float* b) {
      auto a = corrupt_args(b, NoiseKind::SaltPepper, 0.2f);
      a.lo = bad;
      t.corrupt(c, a);
    });
    add("corrupt salt_pepper hi " + std::to_string(bad), [=](const OpTable& t, const Context& c, float* b) {
      auto a = corrupt_args(b, NoiseKind::SaltPepper, 0.2f);
      a.hi = bad;
      t.corrupt(c, a);
    });
  }
  for (float p : {1.0f, 1.5f, -0.1f, nan}) {
    add("dropout_forward p " + std::to_string(p),
        [=](const OpTable& t, const Context& c, float* b) { t.dropout_forward(c, drop_args(b, p)); });
    add("dropout_backward p " + std::to_string(p),
        [=](const OpTable& t, const Context& c, float* b) { t.dropout_backward(c, back_args(b, p)); });
  }
  add("dropout_forward null x", [=](const OpTable& t, const Context& c, float* b) {
    auto a = drop_args(b, 0.1f);
    a.x = nullptr;
    t.dropout_forward(c, a);
  });
  add("dropout_forward null y", [=](const OpTable& t, const Context& c, float* b) {
    auto a = drop_args(b, 0.1f);
    a.y = nullptr;
    t.dropout_forward(c, a);
  });
  add("dropout_backward null dy", [=](const OpTable& t, const Context& c, float* b) {
    auto a = back_args(b, 0.1f);
    a.dy = nullptr;
    t.dropout_backward(c, a);
  });
  add("dropout_backward null dx", [=](const OpTable& t, const Context& c, float* b) {
    auto a = back_args(b, 0.1f);
    a.dx = nullptr;
    a.acc_dx = true;
    t.dropout_backward(c, a);
  });
  return calls;
}

// The boundary values the contract allows: ν = 0 and 1, σ = 0, p = 0, a single element.
void expect_accepts_edge_calls(Device device) {
  Backend be(device);
  DeviceBuffer buf(be, 256);
  buf.fill(0.5f);
  float* b = buf.data();
  for (NoiseKind kind : {NoiseKind::Mask, NoiseKind::SaltPepper})
    for (float level : {0.0f, 1.0f}) {
      Corrupt a;
      a.x = b;
      a.y = b + 64;
      a.count = 1;
      a.kind = kind;
      a.level = level;
      EXPECT_NO_THROW(be.ops().corrupt(be.ctx(), a)) << noise_name(kind) << " level " << level;
    }
  Corrupt g;
  g.x = g.y = b;  // in place
  g.count = 5;
  g.kind = NoiseKind::Gaussian;
  g.level = 0.0f;
  EXPECT_NO_THROW(be.ops().corrupt(be.ctx(), g));
  Dropout d;
  d.x = b;
  d.y = b + 64;
  d.count = 3;
  d.p = 0.0f;
  EXPECT_NO_THROW(be.ops().dropout_forward(be.ctx(), d));
  DropoutBackward db;
  db.dy = b;
  db.dx = b + 64;
  db.count = 3;
  db.p = 0.999f;
  EXPECT_NO_THROW(be.ops().dropout_backward(be.ctx(), db));
  be.synchronize();
  EXPECT_TRUE(buf.guards_intact());
}

// Rejected calls touch no memory: the buffer keeps its (random) contents, bit for bit.
const std::vector<float> kValidationFill = uniform(256, 5);

TEST(OpsRandomValidation, CpuRejectsBadArguments) {
  expect_rejects_bad_calls(Device::CPU, bad_calls(), kValidationFill);
}

TEST(OpsRandomValidation, CudaRejectsBadArguments) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_rejects_bad_calls(Device::CUDA, bad_calls(), kValidationFill);
}

TEST(OpsRandomValidation, CpuAcceptsEdgeCalls) { expect_accepts_edge_calls(Device::CPU); }

TEST(OpsRandomValidation, CudaAcceptsEdgeCalls) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_accepts_edge_calls(Device::CUDA);
}

}  // namespace
