// CPU reference for the convolution ops: 2-D cross-correlation (conv2d_*) and its transpose
// (deconv2d_*), NHWC activations and KRSC filters (kernels/ops.hpp).
//
// Every op is a GEMM around an im2col buffer. Viewed as a matrix, the im2col of an NHWC tensor has
// one row per output pixel (n, p, q) and one column per filter tap (r, s, c), and the filter
// [k, r, s, c] is a dense weight [k, r·s·c], so with col = im2col(x):
//   conv forward      y[npq, k]    = col · Wᵀ
//   conv dW           dW[k, rsc]   = dZᵀ · col
//   conv dX           dX           = col2im(dZ · W)          (the transposed convolution)
//   deconv forward    y            = col2im(x · W)
//   deconv dX         dX[npq, k]   = im2col(dZ) · Wᵀ          (a forward convolution)
//   deconv dW         dW[k, rsc]   = xᵀ · im2col(dZ)
// NHWC makes the GEMM operands plain row-major matrices: an output chunk of consecutive pixels is
// a contiguous block of rows. A 1x1 filter with stride 1 and no padding needs no im2col at all
// (x itself is the col matrix).
//
// The col buffer lives in the caller's workspace (ConvWorkspace reports its size). It holds a
// chunk of output rows (n, p) (each q pixels wide), at most kColBudgetBytes, so the workspace stays
// bounded whatever the batch; a chunk may start or end in the middle of an image.
//
// Threads: im2col, col2im and the elementwise passes are OpenMP loops; the GEMMs run outside any
// parallel region, where OpenBLAS (its OpenMP build, sharing the same pool) threads them itself,
// except the filter gradient's (see filter_grad_gemm).
// Results do not depend on the thread count: every output element is summed in a fixed order
// (col2im gathers instead of scattering, the bias gradient sums fixed blocks in double and then
// the blocks in order, and the chunking depends on the geometry only).
#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/conv_common.hpp"
#include "kernels/cpu/epilogue.hpp"
#include "kernels/cpu/parallel.hpp"
#include "kernels/ops.hpp"

