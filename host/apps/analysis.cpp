#include "cuae/analysis.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace cuae {

namespace {

void require_rows(const char* fn, const char* what, const Tensor& t) {
  if (t.rank() != 2 || t.dim(0) < 1 || t.dim(1) < 1)
    throw Error(std::string(fn) + ": " + what + " must be a non-empty [N, D] tensor, got " + shape_str(t.shape()));
}

}  // namespace

double pixel_variance(const Tensor& images) {
  require_rows("pixel_variance", "images", images);
  const std::int64_t n = images.dim(0), d = images.dim(1);
  const float* x = images.f32();
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
  for (std::int64_t p = 0; p < d; ++p) {
    double m = 0.0, m2 = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
      const double v = x[i * d + p];
      m += v;
      m2 += v * v;
    }
    m /= static_cast<double>(n);
    total += m2 / static_cast<double>(n) - m * m;
  }
  return total / static_cast<double>(d);
}

std::vector<double> nearest_distances(const Tensor& queries, const Tensor& reference) {
  require_rows("nearest_distances", "queries", queries);
  require_rows("nearest_distances", "reference", reference);
  const std::int64_t q = queries.dim(0), r = reference.dim(0), d = queries.dim(1);
  if (reference.dim(1) != d)
    throw Error("nearest_distances: queries " + shape_str(queries.shape()) + " and reference " +
                shape_str(reference.shape()) + " differ in width");
  std::vector<double> out(static_cast<std::size_t>(q));
  const float* xs = queries.f32();
  const float* ys = reference.f32();
#pragma omp parallel for schedule(dynamic, 1)
  for (std::int64_t i = 0; i < q; ++i) {
    const float* x = xs + i * d;
    double best = std::numeric_limits<double>::infinity();
    for (std::int64_t t = 0; t < r; ++t) {
      const float* y = ys + t * d;
      double e = 0.0;
      for (std::int64_t p = 0; p < d && e < best; ++p) {
        const double diff = static_cast<double>(x[p]) - y[p];
        e += diff * diff;
      }
      best = std::min(best, e);
    }
    out[static_cast<std::size_t>(i)] = best / static_cast<double>(d);
  }
  return out;
}

}  // namespace cuae
