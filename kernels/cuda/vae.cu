// CUDA variational-autoencoder ops: the reparameterized sample z = μ + exp(½·lv)·ε of a diagonal
// Gaussian, its backward, and the KL divergence of each row from the standard normal prior.
//
// Kernels (one variant each; ctx.variant is ignored):
//   reparameterize (sample)    reparam_kernel<kEps, kVec>: a grid-stride loop over Philox groups,
//                              one Philox4x32-10 evaluation per thread per group of four elements
//                              e = 4g..4g+3 of z, exactly the words and Box-Muller pairs Corrupt's
//                              Gaussian noise uses (kernels/cuda/random.cu). The group does not
//                              align with the rows of z (d need not be a multiple of 4), so each
//                              element finds its μ and lv in stats [m, 2d] from i = e / d,
//                              j = e % d. kVec (d % 4 == 0 and every pointer 16-byte aligned): the
//                              group lies inside one row and every access is one float4.
//   reparameterize (mean)      z = μ: cudaMemcpy2DAsync of the first d columns of stats.
//   reparameterize_backward    reparam_backward_kernel<kAcc, kVec>: the same loop, ε drawn again;
//                              writes both halves of dstats.
//   gaussian_kl                kl_rows_kernel<kGrad>: a warp holds R = 32/L rows, L lanes per row
//                              (L the largest power of two <= min(d, 32)); the lanes of a row
//                              stride over its columns, sum their terms in double, and a segmented
//                              warp butterfly gives the row's KL (into per_row), the gradient is
//                              written in the same pass; each block's Σ kl_i into ctx.scratch.
//                              reduce::final_sum_cuda: one block adds the partials, writes loss[0]
//                              (skipped when the first kernel ran as a single block, which then
//                              writes loss[0] itself).
//
// Back of the envelope (H100 SXM, ~3.0 TB/s read+write), per element of z [m, d]:
//   reparameterize      read μ, lv (8 B), write z (4 B) and eps (4 B): 12-16 B. Per group of four:
//                       one Philox (~60 integer instructions), two logf/sqrtf/sincosf pairs and four
//                       expf (~40 instructions per element with the precise functions): below what
//                       the SMs issue while memory streams, so bandwidth-bound, like Corrupt.
//   backward            read dz, lv (8 B), write dstats (8 B): 16 B; 24 B with acc.
//   gaussian_kl         read μ, lv (8 B), write grad (8 B; 16 B more with acc_grad) or 8 B alone
//                       without grad. One double expm1 per element (~30 FP64 instructions): at
//                       8-16 B per element that is ~4-8 FP64 TFLOP/s at full bandwidth, within
//                       the H100's ~30 (so still bandwidth-bound, though the value-only pass is
//                       the closest to its arithmetic limit).
//   At VAE sizes (m = 128..65536, d = 20..128) a call moves 30 KB..200 MB: the small ones are one
//   launch latency (~3 µs), only the large batches approach the copy bandwidth.
//
// Agreement with the CPU reference (kernels/cpu/vae.cpp): the same float expressions, written with
// __fmul_rn/__fadd_rn so nvcc cannot contract them into FMAs the CPU does not do; only expf, logf,
// sinf and cosf differ (CUDA's precise versions, within 2 ulp of glibc's), so z, eps and the
// reparameterize gradients agree to a few ulp. The KL terms and gradients are computed in double
// (expm1, a few ulp of double) and rounded once: the gradients are in practice bit-identical, the
// value differs only by the order of its double sum.
//
// Determinism: no atomics. The partition of rows over warps and blocks depends only on m, d, the SM
// count and the scratch size; each row sums in a fixed order, each block reduces with
// cub::BlockReduce, and the final kernel adds the partials in a fixed order, so one device gives
// bit-identical results run after run.
//
// Indexing: validate() caps m·2d below 2^31, so every element index fits in 32-bit unsigned
// arithmetic.
#include <cstdint>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/ops.hpp"
#include "kernels/philox.hpp"
#include "kernels/step_math.hpp"
#include "kernels/vae_validate.hpp"

// The noise must use the precise logf/sinf/cosf (see kernels/cuda/random.cu), and expf must stay
// within a few ulp of the CPU's.
#if defined(__USE_FAST_MATH__)
#error "kernels/cuda/vae.cu must not be compiled with --use_fast_math"
#endif

