// Pooling, unpooling and upsampling against PyTorch: tests/golden/make_golden_pool.py runs
// F.max_pool2d(return_indices=True), F.max_unpool2d, F.avg_pool2d and F.interpolate (nearest and
// bilinear, align_corners=False) on small seeded inputs, backpropagates a random upstream
// gradient, and stores input, output, indices, upstream gradient and input gradient per case
// (NCHW). Here each case runs through cuae's op table (NHWC: the tensors are permuted) and must
// reproduce PyTorch:
//
//   max_pool    y and index exactly (a maximum is a copy; PyTorch's index is the flat h·w
//               position within the (n, c) plane, as cuae's), dx = max_unpool(dy, index)
//   max_unpool  y = the unpooling of x at PyTorch's indices, exactly (disjoint windows: each
//               value lands once), dx = max_unpool_backward(dy, index) exactly (a gather);
//               also our max pool of the case's pool_x must give those indices
//   avg_pool    y and dx (count_include_pad true and false, padding, overlapping windows)
//   upsample    nearest y exactly, nearest dx; bilinear y and dx
// Everything not exact must agree to a normalised error ‖a−b‖/‖b‖ <= 1e-6; every reference
// tensor is checked to be far from zero, so a zero output cannot pass.
//
// Regenerate the file with: python3 tests/golden/make_golden_pool.py
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common.hpp"
#include "cuae/safetensors.hpp"
#include "host/runtime/backend.hpp"
#include "kernels/ops.hpp"
#include "op_case.hpp"

