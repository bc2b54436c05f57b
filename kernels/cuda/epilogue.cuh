// The bias + activation epilogues shared by the dense and convolution ops (kernels/cuda/epilogue.cu):
// the forward pass after a GEMM or cuDNN convolution, and the backward pass that turns dY into dZ
// and the bias gradient. Both see their tensor as [rows, cols] row-major, cols the feature (dense)
// or channel (NHWC convolution) axis the bias runs along. Internal header, .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/ops.hpp"

namespace cuae::kern::cuda::epilogue {

// y = act(in + b) over [rows, cols], b [cols] or null; z = in + b as well when z is non-null. `in`
// may be y (in place) or z: each element is read before the same thread writes it. One pass,
// float4 when cols % 4 == 0 and every pointer is 16-byte aligned. rows·cols < 2^31.
//   bytes: 8 per element (+4 with z), FLOPs negligible: bandwidth-bound.
void bias_act_cuda(const Context& ctx, const float* in, float* z, float* y, const float* bias, std::int64_t rows,
                   int cols, Act act, float slope, cudaStream_t stream);

// The backward's activation pass over [rows, cols]: dz = dy ⊙ act'(y | z) (act' reads y, or z for
// GELU, or nothing for identity), and, when db is non-null, db (+)= Σ_rows dz in the same read of
// dy, deterministic (no atomics):
//   cols ≤ 256  "flat": a block of cols·G threads walks the tensor as a flat array, so thread t only
//               ever meets column t mod cols and a warp reads consecutive addresses whatever cols
//               is (1..3 channels included);
//   cols > 256  "tile": 32 columns × 8 rows per block, row chunks over blockIdx.y;
// each block writes one partial per column into ctx.scratch, and a second kernel adds a column's
// partials in index order (one block per column, cub's fixed tree). When the partition has a
// single part the first kernel writes db itself and the second does not run.
//   bytes: 12 per element (dy, y|z, dz), one launch (two with several parts).
struct DactArgs {
  const float* dy = nullptr;
  const float* y = nullptr;
  const float* z = nullptr;
  float* dz = nullptr;
  float* db = nullptr;
  bool acc_db = false;
  std::int64_t rows = 0;
  int cols = 0;
  Act act = Act::Identity;
  float slope = 0.01f;
};
void dact_bgrad_cuda(const Context& ctx, const DactArgs& a, cudaStream_t stream);

}  // namespace cuae::kern::cuda::epilogue
