// CUDA convolution ops: conv2d / deconv2d forward and backward on cuDNN 9's convolution API, with
// our own fused epilogues and, for few-channel layers, our own direct kernels (conv_direct.cu).
//
// Layouts. Activations are NHWC and filters KRSC (kernels/ops.hpp). cuDNN is told exactly that:
// 4-d tensor descriptors in CUDNN_TENSOR_NHWC (dims given as n, c, h, w) and a filter descriptor in
// CUDNN_TENSOR_NHWC (dims k, c, r, s), which is the KRSC memory order. One geometry g gives one
// set of descriptors — X [n,c,h,w], Y [n,k,p,q], W [k,c,r,s], cross-correlation — and three
// cuDNN operations on them:
//   Fwd        X, W → Y    conv forward; deconv backward's dx = conv(dz)
//   BwdData    Y, W → X    conv backward's dx; deconv forward (a transposed convolution IS the data
//                          gradient of g, output padding implied by the h, w of X)
//   BwdFilter  X, Y → W    conv backward's dw (X = x, Y = dz); deconv backward's dw (X = dz, Y = x)
// acc_dx / acc_dw are cuDNN's beta (1 adds into the destination, 0 overwrites without reading it).
//
// Algorithm choice (the plan cache). Per (device, geometry, tf32) one Plan holds the descriptors
// and, per operation, the algorithm, its math type, its own convolution descriptor (the math type
// lives there, and two operations may want different ones) and its workspace. An operation's
// algorithm is chosen the first time a pass needs it — normally at the executor's ConvWorkspace
// query — and never changes afterwards, so a planned workspace stays sufficient and a run repeats
// bit for bit. The choice walks cuDNN's own heuristic ranking (cudnnGet*Algorithm_v7, no timing
// runs) and takes the first result that
//   - succeeded (status), and is deterministic (the non-deterministic BwdData ALGO_0 and
//     BwdFilter ALGO_0/3 add with atomics; taken only when nothing deterministic is offered),
//   - with tf32 false: is a direct-summation algorithm (no FFT or Winograd transform, whose
//     rounding is not that of an fp32 dot product) and runs with CUDNN_FMA_MATH (no tensor cores),
//     so results match the CPU reference to fp32 rounding; with tf32 true: runs with the math type
//     cuDNN ranked it with (DEFAULT / TENSOR_OP, never ALLOW_CONVERSION, which may go below TF32),
//   - and whose workspace cudnnGet*WorkspaceSize confirms under that math type, within
//     kMaxConvWorkspaceBytes (128 MiB, kernels/ops.hpp: the tests allow exactly that much).
// If the ranking offers nothing acceptable, a fixed list of generally supported algorithms is
// tried the same way; if that fails too the op throws, naming the geometry.
//
// Workspace. conv_workspace(pass) = the maximum over the cuDNN operations the pass can run:
//   ConvForward: Fwd   ConvBackward: max(BwdData, BwdFilter)   DeconvForward: BwdData
//   DeconvBackward: max(Fwd, BwdFilter)
// independent of ctx.variant and of which of dx/dw a call wants, so a workspace planned once
// serves every variant and every call of the pass. Every call checks ws_bytes against that figure
// before it enqueues anything (also when the direct kernel, which needs none, is what runs), so an
// undersized plan fails loudly on every path.
//
// Kernel variants (ctx.variant, 0 ≤ v < kConvVariants):
//   0 production: the direct kernels for conv forward with c ≤ 4 and deconv forward with c ≤ 4
//     (when they cover the geometry), cuDNN otherwise. The threshold c ≤ 4 is to be confirmed by
//     bench_conv on a GPU (the cuae_v1 / cuae_v2 rows of the few-channel layers).
//   1 cuDNN for every pass.
//   2 the direct kernels for every forward pass they cover, whatever the channel count; cuDNN for
//     the rest (the backward passes, which have no direct kernel).
//
// Epilogues: the bias + activation pass after cuDNN's output (skipped when that output is already
// the answer: identity, no bias, no z) and the backward's dz / bias-gradient pass are the shared
// ones of kernels/cuda/epilogue.cuh, the same the dense layer uses.
//
// Per call: with an OpCache in the arguments the call site keeps its Plan (entry 0), so a bound
// executor step neither locks nor looks anything up; the cuDNN handle is the backend's, made at the
// first convolution (kernels/cuda/cudnn_handle.hpp).
//
// Determinism: no atomics in our kernels; the partition of the reduction depends only on the
// shape, the SM count and the scratch size. cuDNN's deterministic algorithms are preferred (above).
//
// No host synchronisation anywhere: the caches are host state, every launch is stream-ordered, and
// the cuDNN handle is bound to ctx.stream (rebound if a caller's Context names another).
#include <cudnn.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/conv_common.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv_direct.cuh"
#include "kernels/cuda/cudnn_handle.hpp"
#include "kernels/cuda/epilogue.cuh"
#include "kernels/ops.hpp"

