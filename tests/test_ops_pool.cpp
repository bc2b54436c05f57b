// The pooling op test: max_pool_forward, max_unpool, max_unpool_backward, avg_pool_forward,
// avg_pool_backward, upsample_forward and upsample_backward (kernels/ops.hpp, PoolGeom over NHWC),
// checked these ways:
//
//   PoolOps.CpuMatchesDoubleReference   the CPU op against references written here from the
//                                       comments in kernels/ops.hpp: max pooling by scanning each
//                                       window's offsets (padding skipped, first of equal values
//                                       kept, NaN winning), the adjoint ops (unpool, the avg-pool
//                                       and upsample backwards) as SCATTERS in double, the
//                                       opposite of the gathers the kernels run; odd geometries
//                                       (h, w odd; windows 2x2, 3x3, 2x3, 3x2; strides 1, 2, 3;
//                                       padding 0 and 1; c = 1, 3, 5, 8, 12; batch 1-3), outputs
//                                       poisoned with NaN, guard zones around every buffer,
//                                       written and accumulated outputs, inputs unchanged;
//   PoolOps.CudaMatchesCpu              the CUDA op against the CPU op on the same inputs: bit for
//                                       bit for the max pool, its indices, unpooling and nearest
//                                       upsampling; within 1e-6 (normalised) for the averaging
//                                       and bilinear ones. Skipped, with the reason, without a GPU;
//   PoolMaxHand.*                       ties, padding, -inf, signed zeros and NaN on hand-made
//                                       windows, with the index each must give;
//   PoolRoundTrip.*                     unpool(pool(x)) puts every maximum back in place (and only
//                                       there), and pooling that again gives the same maxima;
//   PoolGrad*                           the avg-pool, upsample (nearest and bilinear, up- and
//                                       downscaling) and max-pool backwards against central finite
//                                       differences in double of L = Σ r ⊙ op(x);
//   PoolValidation                      both backends reject the same bad arguments.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
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
// Tolerances (normalised errors, tests/common.hpp)
// ================================================================================================

// CPU float vs the double references: an average of <= 9 floats and one division, or a sum of a
// few upstream values, a few ulp each (measured worst: 5e-8). A wrong window, a missing term or a
// wrong divisor gives 1e-2..1.
constexpr double kRefTol = 5e-7;
// Bilinear weights: the op computes the source coordinate in float, as PyTorch does (scale =
// float(in)/out, then scale·(dst + 0.5) − 0.5), so its weights carry an absolute error of a few ulp
// of the input extent; the double reference uses the exact coordinate. Measured: 1.9e-6 at 39→33.
double bilinear_tol(const PoolGeom& g) { return kRefTol + 4.0 * std::max(g.h, g.w) * 0x1p-24; }
// CUDA vs CPU for the averaging and bilinear ops. Both backends are written to run the same float
// operations in the same order (no FMA), so 0 is expected; this allows for a device that rounds a
// division differently and is still far below any real bug.
constexpr double kCudaTol = 1e-6;

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// ================================================================================================
// Geometry
// ================================================================================================

// A pooling geometry with p and q from the ops.hpp formula p = (h + 2·pad_h − r) / stride_h + 1.
PoolGeom pool_geom(int n, int h, int w, int c, int r, int s, int sh, int sw, int ph, int pw) {
  PoolGeom g;
  g.n = n, g.h = h, g.w = w, g.c = c, g.r = r, g.s = s;
  g.stride_h = sh, g.stride_w = sw, g.pad_h = ph, g.pad_w = pw;
  g.p = (h + 2 * ph - r) / sh + 1;
  g.q = (w + 2 * pw - s) / sw + 1;
  return g;
}

// An upsampling geometry: x [n, h, w, c] -> y [n, p, q, c] (window fields unused).
PoolGeom up_geom(int n, int h, int w, int c, int p, int q) {
  PoolGeom g;
  g.n = n, g.h = h, g.w = w, g.c = c, g.p = p, g.q = q;
  return g;
}

std::string pool_tag(const PoolGeom& g) {
  auto i = [](int v) { return std::to_string(v); };
  return "n" + i(g.n) + "_h" + i(g.h) + "_w" + i(g.w) + "_c" + i(g.c) + "_win" + i(g.r) + "x" + i(g.s) + "_str" +
         i(g.stride_h) + "x" + i(g.stride_w) + "_pad" + i(g.pad_h) + "x" + i(g.pad_w);
}
std::string up_tag(const PoolGeom& g) {
  auto i = [](int v) { return std::to_string(v); };
  return "n" + i(g.n) + "_c" + i(g.c) + "_" + i(g.h) + "x" + i(g.w) + "_to_" + i(g.p) + "x" + i(g.q);
}

std::size_t in_size(const PoolGeom& g) { return static_cast<std::size_t>(g.n) * g.h * g.w * g.c; }
std::size_t out_size(const PoolGeom& g) { return static_cast<std::size_t>(g.n) * g.p * g.q * g.c; }
// Offsets into NHWC tensors of the input [n, h, w, c] and output [n, p, q, c].
std::size_t at_in(const PoolGeom& g, int n, int i, int j, int ch) {
  return ((static_cast<std::size_t>(n) * g.h + i) * g.w + j) * g.c + ch;
}
std::size_t at_out(const PoolGeom& g, int n, int i, int j, int ch) {
  return ((static_cast<std::size_t>(n) * g.p + i) * g.q + j) * g.c + ch;
}

// ================================================================================================
// References, written from the comments in kernels/ops.hpp
// ================================================================================================

std::vector<float> to_index_bits(const std::vector<std::int32_t>& v) {
  std::vector<float> f(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) f[i] = int_bits(v[i]);
  return f;
}
std::vector<std::int32_t> from_index_bits(std::span<const float> f) {
  std::vector<std::int32_t> v(f.size());
  for (std::size_t i = 0; i < f.size(); ++i) v[i] = bits_int(f[i]);
  return v;
}

struct MaxRef {
  std::vector<float> y;
  std::vector<std::int32_t> index;
};

// Each window's offsets (kh, kw) in row-major order; an offset that lands in the padding is no
// candidate; a candidate replaces the current maximum when it is NaN (and the maximum is not) or
// strictly greater, so the first of equal values stays and the first NaN stays.
MaxRef ref_max_pool(std::span<const float> x, const PoolGeom& g) {
  MaxRef r;
  r.y.assign(out_size(g), 0.0f);
  r.index.assign(out_size(g), -1);
  for (int n = 0; n < g.n; ++n)
    for (int oh = 0; oh < g.p; ++oh)
      for (int ow = 0; ow < g.q; ++ow)
        for (int ch = 0; ch < g.c; ++ch) {
          bool have = false;
          float best = 0.0f;
          std::int32_t where = -1;
          for (int kh = 0; kh < g.r; ++kh)
            for (int kw = 0; kw < g.s; ++kw) {
              const int ih = oh * g.stride_h - g.pad_h + kh, iw = ow * g.stride_w - g.pad_w + kw;
              if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
              const float v = x[at_in(g, n, ih, iw, ch)];
              const bool take = !have || (!std::isnan(best) && (std::isnan(v) || v > best));
              if (take) best = v, where = ih * g.w + iw, have = true;
            }
          r.y[at_out(g, n, oh, ow, ch)] = best;
          r.index[at_out(g, n, oh, ow, ch)] = where;
        }
  return r;
}

