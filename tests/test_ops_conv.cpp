// The convolution op test: conv2d_forward/backward, deconv2d_forward/backward and conv_workspace
// (kernels/ops.hpp, ConvGeom and the Conv*/Deconv* structs), checked these ways:
//
//   ConvOps.CpuMatchesDirectReference   the CPU op against a direct double-precision evaluation of
//                                       the formula in ops.hpp (the 7 nested loops of a
//                                       cross-correlation; its transpose as a scatter; the filter
//                                       gradient as a sum over output pixels), over odd sizes,
//                                       strides 1/2/3, padding 0/1/2, dilation 1/2, square,
//                                       non-square and 1x1 filters, c = 1 and 3, k up to 20,
//                                       batch 1 to 8, every activation, with and without bias and
//                                       z, gradients written, accumulated and absent, output
//                                       padding 0..2 for the transposed convolution, and
//                                       geometries large enough to be cut into several workspace
//                                       chunks (a chunk border inside an image);
//   ConvOps.CudaMatchesCpu              the CUDA op against the CPU op on the same cases (skipped,
//                                       with the reason, without a GPU);
//   ConvGrad.*                          the CPU backward ops against central finite differences in
//                                       double of L = Σ r ⊙ act(op(x, w) + b), for dx, dw and db;
//   ConvCpu.*                           the result does not depend on the thread count; the
//                                       workspace stays bounded; a short workspace is an error;
//   ConvValidation.*                    both backends reject the same bad calls (wrong p/q, zero
//                                       extents, output padding out of range, missing workspace)
//                                       without touching memory, and accept the valid base.
//
// Outputs start poisoned with NaN and every buffer sits between guard zones (tests/common.hpp).
// The workspace is placed at the end of its buffer, so an op that uses more than it asked for
// writes into the guard.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "common.hpp"
#include "cuae/error.hpp"
#include "cuae/tensor.hpp"
#include "host/runtime/backend.hpp"
#include "kernels/ops.hpp"
#include "op_case.hpp"

