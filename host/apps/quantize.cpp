// The uniform per-dimension code quantiser of cuae compress (cuae/compress.hpp).
#include <algorithm>
#include <cmath>
#include <string>

#include "cuae/compress.hpp"

namespace cuae {

Quantizer fit_quantizer(const Tensor& codes, int bits) {
  CUAE_REQUIRE(bits >= 1 && bits <= 16, "quantizer: bits must be 1..16, got " + std::to_string(bits));
  CUAE_REQUIRE(codes.device() == Device::CPU && codes.rank() == 2 && codes.dim(0) >= 1,
               "quantizer: codes must be a non-empty host [N, k] tensor, got " + shape_str(codes.shape()));
  const std::int64_t n = codes.dim(0), k = codes.dim(1);
  Quantizer q;
  q.bits = bits;
  q.lo.assign(static_cast<std::size_t>(k), INFINITY);
  q.hi.assign(static_cast<std::size_t>(k), -INFINITY);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < k; ++j) {
      const float v = codes.f32()[i * k + j];
      CUAE_REQUIRE(std::isfinite(v), "quantizer: code " + std::to_string(j) + " of row " + std::to_string(i) + " is not finite");
      q.lo[static_cast<std::size_t>(j)] = std::min(q.lo[static_cast<std::size_t>(j)], v);
      q.hi[static_cast<std::size_t>(j)] = std::max(q.hi[static_cast<std::size_t>(j)], v);
    }
  return q;
}

std::vector<std::uint16_t> quantize(const Quantizer& q, const Tensor& codes) {
  const auto k = static_cast<std::int64_t>(q.lo.size());
  CUAE_REQUIRE(codes.rank() == 2 && codes.dim(1) == k, "quantize: codes " + shape_str(codes.shape()) + " for a quantizer of width " + std::to_string(k));
  const double levels = std::ldexp(1.0, q.bits) - 1.0;
  std::vector<std::uint16_t> out(static_cast<std::size_t>(codes.numel()));
  for (std::int64_t i = 0; i < codes.numel(); ++i) {
    const auto j = static_cast<std::size_t>(i % k);
    const double span = static_cast<double>(q.hi[j]) - q.lo[j];
    const double t = span > 0.0 ? (codes.f32()[i] - q.lo[j]) / span : 0.0;
    out[static_cast<std::size_t>(i)] = static_cast<std::uint16_t>(std::clamp(std::nearbyint(t * levels), 0.0, levels));
  }
  return out;
}

Tensor dequantize(const Quantizer& q, const std::vector<std::uint16_t>& symbols) {
  const auto k = static_cast<std::int64_t>(q.lo.size());
  CUAE_REQUIRE(k > 0 && symbols.size() % static_cast<std::size_t>(k) == 0,
               "dequantize: " + std::to_string(symbols.size()) + " symbols are not rows of " + std::to_string(k));
  const double levels = std::ldexp(1.0, q.bits) - 1.0;
  Tensor out({static_cast<std::int64_t>(symbols.size()) / k, k});
  for (std::size_t i = 0; i < symbols.size(); ++i) {
    const std::size_t j = i % static_cast<std::size_t>(k);
    out.f32()[i] = static_cast<float>(q.lo[j] + symbols[i] * ((static_cast<double>(q.hi[j]) - q.lo[j]) / levels));
  }
  return out;
}

}  // namespace cuae
