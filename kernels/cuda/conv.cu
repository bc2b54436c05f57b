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
//   - and whose workspace cudnnGet*WorkspaceSize confirms under that math type, within 128 MiB.
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
// Our epilogues (this file):
//   bias_act_kernel    y = act(pre + b) (+ z = pre + b) in one pass over the cuDNN output
//                      (float4 when the channel count is a multiple of 4). Skipped when cuDNN's
//                      output is already the answer (identity, no bias, no z).
//   dact_*             dz = dy ⊙ act'(y | z) and the bias gradient db = Σ_{rows} dz in one read of
//                      dy: each block sums its rows per channel in registers and a fixed tree,
//                      writes one partial per channel into ctx.scratch, and bias_grad_finish adds
//                      a channel's partials in a fixed order (one block per channel). Two layouts:
//                      "flat" for c ≤ 256 channels (a block of c·G threads walks the tensor as a flat
//                      array, so thread t always meets channel t mod c — fully coalesced even for
//                      1..3 channels, the last decoder layer's db) and "tile" (32 channels × 8 rows
//                      per block, row chunks over blockIdx.y) beyond.
//
// Determinism: no atomics in our kernels; the partition of the reduction depends only on the
// shape, the SM count and the scratch size. cuDNN's deterministic algorithms are preferred (above).
//
// No host synchronisation anywhere: the cache is host state, every launch is stream-ordered, and
// the cuDNN handle is bound to ctx.stream (rebound here if a caller's Context names another).
#include <cub/block/block_reduce.cuh>
#include <cudnn.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/act_math.hpp"
#include "kernels/conv_common.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv_direct.cuh"
#include "kernels/ops.hpp"