namespace cuae::kern::cuda {

namespace {

constexpr int kThreads = reduce::kThreads;  // gaussian_kl's blocks end in reduce::block_sum
constexpr int kWarps = kThreads / 32;

// ---------------------------------------------------------------------------------------------
// reparameterize and its backward
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ void group_normals(std::uint64_t seed, std::uint64_t step, std::uint64_t g,
                                              float (&n)[4]) {
  const Philox4 r = philox_group(seed, step, g);
  philox_normal2(r.w[0], r.w[1], n[0], n[1]);
  philox_normal2(r.w[2], r.w[3], n[2], n[3]);
}

// z = μ + σ·ε with σ = expf(½·lv), lv as given (no clamp), in the CPU reference's rounding.
__device__ __forceinline__ float sample_of(float mu, float lv, float n) {
  return __fadd_rn(mu, __fmul_rn(expf(__fmul_rn(0.5f, lv)), n));
}

// ∂z/∂lv·dz = dz·ε·½σ, as (dz·ε)·(½σ) like the CPU reference.
__device__ __forceinline__ float lv_grad_of(float dz, float lv, float n) {
  const float half_sigma = __fmul_rn(0.5f, expf(__fmul_rn(0.5f, lv)));
  return __fmul_rn(__fmul_rn(dz, n), half_sigma);
}

template <bool kEps, bool kVec>
__global__ void __launch_bounds__(kThreads) reparam_kernel(const float* __restrict__ stats, float* __restrict__ z,
                                                           float* __restrict__ eps, unsigned d, unsigned count,
                                                           std::uint64_t seed, std::uint64_t step,
                                                           const std::uint64_t* step_at) {
  step = step_of(step, step_at);
  const std::int64_t groups = (static_cast<std::int64_t>(count) + 3) / 4;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += stride) {
    float n[4];
    group_normals(seed, step, static_cast<std::uint64_t>(g), n);
    const unsigned e0 = static_cast<unsigned>(g) * 4u;
    unsigned i = e0 / d, j = e0 - i * d;
    if constexpr (kVec) {
      // d % 4 == 0: the four elements are columns j..j+3 of row i, and count is a multiple of 4.
      const float* row = stats + i * 2u * d;
      const float4 mu = *reinterpret_cast<const float4*>(row + j);
      const float4 lv = *reinterpret_cast<const float4*>(row + d + j);
      reinterpret_cast<float4*>(z)[g] = make_float4(sample_of(mu.x, lv.x, n[0]), sample_of(mu.y, lv.y, n[1]),
                                                    sample_of(mu.z, lv.z, n[2]), sample_of(mu.w, lv.w, n[3]));
      if constexpr (kEps) reinterpret_cast<float4*>(eps)[g] = make_float4(n[0], n[1], n[2], n[3]);
    } else {
      const unsigned len = count - e0 < 4u ? count - e0 : 4u;
#pragma unroll
      for (unsigned k = 0; k < 4; ++k) {
        if (k < len) {
          const float* row = stats + i * 2u * d;
          z[e0 + k] = sample_of(row[j], row[d + j], n[k]);
          if constexpr (kEps) eps[e0 + k] = n[k];
          if (++j == d) j = 0, ++i;
        }
      }
    }
  }
}

template <bool kAcc, bool kVec>
__global__ void __launch_bounds__(kThreads)
    reparam_backward_kernel(const float* __restrict__ dz, const float* __restrict__ stats, float* __restrict__ dstats,
                            unsigned d, unsigned count, std::uint64_t seed, std::uint64_t step,
                            const std::uint64_t* step_at) {
  step = step_of(step, step_at);
  const std::int64_t groups = (static_cast<std::int64_t>(count) + 3) / 4;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += stride) {
    float n[4];
    group_normals(seed, step, static_cast<std::uint64_t>(g), n);
    const unsigned e0 = static_cast<unsigned>(g) * 4u;
    unsigned i = e0 / d, j = e0 - i * d;
    if constexpr (kVec) {
      const unsigned base = i * 2u * d + j;
      const float4 g4 = reinterpret_cast<const float4*>(dz)[g];
      const float4 lv = *reinterpret_cast<const float4*>(stats + base + d);
      float4 dmu = g4;
      float4 dlv = make_float4(lv_grad_of(g4.x, lv.x, n[0]), lv_grad_of(g4.y, lv.y, n[1]),
                               lv_grad_of(g4.z, lv.z, n[2]), lv_grad_of(g4.w, lv.w, n[3]));
      float4* pmu = reinterpret_cast<float4*>(dstats + base);
      float4* plv = reinterpret_cast<float4*>(dstats + base + d);
      if constexpr (kAcc) {
        const float4 om = *pmu, ol = *plv;
        dmu = make_float4(__fadd_rn(om.x, dmu.x), __fadd_rn(om.y, dmu.y), __fadd_rn(om.z, dmu.z),
                          __fadd_rn(om.w, dmu.w));
        dlv = make_float4(__fadd_rn(ol.x, dlv.x), __fadd_rn(ol.y, dlv.y), __fadd_rn(ol.z, dlv.z),
                          __fadd_rn(ol.w, dlv.w));
      }
      *pmu = dmu;
      *plv = dlv;
    } else {
      const unsigned len = count - e0 < 4u ? count - e0 : 4u;
#pragma unroll
      for (unsigned k = 0; k < 4; ++k) {
        if (k < len) {
          const unsigned base = i * 2u * d + j;
          const float gz = dz[e0 + k];
          const float gl = lv_grad_of(gz, stats[base + d], n[k]);
          if constexpr (kAcc) {
            dstats[base] = __fadd_rn(dstats[base], gz);
            dstats[base + d] = __fadd_rn(dstats[base + d], gl);
          } else {
            dstats[base] = gz;
            dstats[base + d] = gl;
          }
          if (++j == d) j = 0, ++i;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// gaussian_kl
// ---------------------------------------------------------------------------------------------

// Rows of stats [m, 2d] in groups of R = 32 >> shift per warp, L = 1 << shift lanes per row. Every
// lane of a warp runs the same number of iterations of the row-group loop (its bound is
// warp-uniform), so the shuffles see all 32 lanes.
template <bool kGrad>
__global__ void __launch_bounds__(kThreads) kl_rows_kernel(const float* __restrict__ stats, float* __restrict__ grad,
                                                           float* __restrict__ per_row, unsigned m, unsigned d,
                                                           int shift, TermFactor scale, bool acc, double* parts,
                                                           float* loss) {
  const unsigned lane = threadIdx.x & 31u;
  const unsigned L = 1u << shift, R = 32u >> shift;
  const unsigned sub = lane & (L - 1u), seg = lane >> shift;
  // weight/m, the weight read now when it lives in the step block. Kept in shared memory: a value
  // live across the expm1 calls would be spilled (ptxas keeps the call's registers free).
  __shared__ double per_sh;
  if (threadIdx.x == 0) per_sh = scale.per();
  __syncthreads();
  const unsigned warp = (blockIdx.x * kThreads + threadIdx.x) >> 5;
  const unsigned nwarps = gridDim.x * kWarps;
  double mine = 0.0;  // Σ kl_i over this lane's rows (lanes with sub == 0 only)
  // nwarps·R <= 1024·8·32 = 2^18, so base + nwarps·R stays below 2^31 + 2^18: no wrap.
  for (unsigned base = warp * R; base < m; base += nwarps * R) {
    const unsigned i = base + seg;
    double s = 0.0;
    if (i < m) {
      const float* row = stats + i * 2u * d;
      for (unsigned j = sub; j < d; j += L) {
        const float muf = row[j], lvf = row[d + j];
        const double mu = muf, lv = lvf;
        const double em1 = expm1(lv);
        s += (lv - em1) - mu * mu;  // 1 + lv − exp(lv) − μ²
        if constexpr (kGrad) {
          const double per = per_sh;
          const float gm = static_cast<float>(per * mu);
          const float gl = static_cast<float>(per * 0.5 * em1);
          float* out = grad + i * 2u * d;
          if (acc) {
            out[j] = __fadd_rn(out[j], gm);
            out[d + j] = __fadd_rn(out[d + j], gl);
          } else {
            out[j] = gm;
            out[d + j] = gl;
          }
        }
      }
    }
    // Segmented butterfly: xor offsets below L stay inside the row's lanes, and every lane of the
    // segment ends with the same total (double addition commutes exactly).
    for (unsigned o = L >> 1; o > 0; o >>= 1) s += __shfl_xor_sync(reduce::kFullMask, s, o);
    if (i < m && sub == 0) {
      const double kl = -0.5 * s;
      if (per_row) per_row[i] = static_cast<float>(kl);
      mine += kl;
    }
  }
  const double total = reduce::block_sum(mine);
  if (threadIdx.x == 0) {
    if (gridDim.x == 1) loss[0] = static_cast<float>(per_sh * total);
    else parts[blockIdx.x] = total;
  }
}

// z = μ + σ·ε (or z = μ without sampling: a 2-D copy of the first d columns of stats).
void reparameterize_cuda(const Context& ctx, const Reparameterize& a, cudaStream_t stream) {
  const std::size_t d = static_cast<std::size_t>(a.d);
  if (!a.sample) {
    CUAE_CUDA_CHECK(cudaMemcpy2DAsync(a.z, d * sizeof(float), a.stats, 2 * d * sizeof(float), d * sizeof(float),
                                      static_cast<std::size_t>(a.m), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  const unsigned count = static_cast<unsigned>(static_cast<std::int64_t>(a.m) * a.d);
  const bool vec = a.d % 4 == 0 && launch::aligned16(a.stats) && launch::aligned16(a.z) &&
                   (!a.eps || launch::aligned16(a.eps));
  const int grid = launch::grid_for(ctx, (static_cast<std::int64_t>(count) + 3) / 4, kThreads);
  const unsigned ud = static_cast<unsigned>(a.d);
  launch::dispatch_bool(a.eps != nullptr, [&](auto with_eps) {
    launch::dispatch_bool(vec, [&](auto v) {
      reparam_kernel<decltype(with_eps)::value, decltype(v)::value><<<grid, kThreads, 0, stream>>>(
          a.stats, a.z, a.eps, ud, count, a.seed, a.step, a.step_at);
    });
  });
  CUAE_CUDA_LAUNCH_CHECK();
}

void reparameterize_backward_cuda(const Context& ctx, const ReparameterizeBackward& a, cudaStream_t stream) {
  const unsigned count = static_cast<unsigned>(static_cast<std::int64_t>(a.m) * a.d);
  const bool vec = a.d % 4 == 0 && launch::aligned16(a.dz) && launch::aligned16(a.stats) &&
                   launch::aligned16(a.dstats);
  const int grid = launch::grid_for(ctx, (static_cast<std::int64_t>(count) + 3) / 4, kThreads);
  const unsigned ud = static_cast<unsigned>(a.d);
  launch::dispatch_bool(a.acc, [&](auto acc) {
    launch::dispatch_bool(vec, [&](auto v) {
      reparam_backward_kernel<decltype(acc)::value, decltype(v)::value><<<grid, kThreads, 0, stream>>>(
          a.dz, a.stats, a.dstats, ud, count, a.seed, a.step, a.step_at);
    });
  });
  CUAE_CUDA_LAUNCH_CHECK();
}

void gaussian_kl_cuda(const Context& ctx, const GaussianKL& a, const reduce::Scratch& sc, cudaStream_t stream) {
  // L = the largest power of two <= min(d, 32) lanes per row: no lane of a row is idle on its
  // first column, and narrow rows pack several to a warp.
  int shift = 0;
  while (shift < 5 && (2 << shift) <= a.d) ++shift;
  const std::int64_t rows_per_warp = 32 >> shift;
  const std::int64_t warps = (static_cast<std::int64_t>(a.m) + rows_per_warp - 1) / rows_per_warp;
  std::int64_t grid = launch::grid_for(ctx, warps * 32, kThreads);
  if (grid > reduce::kMaxParts) grid = reduce::kMaxParts;
  if (grid > sc.cap) grid = sc.cap;
  const TermFactor per{a.weight, a.weight_at, 1.0f / static_cast<float>(a.m)};  // as the CPU reference
  const int g = static_cast<int>(grid);
  const unsigned um = static_cast<unsigned>(a.m), ud = static_cast<unsigned>(a.d);
  if (a.grad)
    kl_rows_kernel<true><<<g, kThreads, 0, stream>>>(a.stats, a.grad, a.per_row, um, ud, shift, per, a.acc_grad, sc.p,
                                                     a.loss);
  else
    kl_rows_kernel<false><<<g, kThreads, 0, stream>>>(a.stats, nullptr, a.per_row, um, ud, shift, per, false, sc.p,
                                                      a.loss);
  CUAE_CUDA_LAUNCH_CHECK();
  if (g > 1) reduce::final_sum_cuda(sc.p, g, per, a.loss, stream);
}

}  // namespace

void reparameterize(const Context& ctx, const Reparameterize& a) {
  validate(a);
  reparameterize_cuda(ctx, a, launch::stream_of(ctx));
}

void reparameterize_backward(const Context& ctx, const ReparameterizeBackward& a) {
  validate(a);
  reparameterize_backward_cuda(ctx, a, launch::stream_of(ctx));
}

void gaussian_kl(const Context& ctx, const GaussianKL& a) {
  validate(a);
  gaussian_kl_cuda(ctx, a, reduce::scratch_of(ctx, "gaussian_kl"), launch::stream_of(ctx));
}

}  // namespace cuae::kern::cuda
