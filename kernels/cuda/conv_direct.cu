// Direct (gather) convolution kernels with the bias and activation fused, for the forward passes
// where cuDNN's implicit GEMM is a poor fit: few input channels (the first encoder layer) and few
// output channels of a transposed convolution (the last decoder layer). conv.cu decides when they
// run (ctx.variant); see conv_direct.cuh.
//
// conv_fwd_kernel<A, CT, KT>: y[n,p,q,k] = act(Σ_{r,s,c} x[n, p·sh−ph+r·dh, q·sw−pw+s·dw, c]·W[k,r,s,c]
// + b[k]).
//   Block: 128 threads, 256 consecutive output pixels (flattened n,p,q) × a tile of KT output
//   channels (blockIdx.y). Thread t owns pixels t and t+128 of the block and all KT channels: 2·KT
//   accumulators in registers. The block's filter slice W[k0..k0+KT, :, :, :] sits in shared memory
//   transposed to [r][s][c][KT], so one float4 broadcast read (every lane the same address) feeds 4
//   channels × 2 pixels = 8 FMAs; each input value is loaded once per (pixel, tap) through L1 and
//   feeds KT FMAs. With r·s·c ≈ 27 and KT = 32 a thread does 1728 FMAs against 54 input loads and
//   216 shared reads, so it is FMA-bound on paper while the output store (the whole tensor, once)
//   is the real floor: 1×28×28→32 at batch 256 writes 25.7 MB (~9 µs at 3 TB/s) for 0.12 GFLOP.
//   CT = c for c ≤ 4 (loops fully unrolled), CT = 0 reads c at run time (variant 2 on wide layers).
//   KT ∈ {8, 16, 32}: the smallest ≥ k, halved while the slice would not fit in 48 KiB.
//
// Shared memory: the filter slice is dynamic shared memory, up to kSmemBytes = 48 KiB. The default
// per-block limit (48 KiB) counts a kernel's static shared memory too, so each kernel instantiation
// opts in once per device (cudaFuncSetAttribute, MaxDynamicSharedMemorySize = kSmemBytes) before its
// first launch there: then exactly 48 KiB is legal whatever the compiler reserves statically.
//
// deconv_fwd_kernel<A, CT>: y[n,h,w,c] = act(Σ over the taps (r,s) with h = p·sh − ph + r·dh and
// w = q·sw − pw + s·dw for some (p,q) in range, of Σ_k x[n,p,q,k]·W[k,r,s,c] + b[c]), the gather
// form of the transposed convolution (no scatter, no atomics).
//   Threads are numbered by output phase: (n, h mod sh, w mod sw, h div sh, w div sw), so the lanes
//   of a warp share the same set of valid taps (for stride 2 a quarter of the r·s taps) and the
//   divisibility tests never split a warp except at the image border. Thread = one output pixel ×
//   CT output channels (CT = c for c ≤ 4; c > 4 runs ceil(c/4) channel tiles of 4 over blockIdx.y).
//   Per valid tap it streams x[n,p,q,0..k) as float4s (the row is contiguous in NHWC) against the
//   filter slice in shared memory, laid out [r][s][c][k padded to 4]: 4·CT FMAs per float4 of x
//   (4 partial sums per channel for ILP). The reads of x dominate: each row is read by the ≈ r·s /
//   (sh·sw) output pixels that use it, mostly from L1/L2.
//
// Both kernels are deterministic (a fixed summation order per output value) and compute in fp32
// FMAs whatever ctx.tf32 says.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/act_math.hpp"
#include "kernels/conv_common.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv_direct.cuh"

namespace cuae::kern::cuda::conv_direct {

namespace {

constexpr int kThreads = 128;
constexpr int kPix = 2;                               // output pixels per thread (conv forward)
constexpr std::int64_t kSmemBytes = 48 * 1024;        // dynamic shared memory a launch may use (opted in)
constexpr std::int64_t kMaxGridY = 65535;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Opts `kernel` in to kSmemBytes of dynamic shared memory on ctx's device, once per device (the
// flags are per instantiation: each calls this with its own `done`).
constexpr int kMaxDevices = 64;
template <class Kernel>
void opt_in_smem(const Context& ctx, Kernel* kernel, std::atomic<bool> (&done)[kMaxDevices]) {
  const int dev = ctx.device;
  CUAE_CHECK(dev >= 0 && dev < kMaxDevices, "conv direct kernels: CUDA device " + std::to_string(dev));
  if (done[dev].load(std::memory_order_acquire)) return;
  CUAE_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmemBytes)));
  done[dev].store(true, std::memory_order_release);
}

