// cuae/analysis.hpp (pixel variance, nearest-neighbour distances) against direct computations,
// and cuae/figures.hpp's pictures read back; both refuse bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "cuae/analysis.hpp"
#include "cuae/figures.hpp"
#include "cuae/image.hpp"

namespace {

cuae::Tensor random_rows(std::int64_t n, std::int64_t d, unsigned seed) {
  cuae::Tensor t({n, d});
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = u(rng);
  return t;
}

TEST(Analysis, PixelVarianceMatchesTwoPassVariance) {
  const cuae::Tensor x = random_rows(37, 13, 1);
  double expect = 0.0;
  for (int p = 0; p < 13; ++p) {
    double m = 0.0;
    for (int i = 0; i < 37; ++i) m += x.f32()[i * 13 + p];
    m /= 37.0;
    double v = 0.0;
    for (int i = 0; i < 37; ++i) v += (x.f32()[i * 13 + p] - m) * (x.f32()[i * 13 + p] - m);
    expect += v / 37.0;
  }
  EXPECT_NEAR(cuae::pixel_variance(x), expect / 13.0, 1e-9);
}

TEST(Analysis, NearestDistancesMatchExhaustiveSearch) {
  const cuae::Tensor q = random_rows(11, 7, 2), r = random_rows(29, 7, 3);
  const auto got = cuae::nearest_distances(q, r);
  ASSERT_EQ(got.size(), 11u);
  for (int i = 0; i < 11; ++i) {
    double best = std::numeric_limits<double>::infinity();
    for (int t = 0; t < 29; ++t) {
      double e = 0.0;
      for (int p = 0; p < 7; ++p) {
        const double d = static_cast<double>(q.f32()[i * 7 + p]) - r.f32()[t * 7 + p];
        e += d * d;
      }
      best = std::min(best, e);
    }
    EXPECT_NEAR(got[static_cast<std::size_t>(i)], best / 7.0, 1e-12) << "query " << i;
  }
  // A query that is a reference row is at distance 0.
  cuae::Tensor same({1, 7});
  std::copy(r.f32() + 5 * 7, r.f32() + 6 * 7, same.f32());
  EXPECT_EQ(cuae::nearest_distances(same, r)[0], 0.0);
}

TEST(Analysis, NearestDistancesRefuseEmptyOrMismatchedSets) {
  EXPECT_THROW(cuae::nearest_distances(random_rows(3, 4, 1), cuae::Tensor({0, 4})), cuae::Error);
  EXPECT_THROW(cuae::nearest_distances(random_rows(3, 4, 1), random_rows(3, 5, 2)), cuae::Error);
}

// The Cairo figures: each writes a PNG of the size its layout implies, draws what it is given
// (checked by reading the file back), and refuses what it cannot draw.
TEST(Figures, ScatterDrawsPointsAndRefusesNonFiniteOnes) {
  const std::string path = ::testing::TempDir() + "scatter.png";
  cuae::Tensor points({200, 2}), labels({200});
  for (int i = 0; i < 200; ++i) {
    points.f32()[2 * i] = static_cast<float>(i % 20);
    points.f32()[2 * i + 1] = static_cast<float>(i / 20);
    labels.f32()[i] = static_cast<float>(i % 3);
  }
  cuae::write_scatter_plot(path, "title", "x", "y", points, labels, {"a", "b", "c"});
  const cuae::PngImage img = cuae::read_png_pixels(path);
  EXPECT_EQ(img.width, 820);
  EXPECT_EQ(img.height, 620);
  std::int64_t coloured = 0;  // pixels far from grey: the points' colours
  for (std::size_t i = 0; i + 2 < img.pixels.size(); i += static_cast<std::size_t>(img.channels)) {
    const int r = img.pixels[i], g = img.pixels[i + 1], b = img.pixels[i + 2];
    coloured += std::max({std::abs(r - g), std::abs(g - b), std::abs(r - b)}) > 60;
  }
  EXPECT_GT(coloured, 200) << "the points were not drawn";
  points.f32()[7] = std::numeric_limits<float>::quiet_NaN();
  try {
    cuae::write_scatter_plot(path, "t", "x", "y", points, labels);
    FAIL() << "a NaN point was drawn";
  } catch (const cuae::Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(cuae::write_scatter_plot(path, "t", "x", "y", cuae::Tensor({0, 2}), cuae::Tensor()), cuae::Error);
  EXPECT_THROW(cuae::write_scatter_plot(path, "t", "x", "y", random_rows(4, 3, 1), cuae::Tensor()), cuae::Error);
  EXPECT_THROW(cuae::write_scatter_plot(path, "t", "x", "y", random_rows(4, 2, 1), cuae::Tensor({3})), cuae::Error);
}

TEST(Figures, LabelledGridScalesEveryImageUp) {
  const std::string path = ::testing::TempDir() + "grid.png";
  cuae::Tensor white({3, 8 * 6}), black({2, 8 * 6});
  for (std::int64_t i = 0; i < white.numel(); ++i) white.f32()[i] = 1.0f;
  for (std::int64_t i = 0; i < black.numel(); ++i) black.f32()[i] = 0.0f;
  cuae::write_labelled_grid(path, "grid", {{"white", white}, {"black", black}}, 8, 6, 1, 56, 2);
  const cuae::PngImage img = cuae::read_png_pixels(path);
  // 8-pixel-high images scaled by 7 to 56: two rows of 56 under the title, 4 px apart.
  EXPECT_EQ(img.height, 40 + 2 * (56 + 4) + 10);
  std::int64_t dark = 0;
  for (std::size_t i = 0; i < img.pixels.size(); i += static_cast<std::size_t>(img.channels)) dark += img.pixels[i] < 10;
  EXPECT_GE(dark, 2 * 56 * 42) << "the black images were not drawn at their scaled size";
  EXPECT_THROW(cuae::write_labelled_grid(path, "g", {{"bad", cuae::Tensor({1, 5})}}, 8, 6, 1), cuae::Error);
}

TEST(Figures, LinePlotSkipsNonFinitePointsAndNeedsOne) {
  const std::string path = ::testing::TempDir() + "lines.png";
  const double nan = std::numeric_limits<double>::quiet_NaN();
  cuae::write_line_plot(path, "loss", "epoch", "loss", {{"train", {1, 2, 3}, {3, 2, 1}}, {"val", {1, 2, 3}, {nan, 2.5, 1.5}}});
  EXPECT_EQ(cuae::read_png_pixels(path).width, 760);
  EXPECT_THROW(cuae::write_line_plot(path, "l", "x", "y", {{"none", {1}, {nan}}}), cuae::Error);
}

}  // namespace
