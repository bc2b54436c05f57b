// bench_conv: the convolution ops of the op table on the CUDA backend (conv2d and deconv2d, forward
// and backward), beside raw cuDNN calls doing the same work in the same run, at the shapes of the
// convolutional autoencoders.
//
//   conv_fwd/<layer>/<impl>      y = act(conv(x, W) + b)
//   conv_bwd/<layer>/<impl>      dz = dy ⊙ act'(y), db, dW, dx
//   deconv_fwd/<layer>/<impl>    y = act(convᵀ(x, W) + b), the layer's transposed counterpart
//   deconv_bwd/<layer>/<impl>    dz, db, dW, dx of it
// impl:
//   cuae_v0        the op through the op table, ctx.variant 0 (production: our direct kernel for
//                  the forward passes with ≤ 4 channels on the small side, cuDNN otherwise)
//   cuae_v1        variant 1: cuDNN for every pass (forward only; the backward has one variant)
//   cuae_v2        variant 2: our direct kernel wherever it covers the forward pass
//   cuae_v0_tf32   variant 0 with ctx.tf32 (TF32 tensor cores allowed in cuDNN)
//   cudnn_raw, cudnn_raw_tf32
//                  raw cuDNN: cuDNN's own top-ranked algorithm (cudnnGet*Algorithm_v7, FMA math or
//                  TF32 as the name says, no other filter), set up once, plus plain one-thread-
//                  per-element kernels for the bias + activation (forward) and dz (backward), and
//                  cudnnConvolutionBackwardBias for db. The label names the algorithms.
// What to read:
//   (a) the wrapper's cost: overhead_pct on every cuae_* row = 100·(ours / raw − 1), both medians of
//       15 runs (same flush and events) taken back to back inside the benchmark against the raw
//       row of the same precision (raw_us, ours_us beside it). For cuae_v1 (and the backward) it is
//       the price of our layer over cuDNN; the target is ≤ 5.
//   (b) our direct kernels against cuDNN: cuae_v2 (and v0) against cuae_v1 on the few-channel layers
//       (mnist_l1, img128_l1, img256_l1: conv forward with c = 1 or 3, and the deconv forward
//       writing 1 or 3 channels); a negative overhead_pct is a speed-up over raw cuDNN. The
//       production threshold (c ≤ 4) in kernels/cuda/conv.cu is to be set from these rows.
//   (c) TFLOP/s = 2·n·p·q·k·r·s·c / time per convolution pass (the backward counts two: dx and dW),
//       on every row, ours beside cuDNN's; pct_sgemm relates it to the measured SGEMM ceiling.
//
// Layers (3×3 filters, pad 1; batch 256 at 28×28, 64 at 128×128, 16 at 256×256):
//   mnist_l1   1×28×28 → 32, stride 1          mnist_l2   32×14×14 → 64, stride 2 (→ 7×7)
//   img128_l1  3×128×128 → 32, stride 2        img128_l2  32×64×64 → 64, stride 1
//   img128_l3  64×64×64 → 128, stride 2        img256_l1  3×256×256 → 32, stride 2
// Each layer's deconvolution is the transpose of the same geometry (output padding 1 for the
// stride-2 layers, so it restores the input extent). Activations: ReLU, except the transposed
// layers that write an image (1 or 3 channels), which use a sigmoid.
//
// Method (bench/harness.cuh, as bench_ops): every benchmark first runs its op once on NaN-poisoned
// outputs and compares the result with the CPU op (cuae::kern::cpu_ops(), the same inputs; the
// backward starts from the CPU forward's y) by normalised error: 1e-4 in fp32, 5e-3 with TF32. A
// benchmark whose check fails — or whose CPU reference could not be computed — is skipped with the
// error and never timed. Timing: 3 warm-up runs, then per iteration an L2 flush (outside the timed
// region) and CUDA events around the op; Google Benchmark's manual time; 5 repetitions, aggregates
// only (the median is the number to read). GB/s counts the compulsory traffic (each tensor read or
// written once; the backward reads dz back for each of its two convolutions).
//
// Output: --benchmark_out=FILE --benchmark_out_format=json; the context carries the device,
// driver, CUDA runtime, cuBLAS and cuDNN versions, the ceilings, and CUAE_COMMIT if set.
// Own flags (removed before Google Benchmark sees argv): --cuae_quick (mnist_l1, mnist_l2 and
// img128_l1 only), --cuae_reps=N, --cuae_min_time=SECONDS.
// Without a GPU the program says so and exits 0 (nothing is benchmarked).
#include <benchmark/benchmark.h>
#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/harness.cuh"
#include "kernels/act_math.hpp"
#include "kernels/conv_common.hpp"
#include "kernels/cuda/cudnn_handle.hpp"
#include "kernels/ops.hpp"

