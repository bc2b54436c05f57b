// Geometry arithmetic and argument validation of the convolution and pooling ops, shared by both
// backends and by the graph builder (which infers shapes with the same formulas the kernels
// check). Header-only, free of CUDA.
#pragma once

#include <cstdint>
#include <string>

#include "cuae/error.hpp"
#include "kernels/ops.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern {

// Output extent of a convolution along one axis; <= 0 when the filter does not fit.
inline int conv_out_extent(int in, int filter, int stride, int pad, int dil) {
  const std::int64_t span = static_cast<std::int64_t>(dil) * (filter - 1) + 1;
  const std::int64_t room = static_cast<std::int64_t>(in) + 2 * static_cast<std::int64_t>(pad) - span;
  if (room < 0 || stride <= 0) return 0;
  return static_cast<int>(room / stride + 1);
}

// Smallest deconvolution output extent for a deconvolution input extent (output_padding = 0).
inline int deconv_out_extent(int in, int filter, int stride, int pad, int dil, int output_padding) {
  return (in - 1) * stride - 2 * pad + dil * (filter - 1) + 1 + output_padding;
}

inline int pool_out_extent(int in, int window, int stride, int pad) {
  const int room = in + 2 * pad - window;
  if (room < 0 || stride <= 0) return 0;
  return room / stride + 1;
}

inline std::string conv_geom_str(const ConvGeom& g) {
  auto i = [](int v) { return std::to_string(v); };
  return "x [" + i(g.n) + "," + i(g.h) + "," + i(g.w) + "," + i(g.c) + "], filter [" + i(g.k) + "," + i(g.r) +
         "," + i(g.s) + "," + i(g.c) + "], y [" + i(g.n) + "," + i(g.p) + "," + i(g.q) + "," + i(g.k) +
         "], stride " + i(g.stride_h) + "x" + i(g.stride_w) + ", pad " + i(g.pad_h) + "x" + i(g.pad_w) +
         ", dilation " + i(g.dil_h) + "x" + i(g.dil_w);
}

inline std::string pool_geom_str(const PoolGeom& g) {
  auto i = [](int v) { return std::to_string(v); };
  return "x [" + i(g.n) + "," + i(g.h) + "," + i(g.w) + "," + i(g.c) + "], y [" + i(g.n) + "," + i(g.p) + "," +
         i(g.q) + "," + i(g.c) + "], window " + i(g.r) + "x" + i(g.s) + ", stride " + i(g.stride_h) + "x" +
         i(g.stride_w) + ", pad " + i(g.pad_h) + "x" + i(g.pad_w);
}

