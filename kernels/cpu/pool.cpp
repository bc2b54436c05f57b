// CPU reference for pooling, unpooling and upsampling over NHWC (kernels/ops.hpp, PoolGeom).
//
// Every op is written as a gather: each output element is computed by exactly one loop iteration,
// which reads whatever it needs, so the OpenMP split over rows never has two threads writing one
// element and the result does not depend on the thread count. The adjoint ops (max_unpool, the
// avg-pool and upsample backwards) would naturally scatter; here each of their outputs instead
// visits the windows (or upsampled outputs) that read it, in ascending (row, column) order. The
// CUDA kernels (kernels/cuda/pool.cu) visit them in the same order with the same float operations
// (no fused multiply-adds: x86-64 without -march has no FMA, the device code uses __fmul_rn and
// __fadd_rn), so both backends give the same bits.
//
// Fixed choices the comments of ops.hpp leave to the implementation:
//   - max_unpool sums the matching windows starting from the first matching term (so a single
//     -0.0 comes back as -0.0), then y = sum, or y + sum when acc; with acc and no window pointing
//     at a position, y keeps its value. An index outside its own window is never matched (indices
//     come from a max pool of the same geometry, which cannot produce one).
//   - avg_pool sums from +0 in row-major window order and divides by the divisor; its backward
//     sums dy/divisor over the covering windows in row-major order.
//   - bilinear source coordinates are computed in float as PyTorch does (scale = float(in)/out,
//     src = scale·(dst + 0.5) − 0.5), which is the ops.hpp formula rounded to float.
//   - the upsample backwards sum from +0; bilinear adds (w_h·w_w)·dy per output, where w_h is the
//     sum of the row weights that name this input row (both, at the clamped last row).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/conv_common.hpp"
#include "kernels/cpu/parallel.hpp"
#include "kernels/ops.hpp"

namespace cuae::kern::cpu {

namespace {

using i64 = std::int64_t;

// In-bounds input rows [b, e) of the window of output row o (never empty when pad <= window/2).
struct Span {
  int b, e;
};
inline Span window_span(int o, int window, int stride, int pad, int in) {
  const i64 start = static_cast<i64>(o) * stride - pad;
  const i64 b = std::max<i64>(start, 0), e = std::min<i64>(start + window, in);
  return {static_cast<int>(b), static_cast<int>(e)};
}

// Output rows [lo, hi) whose windows contain input row i: o·stride − pad <= i < o·stride − pad +
// window.
struct Range {
  int lo, hi;
};
inline Range windows_covering(int i, int window, int stride, int pad, int out) {
  const i64 t = static_cast<i64>(i) + pad - window + 1;
  const i64 lo = t <= 0 ? 0 : (t + stride - 1) / stride;
  const i64 hi = std::min<i64>((static_cast<i64>(i) + pad) / stride + 1, out);
  return {static_cast<int>(lo), static_cast<int>(std::max(lo, hi))};
}

// The order of max pooling: a NaN beats any number, nothing beats a NaN, otherwise strictly greater
// (so the first of equal values stays).
inline bool beats(float v, float best) { return !std::isnan(best) && (v > best || std::isnan(v)); }

// Nearest: the input row read by output row o.
inline int nearest_src(int o, int in, int out) {
  const i64 s = static_cast<i64>(o) * in / out;
  return static_cast<int>(std::min<i64>(s, in - 1));
}
// Nearest: the first output row that reads input row i, ceil(i·out/in); rows [first(i), first(i+1))
// read i.
inline int nearest_first(int i, int in, int out) {
  return static_cast<int>((static_cast<i64>(i) * out + in - 1) / in);
}

// Bilinear (align_corners = False): output row o reads rows i0 and i1 with weights l0 and l1.
struct Lerp {
  int i0, i1;
  float l0, l1;
};
inline Lerp bilinear_src(int o, int in, int out) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  float src = scale * (static_cast<float>(o) + 0.5f) - 0.5f;
  if (src < 0.0f) src = 0.0f;
  Lerp l;
  l.i0 = static_cast<int>(src);
  l.i1 = l.i0 + (l.i0 < in - 1 ? 1 : 0);
  l.l1 = src - static_cast<float>(l.i0);
  l.l0 = 1.0f - l.l1;
  return l;
}

// Per input row, the output rows that read it (ascending) and the weight they read it with.
struct Tap {
  int o;
  float w;
};
std::vector<std::vector<Tap>> bilinear_taps(int in, int out) {
  std::vector<std::vector<Tap>> taps(static_cast<std::size_t>(in));
  for (int o = 0; o < out; ++o) {
    const Lerp l = bilinear_src(o, in, out);
    float w0 = 0.0f;
    w0 += l.l0;
    if (l.i1 == l.i0) {
      w0 += l.l1;
      taps[static_cast<std::size_t>(l.i0)].push_back({o, w0});
    } else {
      taps[static_cast<std::size_t>(l.i0)].push_back({o, w0});
      float w1 = 0.0f;
      w1 += l.l1;
      taps[static_cast<std::size_t>(l.i1)].push_back({o, w1});
    }
  }
  return taps;
}

}  // namespace

