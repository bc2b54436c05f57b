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
// word d % 4 of Philox group d / 4; Bernoulli h = 1 iff u < p, linear h = mean + the Box-Muller
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
#include "kernels/ops.hpp"
#include "kernels/philox.hpp"
#include "kernels/rbm_validate.hpp"

namespace cuae::kern::cuda {

namespace {

constexpr int kThreads = 256;

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

// The sample of a unit with mean p from draw d: Bernoulli 1 iff u < p, else p + the Box-Muller
// normal of the draw (pair (0,1) or (2,3) of its group, the even draw taking the first normal).
__device__ __forceinline__ float unit_sample(bool bernoulli, float p, std::uint64_t seed, std::uint64_t step,
                                             std::uint64_t d) {
  const Philox4 r = philox_group(seed, step, d / 4);
  const unsigned w = static_cast<unsigned>(d % 4);
  if (bernoulli) return philox_uniform(r.w[w]) < p ? 1.0f : 0.0f;
  const unsigned pair = w / 2 * 2;
  float n0, n1;
  philox_normal2(r.w[pair], r.w[pair + 1], n0, n1);
  return p + (w % 2 == 0 ? n0 : n1);
}

// x [m,nh] holds v·Wᵀ: x ← mean(x + c); with sample, hs ← a sample of draw base + e.
__global__ void __launch_bounds__(kThreads) hidden_kernel(float* x, const float* c, float* hs, unsigned count,
                                                          unsigned nh, bool bernoulli, bool sample,
                                                          std::uint64_t seed, std::uint64_t step, std::uint64_t base) {
  const unsigned stride = gridDim.x * blockDim.x;
  for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < count; e += stride) {
    const float z = x[e] + c[e % nh];
    const float p = bernoulli ? sigmoidf_stable(z) : z;
    x[e] = p;
    if (sample) hs[e] = unit_sample(bernoulli, p, seed, step, base + e);
  }
}

// v [m,nv] holds h·W: v ← σ(v + b) (Bernoulli) or v + b (Gaussian); with sample, that mean is
// replaced in place by its sample of draw base + e (sample_visible).
__global__ void __launch_bounds__(kThreads) visible_kernel(float* v, const float* b, unsigned count, unsigned nv,
                                                           bool bernoulli, bool sample, std::uint64_t seed,
                                                           std::uint64_t step, std::uint64_t base) {
  const unsigned stride = gridDim.x * blockDim.x;
  for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < count; e += stride) {
    const float z = v[e] + b[e % nv];
    const float p = bernoulli ? sigmoidf_stable(z) : z;
    v[e] = sample ? unit_sample(bernoulli, p, seed, step, base + e) : p;
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

// A fixed shared-memory tree over the kThreads values of a block; thread 0 gets the total.
__device__ double block_sum(double v) {
  __shared__ double s[kThreads];
  s[threadIdx.x] = v;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w >>= 1) {
    if (threadIdx.x < static_cast<unsigned>(w)) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  return s[0];
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
  const double t = block_sum(s);
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
    const double t = block_sum(f);
    if (threadIdx.x == 0) fe[i] = static_cast<float>(t);
    __syncthreads();  // block_sum's shared array is reused by the next row
  }
}

void hidden_pass(const RbmCD& a, float* x, float* hs, std::int64_t t, cudaStream_t stream) {
  const std::int64_t count = static_cast<std::int64_t>(a.m) * a.nh;
  hidden_kernel<<<launch::grid_for(count, kThreads), kThreads, 0, stream>>>(
      x, a.c, hs, static_cast<unsigned>(count), static_cast<unsigned>(a.nh), a.hidden == RbmUnit::Bernoulli,
      hs != nullptr, a.seed, a.step, static_cast<std::uint64_t>(t) * static_cast<std::uint64_t>(count));
  CUAE_CUDA_LAUNCH_CHECK();
}

void neg_mean_diff(const float* p, const float* q, int m, int n, float* partial, float* out, cudaStream_t stream) {
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

}  // namespace

// =============================================================================================
// op entries
// =============================================================================================

void rbm_cd_workspace(const Context&, const RbmCDWorkspace& a) {
  validate(a);
  *a.floats = rbm_cd_workspace_floats(a.m, a.nv, a.nh);
}

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

  blas::gemm(ctx, xw_gemm(a.v0, a.w, ph0, m, nh, nv, true));
  hidden_pass(a, ph0, hs, 0, stream);
  for (int t = 1; t <= a.k; ++t) {
    blas::gemm(ctx, xw_gemm(hs, a.w, vt, m, nv, nh, false));
    visible_kernel<<<launch::grid_for(static_cast<std::int64_t>(MV), kThreads), kThreads, 0, stream>>>(
        vt, a.b, static_cast<unsigned>(MV), static_cast<unsigned>(nv), a.visible == RbmUnit::Bernoulli,
        a.sample_visible, a.seed, a.step, vis_base + static_cast<std::uint64_t>(t - 1) * MV);
    CUAE_CUDA_LAUNCH_CHECK();
    if (t == 1 && a.recon) {
      recon_partial_kernel<<<static_cast<unsigned>(chunks), kThreads, 0, stream>>>(a.v0, vt, m, nv, part_r);
      CUAE_CUDA_LAUNCH_CHECK();
      recon_finish_kernel<<<1, 1, 0, stream>>>(part_r, static_cast<int>(chunks), m, a.recon);
      CUAE_CUDA_LAUNCH_CHECK();
    }
    blas::gemm(ctx, xw_gemm(vt, a.w, phk, m, nh, nv, true));
    hidden_pass(a, phk, t < a.k ? hs : nullptr, t, stream);
  }
  if (a.dw) {
    const float inv_m = 1.0f / static_cast<float>(m);
    blas::gemm(ctx, outer_gemm(ph0, a.v0, a.dw, m, nv, nh, -inv_m, 0.0f));
    blas::gemm(ctx, outer_gemm(phk, vt, a.dw, m, nv, nh, inv_m, 1.0f));
  }
  if (a.db) neg_mean_diff(a.v0, vt, m, nv, part_b, a.db, stream);
  if (a.dc) neg_mean_diff(ph0, phk, m, nh, part_c, a.dc, stream);
}

void rbm_free_energy(const Context& ctx, const RbmFreeEnergy& a) {
  validate(a);
  CUAE_CHECK(ctx.blaslt != nullptr, "rbm_free_energy: no cuBLASLt handle in the context");
  const cudaStream_t stream = launch::stream_of(ctx);
  blas::gemm(ctx, xw_gemm(a.v, a.w, a.ws, a.m, a.nh, a.nv, true));
  const int blocks = a.m < 65535 ? a.m : 65535;
  free_energy_kernel<<<blocks, kThreads, 0, stream>>>(a.v, a.ws, a.b, a.c, a.fe, a.m, a.nv, a.nh,
                                                      a.visible == RbmUnit::Bernoulli, a.hidden == RbmUnit::Bernoulli);
  CUAE_CUDA_LAUNCH_CHECK();
}

}  // namespace cuae::kern::cuda