namespace {

namespace kern = cuae::kern;
using kern::Act;
using kern::ConvGeom;
using kern::ConvPass;
using namespace cuae::bench;

// =============================================================================================
// the baselines: raw cuDNN and plain kernels
// =============================================================================================

// y = act(y + b[col]) in place, one thread per element, the activation chosen at run time.
__global__ void plain_bias_act(float* y, const float* b, long long total, int cols, Act act, float slope) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x)
    y[i] = kern::act_forward(act, y[i] + b[i % cols], slope);
}

__global__ void plain_dact(const float* dy, const float* y, float* dz, long long total, Act act, float slope) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x)
    dz[i] = dy[i] * kern::act_derivative(act, y[i], 0.0f, slope);
}

int plain_grid(long long total) { return static_cast<int>(std::min<long long>((total + 255) / 256, 65535)); }

const char* math_str(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_DEFAULT_MATH: return "default";
    case CUDNN_TENSOR_OP_MATH: return "tensor_op";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return "tensor_op_conv";
    case CUDNN_FMA_MATH: return "fma";
  }
  return "?";
}

// The three cuDNN operations of one geometry with cuDNN's top-ranked algorithm each, chosen once.
// X [n,c,h,w], Y [n,k,p,q] (NHWC), W [k,c,r,s] (NHWC = KRSC).
class RawConv {
 public:
  RawConv(const ConvGeom& g, bool tf32) {
    h_ = kern::cuda::cudnn_handle(env().ctx(), "bench_conv");
    CUAE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x_));
    CUAE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y_));
    CUAE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&bk_));
    CUAE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&bc_));
    CUAE_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w_));
    CUAE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x_, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, g.n, g.c, g.h, g.w));
    CUAE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y_, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, g.n, g.k, g.p, g.q));
    CUAE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(bk_, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, g.k, 1, 1));
    CUAE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(bc_, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, g.c, 1, 1));
    CUAE_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w_, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, g.k, g.c, g.r, g.s));
    for (cudnnConvolutionDescriptor_t* d : {&cf_, &cd_, &cw_}) {
      CUAE_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(d));
      CUAE_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(*d, g.pad_h, g.pad_w, g.stride_h, g.stride_w, g.dil_h, g.dil_w,
                                                       CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      CUAE_CUDNN_CHECK(cudnnSetConvolutionMathType(*d, tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    }
    int max = 0, got = 0;
    {
      CUAE_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h_, &max));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<std::size_t>(std::max(max, 1)));
      CUAE_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h_, x_, w_, cf_, y_, static_cast<int>(perf.size()), &got,
                                                              perf.data()));
      fwd_ = pick(perf, got, tf32, cf_, "forward", [&](int algo, std::size_t* b) {
        return cudnnGetConvolutionForwardWorkspaceSize(h_, x_, w_, cf_, y_, static_cast<cudnnConvolutionFwdAlgo_t>(algo), b);
      });
    }
    {
      CUAE_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h_, &max));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<std::size_t>(std::max(max, 1)));
      CUAE_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h_, w_, y_, cd_, x_, static_cast<int>(perf.size()),
                                                                   &got, perf.data()));
      bwd_data_ = pick(perf, got, tf32, cd_, "backward data", [&](int algo, std::size_t* b) {
        return cudnnGetConvolutionBackwardDataWorkspaceSize(h_, w_, y_, cd_, x_,
                                                            static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), b);
      });
    }
    {
      CUAE_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h_, &max));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<std::size_t>(std::max(max, 1)));
      CUAE_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h_, x_, y_, cw_, w_, static_cast<int>(perf.size()),
                                                                     &got, perf.data()));
      bwd_filter_ = pick(perf, got, tf32, cw_, "backward filter", [&](int algo, std::size_t* b) {
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(h_, x_, y_, cw_, w_,
                                                              static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), b);
      });
    }
    ws_bytes_ = std::max({fwd_.ws, bwd_data_.ws, bwd_filter_.ws});
    ws_ = DevArray<unsigned char>(ws_bytes_);
  }
  ~RawConv() {
    cudnnDestroyConvolutionDescriptor(cw_);
    cudnnDestroyConvolutionDescriptor(cd_);
    cudnnDestroyConvolutionDescriptor(cf_);
    cudnnDestroyFilterDescriptor(w_);
    cudnnDestroyTensorDescriptor(bc_);
    cudnnDestroyTensorDescriptor(bk_);
    cudnnDestroyTensorDescriptor(y_);
    cudnnDestroyTensorDescriptor(x_);
  }
  RawConv(const RawConv&) = delete;
  RawConv& operator=(const RawConv&) = delete;

  // X, W → Y
  void fwd(const float* x, const float* w, float* y) const {
    CUAE_CUDNN_CHECK(cudnnConvolutionForward(h_, &one_, x_, x, w_, w, cf_, static_cast<cudnnConvolutionFwdAlgo_t>(fwd_.algo),
                                             ws_.get(), ws_bytes_, &zero_, y_, y));
  }
  // Y, W → X
  void bwd_data(const float* w, const float* dy, float* dx) const {
    CUAE_CUDNN_CHECK(cudnnConvolutionBackwardData(h_, &one_, w_, w, y_, dy, cd_,
                                                  static_cast<cudnnConvolutionBwdDataAlgo_t>(bwd_data_.algo), ws_.get(),
                                                  ws_bytes_, &zero_, x_, dx));
  }
  // X, Y → W
  void bwd_filter(const float* x, const float* dy, float* dw) const {
    CUAE_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h_, &one_, x_, x, y_, dy, cw_,
                                                    static_cast<cudnnConvolutionBwdFilterAlgo_t>(bwd_filter_.algo),
                                                    ws_.get(), ws_bytes_, &zero_, w_, dw));
  }
  // db = Σ over n, h, w of a Y-shaped (k channels) or X-shaped (c channels) tensor.
  void bias_grad_y(const float* dy, float* db) const {
    CUAE_CUDNN_CHECK(cudnnConvolutionBackwardBias(h_, &one_, y_, dy, &zero_, bk_, db));
  }
  void bias_grad_x(const float* dx, float* db) const {
    CUAE_CUDNN_CHECK(cudnnConvolutionBackwardBias(h_, &one_, x_, dx, &zero_, bc_, db));
  }
  std::string describe() const {
    return "fwd " + fwd_.str() + ", bwd_data " + bwd_data_.str() + ", bwd_filter " + bwd_filter_.str();
  }

 private:
  struct Choice {
    int algo = 0;
    cudnnMathType_t math = CUDNN_FMA_MATH;
    std::size_t ws = 0;
    std::string str() const { return "algo " + std::to_string(algo) + "/" + math_str(math) + "/" + std::to_string(ws) + "B"; }
  };

  // The first ranked result cuDNN confirms (status and workspace) under the math type it will run
  // with: FMA without TF32, the ranked one with it.
  template <class Perf, class Ws>
  static Choice pick(const std::vector<Perf>& perf, int got, bool tf32, cudnnConvolutionDescriptor_t d,
                     const char* what, Ws ws) {
    for (int i = 0; i < got && i < static_cast<int>(perf.size()); ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
      const cudnnMathType_t math = tf32 ? perf[i].mathType : CUDNN_FMA_MATH;
      CUAE_CUDNN_CHECK(cudnnSetConvolutionMathType(d, math));
      std::size_t bytes = 0;
      if (ws(static_cast<int>(perf[i].algo), &bytes) != CUDNN_STATUS_SUCCESS) continue;
      return Choice{static_cast<int>(perf[i].algo), math, bytes};
    }
    throw cuae::Error(std::string("raw cuDNN: no ") + what + " algorithm ranked for this geometry");
  }

  cudnnHandle_t h_ = nullptr;
  cudnnTensorDescriptor_t x_ = nullptr, y_ = nullptr, bk_ = nullptr, bc_ = nullptr;
  cudnnFilterDescriptor_t w_ = nullptr;
  cudnnConvolutionDescriptor_t cf_ = nullptr, cd_ = nullptr, cw_ = nullptr;
  Choice fwd_, bwd_data_, bwd_filter_;
  std::size_t ws_bytes_ = 0;
  DevArray<unsigned char> ws_;
  static constexpr float one_ = 1.0f, zero_ = 0.0f;
};

