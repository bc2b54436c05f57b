// Masks, projection inpainting and its error on the missing pixels (cuae/inpaint.hpp).
#include "cuae/inpaint.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include "cuae/images.hpp"

namespace cuae {

namespace {

void check_like(const char* fn, const Tensor& a, const Tensor& b) {
  CUAE_REQUIRE(a.device() == Device::CPU && b.device() == Device::CPU && a.rank() == 2 && a.shape() == b.shape(),
               std::string(fn) + ": images " + shape_str(a.shape()) + " and masks " + shape_str(b.shape()) +
                   " must be host [N, D] tensors of one shape");
}

}  // namespace

Tensor make_masks(std::int64_t n, int h, int w, int channels, const MaskOptions& o) {
  CUAE_REQUIRE(n >= 0 && h >= 1 && w >= 1 && channels >= 1, "make_masks: bad image size");
  const std::int64_t d = static_cast<std::int64_t>(h) * w * channels;
  Tensor m({n, d});
  std::fill(m.f32(), m.f32() + n * d, 1.0f);
  std::mt19937_64 gen(o.seed);
  const auto uniform = [&] { return static_cast<double>(gen() >> 11) * 0x1.0p-53; };
  std::vector<float> file;
  if (o.kind == MaskKind::File) {
    ImageSpec spec;
    spec.channels = 1;
    spec.height = h;
    spec.width = w;
    spec.fit = ImageSpec::Fit::Resize;
    file = decode_image(o.file, spec);
    const auto known = std::count_if(file.begin(), file.end(), [](float v) { return v >= 0.5f; });
    CUAE_REQUIRE(known > 0 && known < static_cast<std::int64_t>(file.size()),
                 "mask " + o.file + ": " + (known == 0 ? "every pixel is missing (all dark)" : "no pixel is missing (no dark pixel)"));
  } else if (o.kind == MaskKind::Pixels || o.rect.empty()) {
    CUAE_REQUIRE(o.fraction > 0.0f && o.fraction < 1.0f,
                 "mask fraction " + std::to_string(o.fraction) + " is not in (0, 1)");
  }
  int rh = 0, rw = 0;
  if (o.kind == MaskKind::Rectangle) {
    if (!o.rect.empty()) {
      CUAE_REQUIRE(o.rect.size() == 4 && o.rect[0] >= 0 && o.rect[1] >= 0 && o.rect[2] >= 1 && o.rect[3] >= 1 &&
                       o.rect[0] + o.rect[2] <= h && o.rect[1] + o.rect[3] <= w && o.rect[2] * o.rect[3] < h * w,
                   "mask rectangle: expected top,left,height,width inside the " + std::to_string(h) + "×" +
                       std::to_string(w) + " image, leaving some pixels known");
      rh = o.rect[2];
      rw = o.rect[3];
    } else {
      rh = std::clamp(static_cast<int>(std::lround(h * std::sqrt(o.fraction))), 1, h);
      rw = std::clamp(static_cast<int>(std::lround(w * std::sqrt(o.fraction))), 1, w);
      if (rh == h && rw == w) rw = w - 1;
    }
  }
  for (std::int64_t i = 0; i < n; ++i) {
    float* row = m.f32() + i * d;
    int top = 0, left = 0;
    if (o.kind == MaskKind::Rectangle) {
      top = o.rect.empty() ? static_cast<int>(gen() % static_cast<std::uint64_t>(h - rh + 1)) : o.rect[0];
      left = o.rect.empty() ? static_cast<int>(gen() % static_cast<std::uint64_t>(w - rw + 1)) : o.rect[1];
    }
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        bool missing = false;
        switch (o.kind) {
          case MaskKind::Rectangle: missing = y >= top && y < top + rh && x >= left && x < left + rw; break;
          case MaskKind::Pixels: missing = uniform() < o.fraction; break;
          case MaskKind::File: missing = file[static_cast<std::size_t>(y * w + x)] < 0.5f; break;
        }
        if (missing)
          for (int c = 0; c < channels; ++c) row[(y * w + x) * channels + c] = 0.0f;
      }
  }
  return m;
}

Tensor inpaint(const std::function<Tensor(const Tensor&)>& reconstruct, const Tensor& images, const Tensor& masks,
               const Tensor& fill, int iterations) {
  check_like("inpaint", images, masks);
  const std::int64_t n = images.dim(0), d = images.dim(1);
  CUAE_REQUIRE(fill.rank() == 1 && fill.dim(0) == d, "inpaint: the fill has " + shape_str(fill.shape()) +
                                                         " values for images of " + std::to_string(d));
  CUAE_REQUIRE(iterations >= 1, "inpaint: iterations must be >= 1");
  Tensor x({n, d});
  const auto put_back = [&](const float* estimate, bool per_row) {
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < d; ++j) {
        const std::int64_t k = i * d + j;
        const float e = per_row ? std::clamp(estimate[k], 0.0f, 1.0f) : estimate[j];
        x.f32()[k] = masks.f32()[k] != 0.0f ? images.f32()[k] : e;
      }
  };
  put_back(fill.f32(), false);
  for (int t = 0; t < iterations; ++t) {
    const Tensor r = reconstruct(x);
    CUAE_REQUIRE(r.shape() == x.shape() && r.device() == Device::CPU, "inpaint: the reconstruction has shape " +
                                                                          shape_str(r.shape()) + ", not " + shape_str(x.shape()));
    put_back(r.f32(), true);
  }
  return x;
}

InpaintError missing_pixel_error(const Tensor& originals, const Tensor& filled, const Tensor& masks) {
  check_like("missing_pixel_error", originals, masks);
  check_like("missing_pixel_error", filled, masks);
  double se = 0.0;
  std::int64_t missing = 0;
  for (std::int64_t k = 0; k < originals.numel(); ++k)
    if (masks.f32()[k] == 0.0f) {
      const double e = static_cast<double>(originals.f32()[k]) - filled.f32()[k];
      se += e * e;
      ++missing;
    }
  CUAE_REQUIRE(missing > 0, "missing_pixel_error: the masks leave no pixel missing");
  InpaintError r;
  r.missing = missing;
  r.mse = se / static_cast<double>(missing);
  r.psnr = 10.0 * std::log10(1.0 / std::max(r.mse, 1e-10));
  return r;
}

}  // namespace cuae