namespace detail {

inline bool fits32(std::int64_t a, std::int64_t b, std::int64_t c, std::int64_t d) {
  return a * b * c * d <= kMaxElements;
}

// Every field positive, p/q consistent with h/w, and for a transposed convolution the output
// padding within [0, max(stride, dilation)).
inline void check_conv_geom(const char* op, const ConvGeom& g, bool transposed) {
  auto d = [&] { return std::string(op) + "(" + conv_geom_str(g) + ")"; };
  CUAE_CHECK(g.n > 0 && g.h > 0 && g.w > 0 && g.c > 0 && g.k > 0 && g.r > 0 && g.s > 0 && g.p > 0 && g.q > 0,
             d() + ": every extent must be positive");
  CUAE_CHECK(g.stride_h > 0 && g.stride_w > 0 && g.dil_h > 0 && g.dil_w > 0,
             d() + ": stride and dilation must be positive");
  CUAE_CHECK(g.pad_h >= 0 && g.pad_w >= 0, d() + ": padding must be >= 0");
  CUAE_CHECK(fits32(g.n, g.h, g.w, g.c) && fits32(g.n, g.p, g.q, g.k) && fits32(g.k, g.r, g.s, g.c) &&
                 fits32(g.n, g.p, g.q, static_cast<std::int64_t>(g.r) * g.s * g.c),
             d() + ": a tensor would exceed 2^31-1 elements");
  const int p = conv_out_extent(g.h, g.r, g.stride_h, g.pad_h, g.dil_h);
  const int q = conv_out_extent(g.w, g.s, g.stride_w, g.pad_w, g.dil_w);
  CUAE_CHECK(p == g.p && q == g.q, d() + ": the output extent must be " + std::to_string(p) + "x" + std::to_string(q));
  if (transposed) {
    const int oph = g.h - deconv_out_extent(g.p, g.r, g.stride_h, g.pad_h, g.dil_h, 0);
    const int opw = g.w - deconv_out_extent(g.q, g.s, g.stride_w, g.pad_w, g.dil_w, 0);
    const int maxh = g.stride_h > g.dil_h ? g.stride_h : g.dil_h;
    const int maxw = g.stride_w > g.dil_w ? g.stride_w : g.dil_w;
    CUAE_CHECK(oph >= 0 && oph < maxh && opw >= 0 && opw < maxw,
               d() + ": output padding " + std::to_string(oph) + "x" + std::to_string(opw) +
                   " must lie in [0, max(stride, dilation))");
  }
}

inline void check_pool_geom(const char* op, const PoolGeom& g, bool window) {
  auto d = [&] { return std::string(op) + "(" + pool_geom_str(g) + ")"; };
  CUAE_CHECK(g.n > 0 && g.h > 0 && g.w > 0 && g.c > 0 && g.p > 0 && g.q > 0, d() + ": every extent must be positive");
  CUAE_CHECK(fits32(g.n, g.h, g.w, g.c) && fits32(g.n, g.p, g.q, g.c), d() + ": a tensor would exceed 2^31-1 elements");
  if (!window) return;
  CUAE_CHECK(g.r > 0 && g.s > 0 && g.stride_h > 0 && g.stride_w > 0, d() + ": window and stride must be positive");
  CUAE_CHECK(g.pad_h >= 0 && g.pad_w >= 0 && 2 * g.pad_h <= g.r && 2 * g.pad_w <= g.s,
             d() + ": padding must lie in [0, window/2]");
  const int p = pool_out_extent(g.h, g.r, g.stride_h, g.pad_h);
  const int q = pool_out_extent(g.w, g.s, g.stride_w, g.pad_w);
  CUAE_CHECK(p == g.p && q == g.q, d() + ": the output extent must be " + std::to_string(p) + "x" + std::to_string(q));
}

}  // namespace detail

inline void validate(const ConvWorkspace& a) {
  detail::check_conv_geom("conv_workspace", a.g,
                          a.pass == ConvPass::DeconvForward || a.pass == ConvPass::DeconvBackward);
  CUAE_CHECK(a.bytes != nullptr, "conv_workspace: bytes must not be null");
}

inline void validate(const ConvForward& a) {
  detail::check_conv_geom("conv2d_forward", a.g, false);
  CUAE_CHECK(a.x && a.w && a.y, "conv2d_forward(" + conv_geom_str(a.g) + "): x, w and y must not be null");
  CUAE_CHECK(detail::act_ok(a.act) && detail::slope_ok(a.act, a.slope),
             "conv2d_forward: unknown activation or leaky ReLU slope <= 0");
  CUAE_CHECK(a.act != Act::GELU || a.z != nullptr, "conv2d_forward: GELU needs z (its backward reads it)");
}

inline void validate(const ConvBackward& a) {
  detail::check_conv_geom("conv2d_backward", a.g, false);
  CUAE_CHECK(a.dy && a.dz && a.x && a.w, "conv2d_backward(" + conv_geom_str(a.g) + "): dy, dz, x and w must not be null");
  CUAE_CHECK(detail::act_ok(a.act) && detail::slope_ok(a.act, a.slope),
             "conv2d_backward: unknown activation or leaky ReLU slope <= 0");
  CUAE_CHECK(a.act == Act::Identity || a.act == Act::GELU || a.y != nullptr, "conv2d_backward: y is required for this activation");
  CUAE_CHECK(a.act != Act::GELU || a.z != nullptr, "conv2d_backward: GELU needs z");
}

