// CUDA pooling, unpooling and upsampling over NHWC (kernels/ops.hpp, PoolGeom).
//
// One thread per output element of each op (grid-stride), or per 4 consecutive channels of one
// when c % 4 == 0 and every pointer is 16-byte aligned (float4/int4 accesses: a quarter of the
// memory instructions; channels are innermost, so a warp still reads contiguous bytes). Every op is
// a gather, so there are no atomics and no two threads write one element: the adjoint ops
// (max_unpool, the avg-pool and upsample backwards) have each output visit the windows, or the
// upsampled outputs, that read it, in ascending (row, column) order.
//
// The results are the CPU reference's bits (kernels/cpu/pool.cpp): the same visiting orders and
// the same float operations, spelled with __fadd_rn/__fmul_rn/__fdiv_rn so the compiler cannot
// contract a multiply and an add into an FMA (the CPU build has none). The choices the ops.hpp
// comments leave open are documented at the top of kernels/cpu/pool.cpp.
//
// Cost: all seven are bandwidth-bound streaming ops at autoencoder sizes (2x2 windows: the max
// pool reads 4 B and writes 2 B per input element; its backward, max_unpool, reads the 2x2 window's
// index and value of each of its outputs' one covering window). The gathers that replace
// scatters read each upstream value once per covering window: once for non-overlapping windows,
// (r/stride)·(s/stride) times otherwise. The bilinear backward searches a conservative range of
// output rows and columns per input (about out/in + 4 each) for the ones that read it.
#include <cstdint>

#include "kernels/conv_common.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/ops.hpp"