namespace cuae::kern::cuda {

namespace {

constexpr int kThreads = 256;
// Largest workspace an algorithm may ask for: FFT-based algorithms can want gigabytes, and the
// executor reserves the answer in its arena.
constexpr std::size_t kMaxWorkspaceBytes = std::size_t{128} << 20;

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

PlanKey key_of(const ConvGeom& g, bool tf32) {
  int device = 0;
  CUAE_CUDA_CHECK(cudaGetDevice(&device));
  return {device, g.n, g.h, g.w, g.c, g.k, g.r, g.s, g.p, g.q,
          g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dil_h, g.dil_w, tf32 ? 1 : 0, 0};
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
  if (workspace_of(h, pl, op, algo, &bytes) != CUDNN_STATUS_SUCCESS || bytes > kMaxWorkspaceBytes) return false;
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

cudnnHandle_t handle_of(const Context& ctx, const char* op) {
  CUAE_CHECK(ctx.cudnn != nullptr, std::string(op) + ": no cuDNN handle in the context");
  auto h = static_cast<cudnnHandle_t>(ctx.cudnn);
  // The backend binds its handle to its stream; a Context naming another stream gets the handle
  // rebound, so cuDNN's work and our kernels stay ordered on one stream.
  cudaStream_t bound = nullptr;
  CUAE_CUDNN_CHECK(cudnnGetStream(h, &bound));
  if (bound != launch::stream_of(ctx)) CUAE_CUDNN_CHECK(cudnnSetStream(h, launch::stream_of(ctx)));
  return h;
}

// The plan of g with every operation of `pass` chosen. The returned plan lives as long as the
// process and its chosen operations never change, so it is read without the lock afterwards.
const Plan& plan_for(cudnnHandle_t h, const ConvGeom& g, bool tf32, ConvPass pass) {
  const PlanKey key = key_of(g, tf32);
  std::lock_guard<std::mutex> lock(g_plans_mutex);
  auto it = g_plans.find(key);
  if (it == g_plans.end()) it = g_plans.emplace(key, make_plan(g)).first;
  Plan& pl = *it->second;
  for (const int op : ops_of(pass)) choose(h, pl, op, tf32, g);
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

// =============================================================================================
// epilogue kernels
// =============================================================================================

// y = act(in + b) over rows of `cols` channels; z = in + b when z is non-null. `in` may be y
// (in place) or z; each element is read before the same thread writes it. validate() keeps every
// tensor below 2^31 elements, so 32-bit indices do.
template <Act A, bool kBias>
__global__ void __launch_bounds__(kThreads) bias_act_kernel(const float* in, float* z, float* y, const float* bias,
                                                            unsigned total, unsigned cols, float slope, bool vec) {
  const unsigned stride = gridDim.x * blockDim.x;
  const unsigned tid = blockIdx.x * blockDim.x + threadIdx.x;
  // float4 path: cols % 4 == 0 and every pointer 16-byte aligned, so a float4 never straddles rows.
  const unsigned n4 = vec ? total / 4 : 0;
  for (unsigned i = tid; i < n4; i += stride) {
    float4 v = reinterpret_cast<const float4*>(in)[i];
    if constexpr (kBias) {
      const float4 b = reinterpret_cast<const float4*>(bias)[(i * 4u % cols) / 4u];
      v.x += b.x;
      v.y += b.y;
      v.z += b.z;
      v.w += b.w;
    }
    if (z) reinterpret_cast<float4*>(z)[i] = v;
    v.x = act_forward(A, v.x, slope);
    v.y = act_forward(A, v.y, slope);
    v.z = act_forward(A, v.z, slope);
    v.w = act_forward(A, v.w, slope);
    reinterpret_cast<float4*>(y)[i] = v;
  }
  for (unsigned i = n4 * 4 + tid; i < total; i += stride) {
    float v = in[i];
    if constexpr (kBias) v += bias[i % cols];
    if (z) z[i] = v;
    y[i] = act_forward(A, v, slope);
  }
}

void bias_act(const float* in, float* z, float* y, const float* bias, std::int64_t rows, int cols, Act act,
              float slope, cudaStream_t stream) {
  const auto total = static_cast<unsigned>(rows * cols);
  const bool vec = cols % 4 == 0 && launch::aligned16(in) && launch::aligned16(y) && (!z || launch::aligned16(z)) &&
                   (!bias || launch::aligned16(bias));
  const int grid = launch::grid_for(vec ? total / 4 : total, kThreads);
  launch::dispatch_act(act, [&](auto a) {
    constexpr Act A = decltype(a)::value;
    if (bias)
      bias_act_kernel<A, true><<<grid, kThreads, 0, stream>>>(in, z, y, bias, total, static_cast<unsigned>(cols), slope, vec);
    else
      bias_act_kernel<A, false><<<grid, kThreads, 0, stream>>>(in, z, y, nullptr, total, static_cast<unsigned>(cols), slope, vec);
  });
  CUAE_CUDA_LAUNCH_CHECK();
}

// act'(·) reads only what it needs: nothing for identity, z for GELU, y otherwise.
template <Act A>
__device__ __forceinline__ float dact(const float* y, const float* z, unsigned i, float slope) {
  if constexpr (A == Act::Identity) return 1.0f;
  else if constexpr (A == Act::GELU) return act_derivative(A, 0.0f, z[i], slope);
  else return act_derivative(A, y[i], 0.0f, slope);
}

// dz = dy ⊙ act'(·) elementwise, when db is not wanted.
template <Act A>
__global__ void __launch_bounds__(kThreads) dact_kernel(const float* __restrict__ dy, const float* __restrict__ y,
                                                        const float* __restrict__ z, float* __restrict__ dz,
                                                        unsigned total, float slope, bool vec) {
  const unsigned stride = gridDim.x * blockDim.x;
  const unsigned tid = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned n4 = vec ? total / 4 : 0;
  for (unsigned i = tid; i < n4; i += stride) {
    float4 g = reinterpret_cast<const float4*>(dy)[i];
    if constexpr (A != Act::Identity) {
      const float4 s = reinterpret_cast<const float4*>(A == Act::GELU ? z : y)[i];
      const bool gelu = A == Act::GELU;
      g.x *= act_derivative(A, gelu ? 0.0f : s.x, gelu ? s.x : 0.0f, slope);
      g.y *= act_derivative(A, gelu ? 0.0f : s.y, gelu ? s.y : 0.0f, slope);
      g.z *= act_derivative(A, gelu ? 0.0f : s.z, gelu ? s.z : 0.0f, slope);
      g.w *= act_derivative(A, gelu ? 0.0f : s.w, gelu ? s.w : 0.0f, slope);
    }
    reinterpret_cast<float4*>(dz)[i] = g;
  }
  for (unsigned i = n4 * 4 + tid; i < total; i += stride) dz[i] = dy[i] * dact<A>(y, z, i, slope);
}

// The flat fused pass for cols ≤ 256. Block = cols·G threads (G a power of two), the grid stride a
// multiple of cols, so thread t only ever meets column t mod cols and a warp reads consecutive
// addresses whatever cols is. Each thread sums its elements (two in flight per iteration); the G
// threads of a column meet in a fixed shared-memory tree; partial[block·cols + col] receives the
// block's sum.
template <Act A>
__global__ void __launch_bounds__(kThreads)
    dact_bgrad_flat_kernel(const float* __restrict__ dy, const float* __restrict__ y, const float* __restrict__ z,
                           float* __restrict__ dz, float* __restrict__ partial, unsigned total, int cols, int groups,
                           float slope) {
  __shared__ float red[kThreads];
  const unsigned block = blockDim.x;  // = cols·groups
  const unsigned stride = gridDim.x * block;
  unsigned i = blockIdx.x * block + threadIdx.x;
  float s = 0.0f;
  // i + stride < total < 2^31 keeps every index below 2^32 (no wrap).
  for (; i + stride < total; i += 2 * stride) {
    const float d0 = dy[i] * dact<A>(y, z, i, slope);
    const float d1 = dy[i + stride] * dact<A>(y, z, i + stride, slope);
    dz[i] = d0;
    dz[i + stride] = d1;
    s += d0;
    s += d1;
  }
  if (i < total) {
    const float d0 = dy[i] * dact<A>(y, z, i, slope);
    dz[i] = d0;
    s += d0;
  }
  red[threadIdx.x] = s;
  for (int half = groups / 2; half > 0; half /= 2) {
    __syncthreads();
    if (threadIdx.x < static_cast<unsigned>(half * cols)) red[threadIdx.x] += red[threadIdx.x + half * cols];
  }
  // Thread t < cols reads back its own last write: no barrier needed.
  if (threadIdx.x < static_cast<unsigned>(cols)) partial[blockIdx.x * static_cast<unsigned>(cols) + threadIdx.x] = red[threadIdx.x];
}

// The tiled fused pass for cols > 256: block (32, 8) covers 32 columns; its 8 warps walk rows
// r0+ty, r0+ty+8, ... of the chunk [r0, r1) (blockIdx.y); each warp reads a 128-byte line per row.
constexpr int kTileCols = 32, kTileRows = 8;

template <Act A>
__global__ void __launch_bounds__(kTileCols* kTileRows)
    dact_bgrad_tile_kernel(const float* __restrict__ dy, const float* __restrict__ y, const float* __restrict__ z,
                           float* __restrict__ dz, float* __restrict__ partial, unsigned rows, int cols,
                           unsigned rows_per_chunk, float slope) {
  __shared__ float sums[kTileRows][kTileCols + 1];
  const int col = blockIdx.x * kTileCols + threadIdx.x;
  const unsigned r0 = blockIdx.y * rows_per_chunk;
  const unsigned r1 = min(rows, r0 + rows_per_chunk);  // both < 2^31 + 2^31: no wrap
  float s = 0.0f;
  if (col < cols) {
    for (unsigned r = r0 + threadIdx.y; r < r1; r += kTileRows) {
      const unsigned i = r * static_cast<unsigned>(cols) + static_cast<unsigned>(col);
      const float d = dy[i] * dact<A>(y, z, i, slope);
      dz[i] = d;
      s += d;
    }
  }
  sums[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float t = sums[0][threadIdx.x];
#pragma unroll
    for (int j = 1; j < kTileRows; ++j) t += sums[j][threadIdx.x];
    partial[blockIdx.y * static_cast<unsigned>(cols) + static_cast<unsigned>(col)] = t;
  }
}

// db[c] (+)= Σ_j partial[j·cols + c]: one block per channel, a fixed stride partition and cub's
// fixed tree.
__global__ void __launch_bounds__(kThreads) bias_grad_finish_kernel(const float* __restrict__ partial, int parts,
                                                                    int cols, float* __restrict__ db, bool acc) {
  const unsigned c = blockIdx.x;
  float s = 0.0f;
  for (int j = threadIdx.x; j < parts; j += kThreads) s += partial[static_cast<unsigned>(j) * static_cast<unsigned>(cols) + c];
  using Reduce = cub::BlockReduce<float, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const float t = Reduce(tmp).Sum(s);
  if (threadIdx.x == 0) db[c] = acc ? db[c] + t : t;
}

// The backward's activation pass over [rows, cols]: dz = dy ⊙ act'(y | z), and db (when non-null)
// = Σ_rows dz (+= when acc_db).
struct DactArgs {
  const float* dy;
  const float* y;
  const float* z;
  float* dz;
  float* db;
  bool acc_db;
  std::int64_t rows;
  int cols;
  Act act;
  float slope;
};

// Checks, before anything is enqueued, that the scratch holds at least one partial per channel.
void check_scratch(const Context& ctx, const char* op, int cols) {
  CUAE_CHECK(ctx.scratch != nullptr && ctx.scratch_floats >= static_cast<std::size_t>(cols),
             std::string(op) + ": the reduction scratch (" + std::to_string(ctx.scratch_floats) +
                 " floats) cannot hold the bias gradient's " + std::to_string(cols) + " partials");
}

void dact_pass(const Context& ctx, const DactArgs& a, cudaStream_t stream) {
  const auto total = static_cast<unsigned>(a.rows * a.cols);
  if (!a.db) {
    const float* src = a.act == Act::GELU ? a.z : (a.act == Act::Identity ? nullptr : a.y);
    const bool vec = launch::aligned16(a.dy) && launch::aligned16(a.dz) && (!src || launch::aligned16(src));
    const int grid = launch::grid_for(vec ? (total + 3) / 4 : total, kThreads);
    launch::dispatch_act(a.act, [&](auto t) {
      dact_kernel<decltype(t)::value><<<grid, kThreads, 0, stream>>>(a.dy, a.y, a.z, a.dz, total, a.slope, vec);
    });
    CUAE_CUDA_LAUNCH_CHECK();
    return;
  }
  const std::int64_t cols = a.cols;
  const std::int64_t max_parts = static_cast<std::int64_t>(ctx.scratch_floats) / cols;  // >= 1 (check_scratch)
  std::int64_t parts = 0;
  if (cols <= kThreads) {
    int groups = 1;
    while (cols * groups * 2 <= kThreads) groups *= 2;
    const int block = static_cast<int>(cols) * groups;
    // Enough blocks for two waves of resident threads, never more than the rows need or the
    // scratch holds.
    parts = launch::grid_for(total, block, 2);
    if (parts > max_parts) parts = max_parts;
    launch::dispatch_act(a.act, [&](auto t) {
      dact_bgrad_flat_kernel<decltype(t)::value><<<static_cast<unsigned>(parts), block, 0, stream>>>(
          a.dy, a.y, a.z, a.dz, ctx.scratch, total, a.cols, groups, a.slope);
    });
    CUAE_CUDA_LAUNCH_CHECK();
  } else {
    const std::int64_t col_tiles = (cols + kTileCols - 1) / kTileCols;
    const std::int64_t want = static_cast<std::int64_t>(launch::sm_count()) * 8;
    std::int64_t chunks = (want + col_tiles - 1) / col_tiles;
    const std::int64_t by_rows = (a.rows + 2 * kTileRows - 1) / (2 * kTileRows);  // >= 16 rows a chunk
    if (chunks > by_rows) chunks = by_rows;
    if (chunks > max_parts) chunks = max_parts;
    if (chunks > 65535) chunks = 65535;
    if (chunks < 1) chunks = 1;
    const std::int64_t rows_per_chunk = (a.rows + chunks - 1) / chunks;
    chunks = (a.rows + rows_per_chunk - 1) / rows_per_chunk;
    parts = chunks;
    const dim3 grid(static_cast<unsigned>(col_tiles), static_cast<unsigned>(chunks));
    const dim3 block(kTileCols, kTileRows);
    launch::dispatch_act(a.act, [&](auto t) {
      dact_bgrad_tile_kernel<decltype(t)::value><<<grid, block, 0, stream>>>(
          a.dy, a.y, a.z, a.dz, ctx.scratch, static_cast<unsigned>(a.rows), a.cols,
          static_cast<unsigned>(rows_per_chunk), a.slope);
    });
    CUAE_CUDA_LAUNCH_CHECK();
  }
  bias_grad_finish_kernel<<<static_cast<unsigned>(cols), kThreads, 0, stream>>>(ctx.scratch, static_cast<int>(parts),
                                                                                 a.cols, a.db, a.acc_db);
  CUAE_CUDA_LAUNCH_CHECK();
}

constexpr float kOne = 1.0f, kZero = 0.0f;
const float* beta_of(bool acc) { return acc ? &kOne : &kZero; }

}  // namespace

// =============================================================================================
// op entries
// =============================================================================================

void conv_workspace(const Context& ctx, const ConvWorkspace& a) {
  validate(a);
  const cudnnHandle_t h = handle_of(ctx, "conv_workspace");
  const Plan& pl = plan_for(h, a.g, ctx.tf32, a.pass);
  *a.bytes = pass_workspace(pl, a.pass);
}

void conv2d_forward(const Context& ctx, const ConvForward& a) {
  validate(a);
  check_variant(ctx, "conv2d_forward");
  const cudnnHandle_t h = handle_of(ctx, "conv2d_forward");
  const Plan& pl = plan_for(h, a.g, ctx.tf32, ConvPass::ConvForward);
  check_workspace("conv2d_forward", a.g, pl, ConvPass::ConvForward, a.ws, a.ws_bytes);
  const cudaStream_t stream = launch::stream_of(ctx);
  if (use_direct(ctx, a.g.c, conv_direct::conv_forward_covers(a.g))) {
    conv_direct::conv_forward(a, stream);
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
  bias_act(pre, a.b ? a.z : nullptr, a.y, a.b, rows, a.g.k, a.act, a.slope, stream);
}

void conv2d_backward(const Context& ctx, const ConvBackward& a) {
  validate(a);
  check_variant(ctx, "conv2d_backward");
  const cudnnHandle_t h = handle_of(ctx, "conv2d_backward");
  const Plan& pl = plan_for(h, a.g, ctx.tf32, ConvPass::ConvBackward);
  check_workspace("conv2d_backward", a.g, pl, ConvPass::ConvBackward, a.ws, a.ws_bytes);
  if (a.db) check_scratch(ctx, "conv2d_backward", a.g.k);
  const cudaStream_t stream = launch::stream_of(ctx);
  const std::int64_t rows = static_cast<std::int64_t>(a.g.n) * a.g.p * a.g.q;
  dact_pass(ctx, DactArgs{a.dy, a.y, a.z, a.dz, a.db, a.acc_db, rows, a.g.k, a.act, a.slope}, stream);
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
  const cudnnHandle_t h = handle_of(ctx, "deconv2d_forward");
  const Plan& pl = plan_for(h, a.g, ctx.tf32, ConvPass::DeconvForward);
  check_workspace("deconv2d_forward", a.g, pl, ConvPass::DeconvForward, a.ws, a.ws_bytes);
  const cudaStream_t stream = launch::stream_of(ctx);
  if (use_direct(ctx, a.g.c, conv_direct::deconv_forward_covers(a.g))) {
    conv_direct::deconv_forward(a, stream);
    return;
  }
  const OpAlgo& o = pl.op[kBwdData];
  float* pre = a.z ? a.z : a.y;
  CUAE_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &kOne, pl.w, a.w, pl.y, a.x, o.conv,
                                                static_cast<cudnnConvolutionBwdDataAlgo_t>(o.algo), a.ws, a.ws_bytes,
                                                &kZero, pl.x, pre));
  if (!a.b && a.act == Act::Identity && !a.z) return;
  const std::int64_t rows = static_cast<std::int64_t>(a.g.n) * a.g.h * a.g.w;
  bias_act(pre, a.b ? a.z : nullptr, a.y, a.b, rows, a.g.c, a.act, a.slope, stream);
}

void deconv2d_backward(const Context& ctx, const DeconvBackward& a) {
  validate(a);
  check_variant(ctx, "deconv2d_backward");
  const cudnnHandle_t h = handle_of(ctx, "deconv2d_backward");
  const Plan& pl = plan_for(h, a.g, ctx.tf32, ConvPass::DeconvBackward);
  check_workspace("deconv2d_backward", a.g, pl, ConvPass::DeconvBackward, a.ws, a.ws_bytes);
  if (a.db) check_scratch(ctx, "deconv2d_backward", a.g.c);
  const cudaStream_t stream = launch::stream_of(ctx);
  const std::int64_t rows = static_cast<std::int64_t>(a.g.n) * a.g.h * a.g.w;
  dact_pass(ctx, DactArgs{a.dy, a.y, a.z, a.dz, a.db, a.acc_db, rows, a.g.c, a.act, a.slope}, stream);
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
