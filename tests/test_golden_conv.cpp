// Golden test of the convolution ops against PyTorch. tests/golden/make_golden_conv.py runs
// torch.nn.functional.conv2d / conv_transpose2d (float32, CPU) with a bias and an activation on
// small seeded inputs and stores, per case, the input, weight, bias, output, a random upstream
// gradient and autograd's input, weight and bias gradients, all in PyTorch's layouts (NCHW; conv
// weights [k, c, r, s], transposed-conv weights [c_in, c_out, r, s]) with the stride, padding,
// dilation, output padding and activation in the file's metadata.
//
// Here every case is permuted to cuae's layouts (NCHW -> NHWC; either weight -> [k, r, s, c], which
// is the same permutation for both, k being the convolution's output and the transposed
// convolution's input channels), run through conv2d_* or deconv2d_* (forward, then backward from
// the forward's own y and z with dy = the upstream gradient) and compared with normalised errors
// ‖a−b‖/‖b‖ per tensor. The CPU must agree to 1e-5; the CUDA test does the same on a GPU and is
// skipped without one. Each comparison is made able to fail: the file is checked to hold every
// case with gradients far from zero.
//
// Regenerate the file with: python3 tests/golden/make_golden_conv.py
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "common.hpp"
#include "cuae/safetensors.hpp"
#include "cuae/tensor.hpp"
#include "host/runtime/backend.hpp"
#include "kernels/ops.hpp"