namespace cuae::kern::cuda {

namespace {

using i64 = std::int64_t;
constexpr int kThreads = 256;

// ---------------------------------------------------------------------------------------------
// geometry (the same arithmetic as kernels/cpu/pool.cpp)
// ---------------------------------------------------------------------------------------------

struct Span {
  int b, e;  // in-bounds input rows [b, e) of a window
};
__device__ __forceinline__ Span window_span(int o, int window, int stride, int pad, int in) {
  const i64 start = static_cast<i64>(o) * stride - pad;
  const i64 end = start + window;
  return {static_cast<int>(start > 0 ? start : 0), static_cast<int>(end < in ? end : in)};
}

struct Range {
  int lo, hi;  // output rows [lo, hi) whose windows contain an input row
};
__device__ __forceinline__ Range windows_covering(int i, int window, int stride, int pad, int out) {
  const i64 t = static_cast<i64>(i) + pad - window + 1;
  const i64 lo = t <= 0 ? 0 : (t + stride - 1) / stride;
  i64 hi = (static_cast<i64>(i) + pad) / stride + 1;
  if (hi > out) hi = out;
  return {static_cast<int>(lo), static_cast<int>(hi > lo ? hi : lo)};
}

__device__ __forceinline__ bool beats(float v, float best) { return !isnan(best) && (v > best || isnan(v)); }

__device__ __forceinline__ int nearest_src(int o, int in, int out) {
  const i64 s = static_cast<i64>(o) * in / out;
  return static_cast<int>(s < in - 1 ? s : in - 1);
}
__device__ __forceinline__ int nearest_first(int i, int in, int out) {
  return static_cast<int>((static_cast<i64>(i) * out + in - 1) / in);
}

struct Lerp {
  int i0, i1;
  float l0, l1;
};
__device__ __forceinline__ Lerp bilinear_src(int o, int in, int out) {
  const float scale = __fdiv_rn(static_cast<float>(in), static_cast<float>(out));
  float src = __fadd_rn(__fmul_rn(scale, __fadd_rn(static_cast<float>(o), 0.5f)), -0.5f);
  if (src < 0.0f) src = 0.0f;
  Lerp l;
  l.i0 = static_cast<int>(src);
  l.i1 = l.i0 + (l.i0 < in - 1 ? 1 : 0);
  l.l1 = __fsub_rn(src, static_cast<float>(l.i0));
  l.l0 = __fsub_rn(1.0f, l.l1);
  return l;
}

__device__ __forceinline__ i64 floor_div(i64 a, i64 b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Output rows [lo, hi) that may read input row i with bilinear weights: the exact source
// coordinate (o + 0.5)·in/out − 0.5 lies in [i − 1, i + 1) for them, or is clamped to 0 (rows 0
// and 1 are read, row 1 with weight 0); the margin covers the float rounding of the forward's
// coordinate (a few ulp of `in`, i.e. 3·out/2^23 output rows) and more.
__device__ __forceinline__ Range bilinear_candidates(int i, int in, int out) {
  const i64 margin = 2 + (static_cast<i64>(out) >> 20);
  i64 lo = floor_div((2 * static_cast<i64>(i) - 1) * out - in, 2 * static_cast<i64>(in)) - margin;
  i64 hi = -floor_div(-((2 * static_cast<i64>(i) + 3) * out - in), 2 * static_cast<i64>(in)) + margin;
  if (lo < 0 || i <= 1) lo = 0;
  if (hi > out) hi = out;
  return {static_cast<int>(lo), static_cast<int>(hi > lo ? hi : lo)};
}

// The weight with which output row o reads input row i (0 and false when it does not).
__device__ __forceinline__ bool bilinear_weight(int o, int i, int in, int out, float& w) {
  const Lerp l = bilinear_src(o, in, out);
  w = 0.0f;
  if (l.i0 == i) w = __fadd_rn(w, l.l0);
  if (l.i1 == i) w = __fadd_rn(w, l.l1);
  return l.i0 == i || l.i1 == i;
}

// ---------------------------------------------------------------------------------------------
// V consecutive channels per thread (V = 4: one 16-byte access)
// ---------------------------------------------------------------------------------------------

template <int V>
__device__ __forceinline__ void load(const float* p, float (&v)[V]) {
  if constexpr (V == 4) {
    const float4 t = *reinterpret_cast<const float4*>(p);
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = p[k];
  }
}
template <int V>
__device__ __forceinline__ void store(float* p, const float (&v)[V]) {
  if constexpr (V == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) p[k] = v[k];
  }
}
template <int V>
__device__ __forceinline__ void load(const std::int32_t* p, std::int32_t (&v)[V]) {
  if constexpr (V == 4) {
    const int4 t = *reinterpret_cast<const int4*>(p);
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = p[k];
  }
}
template <int V>
__device__ __forceinline__ void store(std::int32_t* p, const std::int32_t (&v)[V]) {
  if constexpr (V == 4) {
    *reinterpret_cast<int4*>(p) = make_int4(v[0], v[1], v[2], v[3]);
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) p[k] = v[k];
  }
}

// A position of an [n, rows, cols, c] tensor from the index of its V-channel group. The tensors
// hold < 2^31 values, so the group index fits 32 bits.
struct Pos {
  int n, row, col, ch;
};
template <int V>
__device__ __forceinline__ Pos decompose(i64 e, int rows, int cols, int c) {
  const unsigned groups = static_cast<unsigned>(c / V);
  unsigned t = static_cast<unsigned>(e);
  Pos p;
  p.ch = static_cast<int>(t % groups) * V;
  t /= groups;
  p.col = static_cast<int>(t % static_cast<unsigned>(cols));
  t /= static_cast<unsigned>(cols);
  p.row = static_cast<int>(t % static_cast<unsigned>(rows));
  p.n = static_cast<int>(t / static_cast<unsigned>(rows));
  return p;
}

#define CUAE_GRID_STRIDE(e, total)                                                                  \
  for (i64 e = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; e < (total);               \
       e += static_cast<i64>(gridDim.x) * blockDim.x)

// ---------------------------------------------------------------------------------------------
// kernels; in each, e counts V-channel groups of the tensor the thread writes, so that tensor's
// offset is e·V
// ---------------------------------------------------------------------------------------------

template <int V>
__global__ void __launch_bounds__(kThreads)
    max_pool_kernel(const float* __restrict__ x, float* __restrict__ y, std::int32_t* __restrict__ index, PoolGeom g,
                    i64 total) {
  CUAE_GRID_STRIDE(e, total) {
    const Pos o = decompose<V>(e, g.p, g.q, g.c);
    const Span sh = window_span(o.row, g.r, g.stride_h, g.pad_h, g.h);
    const Span sw = window_span(o.col, g.s, g.stride_w, g.pad_w, g.w);
    const float* xn = x + static_cast<i64>(o.n) * g.h * g.w * g.c + o.ch;
    float best[V];
    std::int32_t at[V];
    load<V>(xn + (static_cast<i64>(sh.b) * g.w + sw.b) * g.c, best);
#pragma unroll
    for (int k = 0; k < V; ++k) at[k] = sh.b * g.w + sw.b;
    for (int ih = sh.b; ih < sh.e; ++ih)
      for (int iw = sw.b; iw < sw.e; ++iw) {
        if (ih == sh.b && iw == sw.b) continue;
        float v[V];
        load<V>(xn + (static_cast<i64>(ih) * g.w + iw) * g.c, v);
#pragma unroll
        for (int k = 0; k < V; ++k)
          if (beats(v[k], best[k])) best[k] = v[k], at[k] = ih * g.w + iw;
      }
    store<V>(y + e * V, best);
    store<V>(index + e * V, at);
  }
}

template <int V>
__global__ void __launch_bounds__(kThreads)
    max_unpool_kernel(const float* __restrict__ x, const std::int32_t* __restrict__ index, float* __restrict__ y,
                      PoolGeom g, bool acc, i64 total) {
  CUAE_GRID_STRIDE(e, total) {
    const Pos o = decompose<V>(e, g.h, g.w, g.c);
    const Range rh = windows_covering(o.row, g.r, g.stride_h, g.pad_h, g.p);
    const Range rw = windows_covering(o.col, g.s, g.stride_w, g.pad_w, g.q);
    const std::int32_t target = o.row * g.w + o.col;
    float s[V];
    bool any[V];
#pragma unroll
    for (int k = 0; k < V; ++k) s[k] = 0.0f, any[k] = false;
    for (int oh = rh.lo; oh < rh.hi; ++oh)
      for (int ow = rw.lo; ow < rw.hi; ++ow) {
        const i64 base = ((static_cast<i64>(o.n) * g.p + oh) * g.q + ow) * g.c + o.ch;
        std::int32_t idx[V];
        load<V>(index + base, idx);
        bool hit = false;
#pragma unroll
        for (int k = 0; k < V; ++k) hit = hit || idx[k] == target;
        if (!hit) continue;
        float v[V];
        load<V>(x + base, v);
#pragma unroll
        for (int k = 0; k < V; ++k)
          if (idx[k] == target) {
            s[k] = any[k] ? __fadd_rn(s[k], v[k]) : v[k];
            any[k] = true;
          }
      }
    float out[V];
    if (acc) {
      load<V>(y + e * V, out);
#pragma unroll
      for (int k = 0; k < V; ++k)
        if (any[k]) out[k] = __fadd_rn(out[k], s[k]);
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) out[k] = any[k] ? s[k] : 0.0f;
    }
    store<V>(y + e * V, out);
  }
}

