// CUDA dense layer: Y = act(X·Wᵀ + b) and its backward, on cuBLASLt plus our own fused passes.
//
// Row-major tensors go to column-major cuBLASLt by the transpose trick: a row-major [r,c] buffer
// is the column-major [c,r] matrix, so Y[m,n] = X·Wᵀ is computed as Yᵀ[n,m] = W·Xᵀ with
// M=n, N=m, K=k, and the bias (one value per output feature) lies along D's rows, which is where
// cuBLASLt's BIAS epilogues broadcast it.
//
// Variants (ctx.variant; the benchmark runs each against the CPU reference before timing it):
//   forward
//     0 (production) cuBLASLt with the BIAS / RELU_BIAS (RELU without b) epilogue where it is the
//       whole job (identity, ReLU, no z wanted). Everything else: GEMM+BIAS written to z (or y),
//       then ONE pass of bias_act_kernel reading it and writing y = act(z). GELU also takes our
//       pass: cuBLASLt documents its GELU epilogue only as "GELU" — believed to be the tanh form,
//       but its tanh need not round as tanhf does, and the CPU oracle is the contract; variant 2
//       keeps the epilogue so the benchmark can measure what the pass costs and whether the
//       epilogue matches.
//     1 plain GEMM (DEFAULT epilogue) + our bias+activation pass: the unfused baseline.
//     2 every cuBLASLt epilogue that exists: as 0, plus GELU_BIAS / GELU (no z) and
//       GELU_AUX_BIAS / GELU_AUX writing z through the aux pointer (its ld, = n, must be a
//       multiple of 8; otherwise as 0).
//   backward
//     0 (production) dact_bgrad_kernel: dZ = dY ⊙ act'(y|z) and per-block column sums of dZ in
//       one read of dY (and y or z); a second tiny kernel adds the partials in a fixed order into
//       db. Then cuBLASLt dW and dX (beta = 1 for acc_*).
//     1 elementwise dZ kernel, then a naive one-thread-per-column sum for db: the unfused baseline.
//     2 elementwise dZ kernel, db from the dW GEMM's BGRADB (BGRADA for w_kn) epilogue; falls back
//       to 0 when dw is not wanted, db accumulates, or cuBLASLt offers no algorithm.
//   Any epilogue request cuBLASLt's heuristic refuses falls back to a DEFAULT GEMM + our pass.
//
// Back of the envelope (fp32, H100 SXM: ~50 TFLOP/s fp32 GEMM, ~3 TB/s HBM):
//   forward  2·m·n·k FLOPs; bytes 4·(m·k + n·k + m·n) (+4·m·n for z, +8·m·n for a separate pass).
//     256×1000×784: 0.4 GFLOP ≈ 10 µs of math against 5 MB ≈ 2 µs of traffic, so at the deep
//     autoencoder's sizes launch count and tile efficiency dominate; 8192×4096×4096: 275 GFLOP
//     ≈ 5.5 ms fp32 (~1 ms TF32), the pass adds 2·128 MB ≈ 0.09 ms.
//   backward 4·m·n·k FLOPs (dW and dX); the fused dZ/db pass reads dY (+y or z) and writes dZ:
//     12·m·n bytes in one launch where the unfused path reads dZ a second time for db.
//
// Determinism: no atomics anywhere. db's partition depends only on (m, n, SM count, scratch
// size); each block sums its rows in a fixed order and the partials are added in index order.
// cuBLAS documents bit-wise reproducible results for one toolkit on GPUs of one architecture and
// SM count, and the algorithm is chosen once per shape and kept, so a
// second run of a step repeats the first exactly (the plan cache: kernels/cuda/gemm.cu).
//
// No host synchronisation: the plan cache is host-only state; every launch is stream-ordered.
#include <cublasLt.h>

#include <cstdint>
#include <string>

#include "kernels/act_math.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm.cuh"
#include "kernels/ops.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern::cuda {

