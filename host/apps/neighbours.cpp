// nearest_neighbours: exhaustive k-nearest-neighbour search, the inner products by BLAS.
#include <cblas.h>

#include <algorithm>
#include <string>

#include "cuae/analysis.hpp"

namespace cuae {

namespace {

std::vector<float> row_norms(const Tensor& t) {
  const std::int64_t n = t.dim(0), d = t.dim(1);
  std::vector<float> out(static_cast<std::size_t>(n));
  const float* x = t.f32();
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    double s = 0.0;
    for (std::int64_t j = 0; j < d; ++j) s += static_cast<double>(x[i * d + j]) * x[i * d + j];
    out[static_cast<std::size_t>(i)] = static_cast<float>(s);
  }
  return out;
}

}  // namespace

Neighbours nearest_neighbours(const Tensor& queries, const Tensor& reference, int k) {
  CUAE_REQUIRE(queries.rank() == 2 && reference.rank() == 2 && queries.dim(0) >= 1 && reference.dim(0) >= 1 &&
                   queries.dim(1) == reference.dim(1) && queries.dim(1) >= 1,
               "nearest_neighbours: queries " + shape_str(queries.shape()) + " and reference " +
                   shape_str(reference.shape()) + " must be non-empty [N, D] sets of the same width");
  CUAE_REQUIRE(queries.device() == Device::CPU && reference.device() == Device::CPU &&
                   queries.dtype() == DType::F32 && reference.dtype() == DType::F32,
               "nearest_neighbours: needs float32 host tensors");
  const std::int64_t q = queries.dim(0), r = reference.dim(0), d = queries.dim(1);
  CUAE_REQUIRE(k >= 1 && k <= r, "nearest_neighbours: k = " + std::to_string(k) + " with " + std::to_string(r) +
                                     " reference rows");
  Neighbours out;
  out.k = k;
  out.index.resize(static_cast<std::size_t>(q * k));
  out.distance.resize(static_cast<std::size_t>(q * k));
  const std::vector<float> qn = row_norms(queries), rn = row_norms(reference);
  // A block of queries against every reference row: about 32 MiB of products at a time.
  const std::int64_t block = std::max<std::int64_t>(1, std::min<std::int64_t>(q, (8 << 20) / r));
  std::vector<float> dots(static_cast<std::size_t>(block * r));
  for (std::int64_t b = 0; b < q; b += block) {
    const std::int64_t rows = std::min(block, q - b);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(r), static_cast<int>(d),
                1.0f, queries.f32() + b * d, static_cast<int>(d), reference.f32(), static_cast<int>(d), 0.0f, dots.data(),
                static_cast<int>(r));
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < rows; ++i) {
      // Insertion into a sorted list of the k best so far (k is small).
      std::int64_t* idx = out.index.data() + (b + i) * k;
      float* dist = out.distance.data() + (b + i) * k;
      int have = 0;
      const float* row = dots.data() + i * r;
      for (std::int64_t t = 0; t < r; ++t) {
        const float e = std::max(0.0f, qn[static_cast<std::size_t>(b + i)] + rn[static_cast<std::size_t>(t)] - 2.0f * row[t]);
        if (have == k && !(e < dist[k - 1])) continue;
        int at = have < k ? have++ : k - 1;
        while (at > 0 && e < dist[at - 1]) {
          dist[at] = dist[at - 1];
          idx[at] = idx[at - 1];
          --at;
        }
        dist[at] = e;
        idx[at] = t;
      }
    }
  }
  return out;
}

}  // namespace cuae