void max_pool_forward(const Context&, const MaxPool& a) {
  validate(a);
  const PoolGeom& g = a.g;
  const i64 C = g.c, rows = static_cast<i64>(g.n) * g.p;
#pragma omp parallel for schedule(static) if (rows * g.q * C >= kParallelMin)
  for (i64 row = 0; row < rows; ++row) {
    const int n = static_cast<int>(row / g.p), oh = static_cast<int>(row % g.p);
    const Span sh = window_span(oh, g.r, g.stride_h, g.pad_h, g.h);
    const float* xn = a.x + static_cast<i64>(n) * g.h * g.w * C;
    for (int ow = 0; ow < g.q; ++ow) {
      const Span sw = window_span(ow, g.s, g.stride_w, g.pad_w, g.w);
      const i64 out = (row * g.q + ow) * C;
      float* y = a.y + out;
      std::int32_t* idx = a.index + out;
      for (int ih = sh.b; ih < sh.e; ++ih)
        for (int iw = sw.b; iw < sw.e; ++iw) {
          const float* xp = xn + (static_cast<i64>(ih) * g.w + iw) * C;
          const std::int32_t pos = ih * g.w + iw;
          if (ih == sh.b && iw == sw.b) {
            for (i64 ch = 0; ch < C; ++ch) {
              y[ch] = xp[ch];
              idx[ch] = pos;
            }
          } else {
            for (i64 ch = 0; ch < C; ++ch)
              if (beats(xp[ch], y[ch])) {
                y[ch] = xp[ch];
                idx[ch] = pos;
              }
          }
        }
    }
  }
}

void max_unpool(const Context&, const MaxUnpool& a) {
  validate(a);
  const PoolGeom& g = a.g;
  const i64 C = g.c, rows = static_cast<i64>(g.n) * g.h;
#pragma omp parallel for schedule(static) if (rows * g.w * C >= kParallelMin)
  for (i64 row = 0; row < rows; ++row) {
    const int n = static_cast<int>(row / g.h), ih = static_cast<int>(row % g.h);
    const Range rh = windows_covering(ih, g.r, g.stride_h, g.pad_h, g.p);
    for (int iw = 0; iw < g.w; ++iw) {
      const Range rw = windows_covering(iw, g.s, g.stride_w, g.pad_w, g.q);
      const std::int32_t target = ih * g.w + iw;
      float* y = a.y + (row * g.w + iw) * C;
      for (i64 ch = 0; ch < C; ++ch) {
        float s = 0.0f;
        bool any = false;
        for (int oh = rh.lo; oh < rh.hi; ++oh)
          for (int ow = rw.lo; ow < rw.hi; ++ow) {
            const i64 e = ((static_cast<i64>(n) * g.p + oh) * g.q + ow) * C + ch;
            if (a.index[e] != target) continue;
            s = any ? s + a.x[e] : a.x[e];
            any = true;
          }
        if (!a.acc) y[ch] = any ? s : 0.0f;
        else if (any) y[ch] += s;
      }
    }
  }
}

void max_unpool_backward(const Context&, const MaxUnpoolBackward& a) {
  validate(a);
  const PoolGeom& g = a.g;
  const i64 C = g.c, count = static_cast<i64>(g.n) * g.p * g.q * C, plane = static_cast<i64>(g.h) * g.w;
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (i64 e = 0; e < count; ++e) {
    const i64 ch = e % C, n = e / (static_cast<i64>(g.p) * g.q * C);
    const float v = a.dy[(n * plane + a.index[e]) * C + ch];
    a.dx[e] = a.acc_dx ? a.dx[e] + v : v;
  }
}