// =============================================================================================
// layers and the resident case
// =============================================================================================

struct Layer {
  std::string name;
  ConvGeom g;
  Act conv_act, deconv_act;
};

Layer make_layer(std::string name, int n, int hw, int c, int k, int stride) {
  ConvGeom g;
  g.n = n, g.h = hw, g.w = hw, g.c = c, g.k = k, g.r = 3, g.s = 3;
  g.stride_h = g.stride_w = stride, g.pad_h = g.pad_w = 1;
  g.p = kern::conv_out_extent(g.h, g.r, g.stride_h, g.pad_h, g.dil_h);
  g.q = kern::conv_out_extent(g.w, g.s, g.stride_w, g.pad_w, g.dil_w);
  // The transposed layer that writes an image ends in a sigmoid.
  return Layer{std::move(name), g, Act::ReLU, c <= 4 ? Act::Sigmoid : Act::ReLU};
}

// One (layer, direction) resident at a time: the inputs, the CPU references and every buffer the
// implementations share. "in" is the tensor the op reads (conv: x [n,h,w,c]; deconv: x [n,p,q,k])
// and "out" the one it writes.
struct Case {
  std::string key;
  ConvGeom g;
  bool deconv = false;
  Act act = Act::ReLU;
  std::size_t n_in = 0, n_out = 0, n_w = 0, n_b = 0;
  std::vector<float> hx, hw, hb, hdy;
  std::string cpu_error;                  // non-empty: the CPU op could not give a reference
  std::vector<float> ry, rdz, rdb, rdx, rdw;
  DevBuf x, w, b, dy, y, by, dz, dx, dw, db;
  DevArray<unsigned char> ws_fwd, ws_bwd;  // ours: the larger of the fp32 and TF32 plans' answers
  std::unique_ptr<RawConv> raw[2];         // [tf32]
};
std::unique_ptr<Case> g_case;