namespace {

using namespace cuae;
using namespace cuae::kern;
using namespace cuae::test;

// ================================================================================================
// Tolerances: normalised errors ‖a−b‖ / max(‖b‖, ‖magnitude‖), the magnitude being the same sum
// over absolute values (|x|*|w| + |b|), the scale float rounding is proportional to. A wrong tap,
// a missing term or a wrong formula gives 1e-3..1.
// ================================================================================================

// CPU float op vs the double formula. Each output is a float sum of up to a few thousand terms
// (r·s·c for y and dx, n·p·q for dw), about 10x above the worst measured over all cases
// (in brackets; re-measure with --gtest_output=json, every error is a test property).
constexpr double kRefTol = 5e-7;  // [4.9e-8]
// CUDA vs CPU: fp32 (TF32 off) with a different summation order on each side.
constexpr double kCudaTol = 1e-5;
// Finite differences: kGradRelTol, kGradStep, kMaxKinkFraction (tests/op_case.hpp).

constexpr float kLeakySlope = 0.1f;  // not the 0.01 default, so an op that ignores slope fails
const Act kActs[] = {Act::Identity, Act::ReLU, Act::LeakyReLU, Act::Sigmoid, Act::Tanh, Act::GELU};


// ================================================================================================
// Geometry
// ================================================================================================

enum class Op { Conv, Deconv };
const char* op_tag(Op op) { return op == Op::Conv ? "conv" : "deconv"; }
// The op-table name of a case's op (every case name begins with it: tests/test_op_coverage.cpp).
std::string op_name(Op op, bool backward) {
  return std::string(op == Op::Conv ? "conv2d_" : "deconv2d_") + (backward ? "backward" : "forward");
}

int out_extent(int in, int f, int stride, int pad, int dil) { return (in + 2 * pad - dil * (f - 1) - 1) / stride + 1; }

// A convolution from its input extent.
ConvGeom conv_geom(int n, int h, int w, int c, int k, int r, int s, int sh, int sw, int ph, int pw, int dh, int dw) {
  ConvGeom g;
  g.n = n, g.h = h, g.w = w, g.c = c, g.k = k, g.r = r, g.s = s;
  g.stride_h = sh, g.stride_w = sw, g.pad_h = ph, g.pad_w = pw, g.dil_h = dh, g.dil_w = dw;
  g.p = out_extent(h, r, sh, ph, dh);
  g.q = out_extent(w, s, sw, pw, dw);
  return g;
}

// A transposed convolution from its input extent p×q (k channels) to c channels, with PyTorch's
// output padding: h = (p − 1)·stride − 2·pad + dil·(r − 1) + 1 + output_padding.
ConvGeom deconv_geom(int n, int p, int q, int k, int c, int r, int s, int sh, int sw, int ph, int pw, int dh, int dw,
                     int oph, int opw) {
  ConvGeom g;
  g.n = n, g.p = p, g.q = q, g.k = k, g.c = c, g.r = r, g.s = s;
  g.stride_h = sh, g.stride_w = sw, g.pad_h = ph, g.pad_w = pw, g.dil_h = dh, g.dil_w = dw;
  g.h = (p - 1) * sh - 2 * ph + dh * (r - 1) + 1 + oph;
  g.w = (q - 1) * sw - 2 * pw + dw * (s - 1) + 1 + opw;
  return g;
}

std::string geom_tag(const ConvGeom& g) {
  auto i = [](int v) { return std::to_string(v); };
  return "n" + i(g.n) + "_" + i(g.h) + "x" + i(g.w) + "x" + i(g.c) + "_k" + i(g.k) + "_f" + i(g.r) + "x" + i(g.s) +
         "_s" + i(g.stride_h) + "x" + i(g.stride_w) + "_p" + i(g.pad_h) + "x" + i(g.pad_w) + "_d" + i(g.dil_h) + "x" +
         i(g.dil_w) + "_o" + i(g.p) + "x" + i(g.q);
}

std::size_t x_size(const ConvGeom& g) { return static_cast<std::size_t>(g.n) * g.h * g.w * g.c; }  // [n,h,w,c]
std::size_t y_size(const ConvGeom& g) { return static_cast<std::size_t>(g.n) * g.p * g.q * g.k; }  // [n,p,q,k]
std::size_t w_size(const ConvGeom& g) { return static_cast<std::size_t>(g.k) * g.r * g.s * g.c; }  // [k,r,s,c]

// The op's input and output sizes and bias width: a convolution maps [n,h,w,c] to [n,p,q,k], a
// transposed one [n,p,q,k] to [n,h,w,c].
std::size_t in_size(Op op, const ConvGeom& g) { return op == Op::Conv ? x_size(g) : y_size(g); }
std::size_t out_size(Op op, const ConvGeom& g) { return op == Op::Conv ? y_size(g) : x_size(g); }
int out_channels(Op op, const ConvGeom& g) { return op == Op::Conv ? g.k : g.c; }

// ================================================================================================
// The direct reference in double, from the formula in kernels/ops.hpp:
//   y[n,p,q,k] = Σ_{r,s,c} x[n, p·sh − ph + r·dh, q·sw − pw + s·dw, c] · w[k,r,s,c]
// (taps in the zero padding contribute nothing).
// ================================================================================================

std::size_t at4(int a, int b, int c, int d, int B, int C, int D) {
  return ((static_cast<std::size_t>(a) * B + b) * C + c) * D + d;
}

// [n,h,w,c] (*) [k,r,s,c] -> [n,p,q,k]
std::vector<double> conv_d(const ConvGeom& g, std::span<const double> x, std::span<const double> w) {
  std::vector<double> y(y_size(g), 0.0);
  for (int n = 0; n < g.n; ++n)
    for (int p = 0; p < g.p; ++p)
      for (int q = 0; q < g.q; ++q)
        for (int k = 0; k < g.k; ++k) {
          double sum = 0.0;
          for (int r = 0; r < g.r; ++r) {
            const int ih = p * g.stride_h - g.pad_h + r * g.dil_h;
            if (ih < 0 || ih >= g.h) continue;
            for (int s = 0; s < g.s; ++s) {
              const int iw = q * g.stride_w - g.pad_w + s * g.dil_w;
              if (iw < 0 || iw >= g.w) continue;
              for (int c = 0; c < g.c; ++c) sum += x[at4(n, ih, iw, c, g.h, g.w, g.c)] * w[at4(k, r, s, c, g.r, g.s, g.c)];
            }
          }
          y[at4(n, p, q, k, g.p, g.q, g.k)] = sum;
        }
  return y;
}

// The transpose: every term x·w of the formula sends d[n,p,q,k]·w[k,r,s,c] back to the input
// pixel it read. [n,p,q,k] -> [n,h,w,c]
std::vector<double> conv_transpose_d(const ConvGeom& g, std::span<const double> d, std::span<const double> w) {
  std::vector<double> out(x_size(g), 0.0);
  for (int n = 0; n < g.n; ++n)
    for (int p = 0; p < g.p; ++p)
      for (int q = 0; q < g.q; ++q)
        for (int k = 0; k < g.k; ++k) {
          const double dv = d[at4(n, p, q, k, g.p, g.q, g.k)];
          for (int r = 0; r < g.r; ++r) {
            const int ih = p * g.stride_h - g.pad_h + r * g.dil_h;
            if (ih < 0 || ih >= g.h) continue;
            for (int s = 0; s < g.s; ++s) {
              const int iw = q * g.stride_w - g.pad_w + s * g.dil_w;
              if (iw < 0 || iw >= g.w) continue;
              for (int c = 0; c < g.c; ++c) out[at4(n, ih, iw, c, g.h, g.w, g.c)] += dv * w[at4(k, r, s, c, g.r, g.s, g.c)];
            }
          }
        }
  return out;
}

// ∂/∂w of Σ d ⊙ conv(x, w): dw[k,r,s,c] = Σ_{n,p,q} d[n,p,q,k] · x[n, ih, iw, c].
std::vector<double> filter_grad_d(const ConvGeom& g, std::span<const double> x, std::span<const double> d) {
  std::vector<double> dw(w_size(g), 0.0);
  for (int n = 0; n < g.n; ++n)
    for (int p = 0; p < g.p; ++p)
      for (int q = 0; q < g.q; ++q)
        for (int k = 0; k < g.k; ++k) {
          const double dv = d[at4(n, p, q, k, g.p, g.q, g.k)];
          for (int r = 0; r < g.r; ++r) {
            const int ih = p * g.stride_h - g.pad_h + r * g.dil_h;
            if (ih < 0 || ih >= g.h) continue;
            for (int s = 0; s < g.s; ++s) {
              const int iw = q * g.stride_w - g.pad_w + s * g.dil_w;
              if (iw < 0 || iw >= g.w) continue;
              for (int c = 0; c < g.c; ++c) dw[at4(k, r, s, c, g.r, g.s, g.c)] += dv * x[at4(n, ih, iw, c, g.h, g.w, g.c)];
            }
          }
        }
  return dw;
}

// The op's linear part: conv(x, w) or convᵀ(x, w).
std::vector<double> op_linear_d(Op op, const ConvGeom& g, std::span<const double> x, std::span<const double> w) {
  return op == Op::Conv ? conv_d(g, x, w) : conv_transpose_d(g, x, w);
}

// z = linear + b (b per output channel; empty: none).
std::vector<double> add_bias(std::vector<double> v, std::span<const double> b, int ch) {
  if (!b.empty())
    for (std::size_t e = 0; e < v.size(); ++e) v[e] += b[e % static_cast<std::size_t>(ch)];
  return v;
}

// Σ over rows of a [rows, ch] tensor.
std::vector<double> channel_sum(std::span<const double> d, int ch) {
  std::vector<double> s(static_cast<std::size_t>(ch), 0.0);
  for (std::size_t e = 0; e < d.size(); ++e) s[e % static_cast<std::size_t>(ch)] += d[e];
  return s;
}

// act'(z), from the stored output y (or z for GELU), as the backward contract states.
double act_deriv_d(Act a, double y, double z, double slope) {
  switch (a) {
    case Act::Identity: return 1.0;
    case Act::ReLU: return y > 0 ? 1.0 : 0.0;
    case Act::LeakyReLU: return y > 0 ? 1.0 : slope;
    case Act::Sigmoid: return y * (1.0 - y);
    case Act::Tanh: return 1.0 - y * y;
    case Act::GELU: {
      const double u = kSqrt2OverPi * (z + 0.044715 * z * z * z);
      const double sech2 = 1.0 / (std::cosh(u) * std::cosh(u));
      return 0.5 * (1.0 + std::tanh(u)) + 0.5 * z * sech2 * kSqrt2OverPi * (1.0 + 3 * 0.044715 * z * z);
    }
  }
  return NAN;
}

std::vector<double> abs_of(std::span<const float> v) { return abs_d(v); }

std::vector<float> to_float(std::span<const double> v) { return std::vector<float>(v.begin(), v.end()); }

// ================================================================================================
// Inputs: x ~ U(−1,1), w ~ U(−1,1)/√fan_in (z stays O(1), so sigmoid/tanh/GELU are exercised both
// in their curved part and towards saturation), b ~ U(−0.5, 0.5), dy ~ U(−1, 1).
// ================================================================================================

struct Inputs {
  std::vector<float> x, w, b;
};

Inputs make_inputs(Op op, const ConvGeom& g, std::uint32_t seed) {
  std::mt19937 gen(seed);
  Inputs in;
  in.x.resize(in_size(op, g));
  in.w.resize(w_size(g));
  in.b.resize(static_cast<std::size_t>(out_channels(op, g)));
  fill_uniform(in.x, gen);
  const int fan_in = op == Op::Conv ? g.r * g.s * g.c : g.r * g.s * g.k;
  const float ws = 1.5f / std::sqrt(static_cast<float>(fan_in));
  fill_uniform(in.w, gen, -ws, ws);
  fill_uniform(in.b, gen, -0.5f, 0.5f);
  return in;
}

// ================================================================================================
// The workspace
// ================================================================================================

ConvPass forward_pass(Op op) { return op == Op::Conv ? ConvPass::ConvForward : ConvPass::DeconvForward; }
ConvPass backward_pass(Op op) { return op == Op::Conv ? ConvPass::ConvBackward : ConvPass::DeconvBackward; }

std::size_t workspace_bytes(const OpTable& t, const Context& ctx, const ConvGeom& g, ConvPass pass) {
  std::size_t bytes = 0;
  ConvWorkspace q;
  q.g = g;
  q.pass = pass;
  q.bytes = &bytes;
  t.conv_workspace(ctx, q);
  return bytes;
}

std::size_t round_up(std::size_t v, std::size_t m) { return (v + m - 1) / m * m; }

// The CUDA backend's answer for a geometry, from one backend kept for the whole program (asking
// fixes the geometry's algorithms for every later backend, as the executor's plan-time query
// does). The contract caps it at kMaxConvWorkspaceBytes, the most conv.cu accepts an algorithm for.
std::size_t cuda_workspace_bytes(const ConvGeom& g, ConvPass pass) {
  static Backend* gpu = new Backend(Device::CUDA);  // never destroyed: it may outlive the runtime's teardown
  const std::size_t bytes = workspace_bytes(gpu->ops(), gpu->ctx(), g, pass);
  EXPECT_LE(bytes, kern::kMaxConvWorkspaceBytes) << geom_tag(g) << " pass " << static_cast<int>(pass);
  return bytes;
}

// The workspace slot: the larger of the CPU's and (where a GPU is present) the CUDA backend's
// need, whole 256-byte blocks. Its contents are not part of the contract.
Slot workspace_slot(const ConvGeom& g, ConvPass pass) {
  std::size_t bytes = round_up(workspace_bytes(cpu_ops(), Context{}, g, pass), 256);
  if (cuda_available()) bytes = std::max(bytes, round_up(cuda_workspace_bytes(g, pass), 256));
  Slot s = output_slot("ws", std::max<std::size_t>(bytes / sizeof(float), 64), 0.0);
  s.compare = false;
  return s;
}

// Where in the slot's buffer (of slot_floats) a workspace of `need` bytes goes: at its end, so
// that using more than asked for hits the guard zone. Null when nothing is needed.
struct Placed {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  bool ok = true;
};
Placed place_workspace(float* slot, std::size_t slot_floats, std::size_t need) {
  Placed pl;
  if (need == 0) return pl;
  const std::size_t span = round_up(need, 256);
  if (span > slot_floats * sizeof(float)) {
    pl.ok = false;
    return pl;
  }
  pl.ptr = slot + (slot_floats - span / sizeof(float));
  pl.bytes = need;
  return pl;
}

// ================================================================================================
// The case framework (tests/op_case.hpp)
// ================================================================================================

class ConvOps : public ::testing::TestWithParam<CasePtr> {};

TEST_P(ConvOps, CpuMatchesDirectReference) { expect_cpu_matches_reference(*GetParam(), InputCheck::Unchanged); }

TEST_P(ConvOps, CudaMatchesCpu) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_cuda_matches_cpu(*GetParam(), InputCheck::Unchanged);
}

