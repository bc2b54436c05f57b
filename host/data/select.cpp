// select_classes: the training set of a one-class model (an anomaly detector's "normal" data),
// optionally contaminated with a chosen share of the other classes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <string>

#include "cuae/data.hpp"

namespace cuae {

namespace {

// Fisher-Yates on the first `take` positions, with mt19937_64 (specified exactly) and plain
// modulo draws: the same seed gives the same selection with every standard library.
void partial_shuffle(std::vector<std::int64_t>& v, std::size_t take, std::mt19937_64& gen) {
  for (std::size_t i = 0; i < take && i + 1 < v.size(); ++i) {
    const std::size_t j = i + static_cast<std::size_t>(gen() % (v.size() - i));
    std::swap(v[i], v[j]);
  }
}

std::string class_list(const std::vector<int>& classes) {
  std::string s;
  for (const int c : classes) s += (s.empty() ? "" : ", ") + std::to_string(c);
  return s;
}

}  // namespace

Dataset select_classes(const Dataset& d, const std::vector<int>& classes, double contamination,
                       std::uint64_t seed) {
  CUAE_REQUIRE(d.has_labels(), "[data] classes: " + d.name + " has no labels to select classes by");
  CUAE_REQUIRE(!classes.empty(), "[data] classes: no class given");
  CUAE_REQUIRE(contamination >= 0.0 && contamination < 1.0,
               "[data] contamination " + std::to_string(contamination) + " is not a fraction in [0, 1)");
  const std::set<std::int64_t> wanted(classes.begin(), classes.end());
  std::vector<std::int64_t> normal, other;
  std::set<std::int64_t> seen;
  const float* labels = d.labels.f32();
  for (std::int64_t i = 0; i < d.size(); ++i) {
    const auto c = static_cast<std::int64_t>(labels[i]);
    if (wanted.count(c)) {
      normal.push_back(i);
      seen.insert(c);
    } else {
      other.push_back(i);
    }
  }
  for (const std::int64_t c : wanted)
    CUAE_REQUIRE(seen.count(c), "[data] classes: class " + std::to_string(c) + " has no images in " + d.name);
  const auto n_other = static_cast<std::size_t>(
      std::llround(contamination * static_cast<double>(normal.size()) / (1.0 - contamination)));
  CUAE_REQUIRE(n_other <= other.size(), "[data] contamination " + std::to_string(contamination) + " needs " +
                                            std::to_string(n_other) + " images of other classes, " + d.name + " has " +
                                            std::to_string(other.size()));
  std::vector<std::int64_t> rows = normal;
  if (n_other > 0) {
    std::mt19937_64 gen(seed ^ 0x5eed0c1a55e5ull);
    partial_shuffle(other, n_other, gen);
    // Each contaminating image goes to a position drawn uniformly among the slots so far, so the
    // mix is spread over the set (the validation split, taken from the end, is contaminated alike).
    for (std::size_t i = 0; i < n_other; ++i) {
      const std::size_t at = static_cast<std::size_t>(gen() % (rows.size() + 1));
      rows.insert(rows.begin() + static_cast<std::ptrdiff_t>(at), other[i]);
    }
  }
  const std::int64_t n = static_cast<std::int64_t>(rows.size()), width = d.images.dim(1);
  Dataset out = d;
  out.images = Tensor({n, width});
  out.labels = Tensor({n});
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t r = rows[static_cast<std::size_t>(i)];
    std::memcpy(out.images.f32() + i * width, d.images.f32() + r * width, static_cast<std::size_t>(width) * sizeof(float));
    out.labels.f32()[i] = labels[r];
  }
  out.name = d.name + "[classes " + class_list(classes) +
             (contamination > 0.0 ? ", contamination " + std::to_string(contamination).substr(0, 6) : "") + "]";
  return out;
}

}  // namespace cuae