std::size_t ws_query(const ConvGeom& g, ConvPass pass, bool tf32) {
  kern::Context ctx = env().ctx();
  ctx.tf32 = tf32;
  std::size_t bytes = 0;
  kern::ConvWorkspace q;
  q.g = g, q.pass = pass, q.bytes = &bytes;
  kern::cuda_ops().conv_workspace(ctx, q);
  return bytes;
}

// The CPU references: forward y, then the backward from that y.
void cpu_reference(Case& c) {
  const kern::Context cpu{};
  const kern::OpTable& t = kern::cpu_ops();
  const ConvGeom& g = c.g;
  const auto host_ws = [&](ConvPass pass) {
    std::size_t bytes = 0;
    kern::ConvWorkspace q;
    q.g = g, q.pass = pass, q.bytes = &bytes;
    t.conv_workspace(cpu, q);
    return std::vector<float>((bytes + sizeof(float) - 1) / sizeof(float));
  };
  c.ry.assign(c.n_out, 0.0f);
  c.rdz.assign(c.n_out, 0.0f);
  c.rdb.assign(c.n_b, 0.0f);
  c.rdx.assign(c.n_in, 0.0f);
  c.rdw.assign(c.n_w, 0.0f);
  std::vector<float> wsf = host_ws(c.deconv ? ConvPass::DeconvForward : ConvPass::ConvForward);
  std::vector<float> wsb = host_ws(c.deconv ? ConvPass::DeconvBackward : ConvPass::ConvBackward);
  if (!c.deconv) {
    kern::ConvForward f;
    f.g = g, f.x = c.hx.data(), f.w = c.hw.data(), f.b = c.hb.data(), f.y = c.ry.data(), f.act = c.act;
    f.ws = wsf.empty() ? nullptr : wsf.data(), f.ws_bytes = wsf.size() * sizeof(float);
    t.conv2d_forward(cpu, f);
    kern::ConvBackward bw;
    bw.g = g, bw.dy = c.hdy.data(), bw.y = c.ry.data(), bw.x = c.hx.data(), bw.w = c.hw.data();
    bw.dz = c.rdz.data(), bw.dx = c.rdx.data(), bw.dw = c.rdw.data(), bw.db = c.rdb.data(), bw.act = c.act;
    bw.ws = wsb.empty() ? nullptr : wsb.data(), bw.ws_bytes = wsb.size() * sizeof(float);
    t.conv2d_backward(cpu, bw);
  } else {
    kern::DeconvForward f;
    f.g = g, f.x = c.hx.data(), f.w = c.hw.data(), f.b = c.hb.data(), f.y = c.ry.data(), f.act = c.act;
    f.ws = wsf.empty() ? nullptr : wsf.data(), f.ws_bytes = wsf.size() * sizeof(float);
    t.deconv2d_forward(cpu, f);
    kern::DeconvBackward bw;
    bw.g = g, bw.dy = c.hdy.data(), bw.y = c.ry.data(), bw.x = c.hx.data(), bw.w = c.hw.data();
    bw.dz = c.rdz.data(), bw.dx = c.rdx.data(), bw.dw = c.rdw.data(), bw.db = c.rdb.data(), bw.act = c.act;
    bw.ws = wsb.empty() ? nullptr : wsb.data(), bw.ws_bytes = wsb.size() * sizeof(float);
    t.deconv2d_backward(cpu, bw);
  }
}

