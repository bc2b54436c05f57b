// CUDA random ops: input corruption (mask, salt-and-pepper, Gaussian) and inverted dropout, forward
// and backward. Every random word comes from kernels/philox.hpp exactly as in the CPU reference
// (kernels/cpu/random.cpp): element e uses word e % 4 of philox_group(seed, step, e / 4), so the
// masks are bit-identical on both backends and the Gaussian noise agrees to a few ulp.
//
// Kernels (one variant each; ctx.variant is ignored):
//   philox_map_kernel<F, kAcc>   a grid-stride loop over Philox groups: each thread draws ONE
//                                Philox4x32-10 evaluation and applies F to its four consecutive
//                                elements, with one float4 load and store when both pointers are
//                                16-byte aligned, scalar accesses otherwise and for the last
//                                (partial) group. kAcc adds into the output (dropout backward's
//                                acc_dx). F is a mask, salt-and-pepper, Gaussian or dropout functor.
//
// Back of the envelope (H100 SXM, ~3.0 TB/s read+write): every op streams 8 B per element (read
// x or dy, write y or dx; 12 B with acc_dx), no reuse; 64 Mi elements = 512 MiB ≈ 0.18 ms, a
// 4096×784 input batch 25 MiB ≈ 9 µs. The arithmetic is per group of four elements: Philox is ten
// rounds of two 32×32→64 multiplies and a few XORs (~60 integer instructions with the round keys
// hoisted), ~15 per element, a fifth of what the SMs issue while the memory streams at full rate.
// Gaussian adds one logf, sqrtf and sinf/cosf pair per two elements (~50 instructions per element
// with the precise functions): still below the bandwidth bound, though closer. So all of them are
// memory-bound, and a mask costs no more than a copy.
//
// Bit-identity with the CPU: the uniform is the top 24 bits times 2^-24 (exact in float), the
// thresholds (level, level/2, p) and the dropout scale 1/(1−p) are computed on the host with the
// CPU reference's float expressions and passed in, and the products and sums that follow are
// written with __fmul_rn/__fadd_rn so nvcc cannot contract them into an FMA the CPU does not do.
// Only the Gaussian's logf/sinf/cosf differ (CUDA's precise versions, within 2 ulp of glibc's).
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/ops.hpp"
#include "kernels/philox.hpp"
#include "kernels/step_math.hpp"
#include "kernels/validate.hpp"

// The Gaussian noise must use the precise logf/sinf/cosf: the fast intrinsics that --use_fast_math
// substitutes are off by far more than the few ulp the CPU comparison allows near u1 → 0.
#if defined(__USE_FAST_MATH__)
#error "kernels/cuda/random.cu must not be compiled with --use_fast_math"
#endif

