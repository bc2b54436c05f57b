// The epilogue kernels of kernels/cuda/epilogue.cuh, shared by dense.cu and conv.cu.
//
// Kernels:
//   bias_act_kernel<A, kBias>      y = act(in + b) (+ z), float4 grid-stride loop plus a scalar tail
//   dact_kernel<A>                 dz = dy ⊙ act'(·) alone (no bias gradient wanted)
//   dact_bgrad_flat_kernel<A>      dz and per-block column sums for cols ≤ 256
//   dact_bgrad_tile_kernel<A>      dz and per-chunk column sums for cols > 256
//   bias_grad_finish_kernel        db[c] (+)= Σ partials of column c, in index order
//
// Indices: validate() keeps every tensor below 2^31 elements, so 32-bit unsigned arithmetic holds
// every element index (and index + grid stride never passes 2^32).
#include <cub/block/block_reduce.cuh>

#include <cstdint>

#include "kernels/act_math.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/epilogue.cuh"

namespace cuae::kern::cuda::epilogue {

namespace {

constexpr int kThreads = 256;
constexpr int kTileCols = 32, kTileRows = 8;

// ---------------------------------------------------------------------------------------------
// forward
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// backward
// ---------------------------------------------------------------------------------------------

// act'(·) reads only what it needs: nothing for identity, z for GELU, y otherwise.
template <Act A>
__device__ __forceinline__ float dact(const float* y, const float* z, unsigned i, float slope) {
  if constexpr (A == Act::Identity) return 1.0f;
  else if constexpr (A == Act::GELU) return act_derivative(A, 0.0f, z[i], slope);
  else return act_derivative(A, y[i], 0.0f, slope);
}

template <Act A>
__device__ __forceinline__ float dact4(float s, float slope) {
  return A == Act::GELU ? act_derivative(A, 0.0f, s, slope) : act_derivative(A, s, 0.0f, slope);
}

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
      g.x *= dact4<A>(s.x, slope);
      g.y *= dact4<A>(s.y, slope);
      g.z *= dact4<A>(s.z, slope);
      g.w *= dact4<A>(s.w, slope);
    }
    reinterpret_cast<float4*>(dz)[i] = g;
  }
  for (unsigned i = n4 * 4 + tid; i < total; i += stride) dz[i] = dy[i] * dact<A>(y, z, i, slope);
}

// Where a block's column sums go: one partial per (part, column) for the finish kernel, or, with a
// single part, db itself (overwritten, or added to when acc).
__device__ __forceinline__ void put_sum(float* out, unsigned part, unsigned cols, unsigned col, float t, bool direct,
                                        bool acc) {
  if (direct) out[col] = acc ? out[col] + t : t;
  else out[part * cols + col] = t;
}

// Block = cols·G threads (G a power of two), the grid stride a multiple of cols, so thread t only
// ever meets column t mod cols. Each thread sums its elements (two in flight per iteration); the G
// threads of a column meet in a fixed shared-memory tree.
template <Act A>
__global__ void __launch_bounds__(kThreads)
    dact_bgrad_flat_kernel(const float* __restrict__ dy, const float* __restrict__ y, const float* __restrict__ z,
                           float* __restrict__ dz, float* out, unsigned total, int cols, int groups, float slope,
                           bool direct, bool acc) {
  __shared__ float red[kThreads];
  const unsigned block = blockDim.x;  // = cols·groups
  const unsigned stride = gridDim.x * block;
  unsigned i = blockIdx.x * block + threadIdx.x;
  float s = 0.0f;
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
  if (threadIdx.x < static_cast<unsigned>(cols))
    put_sum(out, blockIdx.x, static_cast<unsigned>(cols), threadIdx.x, red[threadIdx.x], direct, acc);
}