Case& get_case(const Layer& L, bool deconv) {
  const std::string key = L.name + (deconv ? "/deconv" : "/conv");
  if (g_case && g_case->key == key) return *g_case;
  g_case.reset();
  auto c = std::make_unique<Case>();
  c->key = key;
  c->g = L.g;
  c->deconv = deconv;
  c->act = deconv ? L.deconv_act : L.conv_act;
  const ConvGeom& g = L.g;
  const std::size_t sx = static_cast<std::size_t>(g.n) * g.h * g.w * g.c;  // conv input / deconv output
  const std::size_t sy = static_cast<std::size_t>(g.n) * g.p * g.q * g.k;  // conv output / deconv input
  c->n_in = deconv ? sy : sx;
  c->n_out = deconv ? sx : sy;
  c->n_w = static_cast<std::size_t>(g.k) * g.r * g.s * g.c;
  c->n_b = static_cast<std::size_t>(deconv ? g.c : g.k);
  // Weights ~ 1/sqrt(fan-in), so pre-activations are O(1) and the sigmoid is not saturated. A
  // transposed layer's output sums k·r·s/(stride_h·stride_w) terms on average.
  const double fan_in = deconv ? static_cast<double>(g.k) * g.r * g.s / (g.stride_h * g.stride_w)
                               : static_cast<double>(g.c) * g.r * g.s;
  const float ws = static_cast<float>(1.0 / std::sqrt(fan_in));
  const std::uint32_t seed = static_cast<std::uint32_t>(std::hash<std::string>{}(key));
  c->hx = random_vec(c->n_in, seed + 1, -1.0f, 1.0f);
  c->hw = random_vec(c->n_w, seed + 2, -ws, ws);
  c->hb = random_vec(c->n_b, seed + 3, -0.1f, 0.1f);
  c->hdy = random_vec(c->n_out, seed + 4, -1.0f, 1.0f);
  try {
    cpu_reference(*c);
  } catch (const std::exception& e) {
    c->cpu_error = e.what();
  }
  c->x = DevBuf(c->n_in), c->w = DevBuf(c->n_w), c->b = DevBuf(c->n_b), c->dy = DevBuf(c->n_out);
  c->y = DevBuf(c->n_out), c->by = DevBuf(c->n_out), c->dz = DevBuf(c->n_out);
  c->dx = DevBuf(c->n_in), c->dw = DevBuf(c->n_w), c->db = DevBuf(c->n_b);
  upload(c->x, c->hx);
  upload(c->w, c->hw);
  upload(c->b, c->hb);
  upload(c->dy, c->hdy);
  // The backward reads the CPU forward's y, so every implementation's derivative sees the same
  // inputs as the reference (without a reference nothing is checked, so nothing is timed either).
  if (c->cpu_error.empty()) upload(c->by, c->ry);
  const ConvPass pf = deconv ? ConvPass::DeconvForward : ConvPass::ConvForward;
  const ConvPass pb = deconv ? ConvPass::DeconvBackward : ConvPass::ConvBackward;
  c->ws_fwd = DevArray<unsigned char>(std::max(ws_query(g, pf, false), ws_query(g, pf, true)));
  c->ws_bwd = DevArray<unsigned char>(std::max(ws_query(g, pb, false), ws_query(g, pb, true)));
  g_case = std::move(c);
  return *g_case;
}

