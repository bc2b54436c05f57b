// cuae/analysis.hpp: pixel variance, nearest-neighbour distances and the scatter rasteriser,
// against direct computations, and their refusals of bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "cuae/analysis.hpp"

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

TEST(Analysis, ScatterDrawsEachLabelInItsColour) {
  cuae::Tensor codes({2, 2}), labels({2});
  codes.f32()[0] = 0.0f, codes.f32()[1] = 0.0f;  // bottom left
  codes.f32()[2] = 1.0f, codes.f32()[3] = 1.0f;  // top right
  labels.f32()[0] = 3.0f, labels.f32()[1] = -1.0f;  // a negative label must not index outside the palette
  const cuae::ScatterImage img = cuae::render_scatter(codes, labels, 100);
  ASSERT_EQ(img.rgb.size(), 100u * 100u * 3u);
  auto px = [&](int x, int y) { return &img.rgb[(static_cast<std::size_t>(y) * 100 + x) * 3]; };
  const std::uint8_t* bl = px(10, 89);  // margin 10: (0, 0) lands at x = 10, y = 100 - 1 - 10
  EXPECT_EQ(bl[0], 214);                // label 3's colour
  const std::uint8_t* tr = px(89, 10);
  EXPECT_NE(tr[0] + tr[1] + tr[2], 3 * 255);  // drawn, not background
  EXPECT_EQ(px(50, 50)[0], 255);             // the middle is background
}

TEST(Analysis, ScatterRefusesNonFiniteOrMissingCodes) {
  cuae::Tensor codes({3, 2});
  for (int i = 0; i < 6; ++i) codes.f32()[i] = 0.5f;
  codes.f32()[3] = std::numeric_limits<float>::quiet_NaN();
  try {
    cuae::render_scatter(codes, cuae::Tensor(), 64);
    FAIL() << "a NaN code was drawn";
  } catch (const cuae::Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(cuae::render_scatter(cuae::Tensor({0, 2}), cuae::Tensor(), 64), cuae::Error);
  EXPECT_THROW(cuae::render_scatter(random_rows(4, 3, 1), cuae::Tensor(), 64), cuae::Error);
  EXPECT_THROW(cuae::render_scatter(random_rows(4, 2, 1), cuae::Tensor({3}), 64), cuae::Error);
}

}  // namespace
