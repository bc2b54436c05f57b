// CUDA restricted-Boltzmann-machine ops: one contrastive-divergence gradient (rbm_cd) and the free
// energy (rbm_free_energy), on cuBLASLt GEMMs plus our own elementwise and reduction kernels.
//
// rbm_cd, per call (k Gibbs steps): 1 + 2k GEMMs for the chain (v·Wᵀ, then per step h·W and v·Wᵀ)
// and 2 for dW (−ph0ᵀ·v0/m, then +phkᵀ·vk/m with beta = 1), each followed where needed by one
// elementwise pass (bias + mean, and the hidden sample). db, dc and recon are reduced in two fixed
// passes through the workspace's partials (per chunk of kRbmChunkRows rows, then the chunks in
// index order, in double): no atomics, and the partition depends only on m, so a repeated call
// gives the same bits on any GPU of the same architecture (cuBLAS is bit-wise reproducible for a
// fixed algorithm, and the algorithm is chosen once per shape and kept).
//
// Workspace: kernels/rbm_validate.hpp (rbm_cd_workspace_floats), laid out
//   ph0 [m,nh] | hs [m,nh] | phk [m,nh] | vt [m,nv] | db partials [chunks,nv] | dc partials
//   [chunks,nh] | recon partials [chunks]
//
// Draws: exactly as kernels/cpu/rbm.cpp (step t's hidden sample of element e: draw e + t·m·nh,
// word d % 4 of Philox group d / 4, one thread per group using all four words; Bernoulli h = 1 iff u < p, linear h = mean + the Box-Muller
// normal of draw d; with sample_visible, step t's visible sample of element e: draw
// k·m·nh + (t − 1)·m·nv + e, drawn in place over the mean in vt). The draw index is 64-bit. The CPU and the GPU compute p with the same float
// formula (kernels/act_math.hpp), but expf may differ by an ulp, so a uniform within an ulp of p
// can (rarely) sample differently on the two devices.
//
// Back of the envelope (H100, fp32 GEMM ~50 TFLOP/s): one CD-1 step at 1024×784→1000 is 5 GEMMs of
// 2·1024·784·1000 = 1.6 GFLOP, ~160 µs of math; the passes move ~4·(3·m·nh + 2·m·nv) floats,
// ~20 MB ≈ 7 µs. At batch 100 the GEMMs are small and launch overhead dominates.
#include <cublasLt.h>

#include <cstdint>

#include "kernels/act_math.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/ops.hpp"
#include "kernels/philox.hpp"
#include "kernels/rbm_validate.hpp"
#include "kernels/step_math.hpp"

