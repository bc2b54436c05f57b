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

}  // namespace cuae