namespace cuae {
namespace {

using kern::Context;
using kern::OpTable;
using kern::PoolGeom;

constexpr double kTol = 1e-6;

std::string golden_path() { return test::source_path("tests/golden/pool_ops.safetensors"); }

struct Nchw {
  int n = 0, c = 0, h = 0, w = 0;
};

Nchw dims_of(const Tensor& t) {
  EXPECT_EQ(t.rank(), 4);
  return {static_cast<int>(t.dim(0)), static_cast<int>(t.dim(1)), static_cast<int>(t.dim(2)),
          static_cast<int>(t.dim(3))};
}

std::vector<float> to_nhwc(const Tensor& t) {
  const Nchw d = dims_of(t);
  const std::vector<float> v = t.values();
  std::vector<float> out(v.size());
  for (int n = 0; n < d.n; ++n)
    for (int c = 0; c < d.c; ++c)
      for (int h = 0; h < d.h; ++h)
        for (int w = 0; w < d.w; ++w)
          out[((static_cast<std::size_t>(n) * d.h + h) * d.w + w) * d.c + c] =
              v[((static_cast<std::size_t>(n) * d.c + c) * d.h + h) * d.w + w];
  return out;
}

// A stored index tensor (float32 holding small integers) as the int32 bit patterns a
// DeviceBuffer carries.
std::vector<float> index_bits_nhwc(const Tensor& t) {
  std::vector<float> v = to_nhwc(t);
  for (float& f : v) f = test::int_bits(static_cast<std::int32_t>(f));
  return v;
}

double l2(const std::vector<float>& v) {
  double s = 0.0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

// Uploads the inputs to the backend, allocates poisoned outputs of the given sizes, calls f with
// the pointers and returns the outputs' contents.
using OpCall = std::function<void(const OpTable&, const Context&, const std::vector<float*>& in,
                                  const std::vector<float*>& out)>;
std::vector<std::vector<float>> run(Backend& be, const std::vector<std::vector<float>>& inputs,
                                    const std::vector<std::size_t>& outputs, const OpCall& f) {
  std::vector<test::DeviceBuffer> bufs;
  bufs.reserve(inputs.size() + outputs.size());
  std::vector<float*> in, out;
  for (const auto& v : inputs) {
    bufs.emplace_back(be, v.size());
    bufs.back().upload(v);
    in.push_back(bufs.back().data());
  }
  for (std::size_t n : outputs) {
    bufs.emplace_back(be, n);
    bufs.back().poison();
    out.push_back(bufs.back().data());
  }
  f(be.ops(), be.ctx(), in, out);
  be.synchronize();
  std::vector<std::vector<float>> result;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    result.push_back(bufs[inputs.size() + i].download());
    EXPECT_TRUE(bufs[inputs.size() + i].guards_intact()) << "output " << i << " written out of bounds";
  }
  return result;
}

// One comparison: exactly, or by normalised error; printed and recorded.
void compare(const std::string& what, const std::vector<float>& got, const std::vector<float>& want, bool exact) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_GT(l2(want), 1e-3) << what << ": the reference is ~0, the comparison would prove nothing";
  const double err = test::normalized_error(got, want);
  const double maxabs = test::max_abs_error(got, want);
  test::record_error("golden_err " + what, err);
  std::printf("  %-40s norm err %-10.3g max abs %-10.3g %s\n", what.c_str(), err, maxabs, exact ? "(exact)" : "");
  if (exact) EXPECT_EQ(maxabs, 0.0) << what << ": must match exactly (norm err " << err << ")";
  else EXPECT_LE(err, kTol) << what << ": " << test::fmt_err(err, kTol) << ", max abs " << maxabs;
}

PoolGeom geom_of(const Nchw& x, const Nchw& y, const nlohmann::json& c) {
  PoolGeom g;
  g.n = x.n, g.c = x.c, g.h = x.h, g.w = x.w, g.p = y.h, g.q = y.w;
  if (c.contains("kernel")) {
    g.r = c["kernel"][0].get<int>(), g.s = c["kernel"][1].get<int>();
    g.stride_h = c["stride"][0].get<int>(), g.stride_w = c["stride"][1].get<int>();
    g.pad_h = c["padding"][0].get<int>(), g.pad_w = c["padding"][1].get<int>();
  }
  return g;
}

std::size_t numel(const Nchw& d) { return static_cast<std::size_t>(d.n) * d.c * d.h * d.w; }

void run_case(Backend& be, const SafetensorsFile& f, const nlohmann::json& c) {
  const std::string name = c["name"].get<std::string>();
  const std::string op = c["op"].get<std::string>();
  SCOPED_TRACE(name);
  auto T = [&](const char* k) -> const Tensor& { return f.at(name + "." + k); };
  const std::string dev = device_name(be.device());

  if (op == "max_pool") {
    const Nchw xd = dims_of(T("x")), yd = dims_of(T("y"));
    const PoolGeom g = geom_of(xd, yd, c);
    const auto out = run(be, {to_nhwc(T("x")), to_nhwc(T("dy"))}, {numel(yd), numel(yd), numel(xd)},
                         [&](const OpTable& t, const Context& ctx, const auto& in, const auto& o) {
                           kern::MaxPool a;
                           a.g = g, a.x = in[0], a.y = o[0], a.index = reinterpret_cast<std::int32_t*>(o[1]);
                           t.max_pool_forward(ctx, a);
                           // The pool's backward: the unpooling of dy at the recorded maxima.
                           kern::MaxUnpool u;
                           u.g = g, u.x = in[1], u.index = a.index, u.y = o[2];
                           t.max_unpool(ctx, u);
                         });
    compare(dev + " " + name + " y", out[0], to_nhwc(T("y")), true);
    std::vector<float> idx(out[1].size());
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<float>(test::bits_int(out[1][i]));
    compare(dev + " " + name + " index", idx, to_nhwc(T("index")), true);
    compare(dev + " " + name + " dx", out[2], to_nhwc(T("dx")), false);
  } else if (op == "max_unpool") {
    const Nchw xd = dims_of(T("x")), yd = dims_of(T("y"));
    // The unpooling's geometry is the pool's: input [n, c, H, W] = y, pooled [n, c, P, Q] = x.
    const PoolGeom g = geom_of(yd, xd, c);
    const auto out = run(be, {to_nhwc(T("x")), index_bits_nhwc(T("index")), to_nhwc(T("dy")), to_nhwc(T("pool_x"))},
                         {numel(yd), numel(xd), numel(xd), numel(xd)},
                         [&](const OpTable& t, const Context& ctx, const auto& in, const auto& o) {
                           kern::MaxUnpool u;
                           u.g = g, u.x = in[0], u.index = reinterpret_cast<const std::int32_t*>(in[1]), u.y = o[0];
                           t.max_unpool(ctx, u);
                           kern::MaxUnpoolBackward b;
                           b.g = g, b.dy = in[2], b.index = u.index, b.dx = o[1];
                           t.max_unpool_backward(ctx, b);
                           kern::MaxPool p;
                           p.g = g, p.x = in[3], p.y = o[2], p.index = reinterpret_cast<std::int32_t*>(o[3]);
                           t.max_pool_forward(ctx, p);
                         });
    compare(dev + " " + name + " y", out[0], to_nhwc(T("y")), true);
    compare(dev + " " + name + " dx", out[1], to_nhwc(T("dx")), true);
    std::vector<float> idx(out[3].size());
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<float>(test::bits_int(out[3][i]));
    compare(dev + " " + name + " index of pool_x", idx, to_nhwc(T("index")), true);
  } else if (op == "avg_pool") {
    const Nchw xd = dims_of(T("x")), yd = dims_of(T("y"));
    const PoolGeom g = geom_of(xd, yd, c);
    const bool inc = c["count_include_pad"].get<bool>();
    const auto out = run(be, {to_nhwc(T("x")), to_nhwc(T("dy"))}, {numel(yd), numel(xd)},
                         [&](const OpTable& t, const Context& ctx, const auto& in, const auto& o) {
                           kern::AvgPool a;
                           a.g = g, a.x = in[0], a.y = o[0], a.count_include_pad = inc;
                           t.avg_pool_forward(ctx, a);
                           kern::AvgPoolBackward b;
                           b.g = g, b.dy = in[1], b.dx = o[1], b.count_include_pad = inc;
                           t.avg_pool_backward(ctx, b);
                         });
    compare(dev + " " + name + " y", out[0], to_nhwc(T("y")), false);
    compare(dev + " " + name + " dx", out[1], to_nhwc(T("dx")), false);
  } else if (op == "upsample") {
    const Nchw xd = dims_of(T("x")), yd = dims_of(T("y"));
    const PoolGeom g = geom_of(xd, yd, c);
    const std::string mode = c["mode"].get<std::string>();
    ASSERT_TRUE(mode == "nearest" || mode == "bilinear") << mode;
    const kern::UpsampleKind kind = mode == "nearest" ? kern::UpsampleKind::Nearest : kern::UpsampleKind::Bilinear;
    ASSERT_EQ(yd.h, c["size"][0].get<int>());
    ASSERT_EQ(yd.w, c["size"][1].get<int>());
    const auto out = run(be, {to_nhwc(T("x")), to_nhwc(T("dy"))}, {numel(yd), numel(xd)},
                         [&](const OpTable& t, const Context& ctx, const auto& in, const auto& o) {
                           kern::Upsample a;
                           a.g = g, a.x = in[0], a.y = o[0], a.kind = kind;
                           t.upsample_forward(ctx, a);
                           kern::UpsampleBackward b;
                           b.g = g, b.dy = in[1], b.dx = o[1], b.kind = kind;
                           t.upsample_backward(ctx, b);
                         });
    compare(dev + " " + name + " y", out[0], to_nhwc(T("y")), kind == kern::UpsampleKind::Nearest);
    compare(dev + " " + name + " dx", out[1], to_nhwc(T("dx")), false);
  } else {
    ADD_FAILURE() << "unknown op " << op << " in the golden file";
  }
}

void run_golden(Device device) {
  SafetensorsFile f;
  ASSERT_NO_THROW(f = load_safetensors(golden_path())) << golden_path();
  ASSERT_TRUE(f.metadata.count("cases")) << "no \"cases\" in __metadata__";
  const nlohmann::json cases = nlohmann::json::parse(f.metadata.at("cases"));
  ASSERT_TRUE(cases.is_array());
  // Every op and both upsampling modes are represented.
  std::map<std::string, int> per_op;
  for (const auto& c : cases) ++per_op[c["op"].get<std::string>() + (c.contains("mode") ? "_" + c["mode"].get<std::string>() : "")];
  for (const char* op : {"max_pool", "max_unpool", "avg_pool", "upsample_nearest", "upsample_bilinear"})
    EXPECT_GE(per_op[op], 2) << "golden cases of " << op;
  Backend be(device);
  std::printf("[golden pool ops on %s, torch %s]\n", device_name(device),
              f.metadata.count("torch_version") ? f.metadata.at("torch_version").c_str() : "?");
  for (const auto& c : cases) run_case(be, f, c);
}

TEST(GoldenPool, CpuMatchesPyTorch) { run_golden(Device::CPU); }

TEST(GoldenPool, CudaMatchesPyTorch) {
  CUAE_SKIP_WITHOUT_GPU();
  run_golden(Device::CUDA);
}

}  // namespace
}  // namespace cuae