// Block (32, 8) covers 32 columns; its 8 warps walk rows r0+ty, r0+ty+8, ... of the chunk [r0, r1)
// (blockIdx.y), two rows in flight per thread; each warp reads a 128-byte line per row.
template <Act A>
__global__ void __launch_bounds__(kTileCols* kTileRows)
    dact_bgrad_tile_kernel(const float* __restrict__ dy, const float* __restrict__ y, const float* __restrict__ z,
                           float* __restrict__ dz, float* out, unsigned rows, int cols, unsigned rows_per_chunk,
                           float slope, bool direct, bool acc) {
  __shared__ float sums[kTileRows][kTileCols + 1];
  const unsigned ucols = static_cast<unsigned>(cols);
  const unsigned col = blockIdx.x * kTileCols + threadIdx.x;
  const unsigned r0 = blockIdx.y * rows_per_chunk;
  const unsigned r1 = min(rows, r0 + rows_per_chunk);  // both < 2^31: no wrap
  float s = 0.0f;
  if (col < ucols) {
    unsigned r = r0 + threadIdx.y;
    for (; r + kTileRows < r1; r += 2 * kTileRows) {
      const unsigned i0 = r * ucols + col;
      const unsigned i1 = i0 + kTileRows * ucols;
      const float d0 = dy[i0] * dact<A>(y, z, i0, slope);
      const float d1 = dy[i1] * dact<A>(y, z, i1, slope);
      dz[i0] = d0;
      dz[i1] = d1;
      s += d0;
      s += d1;
    }
    if (r < r1) {
      const unsigned i0 = r * ucols + col;
      const float d0 = dy[i0] * dact<A>(y, z, i0, slope);
      dz[i0] = d0;
      s += d0;
    }
  }
  sums[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < ucols) {
    float t = sums[0][threadIdx.x];
#pragma unroll
    for (int j = 1; j < kTileRows; ++j) t += sums[j][threadIdx.x];
    put_sum(out, blockIdx.y, ucols, col, t, direct, acc);
  }
}

// db[c] (+)= Σ_j partial[j·cols + c]: one block per column, a fixed stride partition and cub's
// fixed tree.
__global__ void __launch_bounds__(kThreads) bias_grad_finish_kernel(const float* __restrict__ partial, int parts,
                                                                    int cols, float* __restrict__ db, bool acc) {
  const unsigned c = blockIdx.x;
  float s = 0.0f;
  for (int j = threadIdx.x; j < parts; j += kThreads)
    s += partial[static_cast<unsigned>(j) * static_cast<unsigned>(cols) + c];
  using Reduce = cub::BlockReduce<float, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const float t = Reduce(tmp).Sum(s);
  if (threadIdx.x == 0) db[c] = acc ? db[c] + t : t;
}

void dact_cuda(const Context& ctx, const DactArgs& a, cudaStream_t stream) {
  const auto total = static_cast<unsigned>(a.rows * a.cols);
  const float* src = a.act == Act::GELU ? a.z : (a.act == Act::Identity ? nullptr : a.y);
  const bool vec = launch::aligned16(a.dy) && launch::aligned16(a.dz) && (!src || launch::aligned16(src));
  const int grid = launch::grid_for(ctx, vec ? (total + 3) / 4 : total, kThreads);
  launch::dispatch_act(a.act, [&](auto t) {
    dact_kernel<decltype(t)::value><<<grid, kThreads, 0, stream>>>(a.dy, a.y, a.z, a.dz, total, a.slope, vec);
  });
  CUAE_CUDA_LAUNCH_CHECK();
}

}  // namespace

void bias_act_cuda(const Context& ctx, const float* in, float* z, float* y, const float* bias, std::int64_t rows,
                   int cols, Act act, float slope, cudaStream_t stream) {
  const auto total = static_cast<unsigned>(rows * cols);
  const bool vec = cols % 4 == 0 && launch::aligned16(in) && launch::aligned16(y) && (!z || launch::aligned16(z)) &&
                   (!bias || launch::aligned16(bias));
  const int grid = launch::grid_for(ctx, vec ? total / 4 : total, kThreads);
  const auto ucols = static_cast<unsigned>(cols);
  launch::dispatch_act(act, [&](auto a) {
    constexpr Act A = decltype(a)::value;
    if (bias) bias_act_kernel<A, true><<<grid, kThreads, 0, stream>>>(in, z, y, bias, total, ucols, slope, vec);
    else bias_act_kernel<A, false><<<grid, kThreads, 0, stream>>>(in, z, y, nullptr, total, ucols, slope, vec);
  });
  CUAE_CUDA_LAUNCH_CHECK();
}

