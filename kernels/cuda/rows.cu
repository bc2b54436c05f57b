// CUDA: activation backward and row gather.
//
// Both are memory-bound. activation_backward reads dy, y (z for GELU) and writes dx: 12-16 B per
// element (+4 when accumulating), no reuse, so one grid-stride pass is the whole design.
// gather_rows copies rows*cols*4 bytes twice (read + write); each block moves whole rows with
// float4 accesses when cols is a multiple of 4 (784 is), scalar otherwise.
#include <cstdint>

#include "kernels/act_math.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/validate.hpp"

namespace cuae::kern::cuda {

namespace {

constexpr int kThreads = 256;

template <Act A>
__global__ void __launch_bounds__(kThreads) activation_backward_kernel(const float* __restrict__ dy,
                                                                       const float* __restrict__ y,
                                                                       const float* __restrict__ z,
                                                                       float* __restrict__ dx, std::int64_t n,
                                                                       bool acc, float slope) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float g = dy[i] * act_derivative(A, y ? y[i] : 0.0f, z ? z[i] : 0.0f, slope);
    dx[i] = acc ? dx[i] + g : g;
  }
}

__global__ void gather_rows_vec4_kernel(const float4* __restrict__ src, const std::int32_t* __restrict__ index,
                                        float4* __restrict__ dst, std::int64_t cols4) {
  const std::int64_t r = blockIdx.x;
  const float4* s = src + static_cast<std::int64_t>(index[r]) * cols4;
  float4* d = dst + r * cols4;
  for (std::int64_t c = threadIdx.x; c < cols4; c += blockDim.x) d[c] = s[c];
}

__global__ void gather_rows_kernel(const float* __restrict__ src, const std::int32_t* __restrict__ index,
                                   float* __restrict__ dst, std::int64_t cols) {
  const std::int64_t r = blockIdx.x;
  const float* s = src + static_cast<std::int64_t>(index[r]) * cols;
  float* d = dst + r * cols;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) d[c] = s[c];
}

void activation_backward_cuda(const Context& ctx, const ActivationBackward& a, cudaStream_t stream) {
  const int grid = launch::grid_for(ctx, a.count, kThreads);
  launch::dispatch_act(a.act, [&](auto t) {
    activation_backward_kernel<decltype(t)::value>
        <<<grid, kThreads, 0, stream>>>(a.dy, a.y, a.z, a.dx, a.count, a.acc_dx, a.slope);
  });
  CUAE_CUDA_LAUNCH_CHECK();
}

// One block per row (rows < 2^31, checked by the entry).
void gather_rows_cuda(const GatherRows& a, cudaStream_t stream) {
  const bool vec4 = a.cols % 4 == 0 && launch::aligned16(a.src) && launch::aligned16(a.dst);
  if (vec4) {
    gather_rows_vec4_kernel<<<static_cast<unsigned>(a.rows), 128, 0, stream>>>(
        reinterpret_cast<const float4*>(a.src), a.index, reinterpret_cast<float4*>(a.dst), a.cols / 4);
  } else {
    gather_rows_kernel<<<static_cast<unsigned>(a.rows), 256, 0, stream>>>(a.src, a.index, a.dst, a.cols);
  }
  CUAE_CUDA_LAUNCH_CHECK();
}

}  // namespace

void activation_backward(const Context& ctx, const ActivationBackward& a) {
  validate(a);
  if (a.count == 0) return;
  activation_backward_cuda(ctx, a, launch::stream_of(ctx));
}

void gather_rows(const Context& ctx, const GatherRows& a) {
  validate(a);
  CUAE_CHECK(a.rows < (1ll << 31), "gather_rows: more than 2^31 rows");
  if (a.rows == 0 || a.cols == 0) return;
  gather_rows_cuda(a, launch::stream_of(ctx));
}

}  // namespace cuae::kern::cuda