// ---- forward -------------------------------------------------------------------------------

class ForwardCase : public OpCase {
 public:
  ForwardCase(Op op, ConvGeom g, Act act, bool bias, bool want_z, bool tf32 = false)
      : op_(op), g_(g), act_(act), bias_(bias), want_z_(want_z || act == Act::GELU), tf32_(tf32) {}

  std::string name() const override {
    return op_name(op_, false) + "_" + geom_tag(g_) + "_" + act_name(act_) + (bias_ ? "_bias" : "_nobias") +
           (want_z_ ? "_z" : "") + (tf32_ ? "_tf32" : "");
  }
  bool tf32() const override { return tf32_; }

  // On CUDA every variant (production choice, cuDNN, our direct kernels) must match the CPU.
  std::vector<int> variants() const override {
    std::vector<int> v;
    for (int i = 0; i < kern::kConvVariants; ++i) v.push_back(i);
    return v;
  }

  // Slots: 0 x, 1 w, 2 b, 3 y, 4 z, 5 ws.
  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    Inputs in = make_inputs(op_, g_, seed);
    const std::size_t n_out = out_size(op_, g_);
    return {input_slot("x", in.x),
            input_slot("w", in.w),
            bias_ ? input_slot("b", in.b) : null_slot("b"),
            output_slot("y", n_out, cuda_tol_),
            want_z_ ? output_slot("z", n_out, cuda_tol_) : null_slot("z"),
            workspace_slot(g_, forward_pass(op_))};
  }

  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    const std::size_t need = workspace_bytes(t, ctx, g_, forward_pass(op_));
    const std::size_t slot_floats = workspace_floats();
    const Placed ws = place_workspace(p[5], slot_floats, need);
    if (!ws.ok) {
      ADD_FAILURE() << name() << ": the backend asks for " << need << " bytes of workspace, more than the test's "
                    << slot_floats * sizeof(float) << " (the slot is sized by the same query)";
      return;
    }
    if (op_ == Op::Conv) {
      ConvForward a;
      a.g = g_;
      a.x = p[0], a.w = p[1], a.b = p[2], a.y = p[3], a.z = p[4];
      a.ws = ws.ptr, a.ws_bytes = ws.bytes;
      a.act = act_, a.slope = kLeakySlope;
      t.conv2d_forward(ctx, a);
    } else {
      DeconvForward a;
      a.g = g_;
      a.x = p[0], a.w = p[1], a.b = p[2], a.y = p[3], a.z = p[4];
      a.ws = ws.ptr, a.ws_bytes = ws.bytes;
      a.act = act_, a.slope = kLeakySlope;
      t.deconv2d_forward(ctx, a);
    }
  }

  // |x| (*) |w| + |b| for y and z: every activation here has |act'| <= 1.13, so it bounds y's
  // rounding as well as z's.
  std::vector<std::vector<double>> magnitudes(const std::vector<Slot>& slots) const override {
    std::vector<double> mag = add_bias(op_linear_d(op_, g_, abs_of(slots[0].host), abs_of(slots[1].host)),
                                       bias_ ? abs_of(slots[2].host) : std::vector<double>{}, out_channels(op_, g_));
    std::vector<std::vector<double>> mags(slots.size());
    mags[3] = mag;
    if (want_z_) mags[4] = mag;
    return mags;
  }

  void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const override {
    const std::vector<double> z = add_bias(op_linear_d(op_, g_, to_double(slots[0].host), to_double(slots[1].host)),
                                           bias_ ? to_double(slots[2].host) : std::vector<double>{},
                                           out_channels(op_, g_));
    std::vector<double> y(z.size());
    for (std::size_t e = 0; e < z.size(); ++e) y[e] = act_d(act_, z[e], kLeakySlope);
    const auto mags = magnitudes(slots);
    expect_close(name() + " y", after[3], y, kRefTol, mags[3]);
    if (want_z_) expect_close(name() + " z", after[4], z, kRefTol, mags[4]);
  }

 private:
  std::size_t workspace_floats() const { return workspace_slot(g_, forward_pass(op_)).host.size(); }

  Op op_;
  ConvGeom g_;
  Act act_;
  bool bias_, want_z_, tf32_;
  double cuda_tol_ = tf32_ ? kCudaTf32Tol : kCudaTol;
};

// ---- backward ------------------------------------------------------------------------------

// Which gradients a backward case asks for, and which it accumulates into.
struct Grads {
  bool dx, dw, db, acc_dx, acc_dw, acc_db;
  const char* tag;
};
const Grads kGrads[] = {
    {true, true, true, false, false, false, "all"},
    {true, true, true, true, true, true, "all_acc"},
    {false, true, true, false, true, false, "nodx_accdw"},
    {true, false, false, true, false, false, "nodw_nodb_accdx"},
    {false, false, true, false, false, true, "db_only_acc"},  // no dx, dw: no workspace either
};

class BackwardCase : public OpCase {
 public:
  BackwardCase(Op op, ConvGeom g, Act act, Grads v, bool tf32 = false)
      : op_(op), g_(g), act_(act), v_(v), tf32_(tf32) {}

  std::string name() const override {
    return op_name(op_, true) + "_" + geom_tag(g_) + "_" + act_name(act_) + "_" + v_.tag + (tf32_ ? "_tf32" : "");
  }
  bool tf32() const override { return tf32_; }