// ---------------------------------------------------------------------------------------------
// convolution forward
// ---------------------------------------------------------------------------------------------

std::int64_t conv_smem_bytes(const ConvGeom& g, int kt) {
  return (static_cast<std::int64_t>(g.r) * g.s * g.c * kt + kt) * static_cast<std::int64_t>(sizeof(float));
}

// The channel tile: the smallest of 8/16/32 that holds k, halved while the slice does not fit.
// 0 when even 8 channels do not fit.
int conv_tile(const ConvGeom& g) {
  int kt = g.k <= 8 ? 8 : (g.k <= 16 ? 16 : 32);
  while (kt > 8 && conv_smem_bytes(g, kt) > kSmemBytes) kt /= 2;
  return conv_smem_bytes(g, kt) <= kSmemBytes ? kt : 0;
}

template <Act A, int CT, int KT>
__global__ void __launch_bounds__(kThreads)
    conv_fwd_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                    float* __restrict__ y, float* __restrict__ z, const ConvGeom g, const float slope,
                    const bool vec) {
  static_assert(KT % 4 == 0, "the channel tile is read as float4s");
  extern __shared__ float4 smem4[];
  float* wsh = reinterpret_cast<float*>(smem4);
  const int C = CT > 0 ? CT : g.c;
  const int rsc = g.r * g.s * C;
  const int k0 = blockIdx.y * KT;
  float* bsh = wsh + rsc * KT;

  // Filter slice, transposed to [r][s][c][KT] (zero past k): consecutive threads write consecutive
  // shared words; the global reads gather with stride r·s·c from a filter that lives in L2.
  for (int i = threadIdx.x; i < rsc * KT; i += kThreads) {
    const int kk = i % KT, j = i / KT;
    const int k = k0 + kk;
    wsh[i] = k < g.k ? w[k * rsc + j] : 0.0f;  // k·r·s·c < 2^31: validated filter size
  }
  for (int kk = threadIdx.x; kk < KT; kk += kThreads) bsh[kk] = (b != nullptr && k0 + kk < g.k) ? b[k0 + kk] : 0.0f;
  __syncthreads();

  // validate() keeps n·p·q·k below 2^31, so pixel indices fit in 32 bits.
  const unsigned total = static_cast<unsigned>(g.n) * static_cast<unsigned>(g.p) * static_cast<unsigned>(g.q);
  const unsigned base = blockIdx.x * static_cast<unsigned>(kThreads * kPix) + threadIdx.x;
  unsigned m[kPix];
  bool live[kPix];
  int ih0[kPix], iw0[kPix];
  const float* xb[kPix];
#pragma unroll
  for (int j = 0; j < kPix; ++j) {
    m[j] = base + static_cast<unsigned>(j * kThreads);
    live[j] = m[j] < total;
    const unsigned mm = live[j] ? m[j] : 0u;
    const int q = static_cast<int>(mm % static_cast<unsigned>(g.q));
    const unsigned t = mm / static_cast<unsigned>(g.q);
    const int p = static_cast<int>(t % static_cast<unsigned>(g.p));
    const int n = static_cast<int>(t / static_cast<unsigned>(g.p));
    ih0[j] = p * g.stride_h - g.pad_h;
    iw0[j] = q * g.stride_w - g.pad_w;
    xb[j] = x + static_cast<std::size_t>(n) * g.h * g.w * C;
  }

  float acc[kPix][KT];
#pragma unroll
  for (int j = 0; j < kPix; ++j)
#pragma unroll
    for (int kk = 0; kk < KT; ++kk) acc[j][kk] = 0.0f;

  for (int r = 0; r < g.r; ++r) {
    int ih[kPix];
    bool rin[kPix];
#pragma unroll
    for (int j = 0; j < kPix; ++j) {
      ih[j] = ih0[j] + r * g.dil_h;
      rin[j] = live[j] && ih[j] >= 0 && ih[j] < g.h;
    }
    for (int s = 0; s < g.s; ++s) {
      int off[kPix];
      bool in[kPix];
#pragma unroll
      for (int j = 0; j < kPix; ++j) {
        const int iw = iw0[j] + s * g.dil_w;
        in[j] = rin[j] && iw >= 0 && iw < g.w;
        off[j] = in[j] ? (ih[j] * g.w + iw) * C : 0;  // within one image: h·w·c < 2^31
      }
      const float4* wrs = smem4 + (r * g.s + s) * C * (KT / 4);
#pragma unroll
      for (int ci = 0; ci < C; ++ci) {  // a constant trip count (unrolled) when CT > 0
        float xv[kPix];
#pragma unroll
        for (int j = 0; j < kPix; ++j) xv[j] = in[j] ? __ldg(xb[j] + off[j] + ci) : 0.0f;
        const float4* wc = wrs + ci * (KT / 4);
#pragma unroll
        for (int kq = 0; kq < KT / 4; ++kq) {
          const float4 wv = wc[kq];
#pragma unroll
          for (int j = 0; j < kPix; ++j) {
            acc[j][4 * kq + 0] = fmaf(xv[j], wv.x, acc[j][4 * kq + 0]);
            acc[j][4 * kq + 1] = fmaf(xv[j], wv.y, acc[j][4 * kq + 1]);
            acc[j][4 * kq + 2] = fmaf(xv[j], wv.z, acc[j][4 * kq + 2]);
            acc[j][4 * kq + 3] = fmaf(xv[j], wv.w, acc[j][4 * kq + 3]);
          }
        }
      }
    }
  }

#pragma unroll
  for (int j = 0; j < kPix; ++j) {
    if (!live[j]) continue;
    const std::size_t ob = static_cast<std::size_t>(m[j]) * static_cast<unsigned>(g.k) + static_cast<unsigned>(k0);
    float* yo = y + ob;
    float* zo = z != nullptr ? z + ob : nullptr;
#pragma unroll
    for (int kq = 0; kq < KT / 4; ++kq) {
      const int k = k0 + 4 * kq;
      if (k >= g.k) continue;
      float v[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) v[e] = acc[j][4 * kq + e] + bsh[4 * kq + e];
      if (vec) {
        // k % 4 == 0 and y, z 16-byte aligned: all four channels exist and the store is aligned.
        if (zo) *reinterpret_cast<float4*>(zo + 4 * kq) = make_float4(v[0], v[1], v[2], v[3]);
        *reinterpret_cast<float4*>(yo + 4 * kq) =
            make_float4(act_forward(A, v[0], slope), act_forward(A, v[1], slope), act_forward(A, v[2], slope),
                        act_forward(A, v[3], slope));
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (k + e < g.k) {
            if (zo) zo[4 * kq + e] = v[e];
            yo[4 * kq + e] = act_forward(A, v[e], slope);
          }
        }
      }
    }
  }
}