template <int V>
__global__ void __launch_bounds__(kThreads)
    max_unpool_backward_kernel(const float* __restrict__ dy, const std::int32_t* __restrict__ index,
                               float* __restrict__ dx, PoolGeom g, bool acc, i64 total) {
  CUAE_GRID_STRIDE(e, total) {
    const Pos o = decompose<V>(e, g.p, g.q, g.c);
    std::int32_t idx[V];
    load<V>(index + e * V, idx);
    const float* dyn = dy + static_cast<i64>(o.n) * g.h * g.w * g.c + o.ch;
    float v[V];
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = dyn[static_cast<i64>(idx[k]) * g.c + k];
    if (acc) {
      float d[V];
      load<V>(dx + e * V, d);
#pragma unroll
      for (int k = 0; k < V; ++k) v[k] = __fadd_rn(d[k], v[k]);
    }
    store<V>(dx + e * V, v);
  }
}

template <int V>
__global__ void __launch_bounds__(kThreads)
    avg_pool_kernel(const float* __restrict__ x, float* __restrict__ y, PoolGeom g, bool include_pad, i64 total) {
  CUAE_GRID_STRIDE(e, total) {
    const Pos o = decompose<V>(e, g.p, g.q, g.c);
    const Span sh = window_span(o.row, g.r, g.stride_h, g.pad_h, g.h);
    const Span sw = window_span(o.col, g.s, g.stride_w, g.pad_w, g.w);
    const float* xn = x + static_cast<i64>(o.n) * g.h * g.w * g.c + o.ch;
    float s[V];
#pragma unroll
    for (int k = 0; k < V; ++k) s[k] = 0.0f;
    for (int ih = sh.b; ih < sh.e; ++ih)
      for (int iw = sw.b; iw < sw.e; ++iw) {
        float v[V];
        load<V>(xn + (static_cast<i64>(ih) * g.w + iw) * g.c, v);
#pragma unroll
        for (int k = 0; k < V; ++k) s[k] = __fadd_rn(s[k], v[k]);
      }
    const float d = static_cast<float>(include_pad ? g.r * g.s : (sh.e - sh.b) * (sw.e - sw.b));
#pragma unroll
    for (int k = 0; k < V; ++k) s[k] = __fdiv_rn(s[k], d);
    store<V>(y + e * V, s);
  }
}