inline void validate(const DeconvForward& a) {
  detail::check_conv_geom("deconv2d_forward", a.g, true);
  CUAE_CHECK(a.x && a.w && a.y, "deconv2d_forward(" + conv_geom_str(a.g) + "): x, w and y must not be null");
  CUAE_CHECK(detail::act_ok(a.act) && detail::slope_ok(a.act, a.slope),
             "deconv2d_forward: unknown activation or leaky ReLU slope <= 0");
  CUAE_CHECK(a.act != Act::GELU || a.z != nullptr, "deconv2d_forward: GELU needs z (its backward reads it)");
}

inline void validate(const DeconvBackward& a) {
  detail::check_conv_geom("deconv2d_backward", a.g, true);
  CUAE_CHECK(a.dy && a.dz && a.x && a.w, "deconv2d_backward(" + conv_geom_str(a.g) + "): dy, dz, x and w must not be null");
  CUAE_CHECK(detail::act_ok(a.act) && detail::slope_ok(a.act, a.slope),
             "deconv2d_backward: unknown activation or leaky ReLU slope <= 0");
  CUAE_CHECK(a.act == Act::Identity || a.act == Act::GELU || a.y != nullptr, "deconv2d_backward: y is required for this activation");
  CUAE_CHECK(a.act != Act::GELU || a.z != nullptr, "deconv2d_backward: GELU needs z");
}

inline void validate(const MaxPool& a) {
  detail::check_pool_geom("max_pool_forward", a.g, true);
  CUAE_CHECK(a.x && a.y && a.index, "max_pool_forward(" + pool_geom_str(a.g) + "): x, y and index must not be null");
}
inline void validate(const MaxUnpool& a) {
  detail::check_pool_geom("max_unpool", a.g, true);
  CUAE_CHECK(a.x && a.y && a.index, "max_unpool(" + pool_geom_str(a.g) + "): x, index and y must not be null");
}
inline void validate(const MaxUnpoolBackward& a) {
  detail::check_pool_geom("max_unpool_backward", a.g, true);
  CUAE_CHECK(a.dy && a.dx && a.index, "max_unpool_backward(" + pool_geom_str(a.g) + "): dy, index and dx must not be null");
}
inline void validate(const AvgPool& a) {
  detail::check_pool_geom("avg_pool_forward", a.g, true);
  CUAE_CHECK(a.x && a.y, "avg_pool_forward(" + pool_geom_str(a.g) + "): x and y must not be null");
}
inline void validate(const AvgPoolBackward& a) {
  detail::check_pool_geom("avg_pool_backward", a.g, true);
  CUAE_CHECK(a.dy && a.dx, "avg_pool_backward(" + pool_geom_str(a.g) + "): dy and dx must not be null");
}
inline void validate(const Upsample& a) {
  detail::check_pool_geom("upsample_forward", a.g, false);
  CUAE_CHECK(a.kind == UpsampleKind::Nearest || a.kind == UpsampleKind::Bilinear, "upsample_forward: unknown kind");
  CUAE_CHECK(a.x && a.y, "upsample_forward(" + pool_geom_str(a.g) + "): x and y must not be null");
}
inline void validate(const UpsampleBackward& a) {
  detail::check_pool_geom("upsample_backward", a.g, false);
  CUAE_CHECK(a.kind == UpsampleKind::Nearest || a.kind == UpsampleKind::Bilinear, "upsample_backward: unknown kind");
  CUAE_CHECK(a.dy && a.dx, "upsample_backward(" + pool_geom_str(a.g) + "): dy and dx must not be null");
}

}  // namespace cuae::kern