template <Act A, int CT, int KT>
void conv_fwd_cuda(const Context& ctx, const ConvForward& a, cudaStream_t stream) {
  static std::atomic<bool> opted[kMaxDevices] = {};
  opt_in_smem(ctx, &conv_fwd_kernel<A, CT, KT>, opted);
  const ConvGeom& g = a.g;
  const std::int64_t pixels = static_cast<std::int64_t>(g.n) * g.p * g.q;
  const dim3 grid(static_cast<unsigned>(ceil_div(pixels, kThreads * kPix)), static_cast<unsigned>(ceil_div(g.k, KT)));
  const bool vec = g.k % 4 == 0 && launch::aligned16(a.y) && (a.z == nullptr || launch::aligned16(a.z));
  const auto smem = static_cast<std::size_t>(conv_smem_bytes(g, KT));
  conv_fwd_kernel<A, CT, KT><<<grid, kThreads, smem, stream>>>(a.x, a.w, a.b, a.y, a.z, g, a.slope, vec);
  CUAE_CUDA_LAUNCH_CHECK();
}

template <Act A, int CT>
void conv_fwd_tile_cuda(const Context& ctx, const ConvForward& a, int kt, cudaStream_t stream) {
  switch (kt) {
    case 8: conv_fwd_cuda<A, CT, 8>(ctx, a, stream); return;
    case 16: conv_fwd_cuda<A, CT, 16>(ctx, a, stream); return;
    case 32: conv_fwd_cuda<A, CT, 32>(ctx, a, stream); return;
  }
  ::cuae::fail_at(__FILE__, __LINE__, "conv2d_forward: no direct kernel for channel tile " + std::to_string(kt));
}