  // Slots: 0 dy, 1 y, 2 z, 3 x, 4 w, 5 dz, 6 dx, 7 dw, 8 db, 9 ws. y and z come from the double
  // forward (with a bias) rounded to float, consistent as in training; y is passed only where the
  // derivative needs it and z only for GELU (the minimal contract).
  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    Inputs in = make_inputs(op_, g_, seed);
    const int ch = out_channels(op_, g_);
    const std::vector<double> z = add_bias(op_linear_d(op_, g_, to_double(in.x), to_double(in.w)), to_double(in.b), ch);
    std::vector<float> zf = to_float(z), yf(z.size());
    for (std::size_t e = 0; e < z.size(); ++e) yf[e] = static_cast<float>(act_d(act_, zf[e], kLeakySlope));
    const std::size_t n_out = out_size(op_, g_);
    const bool needs_y = act_ != Act::Identity && act_ != Act::GELU;
    std::vector<Slot> s;
    s.push_back(input_slot("dy", uniform(n_out, seed + 1)));
    s.push_back(needs_y ? input_slot("y", yf) : null_slot("y"));
    s.push_back(act_ == Act::GELU ? input_slot("z", zf) : null_slot("z"));
    s.push_back(input_slot("x", in.x));
    s.push_back(input_slot("w", in.w));
    Slot dz = output_slot("dz", n_out, 0.0);
    dz.compare = false;  // a workspace: its contents after the op are not part of the contract
    s.push_back(dz);
    // Accumulating destinations start from random values (not NaN), as a value used twice would.
    auto grad = [&](const char* nm, bool present, bool acc, std::size_t n, std::uint32_t sd) {
      if (!present) return null_slot(nm);
      const double tol = tf32_ ? kCudaTf32Tol : kCudaTol;
      return acc ? inout_slot(nm, uniform(n, sd), tol) : output_slot(nm, n, tol);
    };
    s.push_back(grad("dx", v_.dx, v_.acc_dx, in_size(op_, g_), seed + 2));
    s.push_back(grad("dw", v_.dw, v_.acc_dw, w_size(g_), seed + 3));
    s.push_back(grad("db", v_.db, v_.acc_db, static_cast<std::size_t>(ch), seed + 4));
    s.push_back(workspace_slot(g_, backward_pass(op_)));
    return s;
  }

  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    const std::size_t need = workspace_bytes(t, ctx, g_, backward_pass(op_));
    const std::size_t slot_floats = workspace_slot(g_, backward_pass(op_)).host.size();
    const Placed ws = place_workspace(p[9], slot_floats, need);
    if (!ws.ok) {
      ADD_FAILURE() << name() << ": the backend asks for " << need << " bytes of workspace, more than the test's "
                    << slot_floats * sizeof(float) << " (the slot is sized by the same query)";
      return;
    }
    auto fill = [&](auto& a) {
      a.g = g_;
      a.dy = p[0], a.y = p[1], a.z = p[2], a.x = p[3], a.w = p[4];
      a.dz = p[5], a.dx = p[6], a.dw = p[7], a.db = p[8];
      a.ws = ws.ptr, a.ws_bytes = ws.bytes;
      a.acc_dx = v_.acc_dx, a.acc_dw = v_.acc_dw, a.acc_db = v_.acc_db;
      a.act = act_, a.slope = kLeakySlope;
    };
    if (op_ == Op::Conv) {
      ConvBackward a;
      fill(a);
      t.conv2d_backward(ctx, a);
    } else {
      DeconvBackward a;
      fill(a);
      t.deconv2d_backward(ctx, a);
    }
  }

  // dz in double from the same stored y / z the op reads.
  std::vector<double> dz_d(const std::vector<Slot>& slots) const {
    std::vector<double> dz(slots[0].host.size());
    for (std::size_t e = 0; e < dz.size(); ++e) {
      const double y = slots[1].present ? slots[1].host[e] : 0.0;
      const double z = slots[2].present ? slots[2].host[e] : 0.0;
      dz[e] = slots[0].host[e] * act_deriv_d(act_, y, z, kLeakySlope);
    }
    return dz;
  }

  // The gradients from dz: conv: dx = convᵀ(dz), dw = Σ dz·x, db = Σ dz; deconv: dx = conv(dz),
  // dw = Σ x·dz (x as the output-side tensor), db = Σ dz.
  void grads_d(std::span<const double> dz, std::span<const double> x, std::span<const double> w,
               std::vector<double>& dx, std::vector<double>& dw, std::vector<double>& db) const {
    if (op_ == Op::Conv) {
      dx = conv_transpose_d(g_, dz, w);
      dw = filter_grad_d(g_, x, dz);
    } else {
      dx = conv_d(g_, dz, w);
      dw = filter_grad_d(g_, dz, x);
    }
    db = channel_sum(dz, out_channels(op_, g_));
  }

  std::vector<std::vector<double>> magnitudes(const std::vector<Slot>& slots) const override {
    std::vector<std::vector<double>> mags(slots.size());
    grads_d(abs_d(dz_d(slots)), abs_of(slots[3].host), abs_of(slots[4].host), mags[6], mags[7], mags[8]);
    return mags;
  }

  void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const override {
    std::vector<double> dx, dw, db;
    grads_d(dz_d(slots), to_double(slots[3].host), to_double(slots[4].host), dx, dw, db);
    const auto mags = magnitudes(slots);
    // An accumulating destination adds its initial contents (to the value and to its magnitude).
    auto check = [&](std::size_t slot, std::vector<double> want) {
      std::vector<double> mag = mags[slot];
      if (slots[slot].role == Role::InOut) {
        want = plus(std::move(want), to_double(slots[slot].host));
        mag = plus(std::move(mag), abs_d(slots[slot].host));
      }
      expect_close(name() + " " + slots[slot].name, after[slot], want, kRefTol, mag);
    };
    if (v_.dx) check(6, dx);
    if (v_.dw) check(7, dw);
    if (v_.db) check(8, db);
  }

 private:
  Op op_;
  ConvGeom g_;
  Act act_;
  Grads v_;
  bool tf32_;
};

// ---- the cases -----------------------------------------------------------------------------

std::vector<ConvGeom> conv_geometries() {
  return {
      //        n   h   w   c   k  r  s  sh sw ph pw dh dw
      conv_geom(3, 7, 5, 3, 5, 1, 1, 1, 1, 0, 0, 1, 1),     // 1x1, stride 1, no padding: no im2col
      conv_geom(2, 9, 7, 4, 3, 1, 1, 2, 2, 0, 0, 1, 1),     // 1x1 stride 2
      conv_geom(1, 6, 5, 3, 4, 1, 1, 1, 1, 1, 1, 1, 1),     // 1x1 pad 1: a border of bias-only outputs
      conv_geom(3, 9, 11, 3, 8, 3, 3, 1, 1, 1, 1, 1, 1),    // 3x3 "same", c = 3
      conv_geom(2, 13, 9, 5, 7, 3, 3, 2, 2, 1, 1, 1, 1),    // stride 2 pad 1, odd input
      conv_geom(1, 11, 10, 1, 16, 5, 5, 1, 1, 2, 2, 1, 1),  // 5x5 pad 2, c = 1
      conv_geom(3, 14, 13, 2, 6, 3, 3, 3, 3, 0, 0, 1, 1),   // stride 3
      conv_geom(2, 12, 11, 3, 4, 3, 3, 1, 1, 2, 2, 2, 2),   // dilation 2
      conv_geom(2, 9, 6, 6, 5, 3, 1, 2, 1, 1, 0, 1, 1),     // 3x1
      conv_geom(3, 5, 12, 4, 3, 1, 5, 1, 2, 0, 2, 1, 2),    // 1x5, stride (1,2), dilation (1,2)
      conv_geom(2, 10, 9, 3, 5, 4, 4, 2, 2, 1, 1, 1, 1),    // even filter
      conv_geom(1, 16, 15, 3, 20, 7, 7, 2, 2, 3, 3, 1, 1),  // a first layer: 7x7 stride 2, k = 20
      conv_geom(3, 2, 3, 4, 3, 3, 3, 1, 1, 1, 1, 1, 1),     // filter larger than the input
      conv_geom(2, 5, 5, 3, 7, 5, 5, 1, 1, 0, 0, 1, 1),     // a 1x1 output
      conv_geom(2, 6, 7, 17, 20, 3, 3, 1, 1, 1, 1, 1, 1),   // c = 17, k = 20
      conv_geom(1, 11, 9, 2, 3, 2, 2, 3, 3, 0, 0, 1, 1),    // stride > filter: unread inputs (dx = 0)
      conv_geom(3, 13, 12, 3, 4, 3, 3, 2, 2, 2, 2, 2, 2),   // stride 2, pad 2, dilation 2
      conv_geom(1, 8, 8, 3, 16, 3, 3, 2, 2, 1, 1, 1, 1),    // c = 3 -> k = 16, stride 2
      conv_geom(2, 7, 9, 2, 3, 3, 2, 2, 3, 1, 0, 1, 1),     // different strides per axis
      // Larger than one 8 MiB im2col chunk: the CPU cuts the 256 output rows into chunks whose
      // border falls inside an image (and overlapping 5x5 taps straddle it).
      conv_geom(8, 34, 34, 12, 5, 5, 5, 1, 1, 1, 1, 1, 1),
  };
}

std::vector<ConvGeom> deconv_geometries() {
  return {
      //          n  p  q   k  c  r  s  sh sw ph pw dh dw oph opw
      deconv_geom(2, 7, 7, 8, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1),   // 3x3 stride 2 doubles 7 -> 14
      deconv_geom(3, 5, 5, 6, 3, 4, 4, 2, 2, 1, 1, 1, 1, 0, 0),   // 4x4 stride 2: 5 -> 10
      deconv_geom(1, 6, 5, 4, 5, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0),   // stride 1, same size
      deconv_geom(2, 4, 3, 5, 2, 5, 5, 2, 2, 2, 2, 1, 1, 1, 1),   // 5x5 pad 2, output padding 1
      deconv_geom(3, 3, 4, 3, 2, 3, 3, 3, 3, 0, 0, 1, 1, 2, 2),   // stride 3, output padding 2
      deconv_geom(2, 5, 4, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 1, 1),   // dilation 2, output padding 1
      deconv_geom(2, 4, 4, 3, 2, 3, 3, 1, 1, 0, 0, 2, 2, 0, 0),   // dilation 2 > stride 1
      deconv_geom(3, 6, 5, 4, 3, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0),   // 1x1 stride 1: no col2im
      deconv_geom(2, 4, 5, 3, 2, 1, 1, 2, 2, 0, 0, 1, 1, 1, 1),   // 1x1 stride 2: bias-only gaps
      deconv_geom(2, 4, 4, 5, 3, 2, 2, 2, 2, 0, 0, 1, 1, 0, 0),   // 2x2 stride 2, no overlap
      deconv_geom(2, 5, 6, 4, 3, 3, 1, 2, 1, 1, 0, 1, 1, 1, 0),   // 3x1, stride (2,1)
      deconv_geom(1, 4, 6, 3, 2, 1, 5, 1, 2, 0, 2, 1, 1, 0, 1),   // 1x5, stride (1,2)
      deconv_geom(3, 4, 4, 16, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1),  // to one channel (a last layer)
      deconv_geom(1, 5, 5, 12, 3, 5, 5, 2, 2, 2, 2, 1, 1, 1, 1),  // to three channels
      deconv_geom(2, 1, 1, 4, 3, 3, 3, 1, 1, 0, 0, 1, 1, 0, 0),   // from a single pixel
      // More than one 8 MiB chunk (see the convolution's last geometry).
      deconv_geom(8, 32, 32, 5, 12, 5, 5, 1, 1, 1, 1, 1, 1, 0, 0),
  };
}