// The unpooling as the scatter the comment states: every pooled value is added, in double, to the
// position its index names. count[e] says how many values landed on input position e.
struct ScatterRef {
  std::vector<double> y, mag;
  std::vector<int> count;
};
ScatterRef ref_max_unpool(std::span<const float> x, std::span<const std::int32_t> index, const PoolGeom& g) {
  ScatterRef r;
  r.y.assign(in_size(g), 0.0);
  r.mag.assign(in_size(g), 0.0);
  r.count.assign(in_size(g), 0);
  for (int n = 0; n < g.n; ++n)
    for (int oh = 0; oh < g.p; ++oh)
      for (int ow = 0; ow < g.q; ++ow)
        for (int ch = 0; ch < g.c; ++ch) {
          const std::size_t o = at_out(g, n, oh, ow, ch);
          const std::size_t e = (static_cast<std::size_t>(n) * g.h * g.w + static_cast<std::size_t>(index[o])) * g.c + ch;
          r.y[e] += x[o];
          r.mag[e] += std::abs(static_cast<double>(x[o]));
          ++r.count[e];
        }
  return r;
}

// The in-bounds positions of window (oh, ow), and its divisor.
int avg_divisor(const PoolGeom& g, int oh, int ow, bool include_pad) {
  if (include_pad) return g.r * g.s;
  int inside = 0;
  for (int kh = 0; kh < g.r; ++kh)
    for (int kw = 0; kw < g.s; ++kw) {
      const int ih = oh * g.stride_h - g.pad_h + kh, iw = ow * g.stride_w - g.pad_w + kw;
      inside += ih >= 0 && ih < g.h && iw >= 0 && iw < g.w;
    }
  return inside;
}

// Average pooling in double (padded positions add zero), with the magnitude Σ|x|/divisor.
void ref_avg_pool(std::span<const double> x, const PoolGeom& g, bool include_pad, std::vector<double>& y,
                  std::vector<double>* mag) {
  y.assign(out_size(g), 0.0);
  if (mag) mag->assign(out_size(g), 0.0);
  for (int n = 0; n < g.n; ++n)
    for (int oh = 0; oh < g.p; ++oh)
      for (int ow = 0; ow < g.q; ++ow) {
        const double div = avg_divisor(g, oh, ow, include_pad);
        for (int ch = 0; ch < g.c; ++ch) {
          double s = 0.0, m = 0.0;
          for (int kh = 0; kh < g.r; ++kh)
            for (int kw = 0; kw < g.s; ++kw) {
              const int ih = oh * g.stride_h - g.pad_h + kh, iw = ow * g.stride_w - g.pad_w + kw;
              if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
              s += x[at_in(g, n, ih, iw, ch)];
              m += std::abs(x[at_in(g, n, ih, iw, ch)]);
            }
          y[at_out(g, n, oh, ow, ch)] = s / div;
          if (mag) (*mag)[at_out(g, n, oh, ow, ch)] = m / div;
        }
      }
}

// Its backward as a scatter: each window's dy/divisor is added to each of its in-bounds positions.
void ref_avg_pool_backward(std::span<const float> dy, const PoolGeom& g, bool include_pad, std::vector<double>& dx,
                           std::vector<double>& mag) {
  dx.assign(in_size(g), 0.0);
  mag.assign(in_size(g), 0.0);
  for (int n = 0; n < g.n; ++n)
    for (int oh = 0; oh < g.p; ++oh)
      for (int ow = 0; ow < g.q; ++ow) {
        const double div = avg_divisor(g, oh, ow, include_pad);
        for (int kh = 0; kh < g.r; ++kh)
          for (int kw = 0; kw < g.s; ++kw) {
            const int ih = oh * g.stride_h - g.pad_h + kh, iw = ow * g.stride_w - g.pad_w + kw;
            if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
            for (int ch = 0; ch < g.c; ++ch) {
              const double v = dy[at_out(g, n, oh, ow, ch)] / div;
              dx[at_in(g, n, ih, iw, ch)] += v;
              mag[at_in(g, n, ih, iw, ch)] += std::abs(v);
            }
          }
      }
}

// Upsampling as a list of (input row, weight) per output row, in double, from the ops.hpp
// formulas: nearest src = min(floor(dst·in/out), in − 1) (exact integer arithmetic); bilinear
// src = max((dst + 0.5)·in/out − 0.5, 0), rows floor(src) and min(floor(src) + 1, in − 1) weighted
// 1 − frac and frac.
struct AxisTap {
  int i;
  double w;
};
std::vector<std::vector<AxisTap>> axis_taps(int in, int out, UpsampleKind kind) {
  std::vector<std::vector<AxisTap>> t(static_cast<std::size_t>(out));
  for (int o = 0; o < out; ++o) {
    if (kind == UpsampleKind::Nearest) {
      const long long s = std::min<long long>(static_cast<long long>(o) * in / out, in - 1);
      t[static_cast<std::size_t>(o)] = {{static_cast<int>(s), 1.0}};
    } else {
      const double src = std::max((o + 0.5) * in / out - 0.5, 0.0);
      const int i0 = static_cast<int>(std::floor(src));
      const int i1 = std::min(i0 + 1, in - 1);
      const double f = src - i0;
      t[static_cast<std::size_t>(o)] = {{i0, 1.0 - f}, {i1, f}};
    }
  }
  return t;
}

void ref_upsample(std::span<const double> x, const PoolGeom& g, UpsampleKind kind, std::vector<double>& y,
                  std::vector<double>* mag) {
  const auto th = axis_taps(g.h, g.p, kind), tw = axis_taps(g.w, g.q, kind);
  y.assign(out_size(g), 0.0);
  if (mag) mag->assign(out_size(g), 0.0);
  for (int n = 0; n < g.n; ++n)
    for (int oh = 0; oh < g.p; ++oh)
      for (int ow = 0; ow < g.q; ++ow)
        for (const AxisTap& a : th[static_cast<std::size_t>(oh)])
          for (const AxisTap& b : tw[static_cast<std::size_t>(ow)])
            for (int ch = 0; ch < g.c; ++ch) {
              const double v = a.w * b.w * x[at_in(g, n, a.i, b.i, ch)];
              y[at_out(g, n, oh, ow, ch)] += v;
              if (mag) (*mag)[at_out(g, n, oh, ow, ch)] += std::abs(v);
            }
}

// The transpose as a scatter: each dy spread to the inputs it was read from, by the same weights.
void ref_upsample_backward(std::span<const float> dy, const PoolGeom& g, UpsampleKind kind, std::vector<double>& dx,
                           std::vector<double>& mag) {
  const auto th = axis_taps(g.h, g.p, kind), tw = axis_taps(g.w, g.q, kind);
  dx.assign(in_size(g), 0.0);
  mag.assign(in_size(g), 0.0);
  for (int n = 0; n < g.n; ++n)
    for (int oh = 0; oh < g.p; ++oh)
      for (int ow = 0; ow < g.q; ++ow)
        for (const AxisTap& a : th[static_cast<std::size_t>(oh)])
          for (const AxisTap& b : tw[static_cast<std::size_t>(ow)])
            for (int ch = 0; ch < g.c; ++ch) {
              const double v = a.w * b.w * dy[at_out(g, n, oh, ow, ch)];
              dx[at_in(g, n, a.i, b.i, ch)] += v;
              mag[at_in(g, n, a.i, b.i, ch)] += std::abs(v);
            }
}

// ================================================================================================
// Comparisons
// ================================================================================================

