// Argument validation of the variational-autoencoder ops (reparameterize, reparameterize_backward,
// gaussian_kl), shared by both backends as kernels/validate.hpp is for the others: every entry calls
// validate(args) first, so a bad call fails the same way on either device with a cuae::Error naming
// the op and its sizes, before any memory is touched or any kernel is enqueued.
//
// Sizes: stats is the largest tensor, m·2d values; it must stay below 2^31 so every element index
// of every tensor of these ops fits the kernels' 32-bit arithmetic.
//
// Aliasing: an output that is the same pointer as an input is rejected. The CUDA kernels read a
// row of stats from threads other than the one that writes the corresponding output, so an
// in-place call would race (and on the CPU it would read values it had already overwritten).
// Partial overlaps are the caller's responsibility, as for every op.
//
// Header-only, free of CUDA; host code only.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "cuae/error.hpp"
#include "kernels/ops.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern {

namespace detail {

inline std::string vae_desc(const char* op, int m, int d) {
  return std::string(op) + "(m=" + std::to_string(m) + ", d=" + std::to_string(d) + ", stats [" + std::to_string(m) +
         "," + std::to_string(2 * static_cast<std::int64_t>(d)) + "])";
}

// m, d positive and m·2d (the stats tensor) below 2^31; checked as m <= max / 2d, which cannot
// overflow, rather than as the product.
template <class Desc>
void check_vae_shape(const Desc& desc, int m, int d) {
  CUAE_CHECK(m > 0 && d > 0, desc() + ": m and d must be positive");
  CUAE_CHECK(static_cast<std::int64_t>(m) <= kMaxElements / (2 * static_cast<std::int64_t>(d)),
             desc() + ": stats [m, 2d] would exceed 2^31-1 elements");
}

}  // namespace detail

inline void validate(const Reparameterize& a) {
  const auto d = [&] { return detail::vae_desc("reparameterize", a.m, a.d); };
  detail::check_vae_shape(d, a.m, a.d);
  CUAE_CHECK(a.stats && a.z, d() + ": stats and z must be non-null");
  CUAE_CHECK(a.z != a.stats, d() + ": z may not alias stats");
  if (a.eps) CUAE_CHECK(a.eps != a.stats && a.eps != a.z, d() + ": eps may not alias stats or z");
}

inline void validate(const ReparameterizeBackward& a) {
  const auto d = [&] { return detail::vae_desc("reparameterize_backward", a.m, a.d); };
  detail::check_vae_shape(d, a.m, a.d);
  CUAE_CHECK(a.dz && a.stats && a.dstats, d() + ": dz, stats and dstats must be non-null");
  CUAE_CHECK(a.dstats != a.stats && a.dstats != a.dz, d() + ": dstats may not alias stats or dz");
}

inline void validate(const GaussianKL& a) {
  const auto d = [&] {
    return detail::vae_desc("gaussian_kl", a.m, a.d) + ", weight=" + std::to_string(a.weight);
  };
  detail::check_vae_shape(d, a.m, a.d);
  CUAE_CHECK(a.stats && a.loss, d() + ": stats and loss must be non-null");
  // A KL weight is a schedule's non-negative factor (0 while a warm-up holds it off).
  CUAE_CHECK(std::isfinite(a.weight) && a.weight >= 0.0f, d() + ": weight must be finite and >= 0");
  if (a.grad) CUAE_CHECK(a.grad != a.stats, d() + ": grad may not alias stats");
}

}  // namespace cuae::kern
