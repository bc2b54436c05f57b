// Analyses of what a model produces: how varied a set of images is, how far each lies from its
// nearest neighbour in another set, and a scatter plot of 2-D codes. Host tensors in, plain
// values out; the program's sample and scatter commands print and draw them.
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

// A scatter plot of 2-D codes [N, 2] as an RGB image size x size, each point a 3x3 dot coloured by
// its label (labels [N], class k drawn in colour k mod 10; an empty Tensor draws every point in
// the first colour). The plotted range of each axis is its 0.5th to 99.5th percentile, so a few
// outliers do not squeeze the rest into a corner; points outside sit on the border.
// Throws cuae::Error for no codes, codes that are not [N, 2], labels of another length, or a
// non-finite code (naming the first such row and how many there are).
struct CUAE_API ScatterImage {
  std::vector<std::uint8_t> rgb;  // size * size * 3, row-major, top row first
  int size = 0;
  float lo[2] = {0.0f, 0.0f}, hi[2] = {1.0f, 1.0f};  // the plotted range of x and y
};
CUAE_API ScatterImage render_scatter(const Tensor& codes, const Tensor& labels, int size = 600);

}  // namespace cuae