// got == want bit for bit; names the first difference.
::testing::AssertionResult same_bits(const std::string& what, std::span<const float> got, std::span<const float> want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << what << ": size " << got.size() << " vs " << want.size();
  std::size_t diffs = 0, first = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (float_bits(got[i]) != float_bits(want[i]) && diffs++ == 0) first = i;
  if (diffs == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << diffs << " of " << got.size() << " differ; first at "
                                       << first << ": got " << got[first] << " (0x" << std::hex
                                       << float_bits(got[first]) << "), want " << want[first] << " (0x"
                                       << float_bits(want[first]) << std::dec << ")";
}
::testing::AssertionResult same_ints(const std::string& what, std::span<const std::int32_t> got,
                                     std::span<const std::int32_t> want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << what << ": size " << got.size() << " vs " << want.size();
  std::size_t diffs = 0, first = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (got[i] != want[i] && diffs++ == 0) first = i;
  if (diffs == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << diffs << " of " << got.size() << " differ; first at "
                                       << first << ": got " << got[first] << ", want " << want[first];
}

// ================================================================================================
// Inputs
// ================================================================================================

// Pooling inputs. Uniform values in [-1, 1) rarely tie; the "ties" variant rounds them to
// quarters, so most windows hold equal maxima (which the first-in-window rule decides) and some
// windows are all negative next to the zero padding (which must never win).
enum class Data { Uniform, Ties };
std::vector<float> pool_input(std::size_t n, Data d, std::uint32_t seed) {
  std::vector<float> x = uniform(n, seed, -1.0f, 1.0f);
  if (d == Data::Ties)
    for (float& v : x) v = std::round(v * 4.0f) / 4.0f - 0.25f;
  return x;
}

// The index a max pool of random data gives, as the index input of the unpooling ops.
std::vector<std::int32_t> pool_index(const PoolGeom& g, std::uint32_t seed) {
  return ref_max_pool(uniform(in_size(g), seed, -1.0f, 1.0f), g).index;
}

enum class Mode { Write, Acc };
const char* mode_tag(Mode m) { return m == Mode::Write ? "write" : "acc"; }

Slot result_slot(const std::string& name, Mode mode, std::size_t n, double tol, std::uint32_t seed) {
  return mode == Mode::Write ? output_slot(name, n, tol) : inout_slot(name, uniform(n, seed, -1.0f, 1.0f), tol);
}

// ================================================================================================
// Cases (tests/op_case.hpp)
// ================================================================================================

class PoolOps : public ::testing::TestWithParam<CasePtr> {};

TEST_P(PoolOps, CpuMatchesDoubleReference) { expect_cpu_matches_reference(*GetParam(), InputCheck::Unchanged); }

TEST_P(PoolOps, CudaMatchesCpu) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_cuda_matches_cpu(*GetParam(), InputCheck::Unchanged);
}

class MaxPoolCase : public OpCase {
 public:
  MaxPoolCase(PoolGeom g, Data d) : g_(g), d_(d) {}
  std::string name() const override {
    return "max_pool_forward_" + pool_tag(g_) + (d_ == Data::Ties ? "_ties" : "_uniform");
  }
  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    return {input_slot("x", pool_input(in_size(g_), d_, seed)), output_slot("y", out_size(g_), 0.0),
            output_slot("index", out_size(g_), 0.0)};
  }
  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    MaxPool a;
    a.g = g_;
    a.x = p[0];
    a.y = p[1];
    a.index = reinterpret_cast<std::int32_t*>(p[2]);
    t.max_pool_forward(ctx, a);
  }
  void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const override {
    const MaxRef r = ref_max_pool(slots[0].host, g_);
    EXPECT_TRUE(same_bits(name() + " y", after[1], r.y));
    EXPECT_TRUE(same_ints(name() + " index", from_index_bits(after[2]), r.index));
  }

 private:
  PoolGeom g_;
  Data d_;
};

// max_unpool: x is a decoder's feature map [n, p, q, c], index a real pool's.
class MaxUnpoolCase : public OpCase {
 public:
  MaxUnpoolCase(PoolGeom g, Mode m) : g_(g), m_(m) {}
  std::string name() const override { return "max_unpool_" + pool_tag(g_) + "_" + mode_tag(m_); }
  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    return {input_slot("x", uniform(out_size(g_), seed, -1.0f, 1.0f)),
            input_slot("index", to_index_bits(pool_index(g_, seed + 1))),
            result_slot("y", m_, in_size(g_), 0.0, seed + 2)};
  }
  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    MaxUnpool a;
    a.g = g_;
    a.x = p[0];
    a.index = reinterpret_cast<const std::int32_t*>(p[1]);
    a.y = p[2];
    a.acc = m_ == Mode::Acc;
    t.max_unpool(ctx, a);
  }
  void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const override {
    const ScatterRef r = ref_max_unpool(slots[0].host, from_index_bits(slots[1].host), g_);
    const bool acc = m_ == Mode::Acc;
    const std::span<const float> init = acc ? std::span<const float>(slots[2].host) : std::span<const float>{};
    expect_close(name() + " y", after[2], plus(r.y, init), kRefTol, plus(r.mag, abs_d(init)));
    // Where at most one window points, there is nothing to round: zero (or the initial value),
    // or the one pooled value (plus the initial value: one float addition).
    std::size_t bad = 0, multi = 0;
    for (std::size_t e = 0; e < r.y.size(); ++e) {
      if (r.count[e] > 1) {
        ++multi;
        continue;
      }
      const float base = acc ? init[e] : 0.0f;
      const float want = r.count[e] == 0 ? base : (acc ? base + static_cast<float>(r.y[e]) : static_cast<float>(r.y[e]));
      bad += !(after[2][e] == want);
    }
    EXPECT_EQ(bad, 0u) << name() << ": positions with at most one pointing window differ";
    // Overlapping windows must really have produced sums for this case to test them.
    if (g_.stride_h < g_.r && g_.stride_w < g_.s && g_.p > 2 && g_.q > 2) EXPECT_GT(multi, 0u) << name();
  }

 private:
  PoolGeom g_;
  Mode m_;
};

// max_unpool_backward: dx[n,p,q,c] (+)= dy[n, index, c].
class MaxUnpoolBackwardCase : public OpCase {
 public:
  MaxUnpoolBackwardCase(PoolGeom g, Mode m) : g_(g), m_(m) {}
  std::string name() const override { return "max_unpool_backward_" + pool_tag(g_) + "_" + mode_tag(m_); }
  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    return {input_slot("dy", uniform(in_size(g_), seed, -1.0f, 1.0f)),
            input_slot("index", to_index_bits(pool_index(g_, seed + 1))),
            result_slot("dx", m_, out_size(g_), 0.0, seed + 2)};
  }
  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    MaxUnpoolBackward a;
    a.g = g_;
    a.dy = p[0];
    a.index = reinterpret_cast<const std::int32_t*>(p[1]);
    a.dx = p[2];
    a.acc_dx = m_ == Mode::Acc;
    t.max_unpool_backward(ctx, a);
  }
  void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const override {
    const std::vector<std::int32_t> index = from_index_bits(slots[1].host);
    std::vector<float> want(out_size(g_));
    for (int n = 0; n < g_.n; ++n)
      for (int oh = 0; oh < g_.p; ++oh)
        for (int ow = 0; ow < g_.q; ++ow)
          for (int ch = 0; ch < g_.c; ++ch) {
            const std::size_t o = at_out(g_, n, oh, ow, ch);
            const int ih = index[o] / g_.w, iw = index[o] % g_.w;
            const float v = slots[0].host[at_in(g_, n, ih, iw, ch)];
            want[o] = m_ == Mode::Acc ? slots[2].host[o] + v : v;
          }
    EXPECT_TRUE(same_bits(name() + " dx", after[2], want));
  }

 private:
  PoolGeom g_;
  Mode m_;
};

class AvgPoolCase : public OpCase {
 public:
  AvgPoolCase(PoolGeom g, bool include_pad) : g_(g), pad_(include_pad) {}
  std::string name() const override { return "avg_pool_forward_" + pool_tag(g_) + (pad_ ? "_incpad" : "_nopad"); }
  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    return {input_slot("x", uniform(in_size(g_), seed, -1.0f, 1.0f)), output_slot("y", out_size(g_), kCudaTol)};
  }
  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    AvgPool a;
    a.g = g_;
    a.x = p[0];
    a.y = p[1];
    a.count_include_pad = pad_;
    t.avg_pool_forward(ctx, a);
  }
  void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const override {
    std::vector<double> y, mag;
    ref_avg_pool(to_double(slots[0].host), g_, pad_, y, &mag);
    expect_close(name() + " y", after[1], y, kRefTol, mag);
  }

 private:
  PoolGeom g_;
  bool pad_;
};