namespace {

using blas::Gemm;
using blas::gemm;
using blas::gemm_supported;
using blas::epi_uses_bias;
using blas::epi_uses_aux;

constexpr int kThreads = 256;

// The three GEMMs of a dense layer in row-major terms (see kernels/cpu/dense.cpp for the algebra).
Gemm forward_gemm(const DenseForward& a) {
  Gemm g;
  g.M = a.n, g.N = a.m, g.K = a.k;
  g.A = a.w;  // [n,k] row-major = (k×n col-major)ᵀ; [k,n] row-major = n×k col-major as it is
  g.ta = a.w_kn ? CUBLAS_OP_N : CUBLAS_OP_T;
  g.lda = a.w_kn ? a.n : a.k;
  g.B = a.x, g.tb = CUBLAS_OP_N, g.ldb = a.k;
  g.D = a.y, g.ldd = a.n;
  return g;
}

Gemm dw_gemm(const DenseBackward& a) {
  Gemm g;
  if (a.w_kn) {  // dW[k,n] = Xᵀ·dZ  ->  dWᵀ[n,k] = dZᵀ·X
    g.M = a.n, g.N = a.k, g.K = a.m;
    g.A = a.dz, g.ta = CUBLAS_OP_N, g.lda = a.n;
    g.B = a.x, g.tb = CUBLAS_OP_T, g.ldb = a.k;
    g.ldd = a.n;
  } else {  // dW[n,k] = dZᵀ·X  ->  dWᵀ[k,n] = Xᵀ·dZ
    g.M = a.k, g.N = a.n, g.K = a.m;
    g.A = a.x, g.ta = CUBLAS_OP_N, g.lda = a.k;
    g.B = a.dz, g.tb = CUBLAS_OP_T, g.ldb = a.n;
    g.ldd = a.k;
  }
  g.D = a.dw;
  g.beta = a.acc_dw ? 1.0f : 0.0f;
  return g;
}

Gemm dx_gemm(const DenseBackward& a) {
  Gemm g;  // dX[m,k] = dZ·W[n,k] (or dZ·Wᵀ for [k,n])  ->  dXᵀ[k,m] = W'ᵀ·dZᵀ
  g.M = a.k, g.N = a.m, g.K = a.n;
  g.A = a.w, g.ta = a.w_kn ? CUBLAS_OP_T : CUBLAS_OP_N, g.lda = a.w_kn ? a.n : a.k;
  g.B = a.dz, g.tb = CUBLAS_OP_N, g.ldb = a.n;
  g.D = a.dx, g.ldd = a.k;
  g.beta = a.acc_dx ? 1.0f : 0.0f;
  return g;
}

// =============================================================================================
// forward pass kernel: y = act(in + b), z = in + b when wanted
// =============================================================================================

// `in` may be z itself (GEMM wrote the pre-activation there) or y (in place); each element is read
// before it is written by the same thread, so the aliasing is safe. Indices fit in 32 bits
// (validate() caps every tensor below 2^31 elements), which keeps the column modulo cheap.
template <Act A, bool kBias>
__global__ void __launch_bounds__(kThreads) bias_act_kernel(const float* in, float* z, float* y, const float* bias,
                                                            unsigned total, unsigned n, float slope, bool vec) {
  const unsigned stride = gridDim.x * blockDim.x;
  const unsigned tid = blockIdx.x * blockDim.x + threadIdx.x;
  // float4 path: n % 4 == 0 and every pointer 16-byte aligned, so a float4 never straddles rows.
  const unsigned n4 = vec ? total / 4 : 0;
  for (unsigned i = tid; i < n4; i += stride) {
    float4 v = reinterpret_cast<const float4*>(in)[i];
    if constexpr (kBias) {
      const float4 b = reinterpret_cast<const float4*>(bias)[(i * 4u % n) / 4u];
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
    if constexpr (kBias) v += bias[i % n];
    if (z) z[i] = v;
    y[i] = act_forward(A, v, slope);
  }
}

void bias_act_cuda(const float* in, float* z, float* y, const float* bias, int m, int n, Act act, float slope,
                   cudaStream_t stream) {
  const unsigned total = static_cast<unsigned>(m) * static_cast<unsigned>(n);
  const bool vec = n % 4 == 0 && launch::aligned16(in) && launch::aligned16(y) && (!z || launch::aligned16(z)) &&
                   (!bias || launch::aligned16(bias));
  const int grid = launch::grid_for(vec ? total / 4 : total, kThreads);
  launch::dispatch_act(act, [&](auto a) {
    constexpr Act A = decltype(a)::value;
    if (bias) bias_act_kernel<A, true><<<grid, kThreads, 0, stream>>>(in, z, y, bias, total, n, slope, vec);
    else bias_act_kernel<A, false><<<grid, kThreads, 0, stream>>>(in, z, y, nullptr, total, n, slope, vec);
  });
  CUAE_CUDA_LAUNCH_CHECK();
}

// =============================================================================================
// backward kernels
// =============================================================================================

// act'(·) reads only what it needs: nothing for identity, z for GELU, y otherwise.
template <Act A>
__device__ __forceinline__ float dact(const float* y, const float* z, unsigned i, float slope) {
  if constexpr (A == Act::Identity) return 1.0f;
  else if constexpr (A == Act::GELU) return act_derivative(A, 0.0f, z[i], slope);
  else return act_derivative(A, y[i], 0.0f, slope);
}

// dZ = dY ⊙ act'(·), elementwise (variants 1 and 2, and variant 0 when db is not wanted).
template <Act A>
__global__ void __launch_bounds__(kThreads) dact_kernel(const float* dy, const float* y, const float* z, float* dz,
                                                        unsigned total, float slope, bool vec) {
  const unsigned stride = gridDim.x * blockDim.x;
  const unsigned tid = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned n4 = vec ? total / 4 : 0;
  for (unsigned i = tid; i < n4; i += stride) {
    float4 g = reinterpret_cast<const float4*>(dy)[i];
    if constexpr (A != Act::Identity) {
      const float4 s = reinterpret_cast<const float4*>(A == Act::GELU ? z : y)[i];
      if constexpr (A == Act::GELU) {
        g.x *= act_derivative(A, 0.0f, s.x, slope);
        g.y *= act_derivative(A, 0.0f, s.y, slope);
        g.z *= act_derivative(A, 0.0f, s.z, slope);
        g.w *= act_derivative(A, 0.0f, s.w, slope);
      } else {
        g.x *= act_derivative(A, s.x, 0.0f, slope);
        g.y *= act_derivative(A, s.y, 0.0f, slope);
        g.z *= act_derivative(A, s.z, 0.0f, slope);
        g.w *= act_derivative(A, s.w, 0.0f, slope);
      }
    }
    reinterpret_cast<float4*>(dz)[i] = g;
  }
  for (unsigned i = n4 * 4 + tid; i < total; i += stride) dz[i] = dy[i] * dact<A>(y, z, i, slope);
}

// The fused pass of variant 0. Block (32, 8): threadIdx.x is a column inside a 32-column tile,
// so a warp reads one 128-byte line of a row; the 8 warps walk rows r0+ty, r0+ty+8, ... of the
// block's row chunk [r0, r1). Each thread keeps its column's running sum in a register, the 8
// warps' sums meet in shared memory and are added in warp order. With one row chunk the block
// writes db directly; otherwise it writes partial[chunk·n + col] for bgrad_finish_kernel.
constexpr int kTileCols = 32, kTileRows = 8;

template <Act A>
__global__ void __launch_bounds__(kTileCols* kTileRows)
    dact_bgrad_kernel(const float* dy, const float* y, const float* z, float* dz, float* out, int m, int n,
                      int rows_per_chunk, float slope, bool direct, bool acc) {
  __shared__ float sums[kTileRows][kTileCols + 1];
  const int col = blockIdx.x * kTileCols + threadIdx.x;
  // Rows in unsigned: with m close to 2^31 (n = 1 is allowed up to 2^31-1 rows) the last chunk's
  // r0 + rows_per_chunk and the loop's r + 2·kTileRows pass INT_MAX, and a signed overflow would
  // wrap r1 negative and silently drop that chunk's rows. All of these stay below 2^32.
  const unsigned r0 = blockIdx.y * static_cast<unsigned>(rows_per_chunk);
  const unsigned r1 = min(static_cast<unsigned>(m), r0 + static_cast<unsigned>(rows_per_chunk));
  float s = 0.0f;
  if (col < n) {
    // Unrolled by hand ×2 so two independent loads are in flight per thread.
    unsigned r = r0 + threadIdx.y;
    for (; r + kTileRows < r1; r += 2 * kTileRows) {
      const unsigned i0 = r * n + col;
      const unsigned i1 = i0 + kTileRows * static_cast<unsigned>(n);
      const float d0 = dy[i0] * dact<A>(y, z, i0, slope);
      const float d1 = dy[i1] * dact<A>(y, z, i1, slope);
      dz[i0] = d0;
      dz[i1] = d1;
      s += d0;
      s += d1;
    }
    if (r < r1) {
      const unsigned i0 = r * n + col;
      const float d0 = dy[i0] * dact<A>(y, z, i0, slope);
      dz[i0] = d0;
      s += d0;
    }
  }
  sums[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < n) {
    float t = sums[0][threadIdx.x];
#pragma unroll
    for (int j = 1; j < kTileRows; ++j) t += sums[j][threadIdx.x];
    if (direct) out[col] = acc ? out[col] + t : t;
    else out[static_cast<unsigned>(blockIdx.y) * n + col] = t;
  }
}

// db[col] (+)= Σ_c partial[c·n + col], c in order.
__global__ void __launch_bounds__(kThreads) bgrad_finish_kernel(const float* partial, int chunks, int n, float* db,
                                                                bool acc) {
  // Unsigned: for n near 2^31 the last block's indices pass INT_MAX (and would wrap negative).
  const unsigned col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= static_cast<unsigned>(n)) return;
  float t = 0.0f;
  for (int c = 0; c < chunks; ++c) t += partial[static_cast<unsigned>(c) * n + col];
  db[col] = acc ? db[col] + t : t;
}

// Variant 1's baseline: one thread per column walks all m rows (coalesced across the warp, but
// only n threads: the parallelism the fused kernel exists to recover).
__global__ void __launch_bounds__(kThreads) colsum_naive_kernel(const float* dz, int m, int n, float* db, bool acc) {
  const unsigned col = blockIdx.x * blockDim.x + threadIdx.x;  // unsigned: see bgrad_finish_kernel
  if (col >= static_cast<unsigned>(n)) return;
  float t = 0.0f;
  for (int r = 0; r < m; ++r) t += dz[static_cast<unsigned>(r) * n + col];
  db[col] = acc ? db[col] + t : t;
}

void dact_cuda(const DenseBackward& a, cudaStream_t stream) {
  const unsigned total = static_cast<unsigned>(a.m) * static_cast<unsigned>(a.n);
  const float* src = a.act == Act::GELU ? a.z : (a.act == Act::Identity ? nullptr : a.y);
  const bool vec = launch::aligned16(a.dy) && launch::aligned16(a.dz) && (!src || launch::aligned16(src));
  const int grid = launch::grid_for(vec ? (total + 3) / 4 : total, kThreads);
  launch::dispatch_act(a.act, [&](auto t) {
    dact_kernel<decltype(t)::value><<<grid, kThreads, 0, stream>>>(a.dy, a.y, a.z, a.dz, total, a.slope, vec);
  });
  CUAE_CUDA_LAUNCH_CHECK();
}

void dact_bgrad_cuda(const Context& ctx, const DenseBackward& a, cudaStream_t stream) {
  // Host sizing in 64 bits: a.m + rows_per_chunk (and a.n + 31) overflow int when a dimension is
  // near 2^31, which validate() allows (m = 2^31-1 with n = k = 1), giving a negative grid.
  const std::int64_t M = a.m, N = a.n;
  const std::int64_t col_tiles = (N + kTileCols - 1) / kTileCols;
  // Row chunks: enough of them for ~8 blocks per SM, but at least 16 rows per chunk (2 per warp)
  // and never more chunks than the scratch holds partials for (chunks·n floats). With a single
  // chunk the block writes db itself and no second kernel runs.
  const std::int64_t want_blocks = static_cast<std::int64_t>(launch::sm_count()) * 8;
  std::int64_t chunks = (want_blocks + col_tiles - 1) / col_tiles;
  const std::int64_t max_by_rows = (M + 2 * kTileRows - 1) / (2 * kTileRows);  // ≥ 16 rows per chunk
  const std::int64_t max_by_scratch = ctx.scratch ? static_cast<std::int64_t>(ctx.scratch_floats) / N : 0;
  if (chunks > max_by_rows) chunks = max_by_rows;
  if (chunks > max_by_scratch) chunks = max_by_scratch;
  if (chunks > 65535) chunks = 65535;  // grid.y limit
  if (chunks < 1) chunks = 1;
  const int rows_per_chunk = static_cast<int>((M + chunks - 1) / chunks);
  chunks = (M + rows_per_chunk - 1) / rows_per_chunk;
  const bool direct = chunks == 1;
  float* out = direct ? a.db : ctx.scratch;
  const dim3 grid(static_cast<unsigned>(col_tiles), static_cast<unsigned>(chunks));
  const dim3 block(kTileCols, kTileRows);
  launch::dispatch_act(a.act, [&](auto t) {
    dact_bgrad_kernel<decltype(t)::value><<<grid, block, 0, stream>>>(a.dy, a.y, a.z, a.dz, out, a.m, a.n,
                                                                      rows_per_chunk, a.slope, direct, a.acc_db);
  });
  CUAE_CUDA_LAUNCH_CHECK();
  if (!direct) {
    const auto blocks = static_cast<unsigned>((N + kThreads - 1) / kThreads);
    bgrad_finish_kernel<<<blocks, kThreads, 0, stream>>>(ctx.scratch, static_cast<int>(chunks), a.n, a.db, a.acc_db);
    CUAE_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace

// =============================================================================================
// op entries
// =============================================================================================

void dense_forward(const Context& ctx, const DenseForward& a) {
  validate(a);
  CUAE_CHECK(ctx.blaslt != nullptr,
             kern::detail::dense_desc("dense_forward", a.m, a.n, a.k, a.w_kn, a.act) + ": no cuBLASLt handle in the context");
  const cudaStream_t stream = launch::stream_of(ctx);
  const int variant = ctx.variant;
  CUAE_CHECK(variant >= 0 && variant < kDenseVariants, "dense: no kernel variant " + std::to_string(variant));
  const bool has_b = a.b != nullptr;
  Gemm g = forward_gemm(a);

  // Variant 2: the GELU epilogues (a no-z request, or z through the aux pointer when its ld fits).
  if (variant == 2 && a.act == Act::GELU && (!a.z || a.n % 8 == 0)) {
    g.bias = a.b;
    if (!a.z) {
      g.epi = has_b ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
    } else {
      g.epi = has_b ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
      g.aux = a.z;
      g.aux_ld = a.n;
    }
    if (gemm(ctx, g)) return;
    g = forward_gemm(a);
  }

  // Variants 0 and 2: the epilogue is the whole job for identity and ReLU when z is not wanted.
  if (variant != 1 && !a.z && (a.act == Act::Identity || a.act == Act::ReLU)) {
    if (a.act == Act::ReLU) g.epi = has_b ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
    else g.epi = has_b ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    g.bias = a.b;
    if (gemm(ctx, g)) return;
    g = forward_gemm(a);
  }

  // Everything else: GEMM (+ BIAS epilogue for variants 0/2) into z when z is wanted, then one pass
  // reading z and writing y — 8 bytes per element, where a pass in place over y that also wrote z
  // would move 12.
  float* pre = a.z ? a.z : a.y;
  g.D = pre;
  bool bias_in_gemm = false;
  if (variant != 1 && has_b) {
    g.epi = CUBLASLT_EPILOGUE_BIAS;
    g.bias = a.b;
    bias_in_gemm = gemm(ctx, g);
  }
  if (!bias_in_gemm) {
    g.epi = CUBLASLT_EPILOGUE_DEFAULT;
    g.bias = nullptr;
    gemm(ctx, g);
  }
  const float* pass_bias = has_b && !bias_in_gemm ? a.b : nullptr;
  // A bias-less identity without z (variant 1 gets here): the GEMM was the whole job.
  if (!pass_bias && a.act == Act::Identity && !a.z) return;
  // When the pass adds the bias it also writes the biased value back to z; otherwise z already
  // holds the pre-activation and is only read.
  bias_act_cuda(pre, pass_bias ? a.z : nullptr, a.y, pass_bias, a.m, a.n, a.act, a.slope, stream);
}

void dense_backward(const Context& ctx, const DenseBackward& a) {
  validate(a);
  const auto desc = [&] { return kern::detail::dense_desc("dense_backward", a.m, a.n, a.k, a.w_kn, a.act); };
  CUAE_CHECK(ctx.blaslt != nullptr, desc() + ": no cuBLASLt handle in the context");
  const cudaStream_t stream = launch::stream_of(ctx);
  const int variant = ctx.variant;
  CUAE_CHECK(variant >= 0 && variant < kDenseVariants, "dense: no kernel variant " + std::to_string(variant));

  // Variant 2: db from the dW GEMM's bias-gradient epilogue, when the call allows it (the epilogue
  // overwrites db, and needs the dW GEMM to run at all) and cuBLASLt has an algorithm for it.
  if (variant == 2 && a.db && a.dw && !a.acc_db) {
    Gemm g = dw_gemm(a);
    g.epi = a.w_kn ? CUBLASLT_EPILOGUE_BGRADA : CUBLASLT_EPILOGUE_BGRADB;
    g.bias = a.db;
    if (gemm_supported(ctx, g)) {
      dact_cuda(a, stream);
      gemm(ctx, g);
      if (a.dx) gemm(ctx, dx_gemm(a));
      return;
    }
  }

  if (!a.db) {
    dact_cuda(a, stream);
  } else if (variant == 1) {
    dact_cuda(a, stream);
    // Grid in 64 bits: a.n + kThreads - 1 overflows int for n near 2^31.
    const auto blocks = static_cast<unsigned>((static_cast<std::int64_t>(a.n) + kThreads - 1) / kThreads);
    colsum_naive_kernel<<<blocks, kThreads, 0, stream>>>(a.dz, a.m, a.n, a.db, a.acc_db);
    CUAE_CUDA_LAUNCH_CHECK();
  } else {
    dact_bgrad_cuda(ctx, a, stream);
  }
  if (a.dw) gemm(ctx, dw_gemm(a));
  if (a.dx) gemm(ctx, dx_gemm(a));
}

}  // namespace cuae::kern::cuda
