// Argument validation of the restricted-Boltzmann-machine ops (rbm_cd_workspace, rbm_cd,
// rbm_free_energy), shared by both backends as kernels/validate.hpp is for the others: every entry
// calls validate(args) first, so a bad call fails the same way on either device with a cuae::Error
// naming the op and its sizes, before any memory is touched or any kernel is enqueued.
//
// It also holds rbm_cd_workspace_floats(), the one definition of rbm_cd's workspace, which both
// backends' rbm_cd_workspace report and both rbm_cd entries check ws_floats against:
//
//   [ ph0 : m·nh | hs : m·nh | phk : m·nh | vt : m·nv | partials : chunks·(nv + nh + 1) ]
//
//   ph0   E[h|v0], kept for the positive statistics
//   hs    the current hidden sample, input of the next h → v GEMM
//   phk   E[h|vt] of the current step (its pre-activation first)
//   vt    the visible of the current step (its pre-activation first, then its mean; with
//         sample_visible the sample is drawn in place over the mean, which nothing reads again)
//   partials  per row chunk of kRbmChunkRows rows: the column sums of v0 − vk (nv), of ph0 − phk
//         (nh) and the squared reconstruction error (1). The CUDA backend reduces in two fixed
//         passes through them (no atomics); the CPU backend sums in double and leaves them unused,
//         but takes the same size so a caller sizes one buffer for either device.
//
// Sizes: every tensor (m·nv, m·nh, nh·nv) must hold fewer than 2^31 values, as everywhere else;
// the draw indices (e + t·m·nh, and k·m·nh + (t − 1)·m·nv + e for sampled visibles) are 64-bit on
// both backends, so k is only bounded by int.
//
// Header-only, free of CUDA; host code only.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "cuae/error.hpp"
#include "kernels/ops.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern {

// Rows per reduction chunk: the partition of the column sums depends only on m, so the sums (and
// so the results) are the same on every GPU.
constexpr int kRbmChunkRows = 32;

inline std::int64_t rbm_chunks(int m) { return (static_cast<std::int64_t>(m) + kRbmChunkRows - 1) / kRbmChunkRows; }

inline std::size_t rbm_cd_workspace_floats(int m, int nv, int nh) {
  const std::size_t M = static_cast<std::size_t>(m), V = static_cast<std::size_t>(nv), H = static_cast<std::size_t>(nh);
  return 3 * M * H + M * V + static_cast<std::size_t>(rbm_chunks(m)) * (V + H + 1);
}

namespace detail {

inline const char* rbm_unit_name(RbmUnit u) {
  switch (u) {
    case RbmUnit::Bernoulli: return "bernoulli";
    case RbmUnit::Gaussian: return "gaussian";
  }
  return "?";
}

inline bool rbm_unit_ok(RbmUnit u) { return u == RbmUnit::Bernoulli || u == RbmUnit::Gaussian; }

inline std::string rbm_desc(const char* op, int m, int nv, int nh) {
  return std::string(op) + "(m=" + std::to_string(m) + ", nv=" + std::to_string(nv) + ", nh=" + std::to_string(nh) + ")";
}

// m, nv, nh positive and each of v [m, nv], h [m, nh] and W [nh, nv] below 2^31 values (checked
// by division, which cannot overflow).
template <class Desc>
void check_rbm_shape(const Desc& d, int m, int nv, int nh) {
  CUAE_CHECK(m > 0 && nv > 0 && nh > 0, d() + ": m, nv and nh must be positive");
  CUAE_CHECK(m <= kMaxElements / nv && m <= kMaxElements / nh && nh <= kMaxElements / nv,
             d() + ": a tensor would exceed 2^31-1 elements");
}

}  // namespace detail

inline void validate(const RbmCDWorkspace& a) {
  const auto d = [&] { return detail::rbm_desc("rbm_cd_workspace", a.m, a.nv, a.nh); };
  detail::check_rbm_shape(d, a.m, a.nv, a.nh);
  CUAE_CHECK(a.floats, d() + ": floats must be non-null");
}

inline void validate(const RbmCD& a) {
  const auto d = [&] {
    return detail::rbm_desc("rbm_cd", a.m, a.nv, a.nh) + "[k=" + std::to_string(a.k) +
           ", visible=" + detail::rbm_unit_name(a.visible) + ", hidden=" + detail::rbm_unit_name(a.hidden) +
           (a.sample_visible ? ", sample_visible" : "") + "]";
  };
  detail::check_rbm_shape(d, a.m, a.nv, a.nh);
  CUAE_CHECK(a.k >= 1, d() + ": k (Gibbs steps) must be >= 1");
  CUAE_CHECK(detail::rbm_unit_ok(a.visible) && detail::rbm_unit_ok(a.hidden), d() + ": unknown unit kind");
  CUAE_CHECK(a.v0 && a.w && a.b && a.c, d() + ": v0, w, b and c must be non-null");
  const std::size_t need = rbm_cd_workspace_floats(a.m, a.nv, a.nh);
  CUAE_CHECK(a.ws, d() + ": the workspace ws must be non-null");
  CUAE_CHECK(a.ws_floats >= need, d() + ": workspace of " + std::to_string(a.ws_floats) + " floats, needs " +
                                      std::to_string(need) + " (rbm_cd_workspace)");
  // Outputs are written while the inputs and the workspace are still being read (dW before db and
  // dc are reduced from the chain): no output may alias an input, the workspace or another output.
  const void* ins[] = {a.v0, a.w, a.b, a.c, a.ws};
  const void* outs[] = {a.dw, a.db, a.dc, a.recon};
  for (const void* o : outs) {
    if (!o) continue;
    for (const void* i : ins) CUAE_CHECK(o != i, d() + ": an output may not alias an input or the workspace");
  }
  for (int i = 0; i < 4; ++i)
    for (int j = i + 1; j < 4; ++j)
      CUAE_CHECK(!outs[i] || outs[i] != outs[j], d() + ": two outputs may not share a buffer");
}

inline void validate(const RbmFreeEnergy& a) {
  const auto d = [&] {
    return detail::rbm_desc("rbm_free_energy", a.m, a.nv, a.nh) + "[visible=" + detail::rbm_unit_name(a.visible) +
           ", hidden=" + detail::rbm_unit_name(a.hidden) + "]";
  };
  detail::check_rbm_shape(d, a.m, a.nv, a.nh);
  CUAE_CHECK(detail::rbm_unit_ok(a.visible) && detail::rbm_unit_ok(a.hidden), d() + ": unknown unit kind");
  CUAE_CHECK(a.v && a.w && a.b && a.c && a.fe, d() + ": v, w, b, c and fe must be non-null");
  CUAE_CHECK(a.ws, d() + ": the m·nh-float workspace ws must be non-null");
  const void* ins[] = {a.v, a.w, a.b, a.c, a.ws};
  for (const void* i : ins) CUAE_CHECK(a.fe != i, d() + ": fe may not alias an input or the workspace");
}

}  // namespace cuae::kern