class AvgPoolBackwardCase : public OpCase {
 public:
  AvgPoolBackwardCase(PoolGeom g, bool include_pad, Mode m) : g_(g), pad_(include_pad), m_(m) {}
  std::string name() const override {
    return "avg_pool_backward_" + pool_tag(g_) + (pad_ ? "_incpad_" : "_nopad_") + mode_tag(m_);
  }
  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    return {input_slot("dy", uniform(out_size(g_), seed, -1.0f, 1.0f)),
            result_slot("dx", m_, in_size(g_), kCudaTol, seed + 1)};
  }
  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    AvgPoolBackward a;
    a.g = g_;
    a.dy = p[0];
    a.dx = p[1];
    a.count_include_pad = pad_;
    a.acc_dx = m_ == Mode::Acc;
    t.avg_pool_backward(ctx, a);
  }
  void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const override {
    std::vector<double> dx, mag;
    ref_avg_pool_backward(slots[0].host, g_, pad_, dx, mag);
    const std::span<const float> init = m_ == Mode::Acc ? std::span<const float>(slots[1].host) : std::span<const float>{};
    expect_close(name() + " dx", after[1], plus(dx, init), kRefTol, plus(mag, abs_d(init)));
    // With a stride larger than the window some inputs are in no window: their gradient is 0 (or
    // the initial value) exactly.
    std::size_t bad = 0;
    for (std::size_t e = 0; e < dx.size(); ++e)
      if (mag[e] == 0.0) bad += !(after[1][e] == (init.empty() ? 0.0f : init[e]));
    EXPECT_EQ(bad, 0u) << name() << ": inputs outside every window changed";
  }

 private:
  PoolGeom g_;
  bool pad_;
  Mode m_;
};

class UpsampleCase : public OpCase {
 public:
  UpsampleCase(PoolGeom g, UpsampleKind k) : g_(g), k_(k) {}
  std::string name() const override { return std::string("upsample_forward_") + upsample_name(k_) + "_" + up_tag(g_); }
  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    return {input_slot("x", uniform(in_size(g_), seed, -1.0f, 1.0f)),
            output_slot("y", out_size(g_), k_ == UpsampleKind::Nearest ? 0.0 : kCudaTol)};
  }
  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    Upsample a;
    a.g = g_;
    a.x = p[0];
    a.y = p[1];
    a.kind = k_;
    t.upsample_forward(ctx, a);
  }
  void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const override {
    std::vector<double> y, mag;
    ref_upsample(to_double(slots[0].host), g_, k_, y, &mag);
    if (k_ == UpsampleKind::Nearest) {
      // A copy: exact.
      std::vector<float> want(y.begin(), y.end());
      EXPECT_TRUE(same_bits(name() + " y", after[1], want));
    } else {
      expect_close(name() + " y", after[1], y, bilinear_tol(g_), mag);
    }
  }

 private:
  PoolGeom g_;
  UpsampleKind k_;
};

class UpsampleBackwardCase : public OpCase {
 public:
  UpsampleBackwardCase(PoolGeom g, UpsampleKind k, Mode m) : g_(g), k_(k), m_(m) {}
  std::string name() const override {
    return std::string("upsample_backward_") + upsample_name(k_) + "_" + up_tag(g_) + "_" + mode_tag(m_);
  }
  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    return {input_slot("dy", uniform(out_size(g_), seed, -1.0f, 1.0f)),
            result_slot("dx", m_, in_size(g_), k_ == UpsampleKind::Nearest ? 0.0 : kCudaTol, seed + 1)};
  }
  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    UpsampleBackward a;
    a.g = g_;
    a.dy = p[0];
    a.dx = p[1];
    a.kind = k_;
    a.acc_dx = m_ == Mode::Acc;
    t.upsample_backward(ctx, a);
  }
  void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const override {
    std::vector<double> dx, mag;
    ref_upsample_backward(slots[0].host, g_, k_, dx, mag);
    const std::span<const float> init = m_ == Mode::Acc ? std::span<const float>(slots[1].host) : std::span<const float>{};
    const double tol = k_ == UpsampleKind::Nearest ? kRefTol : bilinear_tol(g_);
    expect_close(name() + " dx", after[1], plus(dx, init), tol, plus(mag, abs_d(init)));
    // Downscaling by nearest leaves inputs no output reads: exactly 0 (or the initial value).
    std::size_t bad = 0;
    for (std::size_t e = 0; e < dx.size(); ++e)
      if (mag[e] == 0.0 && k_ == UpsampleKind::Nearest) bad += !(after[1][e] == (init.empty() ? 0.0f : init[e]));
    EXPECT_EQ(bad, 0u) << name() << ": inputs no output reads changed";
  }

 private:
  PoolGeom g_;
  UpsampleKind k_;
  Mode m_;
};

// Pooling geometries: odd extents, every window shape with strides below (overlapping windows),
// equal to and above (gaps) the window, padding 0 and 1, channel counts on and off the CUDA
// kernels' 4-channel vectors, and two sizes past the CPU's OpenMP threshold (2^15 outputs).
std::vector<PoolGeom> pool_geoms() {
  return {
      pool_geom(1, 5, 7, 1, 2, 2, 2, 2, 0, 0),    pool_geom(2, 7, 5, 3, 2, 2, 2, 2, 1, 1),
      pool_geom(3, 9, 9, 5, 3, 3, 2, 2, 1, 1),    pool_geom(2, 7, 9, 8, 3, 3, 1, 1, 1, 1),
      pool_geom(1, 9, 7, 3, 3, 3, 3, 3, 0, 0),    pool_geom(2, 11, 7, 5, 2, 3, 1, 2, 1, 1),
      pool_geom(3, 7, 11, 1, 2, 3, 3, 2, 0, 1),   pool_geom(1, 5, 5, 8, 3, 3, 1, 1, 0, 0),
      pool_geom(2, 9, 7, 8, 2, 2, 1, 1, 0, 0),    pool_geom(1, 3, 3, 3, 3, 3, 1, 1, 1, 1),
      pool_geom(1, 13, 8, 5, 3, 2, 3, 1, 1, 1),   pool_geom(2, 8, 8, 4, 2, 2, 2, 2, 0, 0),
      pool_geom(1, 1, 1, 1, 1, 1, 1, 1, 0, 0),    pool_geom(2, 9, 9, 3, 2, 2, 3, 3, 1, 1),
      pool_geom(2, 33, 31, 12, 3, 3, 2, 2, 1, 1), pool_geom(3, 65, 63, 8, 2, 2, 1, 1, 0, 0),
  };
}

// Upsampling sizes: up (7→14, 5→12), down (9→4, 6→1), mixed, from one pixel, the same size, an
// autoencoder decoder's 14→28 at 32 channels, and 26→22 / 39→33, where ops.hpp's exact
// floor(dst·in/out) differs from PyTorch's float arithmetic at one row.
std::vector<PoolGeom> up_geoms() {
  return {up_geom(1, 7, 5, 1, 14, 12), up_geom(2, 9, 9, 3, 4, 4),   up_geom(2, 5, 7, 5, 12, 14),
          up_geom(3, 9, 7, 8, 4, 14),  up_geom(1, 1, 1, 3, 5, 4),   up_geom(1, 6, 4, 1, 1, 1),
          up_geom(2, 7, 7, 8, 7, 7),   up_geom(1, 3, 5, 4, 10, 13), up_geom(2, 14, 14, 32, 28, 28),
          up_geom(1, 26, 39, 2, 22, 33)};
}