namespace cuae::kern::cuda {

namespace {

constexpr int kThreads = 256;

// ---------------------------------------------------------------------------------------------
// Per-group functors: transform the four values v[0..3] of group r in place. Lanes past the end
// of a partial group hold 0 and are never stored.
// ---------------------------------------------------------------------------------------------

struct MaskNoise {
  float level;
  __device__ __forceinline__ void operator()(float (&v)[4], const Philox4& r) const {
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = philox_uniform(r.w[j]) < level ? 0.0f : v[j];
  }
};

struct SaltPepperNoise {
  float half, level, lo, hi;
  __device__ __forceinline__ void operator()(float (&v)[4], const Philox4& r) const {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float u = philox_uniform(r.w[j]);
      v[j] = u < half ? lo : (u < level ? hi : v[j]);
    }
  }
};

struct GaussianNoise {
  float sigma;
  __device__ __forceinline__ void operator()(float (&v)[4], const Philox4& r) const {
    float n[4];
    philox_normal2(r.w[0], r.w[1], n[0], n[1]);
    philox_normal2(r.w[2], r.w[3], n[2], n[3]);
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = __fadd_rn(v[j], __fmul_rn(sigma, n[j]));
  }
};

// Inverted dropout, forward (x → y) and backward (dy → dx) alike: keep iff u >= p, scaled.
struct DropoutMask {
  float p, scale;
  __device__ __forceinline__ void operator()(float (&v)[4], const Philox4& r) const {
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = philox_uniform(r.w[j]) >= p ? __fmul_rn(v[j], scale) : 0.0f;
  }
};

// ---------------------------------------------------------------------------------------------
// The one kernel
// ---------------------------------------------------------------------------------------------

// y[e] = f(x[e]) for e < count (y[e] += f(x[e]) with kAcc), one Philox group per thread per
// iteration. y may equal x: every element is read before the same thread writes it.
template <class F, bool kAcc>
__global__ void __launch_bounds__(kThreads) philox_map_kernel(const float* x, float* y, std::int64_t count,
                                                              std::uint64_t seed, std::uint64_t step,
                                                              const std::uint64_t* step_at, bool vec, F f) {
  step = step_of(step, step_at);  // the step block's, read when the kernel runs, when given
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t groups = (count + 3) / 4;
  for (std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < groups;
       g += stride) {
    const Philox4 r = philox_group(seed, step, static_cast<std::uint64_t>(g));
    const std::int64_t e0 = 4 * g;
    float v[4];
    if (vec && e0 + 4 <= count) {
      const float4 in = reinterpret_cast<const float4*>(x)[g];
      v[0] = in.x;
      v[1] = in.y;
      v[2] = in.z;
      v[3] = in.w;
      f(v, r);
      float4 out = make_float4(v[0], v[1], v[2], v[3]);
      if constexpr (kAcc) {
        const float4 old = reinterpret_cast<const float4*>(y)[g];
        out = make_float4(__fadd_rn(old.x, out.x), __fadd_rn(old.y, out.y), __fadd_rn(old.z, out.z),
                          __fadd_rn(old.w, out.w));
      }
      reinterpret_cast<float4*>(y)[g] = out;
    } else {
      // Unaligned pointers, or the last group when count is not a multiple of 4.
      const int len = count - e0 < 4 ? static_cast<int>(count - e0) : 4;
#pragma unroll
      for (int j = 0; j < 4; ++j) v[j] = j < len ? x[e0 + j] : 0.0f;
      f(v, r);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (j < len) {
          if constexpr (kAcc) y[e0 + j] = __fadd_rn(y[e0 + j], v[j]);
          else y[e0 + j] = v[j];
        }
      }
    }
  }
}

template <bool kAcc, class F>
void philox_map_cuda(const Context& ctx, const float* x, float* y, std::int64_t count, std::uint64_t seed,
                     std::uint64_t step, const std::uint64_t* step_at, const F& f, cudaStream_t stream) {
  const bool vec = launch::aligned16(x) && launch::aligned16(y);
  const int grid = launch::grid_for(ctx, (count + 3) / 4, kThreads);
  philox_map_kernel<F, kAcc><<<grid, kThreads, 0, stream>>>(x, y, count, seed, step, step_at, vec, f);
  CUAE_CUDA_LAUNCH_CHECK();
}

}  // namespace

void corrupt(const Context& ctx, const Corrupt& a) {
  validate(a);
  const cudaStream_t stream = launch::stream_of(ctx);
  switch (a.kind) {
    case NoiseKind::Mask:
      philox_map_cuda<false>(ctx, a.x, a.y, a.count, a.seed, a.step, a.step_at, MaskNoise{a.level}, stream);
      return;
    case NoiseKind::SaltPepper:
      philox_map_cuda<false>(ctx, a.x, a.y, a.count, a.seed, a.step, a.step_at,
                             SaltPepperNoise{0.5f * a.level, a.level, a.lo, a.hi}, stream);
      return;
    case NoiseKind::Gaussian:
      philox_map_cuda<false>(ctx, a.x, a.y, a.count, a.seed, a.step, a.step_at, GaussianNoise{a.level}, stream);
      return;
  }
}

void dropout_forward(const Context& ctx, const Dropout& a) {
  validate(a);
  const float scale = 1.0f / (1.0f - a.p);  // the CPU reference's expression, so the same float
  philox_map_cuda<false>(ctx, a.x, a.y, a.count, a.seed, a.step, a.step_at, DropoutMask{a.p, scale},
                         launch::stream_of(ctx));
}

void dropout_backward(const Context& ctx, const DropoutBackward& a) {
  validate(a);
  const float scale = 1.0f / (1.0f - a.p);
  const DropoutMask f{a.p, scale};
  if (a.acc_dx) philox_map_cuda<true>(ctx, a.dy, a.dx, a.count, a.seed, a.step, a.step_at, f, launch::stream_of(ctx));
  else philox_map_cuda<false>(ctx, a.dy, a.dx, a.count, a.seed, a.step, a.step_at, f, launch::stream_of(ctx));
}

}  // namespace cuae::kern::cuda