namespace cuae::kern::cuda {

namespace {


// =============================================================================================
// cuDNN plans
// =============================================================================================

enum Op : int { kFwd = 0, kBwdData = 1, kBwdFilter = 2 };
const char* op_name(int op) {
  switch (op) {
    case kFwd: return "forward";
    case kBwdData: return "backward data";
    case kBwdFilter: return "backward filter";
  }
  return "?";
}

struct OpAlgo {
  bool chosen = false;
  int algo = 0;  // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t
  cudnnMathType_t math = CUDNN_FMA_MATH;
  std::size_t ws = 0;
  cudnnConvolutionDescriptor_t conv = nullptr;  // carries the chosen math type
};

struct Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  OpAlgo op[3];
  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    // Host objects only: destroying them needs no device and does not fail in practice.
    for (OpAlgo& o : op)
      if (o.conv) cudnnDestroyConvolutionDescriptor(o.conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
};

// The device is part of the key (an algorithm is chosen for one GPU); the handle is not (any handle
// on that device can run it, and a dead handle's address may be reused).
using PlanKey = std::array<int, 18>;

PlanKey key_of(const Context& ctx, const ConvGeom& g) {
  CUAE_CHECK(ctx.device >= 0, "conv: the context names no CUDA device (make it through a cuae Backend)");
  const int tf32 = ctx.tf32 ? 1 : 0;
  return {ctx.device, g.n, g.h, g.w, g.c, g.k, g.r, g.s, g.p, g.q,
          g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dil_h, g.dil_w, tf32, 0};
}

std::mutex g_plans_mutex;
std::map<PlanKey, std::unique_ptr<Plan>> g_plans;

void set_conv_desc(cudnnConvolutionDescriptor_t d, const ConvGeom& g) {
  CUAE_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d, g.pad_h, g.pad_w, g.stride_h, g.stride_w, g.dil_h, g.dil_w,
                                                   CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
}

std::unique_ptr<Plan> make_plan(const ConvGeom& g) {
  auto pl = std::make_unique<Plan>();
  CUAE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&pl->x));
  CUAE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&pl->y));
  CUAE_CUDNN_CHECK(cudnnCreateFilterDescriptor(&pl->w));
  CUAE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(pl->x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, g.n, g.c, g.h, g.w));
  CUAE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(pl->y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, g.n, g.k, g.p, g.q));
  CUAE_CUDNN_CHECK(cudnnSetFilter4dDescriptor(pl->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, g.k, g.c, g.r, g.s));
  for (OpAlgo& o : pl->op) {
    CUAE_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&o.conv));
    set_conv_desc(o.conv, g);
  }
  // cuDNN's own output extent must be ours (validate() checked p, q by the PyTorch formula).
  int on = 0, ok = 0, op = 0, oq = 0;
  CUAE_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(pl->op[kFwd].conv, pl->x, pl->w, &on, &ok, &op, &oq));
  CUAE_CHECK(on == g.n && ok == g.k && op == g.p && oq == g.q,
             "conv: cuDNN computes the output [" + std::to_string(on) + "," + std::to_string(op) + "," +
                 std::to_string(oq) + "," + std::to_string(ok) + "] for " + conv_geom_str(g));
  return pl;
}

