// CUDA penalties: the activity penalties (L1, KL sparsity) and the contractive penalty.
//
// Kernels (one variant each; ctx.variant is ignored):
//   activity_penalty, L1
//     l1_partial_kernel<G>       one streaming pass: Σ|h| per thread in double and (G) grad (+)=
//                                w/m·sign(h), float4 when aligned; each block's sum into ctx.scratch
//     reduce::final_sum_cuda     one block adds the partials in index order, writes loss[0]
//   activity_penalty, KL
//     kl_colsum_kernel           column sums of h over row chunks (grid = column tiles × row
//                                chunks), in double; per-(chunk, column) partials in ctx.scratch,
//                                or ρ̂ written directly when the partials do not fit
//     kl_finish_kernel           per column: ρ̂ = Σ chunks / m, clamped, into rho_hat; KL(ρ‖ρ̂_j)
//                                once per column, each block's sum into ctx.scratch
//     kl_grad_kernel<G>          (G) grad (+)= w/m·(−ρ/ρ̂_j + (1−ρ)/(1−ρ̂_j)), the factor computed
//                                once per thread for its column; block (0,0) also sums the KL
//                                partials into loss[0] (without grad it is that block alone)
//   contractive_penalty
//     row_norm_kernel            s_j = Σ_l W_jl², one warp per row (only when grad_h is wanted:
//                                the pass needs s; otherwise the finish kernel computes s)
//     contractive_pass_kernel    one pass over h: G_j column partials (double) over row chunks
//                                and grad_h (+)= w/m·g′(h)·s_j
//     contractive_finish_kernel  one warp per row j of W: G_j from its partials (into ws), s_j if
//                                not yet known, the value term s_j·G_j (Σ_ij g·s_j = Σ_j s_j·G_j),
//                                and grad_w row j (+)= 2w/m·G_j·W_jl; each block's value sum into
//                                ctx.scratch
//     reduce::final_sum_cuda     as for L1, loss[0] = w/m · Σ
//
// Launches: L1 2; KL 3; contractive 3, or 4 when grad_h is wanted (s must be complete before the
// pass over h reads it). Each reduction needs all of its inputs before the next stage, so without
// grid-wide synchronisation none of these stages can be merged further.
//
// Back of the envelope (H100 SXM, ~3.0 TB/s): every kernel is a streaming pass, FLOPs negligible.
//   L1: 8 B per element of h with grad (read h, write grad; 12 with acc_grad), 4 without.
//   KL: 4 B to read h in the column pass, 4 B to write grad (8 with acc_grad) in the gradient
//     pass: 8-12 B per element over two passes (the gradient needs every column mean first). The
//     finish kernel touches chunks·n doubles (≤ the scratch, 256 KiB), negligible.
//   contractive: per element of h 4 B (value and G only) or 8 B with grad_h (12 with acc); per
//     element of W 4 B for s plus 8 B for grad_w (12 with acc; the finish kernel's second read of
//     a row of W hits L1/L2). A 256×1000 layer with k = 784 moves ~7 MB ≈ 2.5 µs, so at training
//     sizes the 3-4 launches (~2-3 µs each) cost as much as the bytes; all of them are bound by
//     memory bandwidth at large sizes, by launch latency at small ones.
//
// Determinism: no atomics. Every partition (grid sizes, row chunks) depends only on the shapes,
// the SM count and the scratch size; each block reduces in a fixed order (a fixed shared-memory
// tree, cub::BlockReduce, a warp butterfly) and each final sum adds its partials in index order,
// so one device gives bit-identical results run after run. Sums are kept in double, as in the CPU
// reference; values and gradients use the same float formulas (kernels/penalty_math.hpp).
//
// Indexing: validate() caps m·n and n·k below 2^31, so element indices fit in 32-bit unsigned
// arithmetic (row + stride never passes 2^32).
#include <cstdint>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/ops.hpp"
#include "kernels/penalty_math.hpp"
#include "kernels/step_math.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern::cuda {