void avg_pool_forward(const Context&, const AvgPool& a) {
  validate(a);
  const PoolGeom& g = a.g;
  const i64 C = g.c, rows = static_cast<i64>(g.n) * g.p;
#pragma omp parallel for schedule(static) if (rows * g.q * C >= kParallelMin)
  for (i64 row = 0; row < rows; ++row) {
    const int n = static_cast<int>(row / g.p), oh = static_cast<int>(row % g.p);
    const Span sh = window_span(oh, g.r, g.stride_h, g.pad_h, g.h);
    const float* xn = a.x + static_cast<i64>(n) * g.h * g.w * C;
    for (int ow = 0; ow < g.q; ++ow) {
      const Span sw = window_span(ow, g.s, g.stride_w, g.pad_w, g.w);
      const int div = a.count_include_pad ? g.r * g.s : (sh.e - sh.b) * (sw.e - sw.b);
      float* y = a.y + (row * g.q + ow) * C;
      std::fill(y, y + C, 0.0f);
      for (int ih = sh.b; ih < sh.e; ++ih)
        for (int iw = sw.b; iw < sw.e; ++iw) {
          const float* xp = xn + (static_cast<i64>(ih) * g.w + iw) * C;
          for (i64 ch = 0; ch < C; ++ch) y[ch] += xp[ch];
        }
      const float d = static_cast<float>(div);
      for (i64 ch = 0; ch < C; ++ch) y[ch] /= d;
    }
  }
}

void avg_pool_backward(const Context&, const AvgPoolBackward& a) {
  validate(a);
  const PoolGeom& g = a.g;
  const i64 C = g.c, rows = static_cast<i64>(g.n) * g.h;
#pragma omp parallel if (rows * g.w * C >= kParallelMin)
  {
    std::vector<float> s(static_cast<std::size_t>(C));
#pragma omp for schedule(static)
    for (i64 row = 0; row < rows; ++row) {
      const int n = static_cast<int>(row / g.h), ih = static_cast<int>(row % g.h);
      const Range rh = windows_covering(ih, g.r, g.stride_h, g.pad_h, g.p);
      for (int iw = 0; iw < g.w; ++iw) {
        const Range rw = windows_covering(iw, g.s, g.stride_w, g.pad_w, g.q);
        std::fill(s.begin(), s.end(), 0.0f);
        for (int oh = rh.lo; oh < rh.hi; ++oh) {
          const Span sh = window_span(oh, g.r, g.stride_h, g.pad_h, g.h);
          for (int ow = rw.lo; ow < rw.hi; ++ow) {
            const Span sw = window_span(ow, g.s, g.stride_w, g.pad_w, g.w);
            const float d = static_cast<float>(a.count_include_pad ? g.r * g.s : (sh.e - sh.b) * (sw.e - sw.b));
            const float* dy = a.dy + ((static_cast<i64>(n) * g.p + oh) * g.q + ow) * C;
            for (i64 ch = 0; ch < C; ++ch) s[static_cast<std::size_t>(ch)] += dy[ch] / d;
          }
        }
        float* dx = a.dx + (row * g.w + iw) * C;
        for (i64 ch = 0; ch < C; ++ch)
          dx[ch] = a.acc_dx ? dx[ch] + s[static_cast<std::size_t>(ch)] : s[static_cast<std::size_t>(ch)];
      }
    }
  }
}