// ---------------------------------------------------------------------------------------------
// transposed convolution forward
// ---------------------------------------------------------------------------------------------

int deconv_tile(const ConvGeom& g) { return g.c <= 4 ? g.c : 4; }

std::int64_t deconv_smem_bytes(const ConvGeom& g) {
  const std::int64_t k4 = (static_cast<std::int64_t>(g.k) + 3) / 4 * 4;
  return static_cast<std::int64_t>(g.r) * g.s * deconv_tile(g) * k4 * static_cast<std::int64_t>(sizeof(float));
}

// Threads over (n, phase_h, phase_w, h div sh, w div sw), the per-phase extents padded to the
// largest phase's (the few threads past h or w return at once).
std::int64_t deconv_threads(const ConvGeom& g) {
  return static_cast<std::int64_t>(g.n) * g.stride_h * g.stride_w * ceil_div(g.h, g.stride_h) * ceil_div(g.w, g.stride_w);
}

template <Act A, int CT>
__global__ void __launch_bounds__(kThreads)
    deconv_fwd_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                      float* __restrict__ y, float* __restrict__ z, const ConvGeom g, const float slope,
                      const bool vec, const unsigned total, const int hi, const int wj) {
  extern __shared__ float4 smem4[];
  float* wsh = reinterpret_cast<float*>(smem4);
  const int K = g.k, K4 = (g.k + 3) & ~3, C = g.c, RS = g.r * g.s;
  const int c0 = blockIdx.y * CT;
  for (int i = threadIdx.x; i < RS * CT * K4; i += kThreads) {
    const int k = i % K4, t = i / K4;
    const int cc = t % CT, rs = t / CT;
    const int c = c0 + cc;
    wsh[i] = (k < K && c < C) ? w[k * (RS * C) + rs * C + c] : 0.0f;
  }
  __syncthreads();

  unsigned t = blockIdx.x * static_cast<unsigned>(kThreads) + threadIdx.x;
  if (t >= total) return;
  const int j = static_cast<int>(t % static_cast<unsigned>(wj));
  t /= static_cast<unsigned>(wj);
  const int i = static_cast<int>(t % static_cast<unsigned>(hi));
  t /= static_cast<unsigned>(hi);
  const int phw = static_cast<int>(t % static_cast<unsigned>(g.stride_w));
  t /= static_cast<unsigned>(g.stride_w);
  const int phh = static_cast<int>(t % static_cast<unsigned>(g.stride_h));
  const int n = static_cast<int>(t / static_cast<unsigned>(g.stride_h));
  const int oh = phh + i * g.stride_h, ow = phw + j * g.stride_w;
  if (oh >= g.h || ow >= g.w) return;

  float acc[CT][4];
#pragma unroll
  for (int cc = 0; cc < CT; ++cc) acc[cc][0] = acc[cc][1] = acc[cc][2] = acc[cc][3] = 0.0f;

  for (int r = 0; r < g.r; ++r) {
    const int th = oh + g.pad_h - r * g.dil_h;
    if (th < 0 || th % g.stride_h != 0) continue;
    const int p = th / g.stride_h;
    if (p >= g.p) continue;
    for (int s = 0; s < g.s; ++s) {
      const int tw = ow + g.pad_w - s * g.dil_w;
      if (tw < 0 || tw % g.stride_w != 0) continue;
      const int q = tw / g.stride_w;
      if (q >= g.q) continue;
      const float* xp = x + (static_cast<std::size_t>(n * g.p + p) * g.q + q) * K;
      const float* wp = wsh + (r * g.s + s) * CT * K4;
      if (vec) {  // k % 4 == 0 and x 16-byte aligned: every row starts aligned
        const float4* xp4 = reinterpret_cast<const float4*>(xp);
#pragma unroll 4
        for (int k4 = 0; k4 < K / 4; ++k4) {
          const float4 xv = __ldg(xp4 + k4);
#pragma unroll
          for (int cc = 0; cc < CT; ++cc) {
            const float4 wv = reinterpret_cast<const float4*>(wp + cc * K4)[k4];
            acc[cc][0] = fmaf(xv.x, wv.x, acc[cc][0]);
            acc[cc][1] = fmaf(xv.y, wv.y, acc[cc][1]);
            acc[cc][2] = fmaf(xv.z, wv.z, acc[cc][2]);
            acc[cc][3] = fmaf(xv.w, wv.w, acc[cc][3]);
          }
        }
      } else {
#pragma unroll 4
        for (int k = 0; k < K; ++k) {
          const float xv = __ldg(xp + k);
#pragma unroll
          for (int cc = 0; cc < CT; ++cc) acc[cc][0] = fmaf(xv, wp[cc * K4 + k], acc[cc][0]);
        }
      }
    }
  }

  const std::size_t ob = (static_cast<std::size_t>(n * g.h + oh) * g.w + ow) * C;
#pragma unroll
  for (int cc = 0; cc < CT; ++cc) {
    const int c = c0 + cc;
    if (c >= C) continue;
    float v = (acc[cc][0] + acc[cc][1]) + (acc[cc][2] + acc[cc][3]);
    if (b != nullptr) v += b[c];
    if (z != nullptr) z[ob + c] = v;
    y[ob + c] = act_forward(A, v, slope);
  }
}