namespace cuae::kern::cpu {

namespace {

using i64 = std::int64_t;

// The im2col buffer's ceiling. A chunk this size keeps each GEMM thousands of rows tall (efficient)
// while the buffer can still sit largely in the last-level cache between im2col and the GEMM.
constexpr i64 kColBudgetBytes = i64{8} << 20;
// Filter-gradient columns per single-threaded GEMM (see filter_grad_gemm).
constexpr int kFilterGradCols = 64;

i64 rsc(const ConvGeom& g) { return static_cast<i64>(g.r) * g.s * g.c; }

// A 1x1 filter with stride 1 and no padding reads exactly one input pixel per output pixel
// (dilation is irrelevant with one tap), so x [n·h·w, c] is already the col matrix.
bool is_pointwise(const ConvGeom& g) {
  return g.r == 1 && g.s == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0 &&
         g.p == g.h && g.q == g.w;
}

// How the output rows (n, p) are cut into chunks for the col buffer.
struct Chunking {
  i64 total_rows = 0;      // n·p
  i64 rows_per_chunk = 0;  // 0 for a pointwise geometry (no buffer)
  std::size_t bytes = 0;   // the workspace one call needs
};

Chunking chunking(const ConvGeom& g) {
  Chunking c;
  c.total_rows = static_cast<i64>(g.n) * g.p;
  if (is_pointwise(g)) return c;
  const i64 row_floats = static_cast<i64>(g.q) * rsc(g);
  const i64 fit = kColBudgetBytes / (row_floats * static_cast<i64>(sizeof(float)));
  c.rows_per_chunk = std::min(std::max<i64>(fit, 1), c.total_rows);
  c.bytes = static_cast<std::size_t>(c.rows_per_chunk * row_floats) * sizeof(float);
  return c;
}

// The col buffer from the caller's workspace, or a clear error when it is missing or short.
float* col_buffer(const char* op, const ConvGeom& g, void* ws, std::size_t ws_bytes, std::size_t need) {
  if (need == 0) return nullptr;
  CUAE_CHECK(ws != nullptr && ws_bytes >= need,
             std::string(op) + "(" + conv_geom_str(g) + "): needs a workspace of " + std::to_string(need) +
                 " bytes (see conv_workspace), got " + (ws ? std::to_string(ws_bytes) + " bytes" : "none"));
  return static_cast<float*>(ws);
}

// col[(row − row0)·q + qi, (r, s, c)] = src[n, p·sh − ph + r·dh, qi·sw − pw + s·dw, c], zero where
// the tap falls in the padding, for the output rows row = n·p_extent + p in [row0, row1).
void im2col(const float* src, const ConvGeom& g, i64 row0, i64 row1, float* col) {
  const i64 C = g.c, K_cols = rsc(g);
  const std::size_t cbytes = static_cast<std::size_t>(C) * sizeof(float);
#pragma omp parallel for schedule(static) if ((row1 - row0) * g.q * K_cols >= kParallelMin)
  for (i64 row = row0; row < row1; ++row) {
    const i64 ni = row / g.p;
    const int pi = static_cast<int>(row % g.p);
    const float* img = src + ni * g.h * g.w * C;
    float* out = col + (row - row0) * g.q * K_cols;
    for (int qi = 0; qi < g.q; ++qi) {
      const int iw0 = qi * g.stride_w - g.pad_w;
      for (int ri = 0; ri < g.r; ++ri) {
        const int ih = pi * g.stride_h - g.pad_h + ri * g.dil_h;
        float* dst = out + (static_cast<i64>(qi) * g.r + ri) * g.s * C;
        if (ih < 0 || ih >= g.h) {
          std::memset(dst, 0, static_cast<std::size_t>(g.s) * cbytes);
          continue;
        }
        const float* line = img + static_cast<i64>(ih) * g.w * C;
        if (g.dil_w == 1) {
          // Undilated taps read consecutive pixels: one copy for the run inside the image.
          const int s_lo = std::clamp(-iw0, 0, g.s), s_hi = std::clamp(g.w - iw0, s_lo, g.s);
          if (s_lo > 0) std::memset(dst, 0, static_cast<std::size_t>(s_lo) * cbytes);
          if (s_hi > s_lo)
            std::memcpy(dst + s_lo * C, line + static_cast<i64>(iw0 + s_lo) * C,
                        static_cast<std::size_t>(s_hi - s_lo) * cbytes);
          if (s_hi < g.s) std::memset(dst + s_hi * C, 0, static_cast<std::size_t>(g.s - s_hi) * cbytes);
        } else {
          for (int si = 0; si < g.s; ++si) {
            const int iw = iw0 + si * g.dil_w;
            if (iw >= 0 && iw < g.w) std::memcpy(dst + si * C, line + static_cast<i64>(iw) * C, cbytes);
            else std::memset(dst + si * C, 0, cbytes);
          }
        }
      }
    }
  }
}

// For every input coordinate i of one axis, the taps (filter index f, output index o) with
// i = o·stride − pad + f·dil, in increasing f: a compressed list (start[i] .. start[i + 1]).
struct Taps {
  std::vector<int> start, f, o;
};

Taps taps(int in, int out, int filter, int stride, int pad, int dil) {
  Taps t;
  t.start.assign(static_cast<std::size_t>(in) + 1, 0);
  for (int i = 0; i < in; ++i) {
    for (int fi = 0; fi < filter; ++fi) {
      const int u = i + pad - fi * dil;
      if (u < 0 || u % stride != 0 || u / stride >= out) continue;
      t.f.push_back(fi);
      t.o.push_back(u / stride);
    }
    t.start[static_cast<std::size_t>(i) + 1] = static_cast<int>(t.f.size());
  }
  return t;
}

// The transpose of im2col restricted to the output rows [row0, row1): dst[n, ih, iw, :] += every
// col entry whose tap reads (ih, iw). Gathered per input pixel, so no two threads write the same
// element and each element sums its taps in a fixed order (r, then s).
void col2im_add(const float* col, const ConvGeom& g, i64 row0, i64 row1, const Taps& th, const Taps& tw,
                float* dst) {
  const i64 C = g.c, K_cols = rsc(g);
  const i64 n0 = row0 / g.p, n1 = (row1 - 1) / g.p + 1;  // the images the chunk touches
  const i64 lines = (n1 - n0) * g.h;
#pragma omp parallel for schedule(static) if ((row1 - row0) * g.q * K_cols >= kParallelMin)
  for (i64 line = 0; line < lines; ++line) {
    const i64 ni = n0 + line / g.h;
    const int ih = static_cast<int>(line % g.h);
    float* out = dst + (ni * g.h + ih) * g.w * C;
    for (int th_i = th.start[ih]; th_i < th.start[ih + 1]; ++th_i) {
      const i64 row = ni * g.p + th.o[th_i];
      if (row < row0 || row >= row1) continue;
      const float* src_row = col + (row - row0) * g.q * K_cols + static_cast<i64>(th.f[th_i]) * g.s * C;
      for (int iw = 0; iw < g.w; ++iw) {
        float* o = out + static_cast<i64>(iw) * C;
        for (int tw_i = tw.start[iw]; tw_i < tw.start[iw + 1]; ++tw_i) {
          const float* v = src_row + static_cast<i64>(tw.o[tw_i]) * K_cols + static_cast<i64>(tw.f[tw_i]) * C;
          for (i64 ci = 0; ci < C; ++ci) o[ci] += v[ci];
        }
      }
    }
  }
}

void fill_zero(float* p, i64 count) {
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (i64 i = 0; i < count; ++i) p[i] = 0.0f;
}

// dW[k, cols] = beta·dW + Aᵀ·B with A [m, k] and B [m, cols] (row strides lda, ldb): the filter
// gradient, a GEMM with few rows and a long inner dimension m. Threaded by OpenBLAS, this shape
// gives results that change with the thread count (measured: tests/test_ops_conv.cpp,
// ConvCpu.ResultsDoNotDependOnThreadCount); here fixed blocks of columns each get one GEMM, run
// single-threaded (OpenBLAS's OpenMP build does not nest inside a parallel region), so every
// element is summed the same way whatever the thread count.
void filter_grad_gemm(const float* a, int lda, const float* b, int ldb, int m, int k, int cols, float beta, float* dw) {
  const int blocks = (cols + kFilterGradCols - 1) / kFilterGradCols;
#pragma omp parallel for schedule(static)
  for (int blk = 0; blk < blocks; ++blk) {
    const int j0 = blk * kFilterGradCols, nb = std::min(kFilterGradCols, cols - j0);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, nb, m, 1.0f, a, lda, b + j0, ldb, beta, dw + j0, cols);
  }
}

}  // namespace