template <int V>
__global__ void __launch_bounds__(kThreads)
    avg_pool_backward_kernel(const float* __restrict__ dy, float* __restrict__ dx, PoolGeom g, bool include_pad,
                             bool acc, i64 total) {
  CUAE_GRID_STRIDE(e, total) {
    const Pos o = decompose<V>(e, g.h, g.w, g.c);
    const Range rh = windows_covering(o.row, g.r, g.stride_h, g.pad_h, g.p);
    const Range rw = windows_covering(o.col, g.s, g.stride_w, g.pad_w, g.q);
    float s[V];
#pragma unroll
    for (int k = 0; k < V; ++k) s[k] = 0.0f;
    for (int oh = rh.lo; oh < rh.hi; ++oh) {
      const Span sh = window_span(oh, g.r, g.stride_h, g.pad_h, g.h);
      for (int ow = rw.lo; ow < rw.hi; ++ow) {
        const Span sw = window_span(ow, g.s, g.stride_w, g.pad_w, g.w);
        const float d = static_cast<float>(include_pad ? g.r * g.s : (sh.e - sh.b) * (sw.e - sw.b));
        float v[V];
        load<V>(dy + ((static_cast<i64>(o.n) * g.p + oh) * g.q + ow) * g.c + o.ch, v);
#pragma unroll
        for (int k = 0; k < V; ++k) s[k] = __fadd_rn(s[k], __fdiv_rn(v[k], d));
      }
    }
    if (acc) {
      float d[V];
      load<V>(dx + e * V, d);
#pragma unroll
      for (int k = 0; k < V; ++k) s[k] = __fadd_rn(d[k], s[k]);
    }
    store<V>(dx + e * V, s);
  }
}

template <int V>
__global__ void __launch_bounds__(kThreads)
    upsample_nearest_kernel(const float* __restrict__ x, float* __restrict__ y, PoolGeom g, i64 total) {
  CUAE_GRID_STRIDE(e, total) {
    const Pos o = decompose<V>(e, g.p, g.q, g.c);
    const int ih = nearest_src(o.row, g.h, g.p), iw = nearest_src(o.col, g.w, g.q);
    float v[V];
    load<V>(x + ((static_cast<i64>(o.n) * g.h + ih) * g.w + iw) * g.c + o.ch, v);
    store<V>(y + e * V, v);
  }
}

template <int V>
__global__ void __launch_bounds__(kThreads)
    upsample_bilinear_kernel(const float* __restrict__ x, float* __restrict__ y, PoolGeom g, i64 total) {
  CUAE_GRID_STRIDE(e, total) {
    const Pos o = decompose<V>(e, g.p, g.q, g.c);
    const Lerp lh = bilinear_src(o.row, g.h, g.p), lw = bilinear_src(o.col, g.w, g.q);
    const float* xn = x + static_cast<i64>(o.n) * g.h * g.w * g.c + o.ch;
    float x00[V], x01[V], x10[V], x11[V], out[V];
    load<V>(xn + (static_cast<i64>(lh.i0) * g.w + lw.i0) * g.c, x00);
    load<V>(xn + (static_cast<i64>(lh.i0) * g.w + lw.i1) * g.c, x01);
    load<V>(xn + (static_cast<i64>(lh.i1) * g.w + lw.i0) * g.c, x10);
    load<V>(xn + (static_cast<i64>(lh.i1) * g.w + lw.i1) * g.c, x11);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float t0 = __fadd_rn(__fmul_rn(lw.l0, x00[k]), __fmul_rn(lw.l1, x01[k]));
      const float t1 = __fadd_rn(__fmul_rn(lw.l0, x10[k]), __fmul_rn(lw.l1, x11[k]));
      out[k] = __fadd_rn(__fmul_rn(lh.l0, t0), __fmul_rn(lh.l1, t1));
    }
    store<V>(y + e * V, out);
  }
}