// Whether an algorithm computes plain fp32 dot products (no FFT / Winograd transform).
bool exact_algo(int op, int algo) {
  switch (op) {
    case kFwd:
      return algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
             algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
    case kBwdData: return algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 || algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
    case kBwdFilter:
      return algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 ||
             algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
  }
  return false;
}

// One ranked heuristic result, whichever operation it is for.
struct Candidate {
  int algo;
  cudnnStatus_t status;
  cudnnDeterminism_t determinism;
  cudnnMathType_t math;
};

template <class Perf>
std::vector<Candidate> to_candidates(const std::vector<Perf>& perf, int got) {
  std::vector<Candidate> c;
  for (int i = 0; i < got && i < static_cast<int>(perf.size()); ++i)
    c.push_back({static_cast<int>(perf[i].algo), perf[i].status, perf[i].determinism, perf[i].mathType});
  return c;
}

std::vector<Candidate> ranked(cudnnHandle_t h, const Plan& pl, int op) {
  const cudnnConvolutionDescriptor_t cd = pl.op[op].conv;
  int max = 0, got = 0;
  switch (op) {
    case kFwd: {
      CUAE_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<std::size_t>(max > 0 ? max : 1));
      CUAE_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, pl.x, pl.w, cd, pl.y, static_cast<int>(perf.size()),
                                                              &got, perf.data()));
      return to_candidates(perf, got);
    }
    case kBwdData: {
      CUAE_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<std::size_t>(max > 0 ? max : 1));
      CUAE_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, pl.w, pl.y, cd, pl.x,
                                                                   static_cast<int>(perf.size()), &got, perf.data()));
      return to_candidates(perf, got);
    }
    default: {
      CUAE_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<std::size_t>(max > 0 ? max : 1));
      CUAE_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, pl.x, pl.y, cd, pl.w,
                                                                     static_cast<int>(perf.size()), &got, perf.data()));
      return to_candidates(perf, got);
    }
  }
}

// The workspace of an algorithm under the math type now set on the operation's descriptor; the
// status says whether cuDNN supports the pair at all for this geometry.
cudnnStatus_t workspace_of(cudnnHandle_t h, const Plan& pl, int op, int algo, std::size_t* bytes) {
  const cudnnConvolutionDescriptor_t cd = pl.op[op].conv;
  switch (op) {
    case kFwd:
      return cudnnGetConvolutionForwardWorkspaceSize(h, pl.x, pl.w, cd, pl.y, static_cast<cudnnConvolutionFwdAlgo_t>(algo),
                                                     bytes);
    case kBwdData:
      return cudnnGetConvolutionBackwardDataWorkspaceSize(h, pl.w, pl.y, cd, pl.x,
                                                          static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), bytes);
    default:
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, pl.x, pl.y, cd, pl.w,
                                                            static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), bytes);
  }
}

// Sets the math type and asks for the workspace; on success the operation is fixed to (algo, math).
bool try_algo(cudnnHandle_t h, Plan& pl, int op, int algo, cudnnMathType_t math) {
  OpAlgo& o = pl.op[op];
  CUAE_CUDNN_CHECK(cudnnSetConvolutionMathType(o.conv, math));
  std::size_t bytes = 0;
  if (workspace_of(h, pl, op, algo, &bytes) != CUDNN_STATUS_SUCCESS || bytes > kMaxConvWorkspaceBytes) return false;
  o.algo = algo;
  o.math = math;
  o.ws = bytes;
  o.chosen = true;
  return true;
}