namespace cuae::kern::cuda {

namespace {

constexpr int kThreads = reduce::kThreads;  // the reductions here end in reduce::block_sum

// GEMMs through the shared cuBLASLt plan cache (kernels/cuda/gemm.cuh); the RBM's have no epilogue,
// so a missing algorithm is an error there (blas::gemm throws).
using blas::Gemm;

// Row-major y [m,n] = x [m,k]·W'ᵀ with W' [n,k] (trans_w), or x·W' with W' [k,n]: in column-major
// terms yᵀ [n,m] = op(W')·xᵀ.
Gemm xw_gemm(const float* x, const float* w, float* y, int m, int n, int k, bool trans_w) {
  Gemm g;
  g.M = n, g.N = m, g.K = k;
  g.A = w, g.ta = trans_w ? CUBLAS_OP_T : CUBLAS_OP_N, g.lda = trans_w ? k : n;
  g.B = x, g.tb = CUBLAS_OP_N, g.ldb = k;
  g.D = y, g.ldd = n;
  return g;
}

// Row-major dW [nh,nv] (+)= alpha·Pᵀ·V with P [m,nh], V [m,nv]: column-major dWᵀ [nv,nh] = V'·P'ᵀ
// where V' (nv×m) is V's buffer as it is and P' (nh×m) is P's.
Gemm outer_gemm(const float* p, const float* v, float* dw, int m, int nv, int nh, float alpha, float beta) {
  Gemm g;
  g.M = nv, g.N = nh, g.K = m;
  g.A = v, g.ta = CUBLAS_OP_N, g.lda = nv;
  g.B = p, g.tb = CUBLAS_OP_T, g.ldb = nh;
  g.D = dw, g.ldd = nv;
  g.alpha = alpha, g.beta = beta;
  return g;
}

// =============================================================================================
// kernels
// =============================================================================================

// Units in place over [count] elements of a layer of n units: x ← mean(x + bias) (σ for Bernoulli
// units, the identity for linear/Gaussian ones) and, with sample, out ← the sample of draw base + e
// for element e (out may be x itself: the sample then replaces the mean, as the visible units of
// sample_visible do). One thread per Philox group of four draws: the group's one evaluation gives
// all four words, used by their compile-time index (Bernoulli: 1 iff u < p; Gaussian: p + the
// Box-Muller normal of the pair (0,1) or (2,3)), so no draw is computed twice and the kernel has
// no stack frame. The draws of [base, base + count) need not start at a group boundary: the first
// and last groups use only their words inside the range.
template <bool kBernoulli>
__global__ void __launch_bounds__(kThreads) units_kernel(float* x, const float* bias, float* out, unsigned count,
                                                         unsigned n, bool sample, std::uint64_t seed,
                                                         std::uint64_t step_value, const std::uint64_t* step_at,
                                                         std::uint64_t base) {
  const std::uint64_t step = step_of(step_value, step_at);
  const std::uint64_t g0 = base / 4, g1 = (base + count + 3) / 4;
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  for (std::uint64_t g = g0 + blockIdx.x * blockDim.x + threadIdx.x; g < g1; g += stride) {
    float u[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (sample) {
      const Philox4 r = philox_group(seed, step, g);
      if constexpr (kBernoulli) {
#pragma unroll
        for (int w = 0; w < 4; ++w) u[w] = philox_uniform(r.w[w]);
      } else {
        philox_normal2(r.w[0], r.w[1], u[0], u[1]);
        philox_normal2(r.w[2], r.w[3], u[2], u[3]);
      }
    }
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const std::uint64_t d = 4 * g + static_cast<std::uint64_t>(w);
      if (d < base || d >= base + count) continue;
      const auto e = static_cast<unsigned>(d - base);
      const float z = x[e] + bias[e % n];
      const float p = kBernoulli ? sigmoidf_stable(z) : z;
      x[e] = p;
      if (sample) out[e] = kBernoulli ? (u[w] < p ? 1.0f : 0.0f) : p + u[w];
    }
  }
}

constexpr int kTileCols = 32, kTileRows = 8;

// partial[chunk·n + col] = Σ over the chunk's rows of (p − q)[row, col]: block (32, 8), grid
// (column tiles, chunks), or (chunks, column tiles) when swapped (grid.y stops at 65535; m·n < 2^31
// keeps one of the two below it); each thread sums its rows in order, then row 0 of the block
// adds the eight in order.
__global__ void __launch_bounds__(kTileCols* kTileRows) colsum_diff_kernel(const float* p, const float* q, int m,
                                                                          int n, float* partial, bool swapped) {
  __shared__ float sums[kTileRows][kTileCols];
  const unsigned tile = swapped ? blockIdx.y : blockIdx.x, chunk = swapped ? blockIdx.x : blockIdx.y;
  const unsigned col = tile * kTileCols + threadIdx.x;
  const unsigned r0 = chunk * kRbmChunkRows;
  const unsigned r1 = min(static_cast<unsigned>(m), r0 + kRbmChunkRows);
  float s = 0.0f;
  if (col < static_cast<unsigned>(n))
    for (unsigned r = r0 + threadIdx.y; r < r1; r += kTileRows) {
      const unsigned i = r * static_cast<unsigned>(n) + col;
      s += p[i] - q[i];
    }
  sums[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < static_cast<unsigned>(n)) {
    float t = sums[0][threadIdx.x];
#pragma unroll
    for (int j = 1; j < kTileRows; ++j) t += sums[j][threadIdx.x];
    partial[static_cast<std::size_t>(chunk) * n + col] = t;
  }
}

// out[col] = −Σ_chunks partial / m, chunks in order, in double.
__global__ void __launch_bounds__(kThreads) colsum_finish_kernel(const float* partial, int chunks, int n, int m,
                                                                 float* out) {
  const unsigned col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= static_cast<unsigned>(n)) return;
  double t = 0.0;
  for (int c = 0; c < chunks; ++c) t += partial[static_cast<std::size_t>(c) * n + col];
  out[col] = static_cast<float>(-t / m);
}

// partial[chunk] = Σ over the chunk's rows of (v0 − v1)², one block per chunk.
__global__ void __launch_bounds__(kThreads) recon_partial_kernel(const float* v0, const float* v1, int m, int nv,
                                                                 float* partial) {
  const std::size_t e0 = static_cast<std::size_t>(blockIdx.x) * kRbmChunkRows * nv;
  const std::size_t e1 = min(static_cast<std::size_t>(m), (static_cast<std::size_t>(blockIdx.x) + 1) * kRbmChunkRows) * nv;
  double s = 0.0;
  for (std::size_t e = e0 + threadIdx.x; e < e1; e += kThreads) {
    const double d = static_cast<double>(v0[e]) - v1[e];
    s += d * d;
  }
  const double t = reduce::block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = static_cast<float>(t);
}

__global__ void recon_finish_kernel(const float* partial, int chunks, int m, float* recon) {
  double t = 0.0;
  for (int c = 0; c < chunks; ++c) t += partial[c];
  recon[0] = static_cast<float>(t / m);
}

// fe[row] from x = v·Wᵀ (in ws): one block per row (grid-stride), terms in double, a fixed tree.
__global__ void __launch_bounds__(kThreads) free_energy_kernel(const float* v, const float* x, const float* b,
                                                               const float* c, float* fe, int m, int nv, int nh,
                                                               bool vis_bernoulli, bool hid_bernoulli) {
  for (int i = blockIdx.x; i < m; i += gridDim.x) {
    const float* vr = v + static_cast<std::size_t>(i) * nv;
    const float* xr = x + static_cast<std::size_t>(i) * nh;
    double f = 0.0;
    for (int j = threadIdx.x; j < nv; j += kThreads) {
      if (vis_bernoulli) {
        f -= static_cast<double>(vr[j]) * b[j];
      } else {
        const double d = static_cast<double>(vr[j]) - b[j];
        f += 0.5 * d * d;
      }
    }
    for (int j = threadIdx.x; j < nh; j += kThreads) {
      const double z = static_cast<double>(xr[j]) + c[j];
      f -= hid_bernoulli ? (z > 0 ? z : 0.0) + log1p(exp(-fabs(z))) : 0.5 * z * z;
    }
    const double t = reduce::block_sum(f);
    if (threadIdx.x == 0) fe[i] = static_cast<float>(t);
    __syncthreads();  // block_sum's shared storage is reused by the next row
  }
}

// units_kernel over count elements of a layer of n units, drawing from base.
void units_cuda(const Context& ctx, bool bernoulli, float* x, const float* bias, float* out, std::int64_t count,
                int n, const RbmCD& a, std::uint64_t base, cudaStream_t stream) {
  const int grid = launch::grid_for(ctx, (count + 3) / 4 + 1, kThreads);
  const auto c = static_cast<unsigned>(count);
  const auto un = static_cast<unsigned>(n);
  if (bernoulli)
    units_kernel<true><<<grid, kThreads, 0, stream>>>(x, bias, out, c, un, out != nullptr, a.seed, a.step, a.step_at, base);
  else
    units_kernel<false><<<grid, kThreads, 0, stream>>>(x, bias, out, c, un, out != nullptr, a.seed, a.step, a.step_at, base);
  CUAE_CUDA_LAUNCH_CHECK();
}

// Hidden units of Gibbs step t: x [m,nh] holds v·Wᵀ; x ← E[h|v], and hs ← a sample of draws
// t·m·nh + e when hs is non-null.
void hidden_cuda(const Context& ctx, const RbmCD& a, float* x, float* hs, std::int64_t t, cudaStream_t stream) {
  const std::int64_t count = static_cast<std::int64_t>(a.m) * a.nh;
  units_cuda(ctx, a.hidden == RbmUnit::Bernoulli, x, a.c, hs, count, a.nh, a,
             static_cast<std::uint64_t>(t) * static_cast<std::uint64_t>(count), stream);
}

void neg_mean_diff_cuda(const float* p, const float* q, int m, int n, float* partial, float* out, cudaStream_t stream) {
  const auto chunks = static_cast<unsigned>(rbm_chunks(m));
  const auto tiles = static_cast<unsigned>((static_cast<std::int64_t>(n) + kTileCols - 1) / kTileCols);
  const bool swapped = chunks > 65535u;
  const dim3 grid = swapped ? dim3(chunks, tiles) : dim3(tiles, chunks);
  colsum_diff_kernel<<<grid, dim3(kTileCols, kTileRows), 0, stream>>>(p, q, m, n, partial, swapped);
  CUAE_CUDA_LAUNCH_CHECK();
  const auto blocks = static_cast<unsigned>((static_cast<std::int64_t>(n) + kThreads - 1) / kThreads);
  colsum_finish_kernel<<<blocks, kThreads, 0, stream>>>(partial, static_cast<int>(chunks), n, m, out);
  CUAE_CUDA_LAUNCH_CHECK();
}

// recon[0] = Σ (v0 − v1)² / m: per-chunk partials, then the chunks in order.
void recon_cuda(const float* v0, const float* v1, int m, int nv, float* partial, float* recon, cudaStream_t stream) {
  const auto chunks = static_cast<unsigned>(rbm_chunks(m));
  recon_partial_kernel<<<chunks, kThreads, 0, stream>>>(v0, v1, m, nv, partial);
  CUAE_CUDA_LAUNCH_CHECK();
  recon_finish_kernel<<<1, 1, 0, stream>>>(partial, static_cast<int>(chunks), m, recon);
  CUAE_CUDA_LAUNCH_CHECK();
}

void free_energy_cuda(const RbmFreeEnergy& a, cudaStream_t stream) {
  const int blocks = a.m < 65535 ? a.m : 65535;
  free_energy_kernel<<<blocks, kThreads, 0, stream>>>(a.v, a.ws, a.b, a.c, a.fe, a.m, a.nv, a.nh,
                                                      a.visible == RbmUnit::Bernoulli, a.hidden == RbmUnit::Bernoulli);
  CUAE_CUDA_LAUNCH_CHECK();
}

}  // namespace