void dact_bgrad_cuda(const Context& ctx, const DactArgs& a, cudaStream_t stream) {
  if (!a.db) {
    dact_cuda(ctx, a, stream);
    return;
  }
  const auto total = static_cast<unsigned>(a.rows * a.cols);
  const std::int64_t cols = a.cols;
  // Partials the scratch holds (one per column per part); with none, a single part writes db.
  const std::int64_t max_parts = ctx.scratch ? static_cast<std::int64_t>(ctx.scratch_floats) / cols : 0;
  if (cols <= kThreads) {
    int groups = 1;
    while (cols * groups * 2 <= kThreads) groups *= 2;
    const int block = static_cast<int>(cols) * groups;
    // Enough blocks for two waves of resident threads, never more than the rows need or the
    // scratch holds.
    std::int64_t parts = launch::grid_for(ctx, total, block, 2);
    if (parts > max_parts) parts = max_parts;
    if (parts < 1) parts = 1;
    const bool direct = parts == 1;
    float* out = direct ? a.db : ctx.scratch;
    launch::dispatch_act(a.act, [&](auto t) {
      dact_bgrad_flat_kernel<decltype(t)::value><<<static_cast<unsigned>(parts), block, 0, stream>>>(
          a.dy, a.y, a.z, a.dz, out, total, a.cols, groups, a.slope, direct, a.acc_db);
    });
    CUAE_CUDA_LAUNCH_CHECK();
    if (direct) return;
    bias_grad_finish_kernel<<<static_cast<unsigned>(cols), kThreads, 0, stream>>>(ctx.scratch, static_cast<int>(parts),
                                                                                   a.cols, a.db, a.acc_db);
    CUAE_CUDA_LAUNCH_CHECK();
    return;
  }
  // Row chunks: enough of them for ~8 blocks per SM, at least 16 rows per chunk (2 per thread
  // row), never more than the scratch holds partials for or grid.y allows. Sizes in 64 bits: rows
  // near 2^31 must not wrap.
  const std::int64_t col_tiles = (cols + kTileCols - 1) / kTileCols;
  std::int64_t chunks = (static_cast<std::int64_t>(launch::sm_count(ctx)) * 8 + col_tiles - 1) / col_tiles;
  const std::int64_t by_rows = (a.rows + 2 * kTileRows - 1) / (2 * kTileRows);
  if (chunks > by_rows) chunks = by_rows;
  if (chunks > max_parts) chunks = max_parts;
  if (chunks > 65535) chunks = 65535;
  if (chunks < 1) chunks = 1;
  const std::int64_t rows_per_chunk = (a.rows + chunks - 1) / chunks;
  chunks = (a.rows + rows_per_chunk - 1) / rows_per_chunk;
  const bool direct = chunks == 1;
  float* out = direct ? a.db : ctx.scratch;
  const dim3 grid(static_cast<unsigned>(col_tiles), static_cast<unsigned>(chunks));
  const dim3 block(kTileCols, kTileRows);
  launch::dispatch_act(a.act, [&](auto t) {
    dact_bgrad_tile_kernel<decltype(t)::value><<<grid, block, 0, stream>>>(
        a.dy, a.y, a.z, a.dz, out, static_cast<unsigned>(a.rows), a.cols, static_cast<unsigned>(rows_per_chunk),
        a.slope, direct, a.acc_db);
  });
  CUAE_CUDA_LAUNCH_CHECK();
  if (direct) return;
  bias_grad_finish_kernel<<<static_cast<unsigned>(cols), kThreads, 0, stream>>>(ctx.scratch, static_cast<int>(chunks),
                                                                                 a.cols, a.db, a.acc_db);
  CUAE_CUDA_LAUNCH_CHECK();
}

}  // namespace cuae::kern::cuda::epilogue