void choose(cudnnHandle_t h, Plan& pl, int op, bool tf32, const ConvGeom& g) {
  OpAlgo& o = pl.op[op];
  if (o.chosen) return;
  // The math type set before the query tells the heuristic which kernels it may rank (with
  // FMA_MATH no tensor-core kernels; with DEFAULT_MATH fp32 may run as TF32).
  CUAE_CUDNN_CHECK(cudnnSetConvolutionMathType(o.conv, tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
  const std::vector<Candidate> cands = ranked(h, pl, op);
  const auto acceptable = [&](const Candidate& c) {
    if (c.status != CUDNN_STATUS_SUCCESS) return false;
    if (tf32) return c.math != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    return exact_algo(op, c.algo);
  };
  // The math type to run a candidate with: fp32 FMAs when tf32 is off, whatever the ranking said.
  const auto math_of = [&](const Candidate& c) { return tf32 ? c.math : CUDNN_FMA_MATH; };
  for (const bool want_det : {true, false}) {
    for (const Candidate& c : cands) {
      if (!acceptable(c) || (want_det && c.determinism != CUDNN_DETERMINISTIC)) continue;
      if (try_algo(h, pl, op, c.algo, math_of(c))) return;
    }
  }
  // Nothing usable ranked: the implicit-GEMM family, deterministic first.
  std::vector<int> fallback;
  if (op == kFwd)
    fallback = {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                CUDNN_CONVOLUTION_FWD_ALGO_GEMM};
  else if (op == kBwdData)
    fallback = {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0};
  else
    fallback = {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
                CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3};
  for (const int algo : fallback)
    if (try_algo(h, pl, op, algo, tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH)) return;
  throw Error(std::string("conv: cuDNN offers no usable ") + op_name(op) + " algorithm (" +
              (tf32 ? "TF32 allowed" : "fp32 FMA only") + ", workspace <= 128 MiB) for " + conv_geom_str(g));
}

// The cuDNN operations each pass may run.
std::vector<int> ops_of(ConvPass pass) {
  switch (pass) {
    case ConvPass::ConvForward: return {kFwd};
    case ConvPass::ConvBackward: return {kBwdData, kBwdFilter};
    case ConvPass::DeconvForward: return {kBwdData};
    case ConvPass::DeconvBackward: return {kFwd, kBwdFilter};
  }
  return {};
}

// The plan of g with every operation of `pass` chosen, from the process-wide cache under its lock.
// The returned plan lives as long as the process and its chosen operations never change, so it is
// read without the lock afterwards.
const Plan& plan_for(const Context& ctx, cudnnHandle_t h, const ConvGeom& g, ConvPass pass) {
  const PlanKey key = key_of(ctx, g);
  std::lock_guard<std::mutex> lock(g_plans_mutex);
  auto it = g_plans.find(key);
  if (it == g_plans.end()) it = g_plans.emplace(key, make_plan(g)).first;
  Plan& pl = *it->second;
  for (const int op : ops_of(pass)) choose(h, pl, op, ctx.tf32, g);
  return pl;
}

// A call site's plan (OpCache entry 0): what it was resolved for, and the plan.
struct Site : OpCache::Entry {
  ConvGeom g;
  ConvPass pass = ConvPass::ConvForward;
  int device = -1;
  bool tf32 = false;
  const Plan* plan = nullptr;
};

// The plan of a call: from the call site's OpCache when it was resolved there for the same
// geometry, pass and context (no lock, no lookup), otherwise from plan_for (and kept there).
const Plan& plan_of(const Context& ctx, cudnnHandle_t h, const ConvGeom& g, ConvPass pass, OpCache* cache) {
  if (cache) {
    const auto* s = dynamic_cast<const Site*>(cache->entries[0].get());
    if (s && s->g == g && s->pass == pass && s->device == ctx.device && s->tf32 == ctx.tf32) return *s->plan;
  }
  const Plan& pl = plan_for(ctx, h, g, pass);
  if (cache) {
    auto s = std::make_unique<Site>();
    s->g = g, s->pass = pass, s->device = ctx.device, s->tf32 = ctx.tf32, s->plan = &pl;
    cache->entries[0] = std::move(s);
  }
  return pl;
}

std::size_t pass_workspace(const Plan& pl, ConvPass pass) {
  std::size_t need = 0;
  for (const int op : ops_of(pass)) need = pl.op[op].ws > need ? pl.op[op].ws : need;
  return need;
}

void check_workspace(const char* op, const ConvGeom& g, const Plan& pl, ConvPass pass, const void* ws,
                     std::size_t ws_bytes) {
  const std::size_t need = pass_workspace(pl, pass);
  CUAE_CHECK(ws_bytes >= need && (need == 0 || ws != nullptr),
             std::string(op) + "(" + conv_geom_str(g) + "): the workspace is " + std::to_string(ws_bytes) +
                 " bytes" + (ws == nullptr ? " (null)" : "") + " but this geometry needs " + std::to_string(need) +
                 " (ask conv_workspace)");
}

void check_variant(const Context& ctx, const char* op) {
  CUAE_CHECK(ctx.variant >= 0 && ctx.variant < kConvVariants,
             std::string(op) + ": no kernel variant " + std::to_string(ctx.variant));
}

// Whether the direct kernel runs a forward pass whose small side is `few` channels (c of a
// convolution, c of a deconvolution's output). The threshold 4 is to be confirmed by bench_conv.
bool use_direct(const Context& ctx, int few, bool covered) {
  if (!covered || ctx.variant == 1) return false;
  return ctx.variant == 2 || few <= 4;
}

constexpr float kOne = 1.0f, kZero = 0.0f;
const float* beta_of(bool acc) { return acc ? &kOne : &kZero; }

// The backward's activation pass of a convolution's [rows, channels] output gradient.
template <class B>
epilogue::DactArgs dact_args(const B& a, std::int64_t rows, int channels) {
  epilogue::DactArgs d;
  d.dy = a.dy, d.y = a.y, d.z = a.z, d.dz = a.dz, d.db = a.db, d.acc_db = a.acc_db;
  d.rows = rows, d.cols = channels;
  d.act = a.act, d.slope = a.slope;
  return d;
}

}  // namespace

// =============================================================================================
// op entries
// =============================================================================================

void conv_workspace(const Context& ctx, const ConvWorkspace& a) {
  validate(a);
  const cudnnHandle_t h = cudnn_handle(ctx, "conv_workspace");
  const Plan& pl = plan_for(ctx, h, a.g, a.pass);
  *a.bytes = pass_workspace(pl, a.pass);
}

void conv2d_forward(const Context& ctx, const ConvForward& a) {
  validate(a);
  check_variant(ctx, "conv2d_forward");
  const cudnnHandle_t h = cudnn_handle(ctx, "conv2d_forward");
  const Plan& pl = plan_of(ctx, h, a.g, ConvPass::ConvForward, a.cache);
  check_workspace("conv2d_forward", a.g, pl, ConvPass::ConvForward, a.ws, a.ws_bytes);
  const cudaStream_t stream = launch::stream_of(ctx);
  if (use_direct(ctx, a.g.c, conv_direct::conv_forward_covers(a.g))) {
    conv_direct::conv_forward_cuda(ctx, a, stream);
    return;
  }
  const OpAlgo& o = pl.op[kFwd];
  float* pre = a.z ? a.z : a.y;
  CUAE_CUDNN_CHECK(cudnnConvolutionForward(h, &kOne, pl.x, a.x, pl.w, a.w, o.conv,
                                           static_cast<cudnnConvolutionFwdAlgo_t>(o.algo), a.ws, a.ws_bytes, &kZero,
                                           pl.y, pre));
  if (!a.b && a.act == Act::Identity && !a.z) return;  // cuDNN's output is the answer
  const std::int64_t rows = static_cast<std::int64_t>(a.g.n) * a.g.p * a.g.q;
  // With a bias the pass also writes the biased value back to z; without one z already holds it.
  epilogue::bias_act_cuda(ctx, pre, a.b ? a.z : nullptr, a.y, a.b, rows, a.g.k, a.act, a.slope, stream);
}

void conv2d_backward(const Context& ctx, const ConvBackward& a) {
  validate(a);
  check_variant(ctx, "conv2d_backward");
  const cudnnHandle_t h = cudnn_handle(ctx, "conv2d_backward");
  const Plan& pl = plan_of(ctx, h, a.g, ConvPass::ConvBackward, a.cache);
  check_workspace("conv2d_backward", a.g, pl, ConvPass::ConvBackward, a.ws, a.ws_bytes);
  const cudaStream_t stream = launch::stream_of(ctx);
  const std::int64_t rows = static_cast<std::int64_t>(a.g.n) * a.g.p * a.g.q;
  epilogue::dact_bgrad_cuda(ctx, dact_args(a, rows, a.g.k), stream);
  if (a.dw) {
    const OpAlgo& o = pl.op[kBwdFilter];
    CUAE_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &kOne, pl.x, a.x, pl.y, a.dz, o.conv,
                                                    static_cast<cudnnConvolutionBwdFilterAlgo_t>(o.algo), a.ws,
                                                    a.ws_bytes, beta_of(a.acc_dw), pl.w, a.dw));
  }
  if (a.dx) {
    const OpAlgo& o = pl.op[kBwdData];
    CUAE_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &kOne, pl.w, a.w, pl.y, a.dz, o.conv,
                                                  static_cast<cudnnConvolutionBwdDataAlgo_t>(o.algo), a.ws, a.ws_bytes,
                                                  beta_of(a.acc_dx), pl.x, a.dx));
  }
}