namespace {

using reduce::kMaxParts;
using reduce::Scratch;
constexpr int kThreads = reduce::kThreads;  // every block here ends in a reduce:: sum
constexpr int kWarps = kThreads / 32;

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

std::int64_t min64(std::int64_t a, std::int64_t b) { return a < b ? a : b; }
std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// A pass over an [m, n] row-major tensor by column tiles. A block of kThreads threads is a tile
// of TW = 2^shift columns by RY = kThreads/TW rows: thread (tx, ty) owns column tile·TW + tx and
// walks rows r0+ty, r0+ty+RY, ... of its block's row chunk. TW is 32 (a warp reads one 128-byte
// line of a row) unless n is smaller, when it shrinks to the next power of two ≥ n so a narrow
// tensor does not leave most lanes idle. grid = (col_tiles, chunks).
struct ColTiling {
  int shift = 5;
  unsigned col_tiles = 1;
  unsigned chunks = 1;
  unsigned rows = 1;  // rows per chunk
};

// want_blocks: the parallelism to aim for; each chunk gets at least 2·RY rows (two per thread) and
// there are never more than max_chunks chunks.
ColTiling col_tiling(std::int64_t m, std::int64_t n, std::int64_t want_blocks, std::int64_t max_chunks) {
  ColTiling t;
  int shift = 0;
  while (shift < 5 && (std::int64_t{1} << shift) < n) ++shift;
  t.shift = shift;
  const std::int64_t tw = std::int64_t{1} << shift, ry = kThreads / tw;
  const std::int64_t tiles = ceil_div(n, tw);
  std::int64_t chunks = ceil_div(want_blocks, tiles);
  chunks = min64(chunks, ceil_div(m, 2 * ry));
  chunks = min64(chunks, max_chunks);
  chunks = min64(chunks, 65535);  // grid.y limit
  if (chunks < 1) chunks = 1;
  const std::int64_t rows = ceil_div(m, chunks);
  t.col_tiles = static_cast<unsigned>(tiles);
  t.chunks = static_cast<unsigned>(ceil_div(m, rows));
  t.rows = static_cast<unsigned>(rows);
  return t;
}

// Thread coordinates of a column-tile block.
struct TileThread {
  unsigned tw, ry, tx, ty, col, r0, r1;
};

__device__ __forceinline__ TileThread tile_thread(int shift, unsigned m, unsigned rows) {
  TileThread t;
  t.tw = 1u << shift;
  t.ry = static_cast<unsigned>(kThreads) >> shift;
  t.tx = threadIdx.x & (t.tw - 1u);
  t.ty = threadIdx.x >> shift;
  t.col = blockIdx.x * t.tw + t.tx;
  t.r0 = blockIdx.y * rows;
  t.r1 = min(m, t.r0 + rows);
  return t;
}

// Sums v over the RY threads of each column of the block with a fixed shared-memory tree; the
// result is valid in the threads with ty == 0. Every thread of the block must call it.
__device__ __forceinline__ double column_tree(double v, const TileThread& t) {
  __shared__ double sh[kThreads];
  sh[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = t.ry >> 1; s > 0; s >>= 1) {
    if (t.ty < s) sh[threadIdx.x] += sh[threadIdx.x + s * t.tw];
    __syncthreads();
  }
  return sh[t.tx];
}

// ---------------------------------------------------------------------------------------------
// activity_penalty, L1
// ---------------------------------------------------------------------------------------------

template <bool kGrad>
__global__ void __launch_bounds__(kThreads) l1_partial_kernel(const float* h, float* grad, std::int64_t count,
                                                              TermFactor scale, bool acc, bool vec, double* parts) {
  const float per = scale.per();  // weight/m, the weight read now when it lives in the step block
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t tid = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  double sum = 0.0;
  const std::int64_t n4 = vec ? count / 4 : 0;
  for (std::int64_t i = tid; i < n4; i += stride) {
    const float4 v = reinterpret_cast<const float4*>(h)[i];
    sum += fabs(static_cast<double>(v.x));
    sum += fabs(static_cast<double>(v.y));
    sum += fabs(static_cast<double>(v.z));
    sum += fabs(static_cast<double>(v.w));
    if constexpr (kGrad) {
      float4 g = make_float4(per * sign_of(v.x), per * sign_of(v.y), per * sign_of(v.z), per * sign_of(v.w));
      if (acc) {
        const float4 old = reinterpret_cast<const float4*>(grad)[i];
        g.x += old.x;
        g.y += old.y;
        g.z += old.z;
        g.w += old.w;
      }
      reinterpret_cast<float4*>(grad)[i] = g;
    }
  }
  for (std::int64_t i = n4 * 4 + tid; i < count; i += stride) {
    const float v = h[i];
    sum += fabs(static_cast<double>(v));
    if constexpr (kGrad) {
      const float g = per * sign_of(v);
      grad[i] = acc ? grad[i] + g : g;
    }
  }
  const double total = reduce::block_sum(sum);
  if (threadIdx.x == 0) parts[blockIdx.x] = total;
}

void l1_cuda(const Context& ctx, const ActivityPenalty& a, const Scratch& sc, cudaStream_t stream) {
  const std::int64_t count = static_cast<std::int64_t>(a.m) * a.n;
  const TermFactor per{a.weight, a.weight_at, 1.0f / static_cast<float>(a.m)};  // as the CPU reference
  const bool vec = launch::aligned16(a.h) && (!a.grad || launch::aligned16(a.grad));
  std::int64_t grid = launch::grid_for(ctx, vec ? ceil_div(count, 4) : count, kThreads, 2);
  grid = min64(grid, min64(kMaxParts * 4, sc.cap));
  const int g = static_cast<int>(grid);
  if (a.grad)
    l1_partial_kernel<true><<<g, kThreads, 0, stream>>>(a.h, a.grad, count, per, a.acc_grad, vec, sc.p);
  else
    l1_partial_kernel<false><<<g, kThreads, 0, stream>>>(a.h, nullptr, count, per, false, vec, sc.p);
  CUAE_CUDA_LAUNCH_CHECK();
  reduce::final_sum_cuda(sc.p, g, per, a.loss, stream);
}

// ---------------------------------------------------------------------------------------------
// activity_penalty, KL
// ---------------------------------------------------------------------------------------------

// Column sums of h over the block's row chunk; partial[chunk·n + col] (double), or, when partial
// is null (a single chunk), the clamped mean straight into rho_hat.
__global__ void __launch_bounds__(kThreads) kl_colsum_kernel(const float* h, int m, int n, int shift, unsigned rows,
                                                             double* partial, float* rho_hat) {
  const TileThread t = tile_thread(shift, static_cast<unsigned>(m), rows);
  const unsigned un = static_cast<unsigned>(n);
  double s = 0.0;
  if (t.col < un) {
    // Unrolled by hand ×2 so two independent loads are in flight per thread.
    unsigned r = t.r0 + t.ty;
    for (; r + t.ry < t.r1; r += 2 * t.ry) {
      const float h0 = h[r * un + t.col];
      const float h1 = h[(r + t.ry) * un + t.col];
      s += static_cast<double>(h0);
      s += static_cast<double>(h1);
    }
    if (r < t.r1) s += static_cast<double>(h[r * un + t.col]);
  }
  const double total = column_tree(s, t);
  if (t.ty == 0 && t.col < un) {
    if (partial) partial[blockIdx.y * un + t.col] = total;
    else rho_hat[t.col] = clamp_rho_hat(static_cast<float>(total / static_cast<double>(m)));
  }
}

// Per column j (grid-stride): ρ̂_j from the chunk partials in chunk order (or as already written),
// KL(ρ‖ρ̂_j) once; each block's Σ KL into kl_parts[block].
__global__ void __launch_bounds__(kThreads) kl_finish_kernel(const double* partial, int chunks, int m, int n,
                                                             float rho, float* rho_hat, double* kl_parts) {
  const unsigned un = static_cast<unsigned>(n);
  double v = 0.0;
  for (unsigned j = blockIdx.x * kThreads + threadIdx.x; j < un; j += gridDim.x * kThreads) {
    float r;
    if (partial) {
      double t = 0.0;
      for (int c = 0; c < chunks; ++c) t += partial[static_cast<unsigned>(c) * un + j];
      r = clamp_rho_hat(static_cast<float>(t / static_cast<double>(m)));
      rho_hat[j] = r;
    } else {
      r = rho_hat[j];
    }
    v += static_cast<double>(kl_bernoulli(rho, r));
  }
  const double total = reduce::block_sum(v);
  if (threadIdx.x == 0) kl_parts[blockIdx.x] = total;
}

// (kGrad) grad[r, col] (+)= w/m·KL′(ρ̂_col) over the block's tile; block (0,0) also writes the
// value w·Σ kl_parts.
template <bool kGrad>
__global__ void __launch_bounds__(kThreads) kl_grad_kernel(const float* rho_hat, float* grad, int m, int n, int shift,
                                                           unsigned rows, float rho, TermFactor scale, bool acc,
                                                           const double* kl_parts, int nparts, float* loss) {
  const float per = scale.per();
  const double weight = scale.w();
  if constexpr (kGrad) {
    const TileThread t = tile_thread(shift, static_cast<unsigned>(m), rows);
    const unsigned un = static_cast<unsigned>(n);
    if (t.col < un) {
      const float f = per * kl_bernoulli_grad(rho, rho_hat[t.col]);
      for (unsigned r = t.r0 + t.ty; r < t.r1; r += t.ry) {
        float& d = grad[r * un + t.col];
        d = acc ? d + f : f;
      }
    }
  }
  if (blockIdx.x == 0 && blockIdx.y == 0) reduce::sum_parts(kl_parts, nparts, weight, loss);
}

void kl_cuda(const Context& ctx, const ActivityPenalty& a, const Scratch& sc, cudaStream_t stream) {
  const std::int64_t m = a.m, n = a.n;
  const TermFactor per{a.weight, a.weight_at, 1.0f / static_cast<float>(a.m)};  // as the CPU reference
  // Scratch: [0, nparts) the finish kernel's block sums, then chunks·n column partials if they fit.
  const int nparts = static_cast<int>(min64(min64(ceil_div(n, kThreads), kMaxParts), sc.cap));
  double* kl_parts = sc.p;
  const std::int64_t max_chunks = (sc.cap - nparts) / n;
  const bool use_partials = max_chunks >= 1;
  const std::int64_t want = static_cast<std::int64_t>(launch::sm_count(ctx)) * 8;
  const ColTiling ct = col_tiling(m, n, want, use_partials ? max_chunks : 1);
  double* partial = use_partials ? sc.p + nparts : nullptr;

  kl_colsum_kernel<<<dim3(ct.col_tiles, ct.chunks), kThreads, 0, stream>>>(a.h, a.m, a.n, ct.shift, ct.rows, partial,
                                                                           a.rho_hat);
  CUAE_CUDA_LAUNCH_CHECK();
  kl_finish_kernel<<<nparts, kThreads, 0, stream>>>(partial, static_cast<int>(ct.chunks), a.m, a.n, a.rho, a.rho_hat,
                                                    kl_parts);
  CUAE_CUDA_LAUNCH_CHECK();
  if (a.grad) {
    // A plain write pass: more blocks than the reduction, no scratch limit on the chunks.
    const ColTiling gt = col_tiling(m, n, static_cast<std::int64_t>(launch::sm_count(ctx)) * 16, 65535);
    kl_grad_kernel<true><<<dim3(gt.col_tiles, gt.chunks), kThreads, 0, stream>>>(
        a.rho_hat, a.grad, a.m, a.n, gt.shift, gt.rows, a.rho, per, a.acc_grad, kl_parts, nparts, a.loss);
  } else {
    kl_grad_kernel<false><<<1, kThreads, 0, stream>>>(a.rho_hat, nullptr, a.m, a.n, 5, 1, a.rho, per, false, kl_parts,
                                                      nparts, a.loss);
  }
  CUAE_CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------
// contractive_penalty
// ---------------------------------------------------------------------------------------------

// s_j = Σ_l W_jl² (double, stored as float), one warp per row, grid-stride over rows.
__global__ void __launch_bounds__(kThreads) row_norm_kernel(const float* w, int n, int k, float* s) {
  const unsigned lane = threadIdx.x & 31u;
  const unsigned uk = static_cast<unsigned>(k);
  const unsigned nwarps = gridDim.x * kWarps;
  for (unsigned j = (blockIdx.x * kThreads + threadIdx.x) >> 5; j < static_cast<unsigned>(n); j += nwarps) {
    const float* row = w + j * uk;
    double acc = 0.0;
    for (unsigned l = lane; l < uk; l += 32) {
      const double v = row[l];
      acc += v * v;
    }
    acc = reduce::warp_sum(acc);
    if (lane == 0) s[j] = static_cast<float>(acc);
  }
}

// One pass over h: G partials per (chunk, column) in double (or G straight into g_direct as float
// when partial is null), and (kGradH) grad_h (+)= w/m·g′(h)·s_j. grad_h may alias h: each element
// is read before the same thread writes it.
template <Act A, bool kGradH>
__global__ void __launch_bounds__(kThreads)
    contractive_pass_kernel(const float* h, const float* s, float* grad_h, int m, int n, int shift, unsigned rows,
                            float slope, TermFactor scale, bool acc, double* partial, float* g_direct) {
  const float per = scale.per();
  const TileThread t = tile_thread(shift, static_cast<unsigned>(m), rows);
  const unsigned un = static_cast<unsigned>(n);
  double gs = 0.0;
  if (t.col < un) {
    const float sj = kGradH ? s[t.col] : 0.0f;
    unsigned r = t.r0 + t.ty;
    for (; r + t.ry < t.r1; r += 2 * t.ry) {
      const unsigned i0 = r * un + t.col;
      const unsigned i1 = i0 + t.ry * un;
      const float h0 = h[i0];
      const float h1 = h[i1];
      gs += static_cast<double>(contractive_g(A, h0, slope));
      gs += static_cast<double>(contractive_g(A, h1, slope));
      if constexpr (kGradH) {
        const float d0 = per * contractive_dg(A, h0) * sj;
        const float d1 = per * contractive_dg(A, h1) * sj;
        grad_h[i0] = acc ? grad_h[i0] + d0 : d0;
        grad_h[i1] = acc ? grad_h[i1] + d1 : d1;
      }
    }
    if (r < t.r1) {
      const unsigned i0 = r * un + t.col;
      const float h0 = h[i0];
      gs += static_cast<double>(contractive_g(A, h0, slope));
      if constexpr (kGradH) {
        const float d0 = per * contractive_dg(A, h0) * sj;
        grad_h[i0] = acc ? grad_h[i0] + d0 : d0;
      }
    }
  }
  const double total = column_tree(gs, t);
  if (t.ty == 0 && t.col < un) {
    if (partial) partial[blockIdx.y * un + t.col] = total;
    else g_direct[t.col] = static_cast<float>(total);
  }
}

// One warp per row j of W (grid-stride): G_j from the chunk partials (lane-strided, then a warp
// butterfly: a fixed order) into G[j]; s_j computed here when have_s is false; the value term
// s_j·G_j; and (kGradW) grad_w row j (+)= (2w/m·G_j)·W_jl. Each block's Σ s_j·G_j into parts[block].
template <bool kGradW>
__global__ void __launch_bounds__(kThreads)
    contractive_finish_kernel(const float* w, float* s, float* G, const double* partial, int chunks, int n, int k,
                              bool have_s, TermFactor scale, bool acc, float* grad_w, double* parts) {
  const float per = scale.per();
  const unsigned lane = threadIdx.x & 31u;
  const unsigned un = static_cast<unsigned>(n), uk = static_cast<unsigned>(k);
  const unsigned nwarps = gridDim.x * kWarps;
  double v = 0.0;
  for (unsigned j = (blockIdx.x * kThreads + threadIdx.x) >> 5; j < un; j += nwarps) {
    double gj;
    if (partial) {
      double t = 0.0;
      for (unsigned c = lane; c < static_cast<unsigned>(chunks); c += 32) t += partial[c * un + j];
      gj = reduce::warp_sum(t);
    } else {
      gj = static_cast<double>(G[j]);
    }
    const float gf = static_cast<float>(gj);
    const float* row = w + j * uk;
    float sj;
    if (have_s) {
      sj = s[j];
    } else {
      double acc2 = 0.0;
      for (unsigned l = lane; l < uk; l += 32) {
        const double x = row[l];
        acc2 += x * x;
      }
      sj = static_cast<float>(reduce::warp_sum(acc2));
    }
    if (lane == 0) {
      if (partial) G[j] = gf;
      if (!have_s) s[j] = sj;
      v += static_cast<double>(sj) * gj;
    }
    if constexpr (kGradW) {
      const float c = 2.0f * per * gf;
      float* out = grad_w + j * uk;
      for (unsigned l = lane; l < uk; l += 32) {
        const float d = c * row[l];
        out[l] = acc ? out[l] + d : d;
      }
    }
  }
  const double total = reduce::block_sum(v);
  if (threadIdx.x == 0) parts[blockIdx.x] = total;
}

void contractive_cuda(const Context& ctx, const ContractivePenalty& a, const Scratch& sc, cudaStream_t stream) {
  const std::int64_t m = a.m, n = a.n;
  const TermFactor per{a.weight, a.weight_at, 1.0f / static_cast<float>(a.m)};  // as the CPU reference
  float* s = a.ws;
  float* G = a.ws + n;
  const int sms = launch::sm_count(ctx);
  // Scratch: [0, nparts) the finish kernel's block sums, then chunks·n G partials if they fit.
  const int nparts = static_cast<int>(min64(min64(ceil_div(n, kWarps), kMaxParts), sc.cap));
  double* parts = sc.p;
  const std::int64_t max_chunks = (sc.cap - nparts) / n;
  const bool use_partials = max_chunks >= 1;
  const ColTiling ct = col_tiling(m, n, static_cast<std::int64_t>(sms) * 8, use_partials ? max_chunks : 1);
  double* partial = use_partials ? sc.p + nparts : nullptr;

  const bool want_gh = a.grad_h != nullptr;
  if (want_gh) {
    const int grid = static_cast<int>(min64(ceil_div(n, kWarps), static_cast<std::int64_t>(sms) * 8));
    row_norm_kernel<<<grid, kThreads, 0, stream>>>(a.w, a.n, a.k, s);
    CUAE_CUDA_LAUNCH_CHECK();
  }
  const dim3 grid(ct.col_tiles, ct.chunks);
  launch::dispatch_act(a.act, [&](auto act) {
    constexpr Act A = decltype(act)::value;
    if constexpr (A == Act::GELU) {
      ::cuae::fail_at(__FILE__, __LINE__, "contractive_penalty: GELU is not supported");  // validate() rejects it
    } else if (want_gh) {
      contractive_pass_kernel<A, true><<<grid, kThreads, 0, stream>>>(a.h, s, a.grad_h, a.m, a.n, ct.shift, ct.rows,
                                                                      a.slope, per, a.acc_grad_h, partial, G);
    } else {
      contractive_pass_kernel<A, false><<<grid, kThreads, 0, stream>>>(a.h, nullptr, nullptr, a.m, a.n, ct.shift,
                                                                       ct.rows, a.slope, per, false, partial, G);
    }
  });
  CUAE_CUDA_LAUNCH_CHECK();
  const int chunks = static_cast<int>(ct.chunks);
  if (a.grad_w)
    contractive_finish_kernel<true><<<nparts, kThreads, 0, stream>>>(a.w, s, G, partial, chunks, a.n, a.k, want_gh,
                                                                     per, a.acc_grad_w, a.grad_w, parts);
  else
    contractive_finish_kernel<false><<<nparts, kThreads, 0, stream>>>(a.w, s, G, partial, chunks, a.n, a.k, want_gh,
                                                                      per, false, nullptr, parts);
  CUAE_CUDA_LAUNCH_CHECK();
  reduce::final_sum_cuda(parts, nparts, per, a.loss, stream);
}

}  // namespace

void activity_penalty(const Context& ctx, const ActivityPenalty& a) {
  validate(a);
  const Scratch sc = reduce::scratch_of(ctx, "activity_penalty");
  if (a.kind == PenaltyKind::L1) l1_cuda(ctx, a, sc, launch::stream_of(ctx));
  else kl_cuda(ctx, a, sc, launch::stream_of(ctx));
}

void contractive_penalty(const Context& ctx, const ContractivePenalty& a) {
  validate(a);
  const Scratch sc = reduce::scratch_of(ctx, "contractive_penalty");
  contractive_cuda(ctx, a, sc, launch::stream_of(ctx));
}

}  // namespace cuae::kern::cuda