std::vector<CasePtr> pool_cases() {
  std::vector<CasePtr> cases;
  for (const PoolGeom& g : pool_geoms()) {
    for (Data d : {Data::Uniform, Data::Ties}) cases.push_back(std::make_shared<MaxPoolCase>(g, d));
    for (Mode m : {Mode::Write, Mode::Acc}) {
      cases.push_back(std::make_shared<MaxUnpoolCase>(g, m));
      cases.push_back(std::make_shared<MaxUnpoolBackwardCase>(g, m));
    }
    for (bool pad : {true, false}) {
      cases.push_back(std::make_shared<AvgPoolCase>(g, pad));
      for (Mode m : {Mode::Write, Mode::Acc}) cases.push_back(std::make_shared<AvgPoolBackwardCase>(g, pad, m));
    }
  }
  return cases;
}

std::vector<CasePtr> upsample_cases() {
  std::vector<CasePtr> cases;
  for (const PoolGeom& g : up_geoms())
    for (UpsampleKind k : {UpsampleKind::Nearest, UpsampleKind::Bilinear}) {
      cases.push_back(std::make_shared<UpsampleCase>(g, k));
      for (Mode m : {Mode::Write, Mode::Acc}) cases.push_back(std::make_shared<UpsampleBackwardCase>(g, k, m));
    }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Pool, PoolOps, ::testing::ValuesIn(pool_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Upsample, PoolOps, ::testing::ValuesIn(upsample_cases()), case_name);

// ================================================================================================
// Running ops directly on a backend (for the hand-made, round-trip and gradient tests)
// ================================================================================================

MaxRef run_max_pool(Backend& be, const std::vector<float>& x, const PoolGeom& g) {
  DeviceBuffer bx(be, x.size()), by(be, out_size(g)), bi(be, out_size(g));
  bx.upload(x);
  by.poison();
  bi.poison();
  MaxPool a;
  a.g = g;
  a.x = bx.data();
  a.y = by.data();
  a.index = reinterpret_cast<std::int32_t*>(bi.data());
  be.ops().max_pool_forward(be.ctx(), a);
  be.synchronize();
  EXPECT_TRUE(by.guards_intact() && bi.guards_intact()) << device_name(be.device()) << ": max pool wrote out of bounds";
  return {by.download(), from_index_bits(bi.download())};
}

std::vector<float> run_max_unpool(Backend& be, const std::vector<float>& x, const std::vector<std::int32_t>& index,
                                  const PoolGeom& g) {
  DeviceBuffer bx(be, x.size()), bi(be, index.size()), by(be, in_size(g));
  bx.upload(x);
  bi.upload(to_index_bits(index));
  by.poison();
  MaxUnpool a;
  a.g = g;
  a.x = bx.data();
  a.index = reinterpret_cast<const std::int32_t*>(bi.data());
  a.y = by.data();
  be.ops().max_unpool(be.ctx(), a);
  be.synchronize();
  EXPECT_TRUE(by.guards_intact()) << device_name(be.device()) << ": unpool wrote out of bounds";
  return by.download();
}

// ================================================================================================
// Max pooling on hand-made windows: ties, padding, -inf, signed zeros, NaN
// ================================================================================================

struct HandCase {
  std::string what;
  PoolGeom g;
  std::vector<float> x;
  std::vector<float> y;             // expected bits
  std::vector<std::int32_t> index;  // expected
};

std::vector<HandCase> hand_cases() {
  std::vector<HandCase> cases;
  // 1 channel, 3x3 input, one 3x3 window (stride 3): the window is the whole image.
  const PoolGeom one = pool_geom(1, 3, 3, 1, 3, 3, 3, 3, 0, 0);
  cases.push_back({"all equal: the first position", one, std::vector<float>(9, 2.0f), {2.0f}, {0}});
  cases.push_back({"equal maxima: the first in row-major order", one, {1, 0, 3, 2, 3, 3, -1, 3, 0}, {3.0f}, {2}});
  cases.push_back({"-0 before +0: a tie, -0 stays", one, {-0.0f, 0.0f, -1, -1, -1, -1, -1, -1, -1}, {-0.0f}, {0}});
  cases.push_back({"+0 before -0: a tie, +0 stays", one, {-1, 0.0f, -0.0f, -1, -1, -1, -1, -1, -1}, {0.0f}, {1}});
  cases.push_back({"all -inf: the first position", one, std::vector<float>(9, -kInf), {-kInf}, {0}});
  cases.push_back({"a NaN beats larger numbers after it", one, {1, 2, 3, kNaN, 5, kInf, 7, 8, 9}, {kNaN}, {3}});
  cases.push_back({"a NaN beats +inf before it", one, {kInf, 2, 3, 4, 5, 6, 7, 8, kNaN}, {kNaN}, {8}});
  cases.push_back({"the first of two NaNs", one, {0, kNaN, 3, 4, bits_float(0x7fc12345u), 6, 7, 8, 9}, {kNaN}, {1}});
  cases.push_back({"a NaN first stays", one, {kNaN, 9, 9, 9, 9, 9, 9, 9, 9}, {kNaN}, {0}});
  // 3x3 input, 2x2 windows, stride 2, padding 1: p = q = 2, each window has 1, 2 or 4 in-bounds
  // positions. All negative: the zero padding must never win.
  const PoolGeom padded = pool_geom(1, 3, 3, 1, 2, 2, 2, 2, 1, 1);
  cases.push_back({"negative values beside zero padding", padded,
                   {-5, -4, -3, -2, -1, -6, -7, -8, -9},
                   {-5, -3, -2, -1},
                   {0, 2, 3, 4}});
  cases.push_back({"all equal with padding: the first in-bounds position", padded, std::vector<float>(9, -1.0f),
                   {-1, -1, -1, -1}, {0, 1, 3, 4}});
  // Channels are independent: channel 0 ties, channel 1 has a NaN, channel 2 plain.
  const PoolGeom chans = pool_geom(1, 2, 2, 3, 2, 2, 2, 2, 0, 0);
  cases.push_back({"per-channel choices", chans,
                   {1, 0, 5, 1, kNaN, 6, 0, 2, 7, 1, 3, 4},
                   {1, kNaN, 7},
                   {0, 1, 2}});
  return cases;
}

void check_hand_cases(Backend& be) {
  for (const HandCase& c : hand_cases()) {
    SCOPED_TRACE(std::string(device_name(be.device())) + ": " + c.what);
    const MaxRef got = run_max_pool(be, c.x, c.g);
    // NaN bits: any NaN is accepted where a NaN is expected (the op need not keep a payload).
    std::vector<float> y = got.y;
    for (std::size_t i = 0; i < y.size(); ++i)
      if (std::isnan(y[i]) && std::isnan(c.y[i])) y[i] = c.y[i];
    EXPECT_TRUE(same_bits("y", y, c.y));
    EXPECT_TRUE(same_ints("index", got.index, c.index));
    // The reference agrees with the hand-written expectation (so the parametrised cases above
    // judge by the same rules).
    const MaxRef ref = ref_max_pool(c.x, c.g);
    EXPECT_TRUE(same_ints("reference index", ref.index, c.index));
  }
}

TEST(PoolMaxHand, Cpu) {
  Backend cpu(Device::CPU);
  check_hand_cases(cpu);
}

TEST(PoolMaxHand, Cuda) {
  CUAE_SKIP_WITHOUT_GPU();
  Backend gpu(Device::CUDA);
  check_hand_cases(gpu);
}

// ================================================================================================
// unpool(pool(x)) puts the maxima back
// ================================================================================================

// Distinct positive values: shuffled multiples of 1/64 in [0.5, ...), so every window has one
// maximum and zeros never compete with the data.
std::vector<float> distinct_values(std::size_t n, std::uint32_t seed, float base = 0.5f, float step = 1.0f / 64) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = base + step * static_cast<float>(i);
  std::mt19937 gen(seed);
  std::shuffle(v.begin(), v.end(), gen);
  return v;
}

