// Deterministic reductions shared by the .cu files of kernels/cuda: the backend's scratch seen as
// double partials, warp and block sums, and the final pass that adds a list of block partials in a
// fixed order into one loss value (kernels/cuda/reduce.cu). Internal header, .cu files only.
//
// Every reduction in cuae is two-stage and atomic-free: a first kernel writes one partial per
// block (each block adding in a fixed tree), a second adds the partials in index order. The
// partition depends only on the shapes, the SM count and the scratch size, so one device gives the
// same bits run after run. Sums of values that end up in a loss are kept in double.
#pragma once

#include <cub/block/block_reduce.cuh>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/ops.hpp"
#include "kernels/step_math.hpp"

namespace cuae::kern::cuda::reduce {

constexpr int kThreads = 256;                  // the block size of every reduction kernel here
constexpr std::int64_t kMaxParts = 1024;       // partials one final pass adds (4 per thread)
constexpr unsigned kFullMask = 0xffffffffu;

// The backend's scratch seen as doubles (cudaMalloc'd, so 8-byte aligned; checked anyway).
struct Scratch {
  double* p = nullptr;
  std::int64_t cap = 0;  // doubles
};
// Throws cuae::Error naming `op` when the context has no scratch.
Scratch scratch_of(const Context& ctx, const char* op);

// Butterfly over the 32 lanes: every lane ends with the same value (double addition commutes
// exactly, so the order of the pairs does not matter).
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// cub's fixed tree over a block of kThreads threads; the total is valid in thread 0. Every thread
// of the block must call it (once per kernel: its shared storage is not reused here).
__device__ __forceinline__ double block_sum(double v) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  return Reduce(tmp).Sum(v);
}

// One block of kThreads: thread t adds parts t, t + kThreads, ... in order, then the fixed tree;
// out[0] = scale · total, the scale applied once to the double total (as the CPU references do).
// Every thread of the block must call it.
__device__ __forceinline__ void sum_parts(const double* parts, int nparts, double scale, float* out) {
  double s = 0.0;
  for (int i = threadIdx.x; i < nparts; i += kThreads) s += parts[i];
  const double total = block_sum(s);
  if (threadIdx.x == 0) out[0] = static_cast<float>(scale * total);
}

// Enqueues one block that writes out[0] = scale.per() · Σ parts[0..nparts) (sum_parts); the factor
// is formed when the kernel runs, so a term weight in backend memory is read then.
void final_sum_cuda(const double* parts, int nparts, TermFactor scale, float* out, cudaStream_t stream);

}  // namespace cuae::kern::cuda::reduce
