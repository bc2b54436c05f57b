// The host side and the kernel of kernels/cuda/reduce.cuh.
#include <cstdint>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/reduce.cuh"

namespace cuae::kern::cuda::reduce {

namespace {

__global__ void __launch_bounds__(kThreads) final_sum_kernel(const double* parts, int nparts, TermFactor scale,
                                                             float* out) {
  sum_parts(parts, nparts, static_cast<double>(scale.per()), out);
}

}  // namespace

Scratch scratch_of(const Context& ctx, const char* op) {
  const std::int64_t cap = ctx.scratch ? static_cast<std::int64_t>(ctx.scratch_floats / 2) : 0;
  CUAE_CHECK(cap >= 1, std::string(op) + ": the CUDA backend's reduction scratch is missing");
  CUAE_CHECK((reinterpret_cast<std::uintptr_t>(ctx.scratch) & 7u) == 0,
             std::string(op) + ": the reduction scratch is not 8-byte aligned");
  return {reinterpret_cast<double*>(ctx.scratch), cap};
}

void final_sum_cuda(const double* parts, int nparts, TermFactor scale, float* out, cudaStream_t stream) {
  final_sum_kernel<<<1, kThreads, 0, stream>>>(parts, nparts, scale, out);
  CUAE_CUDA_LAUNCH_CHECK();
}

}  // namespace cuae::kern::cuda::reduce