// =============================================================================================
// op entries
// =============================================================================================

void rbm_cd_workspace(const Context&, const RbmCDWorkspace& a) {
  validate(a);
  *a.floats = rbm_cd_workspace_floats(a.m, a.nv, a.nh);
}

// OpCache entries of rbm_cd's GEMMs (each call site repeats its own GEMM every Gibbs step).
enum GemmEntry { kGemmV0 = 0, kGemmHW = 1, kGemmVW = 2, kGemmPos = 3, kGemmNeg = 4 };

void rbm_cd(const Context& ctx, const RbmCD& a) {
  validate(a);
  CUAE_CHECK(ctx.blaslt != nullptr, "rbm_cd: no cuBLASLt handle in the context");
  if (!a.dw && !a.db && !a.dc && !a.recon) return;
  const cudaStream_t stream = launch::stream_of(ctx);
  const int m = a.m, nv = a.nv, nh = a.nh;
  const std::size_t MH = static_cast<std::size_t>(m) * nh, MV = static_cast<std::size_t>(m) * nv;
  const std::size_t chunks = static_cast<std::size_t>(rbm_chunks(m));
  float* ph0 = a.ws;
  float* hs = ph0 + MH;
  float* phk = hs + MH;
  float* vt = phk + MH;
  float* part_b = vt + MV;
  float* part_c = part_b + chunks * nv;
  float* part_r = part_c + chunks * nh;

  // Sampled visibles draw after every hidden draw: step t's start at k·m·nh + (t − 1)·m·nv.
  const std::uint64_t vis_base = static_cast<std::uint64_t>(a.k) * MH;

  blas::gemm(ctx, xw_gemm(a.v0, a.w, ph0, m, nh, nv, true), a.cache, kGemmV0);
  hidden_cuda(ctx, a, ph0, hs, 0, stream);
  for (int t = 1; t <= a.k; ++t) {
    blas::gemm(ctx, xw_gemm(hs, a.w, vt, m, nv, nh, false), a.cache, kGemmHW);
    // Visible units: vt ← E[v|h], replaced in place by its sample with sample_visible.
    units_cuda(ctx, a.visible == RbmUnit::Bernoulli, vt, a.b, a.sample_visible ? vt : nullptr,
               static_cast<std::int64_t>(MV), nv, a, vis_base + static_cast<std::uint64_t>(t - 1) * MV, stream);
    if (t == 1 && a.recon) recon_cuda(a.v0, vt, m, nv, part_r, a.recon, stream);
    blas::gemm(ctx, xw_gemm(vt, a.w, phk, m, nh, nv, true), a.cache, kGemmVW);
    hidden_cuda(ctx, a, phk, t < a.k ? hs : nullptr, t, stream);
  }
  if (a.dw) {
    const float inv_m = 1.0f / static_cast<float>(m);
    blas::gemm(ctx, outer_gemm(ph0, a.v0, a.dw, m, nv, nh, -inv_m, 0.0f), a.cache, kGemmPos);
    blas::gemm(ctx, outer_gemm(phk, vt, a.dw, m, nv, nh, inv_m, 1.0f), a.cache, kGemmNeg);
  }
  if (a.db) neg_mean_diff_cuda(a.v0, vt, m, nv, part_b, a.db, stream);
  if (a.dc) neg_mean_diff_cuda(ph0, phk, m, nh, part_c, a.dc, stream);
}

void rbm_free_energy(const Context& ctx, const RbmFreeEnergy& a) {
  validate(a);
  CUAE_CHECK(ctx.blaslt != nullptr, "rbm_free_energy: no cuBLASLt handle in the context");
  const cudaStream_t stream = launch::stream_of(ctx);
  blas::gemm(ctx, xw_gemm(a.v, a.w, a.ws, a.m, a.nh, a.nv, true), a.cache, 0);
  free_energy_cuda(a, stream);
}

}  // namespace cuae::kern::cuda