const RawConv& raw_of(Case& c, bool tf32) {
  if (!c.raw[tf32]) c.raw[tf32] = std::make_unique<RawConv>(c.g, tf32);
  return *c.raw[tf32];
}

// =============================================================================================
// implementations
// =============================================================================================

enum class Impl { V0, V1, V2, V0Tf32, Raw, RawTf32 };
const char* impl_name(Impl i) {
  switch (i) {
    case Impl::V0: return "cuae_v0";
    case Impl::V1: return "cuae_v1";
    case Impl::V2: return "cuae_v2";
    case Impl::V0Tf32: return "cuae_v0_tf32";
    case Impl::Raw: return "cudnn_raw";
    case Impl::RawTf32: return "cudnn_raw_tf32";
  }
  return "?";
}
bool is_raw(Impl i) { return i == Impl::Raw || i == Impl::RawTf32; }
bool is_tf32(Impl i) { return i == Impl::V0Tf32 || i == Impl::RawTf32; }
Impl raw_for(Impl i) { return is_tf32(i) ? Impl::RawTf32 : Impl::Raw; }
double tol_of(Impl i) { return is_tf32(i) ? 5e-3 : 1e-4; }  // TF32 keeps 10 mantissa bits

kern::Context op_ctx(Impl i) {
  kern::Context ctx = env().ctx();
  ctx.variant = i == Impl::V1 ? 1 : (i == Impl::V2 ? 2 : 0);
  ctx.tf32 = is_tf32(i);
  return ctx;
}