template <int V, bool kBilinear>
__global__ void __launch_bounds__(kThreads)
    upsample_backward_kernel(const float* __restrict__ dy, float* __restrict__ dx, PoolGeom g, bool acc, i64 total) {
  CUAE_GRID_STRIDE(e, total) {
    const Pos o = decompose<V>(e, g.h, g.w, g.c);
    const float* dyn = dy + static_cast<i64>(o.n) * g.p * g.q * g.c + o.ch;
    float s[V];
#pragma unroll
    for (int k = 0; k < V; ++k) s[k] = 0.0f;
    if constexpr (kBilinear) {
      const Range rh = bilinear_candidates(o.row, g.h, g.p), rw = bilinear_candidates(o.col, g.w, g.q);
      for (int oh = rh.lo; oh < rh.hi; ++oh) {
        float wh;
        if (!bilinear_weight(oh, o.row, g.h, g.p, wh)) continue;
        for (int ow = rw.lo; ow < rw.hi; ++ow) {
          float ww;
          if (!bilinear_weight(ow, o.col, g.w, g.q, ww)) continue;
          const float wt = __fmul_rn(wh, ww);
          float v[V];
          load<V>(dyn + (static_cast<i64>(oh) * g.q + ow) * g.c, v);
#pragma unroll
          for (int k = 0; k < V; ++k) s[k] = __fadd_rn(s[k], __fmul_rn(wt, v[k]));
        }
      }
    } else {
      const int oh0 = nearest_first(o.row, g.h, g.p), oh1 = nearest_first(o.row + 1, g.h, g.p);
      const int ow0 = nearest_first(o.col, g.w, g.q), ow1 = nearest_first(o.col + 1, g.w, g.q);
      for (int oh = oh0; oh < oh1; ++oh)
        for (int ow = ow0; ow < ow1; ++ow) {
          float v[V];
          load<V>(dyn + (static_cast<i64>(oh) * g.q + ow) * g.c, v);
#pragma unroll
          for (int k = 0; k < V; ++k) s[k] = __fadd_rn(s[k], v[k]);
        }
    }
    if (acc) {
      float d[V];
      load<V>(dx + e * V, d);
#pragma unroll
      for (int k = 0; k < V; ++k) s[k] = __fadd_rn(d[k], s[k]);
    }
    store<V>(dx + e * V, s);
  }
}

#undef CUAE_GRID_STRIDE

// ---------------------------------------------------------------------------------------------
// launching
// ---------------------------------------------------------------------------------------------

// 16-byte channel groups when every pointer allows them (c % 4 == 0 keeps each pixel's channels
// at 16-byte offsets from an aligned base).
template <class... P>
bool vectorizable(int c, const P*... ptrs) {
  return c % 4 == 0 && (launch::aligned16(ptrs) && ...);
}

// Calls f(std::integral_constant<int, V>{}, groups) with V = 4 or 1 and the number of V-channel
// groups of a tensor of `elements` values, then checks the launch.
template <class F>
void dispatch_vec(bool vec, i64 elements, F&& f) {
  if (vec) f(std::integral_constant<int, 4>{}, elements / 4);
  else f(std::integral_constant<int, 1>{}, elements);
  CUAE_CUDA_LAUNCH_CHECK();
}

i64 in_elems(const PoolGeom& g) { return static_cast<i64>(g.n) * g.h * g.w * g.c; }
i64 out_elems(const PoolGeom& g) { return static_cast<i64>(g.n) * g.p * g.q * g.c; }

void max_pool_forward_cuda(const Context& ctx, const MaxPool& a, cudaStream_t st) {
  dispatch_vec(vectorizable(a.g.c, a.x, a.y, a.index), out_elems(a.g), [&](auto v, i64 total) {
    max_pool_kernel<decltype(v)::value>
        <<<launch::grid_for(ctx, total, kThreads), kThreads, 0, st>>>(a.x, a.y, a.index, a.g, total);
  });
}

void max_unpool_cuda(const Context& ctx, const MaxUnpool& a, cudaStream_t st) {
  dispatch_vec(vectorizable(a.g.c, a.x, a.index, a.y), in_elems(a.g), [&](auto v, i64 total) {
    max_unpool_kernel<decltype(v)::value>
        <<<launch::grid_for(ctx, total, kThreads), kThreads, 0, st>>>(a.x, a.index, a.y, a.g, a.acc, total);
  });
}