void check_round_trip(Backend& be, const PoolGeom& g) {
  SCOPED_TRACE(std::string(device_name(be.device())) + " " + pool_tag(g));
  const std::vector<float> x = distinct_values(in_size(g), seed_from(pool_tag(g)));
  const MaxRef pooled = run_max_pool(be, x, g);
  const std::vector<float> y = run_max_unpool(be, pooled.y, pooled.index, g);
  // How many windows chose each position.
  std::vector<int> chosen(in_size(g), 0);
  for (int n = 0; n < g.n; ++n)
    for (int oh = 0; oh < g.p; ++oh)
      for (int ow = 0; ow < g.q; ++ow)
        for (int ch = 0; ch < g.c; ++ch) {
          const std::int32_t i = pooled.index[at_out(g, n, oh, ow, ch)];
          ASSERT_GE(i, 0);
          ASSERT_LT(i, g.h * g.w);
          ++chosen[(static_cast<std::size_t>(n) * g.h * g.w + static_cast<std::size_t>(i)) * g.c + ch];
        }
  std::size_t bad = 0, placed = 0;
  for (std::size_t e = 0; e < y.size(); ++e) {
    // k windows chose e: the value comes back k times over (exact for k <= 2; within an ulp
    // for more, the sum of k equal floats).
    const double want = static_cast<double>(x[e]) * chosen[e];
    bad += std::abs(y[e] - want) > 1e-6 * std::abs(want);
    placed += chosen[e] > 0;
  }
  EXPECT_EQ(bad, 0u) << "unpool(pool(x)) is not x at the maxima (times the windows choosing them) and 0 elsewhere";
  EXPECT_GT(placed, 0u);
  const bool disjoint = g.stride_h >= g.r && g.stride_w >= g.s;
  if (disjoint) {
    // Without overlap each maximum is back exactly once, and pooling again finds the same maxima.
    for (std::size_t e = 0; e < y.size(); ++e) ASSERT_LE(chosen[e], 1);
    const MaxRef again = run_max_pool(be, y, g);
    EXPECT_TRUE(same_bits("pool(unpool(pool(x)))", again.y, pooled.y));
    EXPECT_TRUE(same_ints("its index", again.index, pooled.index));
  }
}

const PoolGeom kRoundTripGeoms[] = {
    pool_geom(2, 7, 9, 3, 2, 2, 2, 2, 0, 0), pool_geom(1, 9, 7, 5, 3, 3, 3, 3, 1, 1),
    pool_geom(3, 8, 8, 8, 2, 2, 2, 2, 1, 1), pool_geom(2, 7, 7, 4, 3, 3, 1, 1, 1, 1),
    pool_geom(1, 9, 11, 3, 2, 3, 1, 2, 0, 1), pool_geom(2, 28, 28, 32, 2, 2, 2, 2, 0, 0),
};

TEST(PoolRoundTrip, Cpu) {
  Backend cpu(Device::CPU);
  for (const PoolGeom& g : kRoundTripGeoms) check_round_trip(cpu, g);
}

TEST(PoolRoundTrip, Cuda) {
  CUAE_SKIP_WITHOUT_GPU();
  Backend gpu(Device::CUDA);
  for (const PoolGeom& g : kRoundTripGeoms) check_round_trip(gpu, g);
}

// The gathers have a fixed order, so a rerun gives the same bits (overlapping windows, where the
// unpooling and the avg-pool backward really sum, and the bilinear backward).
TEST(PoolDeterminism, CudaRepeatsBitForBit) {
  CUAE_SKIP_WITHOUT_GPU();
  const PoolGeom g = pool_geom(3, 65, 63, 8, 3, 3, 1, 1, 1, 1);
  const std::vector<std::shared_ptr<OpCase>> cases = {
      std::make_shared<MaxUnpoolCase>(g, Mode::Acc), std::make_shared<AvgPoolBackwardCase>(g, false, Mode::Write),
      std::make_shared<UpsampleBackwardCase>(up_geom(2, 13, 17, 8, 40, 36), UpsampleKind::Bilinear, Mode::Write)};
  Backend gpu(Device::CUDA);
  for (const auto& c : cases) {
    const auto slots = c->make_slots(case_seed(*c));
    const auto first = run_on(gpu, *c, slots);
    const auto second = run_on(gpu, *c, slots);
    for (std::size_t i = 0; i < slots.size(); ++i)
      EXPECT_TRUE(same_bits(c->name() + " " + slots[i].name, second[i], first[i]));
  }
}

// ================================================================================================
// Finite differences: L = Σ r ⊙ op(x) in double against the float backward
// ================================================================================================

// Every op here is linear in x (max pooling piecewise so, with inputs kept away from its kinks),
// so the central difference is exact up to rounding.
class PoolGradAvg : public ::testing::TestWithParam<std::tuple<PoolGeom, bool>> {};

TEST_P(PoolGradAvg, BackwardMatchesFiniteDifferences) {
  const auto [g, include_pad] = GetParam();
  const std::string tag = pool_tag(g) + (include_pad ? " incpad" : " nopad");
  const std::uint32_t seed = seed_from("grad_avg " + tag);
  const std::vector<float> xf = uniform(in_size(g), seed, -1.0f, 1.0f);
  const std::vector<float> r = uniform(out_size(g), seed + 1, -1.0f, 1.0f);
  std::vector<float> analytic(in_size(g), kNaN);
  AvgPoolBackward b;
  b.g = g;
  b.dy = r.data();
  b.dx = analytic.data();
  b.count_include_pad = include_pad;
  cpu::avg_pool_backward(Context{}, b);

  std::vector<double> x = to_double(xf);
  const auto loss = [&] {
    std::vector<double> y;
    ref_avg_pool(x, g, include_pad, y, nullptr);
    double s = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) s += r[i] * y[i];
    return s;
  };
  expect_grad_ok(tag, check_gradient(loss, x, analytic, sample_indices(x.size(), 300, seed + 2), nullptr, grad_options()));
}

INSTANTIATE_TEST_SUITE_P(Pool, PoolGradAvg,
                         ::testing::Combine(::testing::Values(pool_geom(2, 7, 9, 3, 3, 3, 2, 2, 1, 1),
                                                              pool_geom(1, 9, 7, 5, 2, 3, 1, 2, 1, 1),
                                                              pool_geom(3, 5, 5, 1, 2, 2, 3, 3, 1, 1),
                                                              pool_geom(2, 7, 7, 8, 3, 3, 1, 1, 0, 0)),
                                            ::testing::Bool()),
                         [](const ::testing::TestParamInfo<std::tuple<PoolGeom, bool>>& i) {
                           return pool_tag(std::get<0>(i.param)) + (std::get<1>(i.param) ? "_incpad" : "_nopad");
                         });

class PoolGradUpsample : public ::testing::TestWithParam<std::tuple<PoolGeom, UpsampleKind>> {};

