// PSNR and SSIM per image (cuae/analysis.hpp).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "cuae/analysis.hpp"

namespace cuae {

namespace {

void check_pair(const char* fn, const Tensor& a, const Tensor& b) {
  CUAE_REQUIRE(a.device() == Device::CPU && b.device() == Device::CPU && a.rank() == 2 && a.shape() == b.shape(),
               std::string(fn) + ": reference " + shape_str(a.shape()) + " and images " + shape_str(b.shape()) +
                   " must be host [N, D] tensors of one shape");
}

}  // namespace

double mean_of(const std::vector<double>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

std::vector<double> psnr(const Tensor& reference, const Tensor& images) {
  check_pair("psnr", reference, images);
  const std::int64_t n = images.dim(0), d = images.dim(1);
  std::vector<double> out(static_cast<std::size_t>(n));
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    double se = 0.0;
    for (std::int64_t j = 0; j < d; ++j) {
      const double e = static_cast<double>(reference.f32()[i * d + j]) - images.f32()[i * d + j];
      se += e * e;
    }
    out[static_cast<std::size_t>(i)] = 10.0 * std::log10(1.0 / std::max(se / static_cast<double>(d), 1e-10));
  }
  return out;
}

std::vector<double> ssim(const Tensor& reference, const Tensor& images, int h, int w, int channels) {
  check_pair("ssim", reference, images);
  CUAE_REQUIRE(static_cast<std::int64_t>(h) * w * channels == images.dim(1) && h >= 7 && w >= 7,
               "ssim: images of " + std::to_string(images.dim(1)) + " values are not " + std::to_string(h) + "×" +
                   std::to_string(w) + "×" + std::to_string(channels) + " (at least 7×7)");
  constexpr int win = 7;
  constexpr double np = win * win, c1 = 0.01 * 0.01, c2 = 0.03 * 0.03, cov_norm = np / (np - 1.0);
  const std::int64_t n = images.dim(0), d = images.dim(1);
  std::vector<double> out(static_cast<std::size_t>(n));
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    const float* x = reference.f32() + i * d;
    const float* y = images.f32() + i * d;
    double total = 0.0;
    std::int64_t windows = 0;
    for (int c = 0; c < channels; ++c)
      for (int r0 = 0; r0 + win <= h; ++r0)
        for (int q0 = 0; q0 + win <= w; ++q0) {
          double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
          for (int r = r0; r < r0 + win; ++r)
            for (int q = q0; q < q0 + win; ++q) {
              const double a = x[(r * w + q) * channels + c], b = y[(r * w + q) * channels + c];
              sx += a, sy += b, sxx += a * a, syy += b * b, sxy += a * b;
            }
          const double mx = sx / np, my = sy / np;
          const double vx = cov_norm * (sxx / np - mx * mx), vy = cov_norm * (syy / np - my * my),
                       vxy = cov_norm * (sxy / np - mx * my);
          total += ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
          ++windows;
        }
    out[static_cast<std::size_t>(i)] = total / static_cast<double>(windows);
  }
  return out;
}

}  // namespace cuae