void max_unpool_backward_cuda(const Context& ctx, const MaxUnpoolBackward& a, cudaStream_t st) {
  dispatch_vec(vectorizable(a.g.c, a.dy, a.index, a.dx), out_elems(a.g), [&](auto v, i64 total) {
    max_unpool_backward_kernel<decltype(v)::value>
        <<<launch::grid_for(ctx, total, kThreads), kThreads, 0, st>>>(a.dy, a.index, a.dx, a.g, a.acc_dx, total);
  });
}

void avg_pool_forward_cuda(const Context& ctx, const AvgPool& a, cudaStream_t st) {
  dispatch_vec(vectorizable(a.g.c, a.x, a.y), out_elems(a.g), [&](auto v, i64 total) {
    avg_pool_kernel<decltype(v)::value>
        <<<launch::grid_for(ctx, total, kThreads), kThreads, 0, st>>>(a.x, a.y, a.g, a.count_include_pad, total);
  });
}

void avg_pool_backward_cuda(const Context& ctx, const AvgPoolBackward& a, cudaStream_t st) {
  dispatch_vec(vectorizable(a.g.c, a.dy, a.dx), in_elems(a.g), [&](auto v, i64 total) {
    avg_pool_backward_kernel<decltype(v)::value><<<launch::grid_for(ctx, total, kThreads), kThreads, 0, st>>>(
        a.dy, a.dx, a.g, a.count_include_pad, a.acc_dx, total);
  });
}

void upsample_forward_cuda(const Context& ctx, const Upsample& a, cudaStream_t st) {
  dispatch_vec(vectorizable(a.g.c, a.x, a.y), out_elems(a.g), [&](auto v, i64 total) {
    constexpr int V = decltype(v)::value;
    const int grid = launch::grid_for(ctx, total, kThreads);
    if (a.kind == UpsampleKind::Nearest) upsample_nearest_kernel<V><<<grid, kThreads, 0, st>>>(a.x, a.y, a.g, total);
    else upsample_bilinear_kernel<V><<<grid, kThreads, 0, st>>>(a.x, a.y, a.g, total);
  });
}

void upsample_backward_cuda(const Context& ctx, const UpsampleBackward& a, cudaStream_t st) {
  dispatch_vec(vectorizable(a.g.c, a.dy, a.dx), in_elems(a.g), [&](auto v, i64 total) {
    constexpr int V = decltype(v)::value;
    const int grid = launch::grid_for(ctx, total, kThreads);
    if (a.kind == UpsampleKind::Nearest)
      upsample_backward_kernel<V, false><<<grid, kThreads, 0, st>>>(a.dy, a.dx, a.g, a.acc_dx, total);
    else
      upsample_backward_kernel<V, true><<<grid, kThreads, 0, st>>>(a.dy, a.dx, a.g, a.acc_dx, total);
  });
}

}  // namespace

void max_pool_forward(const Context& ctx, const MaxPool& a) {
  validate(a);
  max_pool_forward_cuda(ctx, a, launch::stream_of(ctx));
}

void max_unpool(const Context& ctx, const MaxUnpool& a) {
  validate(a);
  max_unpool_cuda(ctx, a, launch::stream_of(ctx));
}

void max_unpool_backward(const Context& ctx, const MaxUnpoolBackward& a) {
  validate(a);
  max_unpool_backward_cuda(ctx, a, launch::stream_of(ctx));
}

void avg_pool_forward(const Context& ctx, const AvgPool& a) {
  validate(a);
  avg_pool_forward_cuda(ctx, a, launch::stream_of(ctx));
}

void avg_pool_backward(const Context& ctx, const AvgPoolBackward& a) {
  validate(a);
  avg_pool_backward_cuda(ctx, a, launch::stream_of(ctx));
}

void upsample_forward(const Context& ctx, const Upsample& a) {
  validate(a);
  upsample_forward_cuda(ctx, a, launch::stream_of(ctx));
}

void upsample_backward(const Context& ctx, const UpsampleBackward& a) {
  validate(a);
  upsample_backward_cuda(ctx, a, launch::stream_of(ctx));
}

}  // namespace cuae::kern::cuda