TEST_P(PoolGradUpsample, BackwardMatchesFiniteDifferences) {
  const auto [g, kind] = GetParam();
  const std::string tag = std::string(upsample_name(kind)) + " " + up_tag(g);
  const std::uint32_t seed = seed_from("grad_upsample " + tag);
  const std::vector<float> xf = uniform(in_size(g), seed, -1.0f, 1.0f);
  const std::vector<float> r = uniform(out_size(g), seed + 1, -1.0f, 1.0f);
  std::vector<float> analytic(in_size(g), kNaN);
  UpsampleBackward b;
  b.g = g;
  b.dy = r.data();
  b.dx = analytic.data();
  b.kind = kind;
  cpu::upsample_backward(Context{}, b);

  std::vector<double> x = to_double(xf);
  const auto loss = [&] {
    std::vector<double> y;
    ref_upsample(x, g, kind, y, nullptr);
    double s = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) s += r[i] * y[i];
    return s;
  };
  expect_grad_ok(tag, check_gradient(loss, x, analytic, sample_indices(x.size(), 300, seed + 2), nullptr, grad_options()));
}

INSTANTIATE_TEST_SUITE_P(Upsample, PoolGradUpsample,
                         ::testing::Combine(::testing::Values(up_geom(1, 7, 7, 2, 14, 14), up_geom(2, 5, 5, 3, 12, 12),
                                                              up_geom(1, 9, 9, 1, 4, 4), up_geom(2, 7, 5, 3, 14, 12),
                                                              up_geom(1, 9, 5, 2, 4, 12), up_geom(1, 1, 3, 2, 4, 7)),
                                            ::testing::Values(UpsampleKind::Nearest, UpsampleKind::Bilinear)),
                         [](const ::testing::TestParamInfo<std::tuple<PoolGeom, UpsampleKind>>& i) {
                           return std::string(upsample_name(std::get<1>(i.param))) + "_" + up_tag(std::get<0>(i.param));
                         });

// The max pool's backward is max_unpool applied to dy (ops.hpp). Inputs are distinct multiples of
// 1/64, so a step of 1e-4 never changes a window's maximum (a kink); the check counts none.
class PoolGradMax : public ::testing::TestWithParam<PoolGeom> {};

TEST_P(PoolGradMax, UnpoolOfDyMatchesFiniteDifferences) {
  const PoolGeom g = GetParam();
  const std::string tag = pool_tag(g);
  const std::uint32_t seed = seed_from("grad_max " + tag);
  const std::vector<float> xf = distinct_values(in_size(g), seed, -2.0f);
  const std::vector<float> r = uniform(out_size(g), seed + 1, -1.0f, 1.0f);
  const MaxRef pooled = [&] {
    std::vector<float> y(out_size(g));
    std::vector<std::int32_t> idx(out_size(g));
    MaxPool f;
    f.g = g;
    f.x = xf.data();
    f.y = y.data();
    f.index = idx.data();
    cpu::max_pool_forward(Context{}, f);
    return MaxRef{y, idx};
  }();
  std::vector<float> analytic(in_size(g), kNaN);
  MaxUnpool u;
  u.g = g;
  u.x = r.data();
  u.index = pooled.index.data();
  u.y = analytic.data();
  cpu::max_unpool(Context{}, u);

  std::vector<double> x = to_double(xf);
  // The pooled maximum of each window in double, from the window offsets.
  const auto loss = [&] {
    double s = 0.0;
    for (int n = 0; n < g.n; ++n)
      for (int oh = 0; oh < g.p; ++oh)
        for (int ow = 0; ow < g.q; ++ow)
          for (int ch = 0; ch < g.c; ++ch) {
            double best = -INFINITY;
            for (int kh = 0; kh < g.r; ++kh)
              for (int kw = 0; kw < g.s; ++kw) {
                const int ih = oh * g.stride_h - g.pad_h + kh, iw = ow * g.stride_w - g.pad_w + kw;
                if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) best = std::max(best, x[at_in(g, n, ih, iw, ch)]);
              }
            s += r[at_out(g, n, oh, ow, ch)] * best;
          }
    return s;
  };
  // A kink: x[i] within 2h of another value of a window containing it (the values are distinct
  // multiples of 1/64, so there is none).
  const auto near_kink = [&](std::size_t i, double h) {
    const int ch = static_cast<int>(i % g.c), iw = static_cast<int>(i / g.c % g.w);
    const int ih = static_cast<int>(i / g.c / g.w % g.h), n = static_cast<int>(i / g.c / g.w / g.h);
    for (int dh = -g.r; dh <= g.r; ++dh)
      for (int dw = -g.s; dw <= g.s; ++dw) {
        const int jh = ih + dh, jw = iw + dw;
        if ((dh || dw) && jh >= 0 && jh < g.h && jw >= 0 && jw < g.w &&
            std::abs(x[at_in(g, n, jh, jw, ch)] - x[i]) <= 2 * h)
          return true;
      }
    return false;
  };
  const std::vector<std::size_t> idx = sample_indices(x.size(), 300, seed + 2);
  const GradCheckResult res = check_gradient(loss, x, analytic, idx, near_kink, grad_options());
  expect_grad_ok(tag, res);
  EXPECT_EQ(res.kinks, 0u);
  EXPECT_EQ(res.checked, idx.size());
}

INSTANTIATE_TEST_SUITE_P(Pool, PoolGradMax,
                         ::testing::Values(pool_geom(2, 7, 9, 3, 2, 2, 2, 2, 0, 0), pool_geom(1, 9, 7, 5, 3, 3, 2, 2, 1, 1),
                                           pool_geom(2, 7, 7, 2, 3, 3, 1, 1, 1, 1), pool_geom(1, 9, 11, 3, 2, 3, 1, 2, 0, 1),
                                           pool_geom(3, 7, 11, 1, 2, 3, 3, 2, 0, 1)),
                         [](const ::testing::TestParamInfo<PoolGeom>& i) { return pool_tag(i.param); });

// ================================================================================================
// Validation: both backends reject the same bad arguments, before touching memory.
// ================================================================================================

// b points at 256 valid floats. The valid base geometry: x [1, 5, 5, 2] (50 values) at b, y
// [1, 2, 2, 2] (8 values) at b + 64, index at b + 128; a backward reads b + 64 and writes b.
PoolGeom base_pool() { return pool_geom(1, 5, 5, 2, 2, 2, 2, 2, 0, 0); }
PoolGeom base_up() { return up_geom(1, 3, 3, 2, 6, 5); }