void conv_workspace(const Context&, const ConvWorkspace& a) {
  validate(a);
  // Every pass uses one col buffer of the same shape (a chunk of output rows × r·s·c).
  *a.bytes = chunking(a.g).bytes;
}

void conv2d_forward(const Context&, const ConvForward& a) {
  validate(a);
  const ConvGeom& g = a.g;
  const Chunking ch = chunking(g);
  float* col = col_buffer("conv2d_forward", g, a.ws, a.ws_bytes, ch.bytes);
  const i64 K_cols = rsc(g), out_rows = static_cast<i64>(g.n) * g.p * g.q;
  // beta = 0 everywhere below: OpenBLAS then ignores C's old contents (NaN included).
  if (ch.rows_per_chunk == 0) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(out_rows), g.k, g.c, 1.0f, a.x, g.c,
                a.w, g.c, 0.0f, a.y, g.k);
  } else {
    for (i64 row0 = 0; row0 < ch.total_rows; row0 += ch.rows_per_chunk) {
      const i64 row1 = std::min(ch.total_rows, row0 + ch.rows_per_chunk);
      im2col(a.x, g, row0, row1, col);
      const int m = static_cast<int>((row1 - row0) * g.q);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, g.k, static_cast<int>(K_cols), 1.0f, col,
                  static_cast<int>(K_cols), a.w, static_cast<int>(K_cols), 0.0f, a.y + row0 * g.q * g.k, g.k);
    }
  }
  bias_act_rows(a.y, a.z, a.b, out_rows, g.k, a.act, a.slope);
}

void conv2d_backward(const Context&, const ConvBackward& a) {
  validate(a);
  const ConvGeom& g = a.g;
  const Chunking ch = chunking(g);
  float* col = col_buffer("conv2d_backward", g, a.ws, a.ws_bytes, (a.dx || a.dw) ? ch.bytes : 0);
  const i64 K_cols = rsc(g), out_rows = static_cast<i64>(g.n) * g.p * g.q;
  act_backward_bias(a.dy, a.y, a.z, a.dz, a.db, a.acc_db, out_rows, g.k, a.act, a.slope);
  if (!a.dx && !a.dw) return;

  if (ch.rows_per_chunk == 0) {
    const int m = static_cast<int>(out_rows);
    if (a.dw)  // dW[k, c] = dZᵀ · X
      filter_grad_gemm(a.dz, g.k, a.x, g.c, m, g.k, g.c, a.acc_dw ? 1.0f : 0.0f, a.dw);
    if (a.dx)  // dX[npq, c] = dZ · W
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, g.c, g.k, 1.0f, a.dz, g.k, a.w, g.c,
                  a.acc_dx ? 1.0f : 0.0f, a.dx, g.c);
    return;
  }

  Taps th, tw;
  if (a.dx) {
    th = taps(g.h, g.p, g.r, g.stride_h, g.pad_h, g.dil_h);
    tw = taps(g.w, g.q, g.s, g.stride_w, g.pad_w, g.dil_w);
    // col2im adds chunk by chunk; pixels no tap reads (stride > filter span) keep this value.
    if (!a.acc_dx) fill_zero(a.dx, static_cast<i64>(g.n) * g.h * g.w * g.c);
  }
  const int kc = static_cast<int>(K_cols);
  for (i64 row0 = 0; row0 < ch.total_rows; row0 += ch.rows_per_chunk) {
    const i64 row1 = std::min(ch.total_rows, row0 + ch.rows_per_chunk);
    const int m = static_cast<int>((row1 - row0) * g.q);
    const float* dzc = a.dz + row0 * g.q * g.k;
    if (a.dw) {
      im2col(a.x, g, row0, row1, col);
      const float beta = (row0 == 0 && !a.acc_dw) ? 0.0f : 1.0f;
      filter_grad_gemm(dzc, g.k, col, kc, m, g.k, kc, beta, a.dw);
    }
    if (a.dx) {  // the col buffer is free again: it now receives dZ·W, scattered back by col2im
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, kc, g.k, 1.0f, dzc, g.k, a.w, kc, 0.0f, col, kc);
      col2im_add(col, g, row0, row1, th, tw, a.dx);
    }
  }
}

