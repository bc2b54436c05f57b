// Analyses of what a model produces: how varied a set of images is, and how far each lies from its
// nearest neighbour in another set. Host tensors in, plain values out (cuae sample prints them;
// pictures are drawn by cuae/figures.hpp).
#pragma once

#include <cstdint>
#include <vector>

#include "cuae/error.hpp"
#include "cuae/tensor.hpp"

namespace cuae {

// The mean over pixels of each pixel's variance across the rows of images [N, D] (N >= 1).
CUAE_API double pixel_variance(const Tensor& images);

// For each row of queries [Q, D]: the squared Euclidean distance to its nearest row of
// reference [R, D] (R >= 1), divided by D: a mean squared distance per pixel. Exhaustive search,
// parallel over the queries.
CUAE_API std::vector<double> nearest_distances(const Tensor& queries, const Tensor& reference);

// Image quality of images [N, H·W·C] against reference [N, H·W·C] (host, values in [0, 1], channels
// last), one value per image.
// PSNR in dB: 10·log10(1 / MSE), the MSE floored at 1e-10 (so at most 100 dB for identical images).
CUAE_API std::vector<double> psnr(const Tensor& reference, const Tensor& images);
// SSIM (Wang, Bovik, Sheikh & Simoncelli, 2004) as scikit-image computes it by default: 7×7 uniform
// windows wholly inside the image, K1 = 0.01, K2 = 0.03, data range 1, sample (N − 1) variances;
// the mean over windows and channels. Images must be at least 7×7. Throws cuae::Error for
// mismatched shapes.
CUAE_API std::vector<double> ssim(const Tensor& reference, const Tensor& images, int h, int w, int channels);
// The mean of a score over images (0 for none).
CUAE_API double mean_of(const std::vector<double>& v);

// The k nearest rows of reference [R, D] to each row of queries [Q, D] by squared Euclidean
// distance, nearest first: index[q·k + j] and distance[q·k + j] (ties: the lower index first).
// Distances are ‖x‖² + ‖y‖² − 2·x·y with the products by BLAS in blocks of queries (fast on
// 60000 × 784, accurate to float rounding, clamped at 0). Throws cuae::Error for empty or
// mismatched sets or k outside [1, R].
struct CUAE_API Neighbours {
  int k = 0;
  std::vector<std::int64_t> index;
  std::vector<float> distance;
};
CUAE_API Neighbours nearest_neighbours(const Tensor& queries, const Tensor& reference, int k);

}  // namespace cuae
