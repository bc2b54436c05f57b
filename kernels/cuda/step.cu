// CUDA step ops (kernels/ops.hpp): step_begin advances the step block in device memory, and
// record_scalars appends a step's scalar terms to the ring in device memory. Each is one tiny
// launch inside a training step, so the whole step (these included) can be captured as a CUDA
// graph and replayed: nothing in it depends on a value the host passes per step.
//
// Kernels: step_begin_kernel (one thread: the bias corrections in double, rounded once, as
// kernels/step_math.hpp forms them on both backends); record_scalars_kernel (one block, a strided
// copy of the n scalars, then thread 0 advances the count after a barrier).
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/ops.hpp"
#include "kernels/step_math.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern::cuda {

namespace {

constexpr int kThreads = 128;

__global__ void step_begin_kernel(StepScalars* s) {
  const std::int64_t t = s->updates + 1;
  s->updates = t;
  s->rng_step = static_cast<std::uint64_t>(t);
  s->bias1 = bias_correction(s->beta1, t);
  s->bias2 = bias_correction(s->beta2, t);
}

__global__ void __launch_bounds__(kThreads) record_scalars_kernel(const float* src, float* ring, StepScalars* s, int n,
                                                                  int capacity) {
  const std::int64_t slot = s->recorded % capacity;
  float* dst = ring + slot * n;
  for (int i = threadIdx.x; i < n; i += kThreads) dst[i] = src[i];
  __syncthreads();  // every thread has read s->recorded before it moves on
  if (threadIdx.x == 0) s->recorded += 1;
}

void step_begin_cuda(const StepBegin& a, cudaStream_t stream) {
  step_begin_kernel<<<1, 1, 0, stream>>>(a.s);
  CUAE_CUDA_LAUNCH_CHECK();
}

void record_scalars_cuda(const RecordScalars& a, cudaStream_t stream) {
  record_scalars_kernel<<<1, kThreads, 0, stream>>>(a.src, a.ring, a.s, a.n, a.capacity);
  CUAE_CUDA_LAUNCH_CHECK();
}

}  // namespace

void step_begin(const Context& ctx, const StepBegin& a) {
  validate(a);
  step_begin_cuda(a, launch::stream_of(ctx));
}

void record_scalars(const Context& ctx, const RecordScalars& a) {
  validate(a);
  record_scalars_cuda(a, launch::stream_of(ctx));
}

}  // namespace cuae::kern::cuda