void upsample_forward(const Context&, const Upsample& a) {
  validate(a);
  const PoolGeom& g = a.g;
  const i64 C = g.c, rows = static_cast<i64>(g.n) * g.p;
  const bool parallel = rows * g.q * C >= kParallelMin;
  if (a.kind == UpsampleKind::Nearest) {
#pragma omp parallel for schedule(static) if (parallel)
    for (i64 row = 0; row < rows; ++row) {
      const int n = static_cast<int>(row / g.p), oh = static_cast<int>(row % g.p);
      const float* xr = a.x + (static_cast<i64>(n) * g.h + nearest_src(oh, g.h, g.p)) * g.w * C;
      float* y = a.y + row * g.q * C;
      for (int ow = 0; ow < g.q; ++ow) {
        const float* xp = xr + static_cast<i64>(nearest_src(ow, g.w, g.q)) * C;
        std::copy(xp, xp + C, y + static_cast<i64>(ow) * C);
      }
    }
    return;
  }
  std::vector<Lerp> lw(static_cast<std::size_t>(g.q));
  for (int ow = 0; ow < g.q; ++ow) lw[static_cast<std::size_t>(ow)] = bilinear_src(ow, g.w, g.q);
#pragma omp parallel for schedule(static) if (parallel)
  for (i64 row = 0; row < rows; ++row) {
    const int n = static_cast<int>(row / g.p), oh = static_cast<int>(row % g.p);
    const Lerp lh = bilinear_src(oh, g.h, g.p);
    const float* x0 = a.x + (static_cast<i64>(n) * g.h + lh.i0) * g.w * C;
    const float* x1 = a.x + (static_cast<i64>(n) * g.h + lh.i1) * g.w * C;
    float* y = a.y + row * g.q * C;
    for (int ow = 0; ow < g.q; ++ow) {
      const Lerp& l = lw[static_cast<std::size_t>(ow)];
      const float* x00 = x0 + static_cast<i64>(l.i0) * C;
      const float* x01 = x0 + static_cast<i64>(l.i1) * C;
      const float* x10 = x1 + static_cast<i64>(l.i0) * C;
      const float* x11 = x1 + static_cast<i64>(l.i1) * C;
      float* yp = y + static_cast<i64>(ow) * C;
      for (i64 ch = 0; ch < C; ++ch) {
        const float t0 = l.l0 * x00[ch] + l.l1 * x01[ch];
        const float t1 = l.l0 * x10[ch] + l.l1 * x11[ch];
        yp[ch] = lh.l0 * t0 + lh.l1 * t1;
      }
    }
  }
}

void upsample_backward(const Context&, const UpsampleBackward& a) {
  validate(a);
  const PoolGeom& g = a.g;
  const i64 C = g.c, rows = static_cast<i64>(g.n) * g.h;
  const bool parallel = rows * g.w * C >= kParallelMin;
  const bool nearest = a.kind == UpsampleKind::Nearest;
  // Bilinear: per input row and column, the output rows/columns that read it, with their weights.
  std::vector<std::vector<Tap>> th, tw;
  if (!nearest) {
    th = bilinear_taps(g.h, g.p);
    tw = bilinear_taps(g.w, g.q);
  }
#pragma omp parallel if (parallel)
  {
    std::vector<float> s(static_cast<std::size_t>(C));
#pragma omp for schedule(static)
    for (i64 row = 0; row < rows; ++row) {
      const int n = static_cast<int>(row / g.h), ih = static_cast<int>(row % g.h);
      const float* dyn = a.dy + static_cast<i64>(n) * g.p * g.q * C;
      for (int iw = 0; iw < g.w; ++iw) {
        std::fill(s.begin(), s.end(), 0.0f);
        if (nearest) {
          const int oh0 = nearest_first(ih, g.h, g.p), oh1 = nearest_first(ih + 1, g.h, g.p);
          const int ow0 = nearest_first(iw, g.w, g.q), ow1 = nearest_first(iw + 1, g.w, g.q);
          for (int oh = oh0; oh < oh1; ++oh)
            for (int ow = ow0; ow < ow1; ++ow) {
              const float* dy = dyn + (static_cast<i64>(oh) * g.q + ow) * C;
              for (i64 ch = 0; ch < C; ++ch) s[static_cast<std::size_t>(ch)] += dy[ch];
            }
        } else {
          for (const Tap& h : th[static_cast<std::size_t>(ih)])
            for (const Tap& w : tw[static_cast<std::size_t>(iw)]) {
              const float wt = h.w * w.w;
              const float* dy = dyn + (static_cast<i64>(h.o) * g.q + w.o) * C;
              for (i64 ch = 0; ch < C; ++ch) s[static_cast<std::size_t>(ch)] += wt * dy[ch];
            }
        }
        float* dx = a.dx + (row * g.w + iw) * C;
        for (i64 ch = 0; ch < C; ++ch)
          dx[ch] = a.acc_dx ? dx[ch] + s[static_cast<std::size_t>(ch)] : s[static_cast<std::size_t>(ch)];
      }
    }
  }
}

}  // namespace cuae::kern::cpu