namespace cuae {
namespace {

using kern::Act;
using kern::ConvGeom;

// CPU: fp32 against PyTorch's fp32 (its own summation order); measured worst in brackets.
constexpr double kCpuTol = 1e-5;  // [3.2e-7]
// CUDA (TF32 off): not measured here (no GPU where this was written). cuDNN may pick Winograd or
// FFT algorithms, whose fp32 rounding is a few times larger than a direct sum; 1e-4 is still far
// below what a wrong tap or a missing term gives (1e-2..1).
constexpr double kCudaTol = 1e-4;
constexpr std::size_t kExpectedCases = 14;

std::string golden_path() { return test::source_path("tests/golden/conv_ops.safetensors"); }

struct Case {
  std::string name;
  bool transposed = false;
  std::array<int, 2> stride{}, padding{}, dilation{}, output_padding{};
  Act act = Act::Identity;
};

Act parse_act(const std::string& s) {
  if (s == "identity") return Act::Identity;
  if (s == "relu") return Act::ReLU;
  if (s == "sigmoid") return Act::Sigmoid;
  throw Error("conv golden: unknown activation " + s);
}

std::vector<Case> parse_cases(const SafetensorsFile& f) {
  const auto j = nlohmann::json::parse(f.metadata.at("cases"));
  std::vector<Case> cases;
  for (const auto& c : j) {
    Case k;
    k.name = c.at("name").get<std::string>();
    const std::string op = c.at("op").get<std::string>();
    if (op != "conv2d" && op != "conv_transpose2d") throw Error("conv golden: unknown op " + op);
    k.transposed = op == "conv_transpose2d";
    k.stride = c.at("stride").get<std::array<int, 2>>();
    k.padding = c.at("padding").get<std::array<int, 2>>();
    k.dilation = c.at("dilation").get<std::array<int, 2>>();
    k.output_padding = c.at("output_padding").get<std::array<int, 2>>();
    k.act = parse_act(c.at("activation").get<std::string>());
    cases.push_back(k);
  }
  return cases;
}

// [a, b, c, d] -> [a, c, d, b]: NCHW -> NHWC, and both PyTorch weight layouts -> KRSC.
std::vector<float> to_channels_last(const Tensor& t) {
  const std::int64_t A = t.dim(0), B = t.dim(1), C = t.dim(2), D = t.dim(3);
  const std::vector<float> v = t.values();
  std::vector<float> out(v.size());
  for (std::int64_t a = 0; a < A; ++a)
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t d = 0; d < D; ++d) out[((a * C + c) * D + d) * B + b] = v[((a * B + b) * C + c) * D + d];
  return out;
}

double norm(const std::vector<float>& v) {
  double s = 0.0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

// The geometry from the tensors' shapes and the case's attributes. conv: input [n,c,h,w], weight
// [k,c,r,s], output [n,k,p,q]; transposed: input [n,k,p,q], weight [k,c,r,s], output [n,c,h,w].
ConvGeom geometry(const Case& c, const Tensor& in, const Tensor& w, const Tensor& out) {
  ConvGeom g;
  const Tensor& big = c.transposed ? out : in;
  const Tensor& small = c.transposed ? in : out;
  g.n = static_cast<int>(in.dim(0));
  g.c = static_cast<int>(big.dim(1));
  g.h = static_cast<int>(big.dim(2));
  g.w = static_cast<int>(big.dim(3));
  g.k = static_cast<int>(small.dim(1));
  g.p = static_cast<int>(small.dim(2));
  g.q = static_cast<int>(small.dim(3));
  g.r = static_cast<int>(w.dim(2));
  g.s = static_cast<int>(w.dim(3));
  g.stride_h = c.stride[0], g.stride_w = c.stride[1];
  g.pad_h = c.padding[0], g.pad_w = c.padding[1];
  g.dil_h = c.dilation[0], g.dil_w = c.dilation[1];
  return g;
}

struct Worst {
  double y = 0, dx = 0, dw = 0, db = 0;
};

void compare(const std::string& what, const std::vector<float>& got, const std::vector<float>& want, double tol,
             double& worst) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double err = test::normalized_error(got, want);
  worst = std::max(worst, err);
  ::testing::Test::RecordProperty("err " + what, std::to_string(err));
  EXPECT_LE(err, tol) << what << ": normalised error " << err << ", max abs " << test::max_abs_error(got, want)
                      << ", non-finite " << test::count_nonfinite(got);
}

void run_case(Backend& be, const SafetensorsFile& f, const Case& c, double tol, Worst& worst) {
  SCOPED_TRACE(c.name);
  const auto t = [&](const char* field) -> const Tensor& { return f.at(c.name + "." + field); };
  const Tensor &in = t("input"), &w = t("weight"), &b = t("bias"), &out = t("output");
  ASSERT_EQ(in.rank(), 4);
  ASSERT_EQ(w.rank(), 4);
  ASSERT_EQ(out.rank(), 4);
  const ConvGeom g = geometry(c, in, w, out);
  // The file's PyTorch shapes against the formulas of kernels/ops.hpp.
  if (c.transposed) {
    EXPECT_EQ(g.h, (g.p - 1) * g.stride_h - 2 * g.pad_h + g.dil_h * (g.r - 1) + 1 + c.output_padding[0]);
    EXPECT_EQ(g.w, (g.q - 1) * g.stride_w - 2 * g.pad_w + g.dil_w * (g.s - 1) + 1 + c.output_padding[1]);
    ASSERT_EQ(w.dim(0), g.k);
    ASSERT_EQ(w.dim(1), g.c);
  } else {
    EXPECT_EQ(g.p, (g.h + 2 * g.pad_h - g.dil_h * (g.r - 1) - 1) / g.stride_h + 1);
    EXPECT_EQ(g.q, (g.w + 2 * g.pad_w - g.dil_w * (g.s - 1) - 1) / g.stride_w + 1);
    ASSERT_EQ(w.dim(0), g.k);
    ASSERT_EQ(w.dim(1), g.c);
  }
  const int out_ch = c.transposed ? g.c : g.k;
  ASSERT_EQ(b.numel(), out_ch);

  const std::vector<float> x = to_channels_last(in), wk = to_channels_last(w), y_ref = to_channels_last(out);
  const std::vector<float> dy = to_channels_last(t("grad_output")), dx_ref = to_channels_last(t("grad_input"));
  const std::vector<float> dw_ref = to_channels_last(t("grad_weight")), db_ref = t("grad_bias").values();
  for (const auto* ref : {&dx_ref, &dw_ref, &db_ref})
    ASSERT_GT(norm(*ref), 1e-3) << "a reference gradient of " << c.name << " is ~0";

  std::size_t ws_bytes = 0;
  for (kern::ConvPass pass : c.transposed
                                 ? std::vector<kern::ConvPass>{kern::ConvPass::DeconvForward, kern::ConvPass::DeconvBackward}
                                 : std::vector<kern::ConvPass>{kern::ConvPass::ConvForward, kern::ConvPass::ConvBackward}) {
    std::size_t bytes = 0;
    kern::ConvWorkspace q;
    q.g = g;
    q.pass = pass;
    q.bytes = &bytes;
    be.ops().conv_workspace(be.ctx(), q);
    ws_bytes = std::max(ws_bytes, bytes);
  }

  test::DeviceBuffer bx(be, x.size()), bw(be, wk.size()), bb(be, db_ref.size()), by(be, y_ref.size()),
      bz(be, y_ref.size()), bdy(be, dy.size()), bdz(be, dy.size()), bdx(be, x.size()), bdw(be, wk.size()),
      bdb(be, db_ref.size()), bws(be, ws_bytes / sizeof(float) + 1);
  bx.upload(x);
  bw.upload(wk);
  bb.upload(b.values());
  bdy.upload(dy);
  for (test::DeviceBuffer* p : {&by, &bz, &bdz, &bdx, &bdw, &bdb, &bws}) p->poison();

  auto fill_fwd = [&](auto& a) {
    a.g = g;
    a.x = bx.data(), a.w = bw.data(), a.b = bb.data(), a.y = by.data(), a.z = bz.data();
    a.ws = bws.data(), a.ws_bytes = ws_bytes;
    a.act = c.act;
  };
  auto fill_bwd = [&](auto& a) {
    a.g = g;
    a.dy = bdy.data(), a.y = by.data(), a.z = bz.data(), a.x = bx.data(), a.w = bw.data();
    a.dz = bdz.data(), a.dx = bdx.data(), a.dw = bdw.data(), a.db = bdb.data();
    a.ws = bws.data(), a.ws_bytes = ws_bytes;
    a.act = c.act;
  };
  if (c.transposed) {
    kern::DeconvForward fw;
    fill_fwd(fw);
    be.ops().deconv2d_forward(be.ctx(), fw);
    kern::DeconvBackward bw_args;
    fill_bwd(bw_args);
    be.ops().deconv2d_backward(be.ctx(), bw_args);
  } else {
    kern::ConvForward fw;
    fill_fwd(fw);
    be.ops().conv2d_forward(be.ctx(), fw);
    kern::ConvBackward bw_args;
    fill_bwd(bw_args);
    be.ops().conv2d_backward(be.ctx(), bw_args);
  }
  be.synchronize();
  for (const test::DeviceBuffer* p : {&bx, &bw, &bb, &by, &bz, &bdy, &bdz, &bdx, &bdw, &bdb, &bws})
    EXPECT_TRUE(p->guards_intact()) << c.name << ": a write out of bounds";

  const std::string tag = c.name + " " + device_name(be.device());
  compare(tag + " output", by.download(), y_ref, tol, worst.y);
  compare(tag + " grad_input", bdx.download(), dx_ref, tol, worst.dx);
  compare(tag + " grad_weight", bdw.download(), dw_ref, tol, worst.dw);
  compare(tag + " grad_bias", bdb.download(), db_ref, tol, worst.db);
}

void run_golden(Device device, double tol) {
  SafetensorsFile f;
  ASSERT_NO_THROW(f = load_safetensors(golden_path())) << golden_path();
  ASSERT_TRUE(f.metadata.count("cases")) << golden_path() << ": no \"cases\" in __metadata__";
  ASSERT_EQ(f.metadata.count("format") ? f.metadata.at("format") : "", "cuae-golden-conv-1");
  std::vector<Case> cases;
  ASSERT_NO_THROW(cases = parse_cases(f));
  ASSERT_EQ(cases.size(), kExpectedCases);
  // Every tensor of the file belongs to a listed case (8 each), so nothing is silently unused.
  std::set<std::string> names;
  for (const Case& c : cases) names.insert(c.name);
  ASSERT_EQ(names.size(), cases.size()) << "duplicate case names";
  EXPECT_EQ(f.tensors.size(), 8 * cases.size());
  std::size_t transposed = 0;
  for (const Case& c : cases) transposed += c.transposed;
  EXPECT_GT(transposed, 0u);
  EXPECT_LT(transposed, cases.size());

  Backend be(device);
  Worst worst;
  for (const Case& c : cases) run_case(be, f, c, tol, worst);
  std::printf("[conv golden on %s] %zu cases, worst normalised error: output %.3g  grad_input %.3g  "
              "grad_weight %.3g  grad_bias %.3g  (tolerance %.0e)\n",
              device_name(device), cases.size(), worst.y, worst.dx, worst.dw, worst.db, tol);
}

TEST(GoldenConv, CpuMatchesPyTorch) { run_golden(Device::CPU, kCpuTol); }

TEST(GoldenConv, CudaMatchesPyTorch) {
  CUAE_SKIP_WITHOUT_GPU();
  run_golden(Device::CUDA, kCudaTol);
}

}  // namespace
}  // namespace cuae
