// Inpainting: filling the missing pixels of images from a model of them. Masks mark what is known;
// the fill iterates projection: start from a fill (the mean training image), reconstruct, put the
// known pixels back, repeat. Works with any reconstruction (an autoencoder's, PCA's), so the
// baselines run the same procedure.
//
//   cuae::Tensor masks = cuae::make_masks(n, 28, 28, 1, {cuae::MaskKind::Rectangle, 0.25f});
//   cuae::Tensor filled = cuae::inpaint([&](const cuae::Tensor& x) { return ae.reconstruct(x); },
//                                       images, masks, mean_image, 10);
//   cuae::InpaintError e = cuae::missing_pixel_error(images, filled, masks);
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cuae/error.hpp"
#include "cuae/tensor.hpp"

namespace cuae {

enum class MaskKind {
  Rectangle,  // one rectangle per image: `rect` when given, else of area ≈ fraction at a random place
  Pixels,     // each pixel position missing with probability `fraction`
  File,       // a PNG (or JPEG) the image's size, the same for every image: dark (< 0.5) = missing
};
struct CUAE_API MaskOptions {
  MaskKind kind = MaskKind::Rectangle;
  float fraction = 0.25f;
  std::vector<int> rect;  // Rectangle: {top, left, height, width}; empty: random
  std::string file;       // File
  std::uint64_t seed = 1;
};
// Masks [n, h·w·c] (host): 1 where the pixel is known, 0 where it is missing; all channels of a
// position alike. Throws cuae::Error for a fraction outside (0, 1), a rectangle outside the image
// or empty, an unreadable mask file (naming it), or a mask with nothing missing or nothing known.
CUAE_API Tensor make_masks(std::int64_t n, int h, int w, int channels, const MaskOptions& options);

// Projection inpainting: x₀ = known pixels, fill elsewhere; x_{t+1} = known pixels, reconstruct(x_t)
// elsewhere; `iterations` reconstructions (1: the single-pass variant). fill [D] is the starting
// value of the missing pixels. Reconstructions are clamped to [0, 1].
CUAE_API Tensor inpaint(const std::function<Tensor(const Tensor&)>& reconstruct, const Tensor& images,
                        const Tensor& masks, const Tensor& fill, int iterations);

// Error on the missing pixels only (masks == 0): their mean squared error, and the PSNR of that
// mean (10·log10(1/MSE), dB; values in [0, 1]); the count of missing pixel values.
struct CUAE_API InpaintError {
  double mse = 0.0, psnr = 0.0;
  std::int64_t missing = 0;
};
CUAE_API InpaintError missing_pixel_error(const Tensor& originals, const Tensor& filled, const Tensor& masks);

}  // namespace cuae