std::vector<BadCall> bad_calls() {
  std::vector<BadCall> calls;
  // Geometry edits that every windowed op must reject.
  const std::vector<std::pair<std::string, std::function<void(PoolGeom&)>>> geom_edits = {
      {"n = 0", [](PoolGeom& g) { g.n = 0; }},
      {"c = 0", [](PoolGeom& g) { g.c = 0; }},
      {"h = -1", [](PoolGeom& g) { g.h = -1; }},
      {"p does not match", [](PoolGeom& g) { g.p += 1; }},
      {"q does not match", [](PoolGeom& g) { g.q -= 1; }},
      {"window 0", [](PoolGeom& g) { g.r = 0; }},
      {"stride 0", [](PoolGeom& g) { g.stride_w = 0; }},
      {"padding > window/2", [](PoolGeom& g) { g.pad_h = 2, g.p = (g.h + 4 - g.r) / g.stride_h + 1; }},
      {"padding < 0", [](PoolGeom& g) { g.pad_w = -1, g.q = (g.w - 2 - g.s) / g.stride_w + 1; }},
      {"window larger than the padded input", [](PoolGeom& g) { g.r = 7, g.p = 1; }},
      {"n·h·w·c >= 2^31", [](PoolGeom& g) { g.n = 65536, g.h = 256, g.w = 256, g.c = 2, g.p = g.q = 128; }},
  };
  auto add = [&](std::string what, std::function<void(const OpTable&, const Context&, float*)> f) {
    calls.push_back({std::move(what), std::move(f)});
  };
  for (const auto& [what, edit] : geom_edits) {
    add("max_pool_forward " + what, [edit](const OpTable& t, const Context& c, float* b) {
      MaxPool a;
      a.g = base_pool();
      edit(a.g);
      a.x = b, a.y = b + 64, a.index = reinterpret_cast<std::int32_t*>(b + 128);
      t.max_pool_forward(c, a);
    });
    add("max_unpool " + what, [edit](const OpTable& t, const Context& c, float* b) {
      MaxUnpool a;
      a.g = base_pool();
      edit(a.g);
      a.x = b + 64, a.index = reinterpret_cast<const std::int32_t*>(b + 128), a.y = b;
      t.max_unpool(c, a);
    });
    add("max_unpool_backward " + what, [edit](const OpTable& t, const Context& c, float* b) {
      MaxUnpoolBackward a;
      a.g = base_pool();
      edit(a.g);
      a.dy = b, a.index = reinterpret_cast<const std::int32_t*>(b + 128), a.dx = b + 64;
      t.max_unpool_backward(c, a);
    });
    add("avg_pool_forward " + what, [edit](const OpTable& t, const Context& c, float* b) {
      AvgPool a;
      a.g = base_pool();
      edit(a.g);
      a.x = b, a.y = b + 64;
      t.avg_pool_forward(c, a);
    });
    add("avg_pool_backward " + what, [edit](const OpTable& t, const Context& c, float* b) {
      AvgPoolBackward a;
      a.g = base_pool();
      edit(a.g);
      a.dy = b + 64, a.dx = b;
      t.avg_pool_backward(c, a);
    });
  }
  add("max_pool_forward null x", [](const OpTable& t, const Context& c, float* b) {
    MaxPool a;
    a.g = base_pool(), a.y = b + 64, a.index = reinterpret_cast<std::int32_t*>(b + 128);
    t.max_pool_forward(c, a);
  });
  add("max_pool_forward null index", [](const OpTable& t, const Context& c, float* b) {
    MaxPool a;
    a.g = base_pool(), a.x = b, a.y = b + 64;
    t.max_pool_forward(c, a);
  });
  add("max_unpool null index", [](const OpTable& t, const Context& c, float* b) {
    MaxUnpool a;
    a.g = base_pool(), a.x = b + 64, a.y = b;
    t.max_unpool(c, a);
  });
  add("max_unpool null y", [](const OpTable& t, const Context& c, float* b) {
    MaxUnpool a;
    a.g = base_pool(), a.x = b + 64, a.index = reinterpret_cast<const std::int32_t*>(b + 128);
    t.max_unpool(c, a);
  });
  add("max_unpool_backward null dy", [](const OpTable& t, const Context& c, float* b) {
    MaxUnpoolBackward a;
    a.g = base_pool(), a.index = reinterpret_cast<const std::int32_t*>(b + 128), a.dx = b + 64;
    t.max_unpool_backward(c, a);
  });
  add("avg_pool_forward null y", [](const OpTable& t, const Context& c, float* b) {
    AvgPool a;
    a.g = base_pool(), a.x = b;
    t.avg_pool_forward(c, a);
  });
  add("avg_pool_backward null dx", [](const OpTable& t, const Context& c, float* b) {
    AvgPoolBackward a;
    a.g = base_pool(), a.dy = b + 64;
    t.avg_pool_backward(c, a);
  });
  const std::vector<std::pair<std::string, std::function<void(PoolGeom&)>>> up_edits = {
      {"p = 0", [](PoolGeom& g) { g.p = 0; }},
      {"q = -1", [](PoolGeom& g) { g.q = -1; }},
      {"w = 0", [](PoolGeom& g) { g.w = 0; }},
      {"n·p·q·c >= 2^31", [](PoolGeom& g) { g.n = 65536, g.p = 256, g.q = 256; }},
  };
  for (const auto& [what, edit] : up_edits) {
    add("upsample_forward " + what, [edit](const OpTable& t, const Context& c, float* b) {
      Upsample a;
      a.g = base_up();
      edit(a.g);
      a.x = b, a.y = b + 64;
      t.upsample_forward(c, a);
    });
    add("upsample_backward " + what, [edit](const OpTable& t, const Context& c, float* b) {
      UpsampleBackward a;
      a.g = base_up();
      edit(a.g);
      a.dy = b + 64, a.dx = b, a.kind = UpsampleKind::Bilinear;
      t.upsample_backward(c, a);
    });
  }
  add("upsample_forward unknown kind", [](const OpTable& t, const Context& c, float* b) {
    Upsample a;
    a.g = base_up(), a.x = b, a.y = b + 64, a.kind = static_cast<UpsampleKind>(7);
    t.upsample_forward(c, a);
  });
  add("upsample_backward unknown kind", [](const OpTable& t, const Context& c, float* b) {
    UpsampleBackward a;
    a.g = base_up(), a.dy = b + 64, a.dx = b, a.kind = static_cast<UpsampleKind>(-1);
    t.upsample_backward(c, a);
  });
  add("upsample_forward null x", [](const OpTable& t, const Context& c, float* b) {
    Upsample a;
    a.g = base_up(), a.y = b + 64;
    t.upsample_forward(c, a);
  });
  add("upsample_backward null dy", [](const OpTable& t, const Context& c, float* b) {
    UpsampleBackward a;
    a.g = base_up(), a.dx = b;
    t.upsample_backward(c, a);
  });
  return calls;
}

// The valid calls the bad ones were edited from must pass, or the rejections prove nothing. The
// index at b + 128 must be valid for the unpooling ops: the max pool writes it first.
void expect_accepts_base_calls(Device device) {
  Backend be(device);
  DeviceBuffer buf(be, 256);
  buf.fill(0.5f);
  float* b = buf.data();
  const auto run_all = [&] {
    const OpTable& t = be.ops();
    const Context& c = be.ctx();
    MaxPool mp;
    mp.g = base_pool(), mp.x = b, mp.y = b + 64, mp.index = reinterpret_cast<std::int32_t*>(b + 128);
    t.max_pool_forward(c, mp);
    MaxUnpool mu;
    mu.g = base_pool(), mu.x = b + 64, mu.index = mp.index, mu.y = b;
    t.max_unpool(c, mu);
    MaxUnpoolBackward mb;
    mb.g = base_pool(), mb.dy = b, mb.index = mp.index, mb.dx = b + 64;
    t.max_unpool_backward(c, mb);
    AvgPool ap;
    ap.g = base_pool(), ap.x = b, ap.y = b + 64;
    t.avg_pool_forward(c, ap);
    AvgPoolBackward ab;
    ab.g = base_pool(), ab.dy = b + 64, ab.dx = b;
    t.avg_pool_backward(c, ab);
    for (UpsampleKind k : {UpsampleKind::Nearest, UpsampleKind::Bilinear}) {
      Upsample u;
      u.g = base_up(), u.x = b, u.y = b + 64, u.kind = k;
      t.upsample_forward(c, u);
      UpsampleBackward ub;
      ub.g = base_up(), ub.dy = b + 64, ub.dx = b, ub.kind = k;
      t.upsample_backward(c, ub);
    }
    be.synchronize();
  };
  EXPECT_NO_THROW(run_all()) << device_name(device);
  EXPECT_TRUE(buf.guards_intact()) << device_name(device);
}

const std::vector<float> kValidationFill(256, 0.5f);

TEST(PoolValidation, CpuRejectsBadArguments) { expect_rejects_bad_calls(Device::CPU, bad_calls(), kValidationFill); }
TEST(PoolValidation, CpuAcceptsTheValidBase) { expect_accepts_base_calls(Device::CPU); }

TEST(PoolValidation, CudaRejectsBadArguments) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_rejects_bad_calls(Device::CUDA, bad_calls(), kValidationFill);
}
TEST(PoolValidation, CudaAcceptsTheValidBase) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_accepts_base_calls(Device::CUDA);
}

}  // namespace
