// CUDA optimizer step: SGD (momentum, Nesterov), Adam and AdamW over the one flat parameter buffer,
// in ONE launch (the graph executor keeps parameters, gradients and moments in flat buffers for
// exactly this).
//
// Kernels: optimizer_kernel<K, kState> — a float4 grid-stride loop over the 16-byte-aligned body
// plus a scalar tail; K is the optimizer, kState says whether a state buffer exists (SGD without
// momentum keeps none). One variant; ctx.variant is ignored.
//
// Back of the envelope: Adam/AdamW read p, g, m, v and write p, m, v: 28 B per parameter; SGD with
// momentum 20 B, without 12 B. The deep autoencoder's 2.8 M parameters are 79 MB for Adam, ~26 µs
// at ~3 TB/s: the step is bandwidth-bound, ~10 FLOPs and one sqrt per parameter.
//
// The learning rate and the bias corrections 1 − β^t come either from the arguments (computed on
// the host in double from a.step, as the CPU reference does) or, when a.at is set, from the step
// block in device memory, read by each thread when the kernel runs: then a CUDA graph that captured
// this launch replays every later step with that step's values (step_begin writes them).
// The update formulas mirror kernels/cpu/optimizer.cpp line for line; results differ only where
// nvcc contracts a multiply-add into an FMA (about one ulp). AdamW decays with the parameter as it
// was before the step (PyTorch's order). Weights (i < n_decay) also get the L1 penalty's
// subgradient λ₁·sign(p) added to their gradient before the update, for every kind, in the same
// order of additions as the CPU reference; it costs a compare and an add, no extra bytes.
#include <cmath>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/ops.hpp"
#include "kernels/step_math.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern::cuda {