template <Act A, int CT>
void deconv_fwd_cuda(const Context& ctx, const DeconvForward& a, cudaStream_t stream) {
  static std::atomic<bool> opted[kMaxDevices] = {};
  opt_in_smem(ctx, &deconv_fwd_kernel<A, CT>, opted);
  const ConvGeom& g = a.g;
  const std::int64_t total = deconv_threads(g);
  const dim3 grid(static_cast<unsigned>(ceil_div(total, kThreads)), static_cast<unsigned>(ceil_div(g.c, CT)));
  const bool vec = g.k % 4 == 0 && launch::aligned16(a.x);
  const auto smem = static_cast<std::size_t>(deconv_smem_bytes(g));
  deconv_fwd_kernel<A, CT><<<grid, kThreads, smem, stream>>>(
      a.x, a.w, a.b, a.y, a.z, g, a.slope, vec, static_cast<unsigned>(total),
      static_cast<int>(ceil_div(g.h, g.stride_h)), static_cast<int>(ceil_div(g.w, g.stride_w)));
  CUAE_CUDA_LAUNCH_CHECK();
}

}  // namespace

bool conv_forward_covers(const ConvGeom& g) {
  const int kt = conv_tile(g);
  return kt > 0 && ceil_div(g.k, kt) <= kMaxGridY;
}

bool deconv_forward_covers(const ConvGeom& g) {
  return deconv_smem_bytes(g) <= kSmemBytes && ceil_div(g.c, deconv_tile(g)) <= kMaxGridY &&
         deconv_threads(g) <= 2147483647;
}

void conv_forward_cuda(const Context& ctx, const ConvForward& a, cudaStream_t stream) {
  CUAE_CHECK(conv_forward_covers(a.g), "conv2d_forward: the direct kernel does not cover " + conv_geom_str(a.g));
  const int kt = conv_tile(a.g);
  launch::dispatch_act(a.act, [&](auto t) {
    constexpr Act A = decltype(t)::value;
    switch (a.g.c) {
      case 1: conv_fwd_tile_cuda<A, 1>(ctx, a, kt, stream); return;
      case 2: conv_fwd_tile_cuda<A, 2>(ctx, a, kt, stream); return;
      case 3: conv_fwd_tile_cuda<A, 3>(ctx, a, kt, stream); return;
      case 4: conv_fwd_tile_cuda<A, 4>(ctx, a, kt, stream); return;
      default: conv_fwd_tile_cuda<A, 0>(ctx, a, kt, stream); return;
    }
  });
}

void deconv_forward_cuda(const Context& ctx, const DeconvForward& a, cudaStream_t stream) {
  CUAE_CHECK(deconv_forward_covers(a.g), "deconv2d_forward: the direct kernel does not cover " + conv_geom_str(a.g));
  launch::dispatch_act(a.act, [&](auto t) {
    constexpr Act A = decltype(t)::value;
    switch (deconv_tile(a.g)) {
      case 1: deconv_fwd_cuda<A, 1>(ctx, a, stream); return;
      case 2: deconv_fwd_cuda<A, 2>(ctx, a, stream); return;
      case 3: deconv_fwd_cuda<A, 3>(ctx, a, stream); return;
      default: deconv_fwd_cuda<A, 4>(ctx, a, stream); return;
    }
  });
}

}  // namespace cuae::kern::cuda::conv_direct
