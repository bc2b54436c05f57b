// CUDA elementwise ops: the standalone activation and the reconstruction loss.
//
// Kernels (one variant each; ctx.variant is ignored here, there is nothing to choose between):
//   act_forward_kernel<A>       y = act(x), float4 grid-stride loop plus a scalar tail
//   loss_partial_kernel<K,G>    one pass: ℓ and (G) the gradient per element, each block's Σℓ via
//                               reduce::block_sum into ctx.scratch (as doubles)
//   reduce::final_sum_cuda      one block sums the partials in a fixed order, writes loss[0]
//                               (kernels/cuda/reduce.cuh)
//
// Back of the envelope (H100 SXM, ~3.0 TB/s measured copy, read+write): both ops are pure
// streaming. activation: 8 B/element (read x, write y); 64 Mi elements = 512 MiB ≈ 0.18 ms.
// loss with grad: 12 B/element (pred, target, grad; 16 with acc_grad), 8 without; a 4096×784
// batch is 38 MiB ≈ 13 µs, so at training sizes the two launches (~2-3 µs each) matter as much as
// the bytes. FLOPs are negligible except BCE's exp/log1p (still far below the bandwidth bound).
//
// Determinism: the loss never uses atomics. The grid size depends only on count and the device's
// SM count, each block reduces with a fixed tree, and the final kernel sums the partials in index
// order, so one device gives bit-identical losses run after run. The sum is kept in double
// (per-thread accumulator, block partials and final sum); the values and gradients are float and
// come from the same scalar formulas as the CPU reference (kernels/act_math.hpp).
#include <cstdint>

#include "kernels/act_math.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/ops.hpp"
#include "kernels/step_math.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern::cuda {

namespace {

constexpr int kThreads = reduce::kThreads;  // the loss's blocks reduce with reduce::block_sum

// ---------------------------------------------------------------------------------------------
// activation
// ---------------------------------------------------------------------------------------------

template <Act A>
__global__ void act_forward_kernel(const float* x, float* y, std::int64_t count, float slope, bool vec) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t tid = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  // 16-byte accesses when both pointers allow them: a quarter of the load/store instructions.
  const std::int64_t n4 = vec ? count / 4 : 0;
  for (std::int64_t i = tid; i < n4; i += stride) {
    float4 v = reinterpret_cast<const float4*>(x)[i];
    v.x = act_forward(A, v.x, slope);
    v.y = act_forward(A, v.y, slope);
    v.z = act_forward(A, v.z, slope);
    v.w = act_forward(A, v.w, slope);
    reinterpret_cast<float4*>(y)[i] = v;
  }
  for (std::int64_t i = n4 * 4 + tid; i < count; i += stride) y[i] = act_forward(A, x[i], slope);
}

void act_forward_cuda(const Context& ctx, const float* x, float* y, std::int64_t count, Act act, float slope,
                      cudaStream_t stream) {
  const bool vec = launch::aligned16(x) && launch::aligned16(y);
  const int grid = launch::grid_for(ctx, vec ? (count + 3) / 4 : count, kThreads);
  launch::dispatch_act(act, [&](auto a) {
    act_forward_kernel<decltype(a)::value><<<grid, kThreads, 0, stream>>>(x, y, count, slope, vec);
  });
  CUAE_CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------
// loss
// ---------------------------------------------------------------------------------------------

// Per element: add ℓ to the thread's sum and, with kGrad, write scale·∂ℓ/∂p. grad may alias pred
// (an in-place gradient): each element is read before it is written by the same thread.
template <LossKind K, bool kGrad>
__device__ __forceinline__ void loss_one(float p, float t, float* grad, std::int64_t i, float scale, bool acc,
                                         double& sum) {
  float value, g;
  loss_elem(K, p, t, value, g);
  sum += static_cast<double>(value);
  if constexpr (kGrad) {
    const float sg = scale * g;
    grad[i] = acc ? grad[i] + sg : sg;
  }
}

template <LossKind K, bool kGrad>
__global__ void __launch_bounds__(kThreads) loss_partial_kernel(const float* pred, const float* target, float* grad,
                                                                std::int64_t count, TermFactor sf, bool acc_grad,
                                                                bool vec, double* partials) {
  const float scale = sf.per();  // the loss's weight is read now when it lives in the step block
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t tid = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  double sum = 0.0;
  const std::int64_t n4 = vec ? count / 4 : 0;
  for (std::int64_t i = tid; i < n4; i += stride) {
    const float4 p = reinterpret_cast<const float4*>(pred)[i];
    const float4 t = reinterpret_cast<const float4*>(target)[i];
    float v0, v1, v2, v3, g0, g1, g2, g3;
    loss_elem(K, p.x, t.x, v0, g0);
    loss_elem(K, p.y, t.y, v1, g1);
    loss_elem(K, p.z, t.z, v2, g2);
    loss_elem(K, p.w, t.w, v3, g3);
    // Adding the four in double, in order: the same rounding the scalar path would give.
    sum += static_cast<double>(v0);
    sum += static_cast<double>(v1);
    sum += static_cast<double>(v2);
    sum += static_cast<double>(v3);
    if constexpr (kGrad) {
      float4 g = make_float4(scale * g0, scale * g1, scale * g2, scale * g3);
      if (acc_grad) {
        const float4 old = reinterpret_cast<const float4*>(grad)[i];
        g.x += old.x;
        g.y += old.y;
        g.z += old.z;
        g.w += old.w;
      }
      reinterpret_cast<float4*>(grad)[i] = g;
    }
  }
  for (std::int64_t i = n4 * 4 + tid; i < count; i += stride)
    loss_one<K, kGrad>(pred[i], target[i], grad, i, scale, acc_grad, sum);

  const double total = reduce::block_sum(sum);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

void loss_cuda(const Context& ctx, const Loss& a, const reduce::Scratch& sc, cudaStream_t stream) {
  const bool want_grad = a.grad != nullptr;
  const bool vec = launch::aligned16(a.pred) && launch::aligned16(a.target) && (!want_grad || launch::aligned16(a.grad));
  std::int64_t want = launch::grid_for(ctx, vec ? (a.count + 3) / 4 : a.count, kThreads, 2);
  if (want > sc.cap) want = sc.cap;
  if (want > 65535) want = 65535;
  const int grid = static_cast<int>(want);
  double* partials = sc.p;
  const TermFactor sf{1.0f, a.weight_at, a.scale};  // scale·weight, as the CPU reference forms it
  launch::dispatch_loss(a.kind, [&](auto k) {
    constexpr LossKind K = decltype(k)::value;
    if (want_grad)
      loss_partial_kernel<K, true><<<grid, kThreads, 0, stream>>>(a.pred, a.target, a.grad, a.count, sf,
                                                                  a.acc_grad, vec, partials);
    else
      loss_partial_kernel<K, false><<<grid, kThreads, 0, stream>>>(a.pred, a.target, nullptr, a.count, sf,
                                                                   false, vec, partials);
  });
  CUAE_CUDA_LAUNCH_CHECK();
  // The scale is applied once, to the double total, as the CPU reference does.
  reduce::final_sum_cuda(partials, grid, sf, a.loss, stream);
}

}  // namespace

void activation_forward(const Context& ctx, const Activation& a) {
  validate(a);
  act_forward_cuda(ctx, a.x, a.y, a.count, a.act, a.slope, launch::stream_of(ctx));
}

void loss(const Context& ctx, const Loss& a) {
  validate(a);
  loss_cuda(ctx, a, reduce::scratch_of(ctx, "loss"), launch::stream_of(ctx));
}

}  // namespace cuae::kern::cuda