bool is_big(const ConvGeom& g) { return x_size(g) > 50000; }

std::vector<CasePtr> op_cases() {
  std::vector<CasePtr> cases;
  auto add_geom = [&](Op op, const ConvGeom& g, int gi) {
    // Every activation over the geometries (the index rotates them); with and without bias and z.
    const Act a0 = kActs[gi % 6], a1 = kActs[(gi + 3) % 6];
    cases.push_back(std::make_shared<ForwardCase>(op, g, a0, true, true));
    cases.push_back(std::make_shared<ForwardCase>(op, g, a1, false, false));
    if (!is_big(g)) cases.push_back(std::make_shared<ForwardCase>(op, g, Act::Identity, true, false));
    int vi = 0;
    for (const Grads& v : kGrads) {
      if (is_big(g) && vi > 1) break;  // the chunked geometries: written and accumulated
      cases.push_back(std::make_shared<BackwardCase>(op, g, kActs[(gi + vi) % 6], v));
      ++vi;
    }
  };
  int gi = 0;
  for (const ConvGeom& g : conv_geometries()) add_geom(Op::Conv, g, gi++);
  gi = 0;
  for (const ConvGeom& g : deconv_geometries()) add_geom(Op::Deconv, g, gi++);
  // The direct kernels at their shared-memory limit: filter slices of exactly 48 KiB
  // (conv: (r·s·c·KT + KT)·4 bytes with KT = 32; deconv: r·s·4·round4(k)·4 bytes), legal only
  // because each kernel opts in to that much dynamic shared memory (variant 2 runs them).
  cases.push_back(std::make_shared<ForwardCase>(Op::Conv, conv_geom(2, 5, 4, 383, 32, 1, 1, 1, 1, 0, 0, 1, 1),
                                                Act::ReLU, true, true));
  cases.push_back(std::make_shared<ForwardCase>(Op::Deconv, deconv_geom(1, 3, 2, 768, 4, 2, 2, 2, 2, 0, 0, 1, 1, 0, 0),
                                                Act::Sigmoid, true, false));
  // TF32 allowed (cuDNN's tensor-op math where it ranks first), held to kCudaTf32Tol: a first
  // layer, a wide 3x3 and the chunked geometries of each op, forward and written backward.
  for (const ConvGeom& g : {conv_geometries()[11], conv_geometries()[14], conv_geometries().back()}) {
    cases.push_back(std::make_shared<ForwardCase>(Op::Conv, g, Act::ReLU, true, true, true));
    cases.push_back(std::make_shared<BackwardCase>(Op::Conv, g, Act::ReLU, kGrads[0], true));
  }
  for (const ConvGeom& g : {deconv_geometries()[0], deconv_geometries()[13], deconv_geometries().back()}) {
    cases.push_back(std::make_shared<ForwardCase>(Op::Deconv, g, Act::Sigmoid, true, false, true));
    cases.push_back(std::make_shared<BackwardCase>(Op::Deconv, g, Act::Sigmoid, kGrads[1], true));
  }
  // Every activation on one strided geometry of each op, forward and backward.
  const ConvGeom gc = conv_geom(2, 9, 8, 3, 6, 3, 3, 2, 2, 1, 1, 1, 1);
  const ConvGeom gd = deconv_geom(2, 4, 5, 6, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1);
  for (Act act : kActs) {
    for (Op op : {Op::Conv, Op::Deconv}) {
      const ConvGeom& g = op == Op::Conv ? gc : gd;
      cases.push_back(std::make_shared<ForwardCase>(op, g, act, true, act == Act::GELU));
      cases.push_back(std::make_shared<BackwardCase>(op, g, act, kGrads[0]));
      cases.push_back(std::make_shared<BackwardCase>(op, g, act, kGrads[1]));
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Conv, ConvOps, ::testing::ValuesIn(op_cases()), case_name);

// ================================================================================================
// Finite differences. L(x, w, b) = Σ r ⊙ act(op(x, w) + b) in double; the analytic gradients are
// the CPU ops' (forward for y and z, then backward with dy = r).
// ================================================================================================

struct GradGeom {
  Op op;
  ConvGeom g;
  Act act;
};

std::string grad_tag(const GradGeom& gg) {
  return std::string(op_tag(gg.op)) + "_" + geom_tag(gg.g) + "_" + act_name(gg.act);
}

const GradGeom kGradGeoms[] = {
    {Op::Conv, conv_geom(2, 7, 6, 3, 4, 3, 3, 2, 2, 1, 1, 1, 1), Act::Tanh},
    {Op::Conv, conv_geom(1, 6, 5, 2, 3, 3, 1, 1, 1, 1, 0, 1, 1), Act::GELU},
    {Op::Conv, conv_geom(2, 9, 8, 2, 3, 3, 3, 1, 1, 2, 2, 2, 2), Act::Sigmoid},
    {Op::Conv, conv_geom(3, 5, 4, 3, 2, 1, 1, 1, 1, 0, 0, 1, 1), Act::LeakyReLU},
    {Op::Conv, conv_geom(1, 8, 7, 2, 2, 2, 2, 3, 3, 0, 0, 1, 1), Act::Identity},
    {Op::Conv, conv_geom(2, 6, 9, 1, 3, 1, 5, 1, 2, 0, 2, 1, 1), Act::ReLU},
    {Op::Deconv, deconv_geom(2, 4, 3, 3, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1), Act::Tanh},
    {Op::Deconv, deconv_geom(1, 3, 4, 2, 3, 3, 3, 2, 2, 2, 2, 2, 2, 1, 0), Act::GELU},
    {Op::Deconv, deconv_geom(2, 3, 3, 3, 2, 4, 4, 2, 2, 1, 1, 1, 1, 0, 0), Act::Sigmoid},
    {Op::Deconv, deconv_geom(2, 3, 4, 2, 2, 1, 1, 2, 2, 0, 0, 1, 1, 1, 1), Act::LeakyReLU},
    {Op::Deconv, deconv_geom(1, 4, 3, 3, 2, 3, 1, 2, 1, 1, 0, 1, 1, 1, 0), Act::Identity},
    {Op::Deconv, deconv_geom(2, 3, 3, 4, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0), Act::ReLU},
};

class ConvGrad : public ::testing::TestWithParam<GradGeom> {};

TEST_P(ConvGrad, BackwardMatchesFiniteDifferences) {
  const GradGeom gg = GetParam();
  const Op op = gg.op;
  const ConvGeom& g = gg.g;
  const std::uint32_t seed = seed_from("conv_grad_" + grad_tag(gg));
  const Inputs in = make_inputs(op, g, seed);
  const std::size_t n_out = out_size(op, g);
  const int ch = out_channels(op, g);
  const std::vector<float> rw = uniform(n_out, seed + 7);

  // Analytic: the CPU forward, then the backward with dy = r.
  Backend cpu(Device::CPU);
  const std::size_t ws_floats =
      std::max(workspace_bytes(cpu.ops(), cpu.ctx(), g, forward_pass(op)),
               workspace_bytes(cpu.ops(), cpu.ctx(), g, backward_pass(op))) / sizeof(float) + 1;
  DeviceBuffer bx(cpu, in.x.size()), bw(cpu, in.w.size()), bb(cpu, in.b.size()), by(cpu, n_out), bz(cpu, n_out),
      br(cpu, n_out), bdz(cpu, n_out), bdx(cpu, in.x.size()), bdw(cpu, in.w.size()), bdb(cpu, in.b.size()),
      bws(cpu, ws_floats);
  bx.upload(in.x);
  bw.upload(in.w);
  bb.upload(in.b);
  br.upload(rw);
  for (DeviceBuffer* b : {&by, &bz, &bdz, &bdx, &bdw, &bdb, &bws}) b->poison();
  if (op == Op::Conv) {
    ConvForward f;
    f.g = g, f.x = bx.data(), f.w = bw.data(), f.b = bb.data(), f.y = by.data(), f.z = bz.data();
    f.ws = bws.data(), f.ws_bytes = ws_floats * sizeof(float), f.act = gg.act, f.slope = kLeakySlope;
    cpu.ops().conv2d_forward(cpu.ctx(), f);
    ConvBackward b;
    b.g = g, b.dy = br.data(), b.y = by.data(), b.z = bz.data(), b.x = bx.data(), b.w = bw.data();
    b.dz = bdz.data(), b.dx = bdx.data(), b.dw = bdw.data(), b.db = bdb.data();
    b.ws = bws.data(), b.ws_bytes = ws_floats * sizeof(float), b.act = gg.act, b.slope = kLeakySlope;
    cpu.ops().conv2d_backward(cpu.ctx(), b);
  } else {
    DeconvForward f;
    f.g = g, f.x = bx.data(), f.w = bw.data(), f.b = bb.data(), f.y = by.data(), f.z = bz.data();
    f.ws = bws.data(), f.ws_bytes = ws_floats * sizeof(float), f.act = gg.act, f.slope = kLeakySlope;
    cpu.ops().deconv2d_forward(cpu.ctx(), f);
    DeconvBackward b;
    b.g = g, b.dy = br.data(), b.y = by.data(), b.z = bz.data(), b.x = bx.data(), b.w = bw.data();
    b.dz = bdz.data(), b.dx = bdx.data(), b.dw = bdw.data(), b.db = bdb.data();
    b.ws = bws.data(), b.ws_bytes = ws_floats * sizeof(float), b.act = gg.act, b.slope = kLeakySlope;
    cpu.ops().deconv2d_backward(cpu.ctx(), b);
  }
  const std::vector<float> dx = bdx.download(), dw = bdw.download(), db = bdb.download();

  std::vector<double> xd = to_double(in.x), wd = to_double(in.w), bd = to_double(in.b);
  const auto zs = [&] { return add_bias(op_linear_d(op, g, xd, wd), bd, ch); };
  const auto loss = [&] {
    const std::vector<double> z = zs();
    double l = 0.0;
    for (std::size_t e = 0; e < z.size(); ++e) l += rw[e] * act_d(gg.act, z[e], kLeakySlope);
    return l;
  };
  // ReLU and leaky ReLU: a point is skipped when moving it by ±h flips the sign of any
  // pre-activation (the loss has a kink there).
  const bool kinked = gg.act == Act::ReLU || gg.act == Act::LeakyReLU;
  const std::vector<double> z0 = zs();
  const auto kink_in = [&](std::vector<double>& t) {
    return [&t, &zs, &z0, kinked](std::size_t i, double h) {
      if (!kinked) return false;
      const double t0 = t[i];
      bool flip = false;
      for (double d : {h, -h}) {
        t[i] = t0 + d;
        const std::vector<double> z = zs();
        for (std::size_t e = 0; e < z.size() && !flip; ++e) flip = (z[e] > 0) != (z0[e] > 0);
      }
      t[i] = t0;
      return flip;
    };
  };
  const GradCheckOptions opt = grad_options();
  {
    SCOPED_TRACE("dx");
    const auto idx = sample_indices(xd.size(), 150, seed + 1);
    expect_grad_ok(grad_tag(gg) + " dx", check_gradient(loss, xd, dx, idx, kink_in(xd), opt));
  }
  {
    SCOPED_TRACE("dw");
    const auto idx = sample_indices(wd.size(), 150, seed + 2);
    expect_grad_ok(grad_tag(gg) + " dw", check_gradient(loss, wd, dw, idx, kink_in(wd), opt));
  }
  {
    SCOPED_TRACE("db");
    const auto idx = sample_indices(bd.size(), 150, seed + 3);
    expect_grad_ok(grad_tag(gg) + " db", check_gradient(loss, bd, db, idx, kink_in(bd), opt));
  }
}

INSTANTIATE_TEST_SUITE_P(Conv, ConvGrad, ::testing::ValuesIn(kGradGeoms),
                         [](const ::testing::TestParamInfo<GradGeom>& info) { return grad_tag(info.param); });

// ================================================================================================
// CPU properties: thread-count independence, a bounded workspace, a short workspace rejected.
// ================================================================================================

// Runs the four ops on one geometry with the given OpenMP thread count; returns every output.
std::vector<std::vector<float>> run_all_ops(const ConvGeom& g, int threads) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  std::vector<std::vector<float>> out;
  for (Op op : {Op::Conv, Op::Deconv}) {
    const Inputs in = make_inputs(op, g, 99);
    const std::size_t n_out = out_size(op, g);
    std::vector<float> y(n_out), z(n_out), dz(n_out), dx(in.x.size()), dw(in.w.size()), db(in.b.size());
    const std::vector<float> dy = uniform(n_out, 98);
    const std::size_t bytes = std::max(workspace_bytes(cpu_ops(), Context{}, g, forward_pass(op)),
                                       workspace_bytes(cpu_ops(), Context{}, g, backward_pass(op)));
    std::vector<float> ws(bytes / sizeof(float) + 1);
    if (op == Op::Conv) {
      ConvForward f;
      f.g = g, f.x = in.x.data(), f.w = in.w.data(), f.b = in.b.data(), f.y = y.data(), f.z = z.data();
      f.ws = ws.data(), f.ws_bytes = bytes, f.act = Act::GELU;
      cpu::conv2d_forward(Context{}, f);
      ConvBackward b;
      b.g = g, b.dy = dy.data(), b.z = z.data(), b.x = in.x.data(), b.w = in.w.data(), b.dz = dz.data();
      b.dx = dx.data(), b.dw = dw.data(), b.db = db.data(), b.ws = ws.data(), b.ws_bytes = bytes, b.act = Act::GELU;
      cpu::conv2d_backward(Context{}, b);
    } else {
      DeconvForward f;
      f.g = g, f.x = in.x.data(), f.w = in.w.data(), f.b = in.b.data(), f.y = y.data(), f.z = z.data();
      f.ws = ws.data(), f.ws_bytes = bytes, f.act = Act::GELU;
      cpu::deconv2d_forward(Context{}, f);
      DeconvBackward b;
      b.g = g, b.dy = dy.data(), b.z = z.data(), b.x = in.x.data(), b.w = in.w.data(), b.dz = dz.data();
      b.dx = dx.data(), b.dw = dw.data(), b.db = db.data(), b.ws = ws.data(), b.ws_bytes = bytes, b.act = Act::GELU;
      cpu::deconv2d_backward(Context{}, b);
    }
    for (auto* v : {&y, &z, &dx, &dw, &db}) out.push_back(std::move(*v));
  }
  omp_set_num_threads(saved);
  return out;
}

TEST(ConvCpu, ResultsDoNotDependOnThreadCount) {
  // Big enough for every OpenMP branch and for two workspace chunks.
  const ConvGeom g = conv_geom(9, 35, 33, 12, 6, 5, 5, 1, 1, 2, 2, 1, 1);
  const auto one = run_all_ops(g, 1);
  const auto two = run_all_ops(g, 2);
  const auto three = run_all_ops(g, 3);
  ASSERT_EQ(one.size(), two.size());
  for (std::size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(count_nonfinite(one[i]), 0u) << "output " << i;
    EXPECT_TRUE(one[i] == two[i]) << "output " << i << " differs between 1 and 2 threads";
    EXPECT_TRUE(one[i] == three[i]) << "output " << i << " differs between 1 and 3 threads";
  }
}

TEST(ConvCpu, WorkspaceIsBoundedAndZeroForPointwise) {
  // 256 images of 64x64x64 with a 3x3 filter: a full im2col would be 2.4 GB.
  const ConvGeom big = conv_geom(256, 64, 64, 64, 64, 3, 3, 1, 1, 1, 1, 1, 1);
  for (ConvPass pass : {ConvPass::ConvForward, ConvPass::ConvBackward, ConvPass::DeconvForward, ConvPass::DeconvBackward}) {
    const std::size_t b = workspace_bytes(cpu_ops(), Context{}, big, pass);
    EXPECT_GT(b, 0u);
    EXPECT_LE(b, std::size_t{64} << 20) << "pass " << static_cast<int>(pass);
  }
  const ConvGeom pw = conv_geom(4, 9, 7, 5, 6, 1, 1, 1, 1, 0, 0, 1, 1);
  for (ConvPass pass : {ConvPass::ConvForward, ConvPass::ConvBackward, ConvPass::DeconvForward, ConvPass::DeconvBackward})
    EXPECT_EQ(workspace_bytes(cpu_ops(), Context{}, pw, pass), 0u) << "pass " << static_cast<int>(pass);
}

// ---- conv_workspace: every answer within the contract's kMaxConvWorkspaceBytes -----------------

struct WsQuery {
  ConvGeom g;
  ConvPass pass;
};

const char* pass_tag(ConvPass p) {
  switch (p) {
    case ConvPass::ConvForward: return "conv_fwd";
    case ConvPass::ConvBackward: return "conv_bwd";
    case ConvPass::DeconvForward: return "deconv_fwd";
    case ConvPass::DeconvBackward: return "deconv_bwd";
  }
  return "?";
}

std::vector<WsQuery> ws_queries() {
  const ConvGeom geoms[] = {
      conv_geom(2, 5, 5, 3, 4, 3, 3, 1, 1, 0, 0, 1, 1),        // tiny, valid padding
      conv_geom(256, 28, 28, 1, 32, 3, 3, 2, 2, 1, 1, 1, 1),   // conv.toml's first layer
      conv_geom(64, 32, 32, 64, 128, 3, 3, 2, 2, 1, 1, 1, 1),  // a wide middle layer
      conv_geom(4, 9, 7, 5, 6, 1, 1, 1, 1, 0, 0, 1, 1),        // pointwise
      conv_geom(3, 17, 13, 8, 16, 5, 3, 1, 2, 2, 1, 2, 1),     // odd sizes, dilation
  };
  std::vector<WsQuery> q;
  for (const ConvGeom& g : geoms)
    for (ConvPass p : {ConvPass::ConvForward, ConvPass::ConvBackward, ConvPass::DeconvForward, ConvPass::DeconvBackward})
      q.push_back({g, p});
  return q;
}

class ConvWorkspaceCases : public ::testing::TestWithParam<WsQuery> {};

TEST_P(ConvWorkspaceCases, CpuAnswerIsWithinTheContract) {
  const WsQuery& q = GetParam();
  EXPECT_LE(workspace_bytes(cpu_ops(), Context{}, q.g, q.pass), kMaxConvWorkspaceBytes);
}

// The answer fixes the algorithm: it must be within the contract, stable, and the same for a
// second backend on the device (the plan is the device's, not the backend's).
TEST_P(ConvWorkspaceCases, CudaAnswerIsWithinTheContractAndStable) {
  CUAE_SKIP_WITHOUT_GPU();
  const WsQuery& q = GetParam();
  Backend a(Device::CUDA), b(Device::CUDA);
  const std::size_t first = workspace_bytes(a.ops(), a.ctx(), q.g, q.pass);
  EXPECT_LE(first, kMaxConvWorkspaceBytes);
  EXPECT_EQ(workspace_bytes(a.ops(), a.ctx(), q.g, q.pass), first);
  EXPECT_EQ(workspace_bytes(b.ops(), b.ctx(), q.g, q.pass), first);
}

INSTANTIATE_TEST_SUITE_P(Conv, ConvWorkspaceCases, ::testing::ValuesIn(ws_queries()),
                         [](const ::testing::TestParamInfo<WsQuery>& i) {
                           return "conv_workspace_" + geom_tag(i.param.g) + "_" + pass_tag(i.param.pass);
                         });

// ================================================================================================
// Validation: both backends reject the same bad calls, before touching memory.
// ================================================================================================

// The base geometry: x [1,4,4,2], filter [2,3,3,2], y [1,2,2,2]; as a transposed convolution it maps
// [1,2,2,2] back to [1,4,4,2] (output padding 0). Buffer regions of the 256 floats:
//   big [32] @0 (x of the conv, y of the deconv), w [36] @32, b [2] @68, small [8] @70 (y of the
//   conv, x of the deconv), z @78 [8] / @86 [32] (conv / deconv), dy, dz, dx, dw, db beyond.
// The workspace never comes from this buffer (a rejected call must not need one); the valid
// base calls get their own.
ConvGeom base_geom() { return conv_geom(1, 4, 4, 2, 2, 3, 3, 1, 1, 0, 0, 1, 1); }

ConvForward conv_fwd(float* b) {
  ConvForward a;
  a.g = base_geom();
  a.x = b, a.w = b + 32, a.b = b + 68, a.y = b + 70, a.z = b + 78;
  return a;
}
ConvBackward conv_bwd(float* b) {
  ConvBackward a;
  a.g = base_geom();
  a.dy = b + 118, a.y = b + 70, a.z = b + 78, a.x = b, a.w = b + 32;
  a.dz = b + 126, a.dx = b + 134, a.dw = b + 166, a.db = b + 202;
  a.act = Act::Sigmoid;
  return a;
}
DeconvForward deconv_fwd(float* b) {
  DeconvForward a;
  a.g = base_geom();
  a.x = b + 70, a.w = b + 32, a.b = b + 68, a.y = b, a.z = b + 86;
  return a;
}
DeconvBackward deconv_bwd(float* b) {
  DeconvBackward a;
  a.g = base_geom();
  a.dy = b + 86, a.y = b, a.z = b + 118, a.x = b + 70, a.w = b + 32;
  a.dz = b + 150, a.dx = b + 182, a.dw = b + 190, a.db = b + 226;
  a.act = Act::Tanh;
  return a;
}

std::vector<BadCall> bad_calls(Device device) {
  std::vector<BadCall> calls;
  auto cf = [&](std::string what, std::function<void(ConvForward&)> edit) {
    calls.push_back({"conv2d_forward " + what, [edit](const OpTable& t, const Context& c, float* b) {
                       ConvForward a = conv_fwd(b);
                       edit(a);
                       t.conv2d_forward(c, a);
                     }});
  };
  auto cb = [&](std::string what, std::function<void(ConvBackward&)> edit) {
    calls.push_back({"conv2d_backward " + what, [edit](const OpTable& t, const Context& c, float* b) {
                       ConvBackward a = conv_bwd(b);
                       edit(a);
                       t.conv2d_backward(c, a);
                     }});
  };
  auto df = [&](std::string what, std::function<void(DeconvForward&)> edit) {
    calls.push_back({"deconv2d_forward " + what, [edit](const OpTable& t, const Context& c, float* b) {
                       DeconvForward a = deconv_fwd(b);
                       edit(a);
                       t.deconv2d_forward(c, a);
                     }});
  };
  auto db = [&](std::string what, std::function<void(DeconvBackward&)> edit) {
    calls.push_back({"deconv2d_backward " + what, [edit](const OpTable& t, const Context& c, float* b) {
                       DeconvBackward a = deconv_bwd(b);
                       edit(a);
                       t.deconv2d_backward(c, a);
                     }});
  };
  auto wq = [&](std::string what, std::function<void(ConvWorkspace&)> edit) {
    calls.push_back({"conv_workspace " + what, [edit](const OpTable& t, const Context& c, float*) {
                       std::size_t bytes = 0;
                       ConvWorkspace a;
                       a.g = base_geom();
                       a.bytes = &bytes;
                       edit(a);
                       t.conv_workspace(c, a);
                     }});
  };

  // Geometry, on every op.
  cf("p one too large", [](ConvForward& a) { a.g.p += 1; });
  cf("q one too small", [](ConvForward& a) { a.g.q -= 1; });
  cf("p for padding 1 with padding 0", [](ConvForward& a) { a.g.p = 4; a.g.q = 4; });
  cf("n = 0", [](ConvForward& a) { a.g.n = 0; });
  cf("c = 0", [](ConvForward& a) { a.g.c = 0; });
  cf("k = 0", [](ConvForward& a) { a.g.k = 0; });
  cf("r = 0", [](ConvForward& a) { a.g.r = 0; });
  cf("h = -4", [](ConvForward& a) { a.g.h = -4; });
  cf("stride 0", [](ConvForward& a) { a.g.stride_h = 0; });
  cf("dilation 0", [](ConvForward& a) { a.g.dil_w = 0; });
  // p = (6 − 2 − 2 − 1) + 1 = 2 fits the formula: only the sign of the padding is wrong.
  cf("padding -1", [](ConvForward& a) { a.g.h = 6, a.g.w = 6, a.g.pad_h = -1, a.g.pad_w = -1; });
  cf("filter wider than the padded input", [](ConvForward& a) { a.g.s = 7; });
  cf("x over 2^31 values", [](ConvForward& a) {
    a.g.n = 1 << 20, a.g.h = 64, a.g.w = 64, a.g.p = 62, a.g.q = 62;
  });
  cf("null x", [](ConvForward& a) { a.x = nullptr; });
  cf("null w", [](ConvForward& a) { a.w = nullptr; });
  cf("null y", [](ConvForward& a) { a.y = nullptr; });
  cf("GELU without z", [](ConvForward& a) { a.act = Act::GELU; a.z = nullptr; });
  cf("leaky ReLU slope 0", [](ConvForward& a) { a.act = Act::LeakyReLU; a.slope = 0.0f; });
  cf("unknown activation", [](ConvForward& a) { a.act = static_cast<Act>(99); });
  cb("p one too large", [](ConvBackward& a) { a.g.p += 1; });
  cb("w = 0", [](ConvBackward& a) { a.g.w = 0; });
  cb("null dy", [](ConvBackward& a) { a.dy = nullptr; });
  cb("null dz", [](ConvBackward& a) { a.dz = nullptr; });
  cb("null x", [](ConvBackward& a) { a.x = nullptr; });
  cb("null w", [](ConvBackward& a) { a.w = nullptr; });
  cb("sigmoid without y", [](ConvBackward& a) { a.y = nullptr; });
  cb("GELU without z", [](ConvBackward& a) { a.act = Act::GELU; a.z = nullptr; });
  df("q one too large", [](DeconvForward& a) { a.g.q += 1; });
  df("k = 0", [](DeconvForward& a) { a.g.k = 0; });
  // Output padding = h − ((p−1)·stride − 2·pad + dil·(r−1) + 1) must lie in [0, max(stride, dil)).
  df("output padding 1 with stride 1", [](DeconvForward& a) { a.g.h = 5; });
  df("output padding -1", [](DeconvForward& a) { a.g.w = 3; });
  df("output padding 2 with stride 2", [](DeconvForward& a) {
    a.g.stride_h = 2;
    a.g.h = 7;  // (2−1)·2 + 2 + 1 = 5, plus 2
  });
  df("null x", [](DeconvForward& a) { a.x = nullptr; });
  df("null y", [](DeconvForward& a) { a.y = nullptr; });
  df("GELU without z", [](DeconvForward& a) { a.act = Act::GELU; a.z = nullptr; });
  db("output padding 1 with stride 1", [](DeconvBackward& a) { a.g.w = 5; });
  db("output padding 2 with stride 2", [](DeconvBackward& a) {
    a.g.stride_w = 2;
    a.g.w = 7;
  });
  db("null dz", [](DeconvBackward& a) { a.dz = nullptr; });
  db("tanh without y", [](DeconvBackward& a) { a.y = nullptr; });
  db("GELU without z", [](DeconvBackward& a) { a.act = Act::GELU; a.z = nullptr; });
  wq("null bytes", [](ConvWorkspace& a) { a.bytes = nullptr; });
  wq("p one too large", [](ConvWorkspace& a) { a.g.p += 1; });
  wq("deconv output padding 1 with stride 1", [](ConvWorkspace& a) {
    a.pass = ConvPass::DeconvBackward;
    a.g.h = 5;
  });

  // A missing or short workspace, where the backend needs one for the base geometry. The CPU
  // always does (a 3x3 filter needs im2col), so there these calls are never left out.
  Backend be(device);
  auto need = [&](ConvPass pass) { return workspace_bytes(be.ops(), be.ctx(), base_geom(), pass); };
  const std::size_t nf = need(ConvPass::ConvForward), nb = need(ConvPass::ConvBackward);
  const std::size_t ndf = need(ConvPass::DeconvForward), ndb = need(ConvPass::DeconvBackward);
  if (device == Device::CPU) {
    EXPECT_GT(nf, 0u);
    EXPECT_GT(nb, 0u);
    EXPECT_GT(ndf, 0u);
    EXPECT_GT(ndb, 0u);
  }
  // A pointer that is never dereferenced: the check must fail before the op reads it.
  static float dummy_ws[1];
  if (nf > 0) {
    cf("without a workspace", [](ConvForward& a) { a.ws = nullptr, a.ws_bytes = 0; });
    cf("workspace one byte short", [nf](ConvForward& a) { a.ws = dummy_ws, a.ws_bytes = nf - 1; });
  }
  if (nb > 0) {
    cb("without a workspace (dx wanted)", [](ConvBackward& a) { a.ws = nullptr, a.ws_bytes = 0; a.dw = nullptr; });
    cb("workspace one byte short", [nb](ConvBackward& a) { a.ws = dummy_ws, a.ws_bytes = nb - 1; });
  }
  if (ndf > 0) df("without a workspace", [](DeconvForward& a) { a.ws = nullptr, a.ws_bytes = 0; });
  if (ndb > 0) {
    db("without a workspace (dw wanted)", [](DeconvBackward& a) { a.ws = nullptr, a.ws_bytes = 0; a.dx = nullptr; });
    db("workspace one byte short", [ndb](DeconvBackward& a) { a.ws = dummy_ws, a.ws_bytes = ndb - 1; });
  }
  return calls;
}

// The valid calls the bad ones were edited from must pass, or the rejections above prove nothing.
void expect_accepts_base_calls(Device device) {
  Backend be(device);
  DeviceBuffer buf(be, 256);
  buf.fill(0.5f);
  std::size_t need = 0;
  for (ConvPass pass : {ConvPass::ConvForward, ConvPass::ConvBackward, ConvPass::DeconvForward, ConvPass::DeconvBackward})
    need = std::max(need, workspace_bytes(be.ops(), be.ctx(), base_geom(), pass));
  DeviceBuffer ws(be, need / sizeof(float) + 64);
  const auto run_all = [&] {
    ConvForward f = conv_fwd(buf.data());
    f.ws = ws.data();
    f.ws_bytes = need;
    be.ops().conv2d_forward(be.ctx(), f);
    ConvBackward b = conv_bwd(buf.data());
    b.ws = ws.data();
    b.ws_bytes = need;
    be.ops().conv2d_backward(be.ctx(), b);
    DeconvForward df = deconv_fwd(buf.data());
    df.ws = ws.data();
    df.ws_bytes = need;
    be.ops().deconv2d_forward(be.ctx(), df);
    DeconvBackward db = deconv_bwd(buf.data());
    db.ws = ws.data();
    db.ws_bytes = need;
    be.ops().deconv2d_backward(be.ctx(), db);
    // No dx and no dw: nothing needs the workspace.
    ConvBackward b2 = conv_bwd(buf.data());
    b2.dx = nullptr;
    b2.dw = nullptr;
    be.ops().conv2d_backward(be.ctx(), b2);
    be.synchronize();
  };
  EXPECT_NO_THROW(run_all()) << device_name(device);
  EXPECT_TRUE(buf.guards_intact()) << device_name(device);
  EXPECT_TRUE(ws.guards_intact()) << device_name(device);
}

// Rejected calls touch no memory: the buffer keeps its contents.
const std::vector<float> kValidationFill(256, 0.5f);

TEST(ConvValidation, CpuRejectsBadArguments) {
  expect_rejects_bad_calls(Device::CPU, bad_calls(Device::CPU), kValidationFill);
}
TEST(ConvValidation, CpuAcceptsTheValidBase) { expect_accepts_base_calls(Device::CPU); }

TEST(ConvValidation, CudaRejectsBadArguments) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_rejects_bad_calls(Device::CUDA, bad_calls(Device::CUDA), kValidationFill);
}
TEST(ConvValidation, CudaAcceptsTheValidBase) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_accepts_base_calls(Device::CUDA);
}

// The CPU's message names the op, the geometry and the sizes.
TEST(ConvValidation, CpuWorkspaceErrorIsClear) {
  std::vector<float> buf(256, 0.5f);
  ConvForward a = conv_fwd(buf.data());
  try {
    cpu::conv2d_forward(Context{}, a);
    ADD_FAILURE() << "no error without a workspace";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("conv2d_forward"), std::string::npos) << msg;
    EXPECT_NE(msg.find("workspace"), std::string::npos) << msg;
    EXPECT_NE(msg.find("x [1,4,4,2]"), std::string::npos) << msg;
  }
}

}  // namespace