void deconv2d_forward(const Context&, const DeconvForward& a) {
  validate(a);
  const ConvGeom& g = a.g;
  const Chunking ch = chunking(g);
  float* col = col_buffer("deconv2d_forward", g, a.ws, a.ws_bytes, ch.bytes);
  const i64 out_rows = static_cast<i64>(g.n) * g.h * g.w;
  if (ch.rows_per_chunk == 0) {  // y[nhw, c] = X[npq, k] · W[k, c]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(out_rows), g.c, g.k, 1.0f, a.x, g.k,
                a.w, g.c, 0.0f, a.y, g.c);
  } else {
    const Taps th = taps(g.h, g.p, g.r, g.stride_h, g.pad_h, g.dil_h);
    const Taps tw = taps(g.w, g.q, g.s, g.stride_w, g.pad_w, g.dil_w);
    fill_zero(a.y, out_rows * g.c);
    const int kc = static_cast<int>(rsc(g));
    for (i64 row0 = 0; row0 < ch.total_rows; row0 += ch.rows_per_chunk) {
      const i64 row1 = std::min(ch.total_rows, row0 + ch.rows_per_chunk);
      const int m = static_cast<int>((row1 - row0) * g.q);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, kc, g.k, 1.0f, a.x + row0 * g.q * g.k, g.k, a.w, kc,
                  0.0f, col, kc);
      col2im_add(col, g, row0, row1, th, tw, a.y);
    }
  }
  bias_act_rows(a.y, a.z, a.b, out_rows, g.c, a.act, a.slope);
}

void deconv2d_backward(const Context&, const DeconvBackward& a) {
  validate(a);
  const ConvGeom& g = a.g;
  const Chunking ch = chunking(g);
  float* col = col_buffer("deconv2d_backward", g, a.ws, a.ws_bytes, (a.dx || a.dw) ? ch.bytes : 0);
  const i64 in_rows = static_cast<i64>(g.n) * g.h * g.w;
  act_backward_bias(a.dy, a.y, a.z, a.dz, a.db, a.acc_db, in_rows, g.c, a.act, a.slope);
  if (!a.dx && !a.dw) return;

  if (ch.rows_per_chunk == 0) {
    const int m = static_cast<int>(in_rows);  // = n·p·q here
    if (a.dx)  // dX[npq, k] = dZ[nhw, c] · Wᵀ
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, g.k, g.c, 1.0f, a.dz, g.c, a.w, g.c,
                  a.acc_dx ? 1.0f : 0.0f, a.dx, g.k);
    if (a.dw)  // dW[k, c] = Xᵀ · dZ
      filter_grad_gemm(a.x, g.k, a.dz, g.c, m, g.k, g.c, a.acc_dw ? 1.0f : 0.0f, a.dw);
    return;
  }

  const int kc = static_cast<int>(rsc(g));
  for (i64 row0 = 0; row0 < ch.total_rows; row0 += ch.rows_per_chunk) {
    const i64 row1 = std::min(ch.total_rows, row0 + ch.rows_per_chunk);
    const int m = static_cast<int>((row1 - row0) * g.q);
    im2col(a.dz, g, row0, row1, col);
    if (a.dx)  // the chunk's rows of dX, disjoint from every other chunk's
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, g.k, kc, 1.0f, col, kc, a.w, kc,
                  a.acc_dx ? 1.0f : 0.0f, a.dx + row0 * g.q * g.k, g.k);
    if (a.dw) {
      const float beta = (row0 == 0 && !a.acc_dw) ? 0.0f : 1.0f;
      filter_grad_gemm(a.x + row0 * g.q * g.k, g.k, col, kc, m, g.k, kc, beta, a.dw);
    }
  }
}

}  // namespace cuae::kern::cpu
