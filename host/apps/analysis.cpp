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

ScatterImage render_scatter(const Tensor& codes, const Tensor& labels, int size) {
  if (codes.rank() != 2 || codes.dim(1) != 2)
    throw Error("render_scatter: codes must be [N, 2], got " + shape_str(codes.shape()));
  const std::int64_t n = codes.dim(0);
  if (n == 0) throw Error("render_scatter: no codes to plot");
  if (labels.rank() != 0 && (labels.rank() != 1 || labels.dim(0) != n))
    throw Error("render_scatter: labels " + shape_str(labels.shape()) + " do not match " + std::to_string(n) + " codes");
  if (size < 32) throw Error("render_scatter: size " + std::to_string(size) + " is below 32 pixels");
  const float* c = codes.f32();
  std::int64_t bad = 0, first_bad = -1;
  for (std::int64_t i = 0; i < n; ++i)
    if (!std::isfinite(c[2 * i]) || !std::isfinite(c[2 * i + 1])) {
      if (bad++ == 0) first_bad = i;
    }
  if (bad > 0)
    throw Error("render_scatter: " + std::to_string(bad) + " of " + std::to_string(n) + " codes are not finite (the first: row " +
                std::to_string(first_bad) + ", (" + std::to_string(c[2 * first_bad]) + ", " +
                std::to_string(c[2 * first_bad + 1]) + ")); the model's weights or inputs hold NaN or Inf");

  ScatterImage img;
  img.size = size;
  for (int ax = 0; ax < 2; ++ax) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = c[i * 2 + ax];
    std::sort(v.begin(), v.end());
    img.lo[ax] = v[static_cast<std::size_t>(static_cast<double>(n - 1) * 0.005)];
    img.hi[ax] = v[static_cast<std::size_t>(static_cast<double>(n - 1) * 0.995)];
    if (!(img.hi[ax] > img.lo[ax])) img.hi[ax] = img.lo[ax] + 1.0f;
  }
  const int margin = 10;
  img.rgb.assign(static_cast<std::size_t>(size) * size * 3, 255);
  static constexpr std::uint8_t kPalette[10][3] = {{31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},
                                                   {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {127, 127, 127},
                                                   {188, 189, 34},  {23, 190, 207}};
  for (std::int64_t i = 0; i < n; ++i) {
    int colour = 0;
    if (labels.rank() == 1) {
      const float l = labels.f32()[i];
      colour = std::isfinite(l) ? static_cast<int>(std::fmod(std::fabs(std::floor(l)), 10.0f)) : 0;
    }
    const float fx = (c[i * 2] - img.lo[0]) / (img.hi[0] - img.lo[0]);
    const float fy = (c[i * 2 + 1] - img.lo[1]) / (img.hi[1] - img.lo[1]);
    const int x = margin + static_cast<int>(std::clamp(fx, 0.0f, 1.0f) * static_cast<float>(size - 2 * margin - 1));
    const int y = size - 1 - margin - static_cast<int>(std::clamp(fy, 0.0f, 1.0f) * static_cast<float>(size - 2 * margin - 1));
    for (int dy = -1; dy <= 1; ++dy)
      for (int dx = -1; dx <= 1; ++dx)
        for (int ch = 0; ch < 3; ++ch)
          img.rgb[(static_cast<std::size_t>(y + dy) * size + static_cast<std::size_t>(x + dx)) * 3 + ch] = kPalette[colour][ch];
  }
  return img;
}

}  // namespace cuae