namespace {

constexpr int kThreads = 256;

struct OptArgs {
  std::int64_t n, n_decay;
  float lr, beta1, beta2, eps, wd, l1, momentum;
  float bc1, bc2;  // 1 − β1^t and 1 − β2^t (Adam/AdamW only)
  bool nesterov;
  const StepScalars* at;  // when set: lr, momentum, bc1, bc2 are read from here
};

// The L1 penalty's subgradient λ₁·sign(p), 0 at p = 0 (and for a NaN p, as on the CPU).
__device__ __forceinline__ float l1_term(float l1, float p) { return p > 0.0f ? l1 : (p < 0.0f ? -l1 : 0.0f); }

// One parameter. `decay` says whether index i < n_decay (a weight, not a bias): weights get the
// decay and the L1 term, biases neither.
template <OptKind K, bool kState>
__device__ __forceinline__ void update_one(float& p, float g, float& m, float& v, bool decay, const OptArgs& o) {
  const float wd = decay ? o.wd : 0.0f;
  const float l1t = decay ? l1_term(o.l1, p) : 0.0f;
  if constexpr (K == OptKind::SGD) {
    const float gd = (g + wd * p) + l1t;
    float vel = gd;
    if constexpr (kState) {
      vel = o.momentum * v + gd;
      v = vel;
    }
    const float update = o.nesterov ? gd + o.momentum * vel : vel;
    p -= o.lr * update;
  } else {
    constexpr bool decoupled = K == OptKind::AdamW;
    const float p0 = p;
    const float g1 = g + l1t;
    const float gd = decoupled ? g1 : g1 + wd * p0;
    const float mm = o.beta1 * m + (1.0f - o.beta1) * gd;
    const float vv = o.beta2 * v + (1.0f - o.beta2) * gd * gd;
    m = mm;
    v = vv;
    const float mhat = mm / o.bc1;
    const float vhat = vv / o.bc2;
    float next = p0 - o.lr * mhat / (sqrtf(vhat) + o.eps);
    if (decoupled) next -= o.lr * wd * p0;
    p = next;
  }
}

template <OptKind K, bool kState>
__global__ void __launch_bounds__(kThreads) optimizer_kernel(float* param, const float* grad, float* m, float* v,
                                                             OptArgs o, bool vec) {
  if (o.at) {
    o.lr = o.at->lr;
    o.momentum = o.at->momentum;
    o.bc1 = o.at->bias1;
    o.bc2 = o.at->bias2;
  }
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t tid = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  // Adam needs m and v; SGD keeps its velocity in v and never touches m.
  constexpr bool kHasM = K != OptKind::SGD;
  const std::int64_t n4 = vec ? o.n / 4 : 0;
  for (std::int64_t i = tid; i < n4; i += stride) {
    float4 p = reinterpret_cast<float4*>(param)[i];
    const float4 g = reinterpret_cast<const float4*>(grad)[i];
    float4 mv = make_float4(0.f, 0.f, 0.f, 0.f), vv = mv;
    if constexpr (kHasM) mv = reinterpret_cast<float4*>(m)[i];
    if constexpr (kState) vv = reinterpret_cast<float4*>(v)[i];
    // The n_decay boundary may fall inside a float4, so decay is decided per component.
    const std::int64_t e = 4 * i;
    update_one<K, kState>(p.x, g.x, mv.x, vv.x, e + 0 < o.n_decay, o);
    update_one<K, kState>(p.y, g.y, mv.y, vv.y, e + 1 < o.n_decay, o);
    update_one<K, kState>(p.z, g.z, mv.z, vv.z, e + 2 < o.n_decay, o);
    update_one<K, kState>(p.w, g.w, mv.w, vv.w, e + 3 < o.n_decay, o);
    reinterpret_cast<float4*>(param)[i] = p;
    if constexpr (kHasM) reinterpret_cast<float4*>(m)[i] = mv;
    if constexpr (kState) reinterpret_cast<float4*>(v)[i] = vv;
  }
  for (std::int64_t i = n4 * 4 + tid; i < o.n; i += stride) {
    float p = param[i];
    float mm = 0.0f, vv = 0.0f;
    if constexpr (kHasM) mm = m[i];
    if constexpr (kState) vv = v[i];
    update_one<K, kState>(p, grad[i], mm, vv, i < o.n_decay, o);
    param[i] = p;
    if constexpr (kHasM) m[i] = mm;
    if constexpr (kState) v[i] = vv;
  }
}

void optimizer_cuda(const Context& ctx, const OptimizerStep& a, cudaStream_t stream) {
  OptArgs o{};
  o.n = a.n;
  o.n_decay = a.n_decay;
  o.lr = a.lr;
  o.beta1 = a.beta1;
  o.beta2 = a.beta2;
  o.eps = a.eps;
  o.wd = a.weight_decay;
  o.l1 = a.l1;
  o.momentum = a.momentum;
  o.nesterov = a.nesterov;
  o.bc1 = bias_correction(a.beta1, a.step);
  o.bc2 = bias_correction(a.beta2, a.step);
  o.at = a.at;

  const bool sgd = a.kind == OptKind::SGD;
  // SGD with momentum 0 may come without a velocity buffer; with one it is still updated (v = g'),
  // exactly as the CPU reference does.
  const bool state = sgd ? a.v != nullptr : true;
  bool vec = launch::aligned16(a.param) && launch::aligned16(a.grad);
  if (!sgd) vec = vec && launch::aligned16(a.m);
  if (state) vec = vec && launch::aligned16(a.v);
  const int grid = launch::grid_for(ctx, vec ? (a.n + 3) / 4 : a.n, kThreads, 2);

  switch (a.kind) {
    case OptKind::SGD:
      if (state) optimizer_kernel<OptKind::SGD, true><<<grid, kThreads, 0, stream>>>(a.param, a.grad, nullptr, a.v, o, vec);
      else optimizer_kernel<OptKind::SGD, false><<<grid, kThreads, 0, stream>>>(a.param, a.grad, nullptr, nullptr, o, vec);
      break;
    case OptKind::Adam:
      optimizer_kernel<OptKind::Adam, true><<<grid, kThreads, 0, stream>>>(a.param, a.grad, a.m, a.v, o, vec);
      break;
    case OptKind::AdamW:
      optimizer_kernel<OptKind::AdamW, true><<<grid, kThreads, 0, stream>>>(a.param, a.grad, a.m, a.v, o, vec);
      break;
  }
  CUAE_CUDA_LAUNCH_CHECK();
}

}  // namespace

void optimizer_step(const Context& ctx, const OptimizerStep& a) {
  validate(a);
  optimizer_cuda(ctx, a, launch::stream_of(ctx));
}

}  // namespace cuae::kern::cuda