// The callable that runs `impl` of the pass on the resident case.
std::function<void()> make_fn(Case& c, bool backward, Impl impl) {
  const ConvGeom g = c.g;
  const float slope = 0.01f;
  if (is_raw(impl)) {
    const RawConv* r = &raw_of(c, is_tf32(impl));
    Case* pc = &c;
    if (!backward) {
      return [r, pc, slope] {
        const Case& c = *pc;
        if (!c.deconv) r->fwd(c.x.get(), c.w.get(), c.y.get());
        else r->bwd_data(c.w.get(), c.x.get(), c.y.get());
        const auto total = static_cast<long long>(c.n_out);
        plain_bias_act<<<plain_grid(total), 256, 0, env().stream>>>(c.y.get(), c.b.get(), total,
                                                                   static_cast<int>(c.n_b), c.act, slope);
        CUAE_CUDA_LAUNCH_CHECK();
      };
    }
    return [r, pc, slope] {
      const Case& c = *pc;
      const auto total = static_cast<long long>(c.n_out);
      plain_dact<<<plain_grid(total), 256, 0, env().stream>>>(c.dy.get(), c.by.get(), c.dz.get(), total, c.act, slope);
      CUAE_CUDA_LAUNCH_CHECK();
      if (!c.deconv) {
        r->bias_grad_y(c.dz.get(), c.db.get());
        r->bwd_filter(c.x.get(), c.dz.get(), c.dw.get());
        r->bwd_data(c.w.get(), c.dz.get(), c.dx.get());
      } else {
        // The transposed layer's output plays the convolution's input (X), its input the output (Y).
        r->bias_grad_x(c.dz.get(), c.db.get());
        r->bwd_filter(c.dz.get(), c.x.get(), c.dw.get());
        r->fwd(c.dz.get(), c.w.get(), c.dx.get());
      }
    };
  }
  const kern::Context ctx = op_ctx(impl);
  if (!backward && !c.deconv) {
    kern::ConvForward a;
    a.g = g, a.x = c.x.get(), a.w = c.w.get(), a.b = c.b.get(), a.y = c.y.get(), a.act = c.act, a.slope = slope;
    a.ws = c.ws_fwd.get(), a.ws_bytes = c.ws_fwd.size();
    return [a, ctx] { kern::cuda_ops().conv2d_forward(ctx, a); };
  }
  if (!backward) {
    kern::DeconvForward a;
    a.g = g, a.x = c.x.get(), a.w = c.w.get(), a.b = c.b.get(), a.y = c.y.get(), a.act = c.act, a.slope = slope;
    a.ws = c.ws_fwd.get(), a.ws_bytes = c.ws_fwd.size();
    return [a, ctx] { kern::cuda_ops().deconv2d_forward(ctx, a); };
  }
  if (!c.deconv) {
    kern::ConvBackward a;
    a.g = g, a.dy = c.dy.get(), a.y = c.by.get(), a.x = c.x.get(), a.w = c.w.get();
    a.dz = c.dz.get(), a.dx = c.dx.get(), a.dw = c.dw.get(), a.db = c.db.get(), a.act = c.act, a.slope = slope;
    a.ws = c.ws_bwd.get(), a.ws_bytes = c.ws_bwd.size();
    return [a, ctx] { kern::cuda_ops().conv2d_backward(ctx, a); };
  }
  kern::DeconvBackward a;
  a.g = g, a.dy = c.dy.get(), a.y = c.by.get(), a.x = c.x.get(), a.w = c.w.get();
  a.dz = c.dz.get(), a.dx = c.dx.get(), a.dw = c.dw.get(), a.db = c.db.get(), a.act = c.act, a.slope = slope;
  a.ws = c.ws_bwd.get(), a.ws_bytes = c.ws_bwd.size();
  return [a, ctx] { kern::cuda_ops().deconv2d_backward(ctx, a); };
}

// Runs f once on poisoned outputs and compares with the CPU references.
Check check_fn(Case& c, bool backward, Impl impl, const std::function<void()>& f) {
  if (!c.cpu_error.empty()) return Check{false, INFINITY, "no CPU reference: " + c.cpu_error};
  Checker ck{tol_of(impl)};
  if (!backward) {
    poison(c.y);
    f();
    ck.compare("y", download(c.y), c.ry);
  } else {
    poison(c.dz);
    poison(c.dx);
    poison(c.dw);
    poison(c.db);
    f();
    ck.compare("dz", download(c.dz), c.rdz);
    ck.compare("db", download(c.db), c.rdb);
    ck.compare("dw", download(c.dw), c.rdw);
    ck.compare("dx", download(c.dx), c.rdx);
  }
  return ck.result;
}