void deconv2d_forward(const Context& ctx, const DeconvForward& a) {
  validate(a);
  check_variant(ctx, "deconv2d_forward");
  const cudnnHandle_t h = cudnn_handle(ctx, "deconv2d_forward");
  const Plan& pl = plan_of(ctx, h, a.g, ConvPass::DeconvForward, a.cache);
  check_workspace("deconv2d_forward", a.g, pl, ConvPass::DeconvForward, a.ws, a.ws_bytes);
  const cudaStream_t stream = launch::stream_of(ctx);
  if (use_direct(ctx, a.g.c, conv_direct::deconv_forward_covers(a.g))) {
    conv_direct::deconv_forward_cuda(ctx, a, stream);
    return;
  }
  const OpAlgo& o = pl.op[kBwdData];
  float* pre = a.z ? a.z : a.y;
  CUAE_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &kOne, pl.w, a.w, pl.y, a.x, o.conv,
                                                static_cast<cudnnConvolutionBwdDataAlgo_t>(o.algo), a.ws, a.ws_bytes,
                                                &kZero, pl.x, pre));
  if (!a.b && a.act == Act::Identity && !a.z) return;
  const std::int64_t rows = static_cast<std::int64_t>(a.g.n) * a.g.h * a.g.w;
  epilogue::bias_act_cuda(ctx, pre, a.b ? a.z : nullptr, a.y, a.b, rows, a.g.c, a.act, a.slope, stream);
}

void deconv2d_backward(const Context& ctx, const DeconvBackward& a) {
  validate(a);
  check_variant(ctx, "deconv2d_backward");
  const cudnnHandle_t h = cudnn_handle(ctx, "deconv2d_backward");
  const Plan& pl = plan_of(ctx, h, a.g, ConvPass::DeconvBackward, a.cache);
  check_workspace("deconv2d_backward", a.g, pl, ConvPass::DeconvBackward, a.ws, a.ws_bytes);
  const cudaStream_t stream = launch::stream_of(ctx);
  const std::int64_t rows = static_cast<std::int64_t>(a.g.n) * a.g.h * a.g.w;
  epilogue::dact_bgrad_cuda(ctx, dact_args(a, rows, a.g.c), stream);
  if (a.dw) {
    // The filter gradient of the convolution whose input is dz and whose output gradient is x.
    const OpAlgo& o = pl.op[kBwdFilter];
    CUAE_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &kOne, pl.x, a.dz, pl.y, a.x, o.conv,
                                                    static_cast<cudnnConvolutionBwdFilterAlgo_t>(o.algo), a.ws,
                                                    a.ws_bytes, beta_of(a.acc_dw), pl.w, a.dw));
  }
  if (a.dx) {
    const OpAlgo& o = pl.op[kFwd];
    CUAE_CUDNN_CHECK(cudnnConvolutionForward(h, &kOne, pl.x, a.dz, pl.w, a.w, o.conv,
                                             static_cast<cudnnConvolutionFwdAlgo_t>(o.algo), a.ws, a.ws_bytes,
                                             beta_of(a.acc_dx), pl.y, a.dx));
  }
}

}  // namespace cuae::kern::cuda