std::string bench_name(const std::string& layer, bool deconv, bool backward, Impl impl) {
  return std::string(deconv ? "deconv" : "conv") + (backward ? "_bwd/" : "_fwd/") + layer + "/" + impl_name(impl);
}

void bm_conv(benchmark::State& st, const Layer& L, bool deconv, bool backward, Impl impl) {
  const std::string name = bench_name(L.name, deconv, backward, impl);
  Case* cp = nullptr;
  std::function<void()> f;
  try {
    cp = &get_case(L, deconv);
    f = make_fn(*cp, backward, impl);
    if (is_raw(impl)) st.SetLabel(raw_of(*cp, is_tf32(impl)).describe());
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  Case& c = *cp;
  const ConvGeom& g = c.g;
  const double npqkrsc = static_cast<double>(g.n) * g.p * g.q * g.k * g.r * g.s * g.c;
  Work w;
  w.flops = 2 * npqkrsc * (backward ? 2 : 1);
  const double in = static_cast<double>(c.n_in), out = static_cast<double>(c.n_out);
  const double wt = static_cast<double>(c.n_w), bs = static_cast<double>(c.n_b);
  // Forward: read in, W, b; write out. Backward: read dy, y; write dz; read dz twice, in, W; write
  // dx (in-sized), dW, db.
  w.bytes = backward ? 4 * (5 * out + 2 * in + 2 * wt + bs) : 4 * (in + out + wt + bs);
  const double per = run(st, name, [&] { return check_fn(c, backward, impl, f); }, f, w);
  if (per <= 0 || is_raw(impl)) return;
  // The wrapper against raw cuDNN of the same precision, both measured here, back to back.
  try {
    const Impl ri = raw_for(impl);
    const std::string raw_name = bench_name(L.name, deconv, backward, ri);
    const std::function<void()> rf = make_fn(c, backward, ri);
    auto it = g_checks.find(raw_name);
    if (it == g_checks.end()) it = g_checks.emplace(raw_name, check_fn(c, backward, ri, rf)).first;
    if (!it->second.ok) return;  // the raw row reports why
    const double t_raw = median_time(rf, 15);
    const double t_ours = median_time(f, 15);
    st.counters["raw_us"] = t_raw * 1e6;
    st.counters["ours_us"] = t_ours * 1e6;
    st.counters["overhead_pct"] = 100.0 * (t_ours / t_raw - 1.0);
  } catch (const std::exception& e) {
    st.SetLabel(std::string("raw comparison failed: ") + e.what());
  }
}

// =============================================================================================
// registration and main
// =============================================================================================

void register_all() {
  register_ceilings(true);
  std::vector<Layer> layers = {
      make_layer("mnist_l1", 256, 28, 1, 32, 1),
      make_layer("mnist_l2", 256, 14, 32, 64, 2),
      make_layer("img128_l1", 64, 128, 3, 32, 2),
  };
  if (!g_opt.quick) {
    layers.push_back(make_layer("img128_l2", 64, 64, 32, 64, 1));
    layers.push_back(make_layer("img128_l3", 64, 64, 64, 128, 2));
    layers.push_back(make_layer("img256_l1", 16, 256, 3, 32, 2));
  }
  const Impl fwd_impls[] = {Impl::V0, Impl::V1, Impl::V2, Impl::V0Tf32, Impl::Raw, Impl::RawTf32};
  const Impl bwd_impls[] = {Impl::V0, Impl::V0Tf32, Impl::Raw, Impl::RawTf32};
  for (const Layer& L : layers) {
    for (const bool deconv : {false, true}) {
      for (const bool backward : {false, true}) {
        const auto add = [&](Impl impl) {
          reg(bench_name(L.name, deconv, backward, impl),
              [L, deconv, backward, impl](benchmark::State& st) { bm_conv(st, L, deconv, backward, impl); });
        };
        if (backward)
          for (Impl i : bwd_impls) add(i);
        else
          for (Impl i : fwd_impls) add(i);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  return bench_main(argc, argv, "bench_conv", true, register_all, [] { g_case.reset(); });
}
