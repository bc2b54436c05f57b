// cuae/anomaly.hpp against definitions computed the slow way: AUROC as the share of
// (anomaly, normal) pairs ordered correctly (ties 1/2), average precision as the mean over the
// anomalies of the precision at their score's threshold, a known small case, and the threshold's
// false-positive rate on the normal scores it was chosen on.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "cuae/anomaly.hpp"

namespace {

double pairwise_auroc(const std::vector<double>& s, const std::vector<bool>& a) {
  double good = 0, pairs = 0;
  for (std::size_t i = 0; i < s.size(); ++i)
    for (std::size_t j = 0; j < s.size(); ++j)
      if (a[i] && !a[j]) {
        good += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
        pairs += 1;
      }
  return good / pairs;
}

// For each anomaly: the precision among the examples scoring at least as high (its threshold).
double direct_average_precision(const std::vector<double>& s, const std::vector<bool>& a) {
  double sum = 0;
  int anomalies = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (!a[i]) continue;
    ++anomalies;
    double above = 0, tp = 0;
    for (std::size_t j = 0; j < s.size(); ++j)
      if (s[j] >= s[i]) above += 1, tp += a[j];
    sum += tp / above;
  }
  return sum / anomalies;
}

TEST(Anomaly, KnownSmallCase) {
  // Anomalies at 0.35 and 0.8, normals at 0.1 and 0.4: 3 of 4 pairs ordered (AUROC 0.75); precision
  // 1 at 0.8, 2/3 at 0.35 (AP 5/6).
  const auto m = cuae::detection_metrics({0.1, 0.4, 0.35, 0.8}, {false, false, true, true});
  EXPECT_DOUBLE_EQ(m.auroc, 0.75);
  EXPECT_NEAR(m.average_precision, 5.0 / 6.0, 1e-15);
  EXPECT_EQ(m.anomalies, 2);
  EXPECT_EQ(m.normals, 2);
}

TEST(Anomaly, MatchesPairwiseDefinitionsWithTies) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<double> s;
    std::vector<bool> a;
    const int n = 3 + trial * 7;
    for (int i = 0; i < n; ++i) {
      const bool anomaly = i % 3 == 0;
      // Coarse scores, so ties are common; anomalies drawn a little higher.
      s.push_back(static_cast<double>(rng() % 8) + (anomaly ? 1.0 : 0.0));
      a.push_back(anomaly);
    }
    const auto m = cuae::detection_metrics(s, a);
    EXPECT_NEAR(m.auroc, pairwise_auroc(s, a), 1e-12) << "trial " << trial;
    EXPECT_NEAR(m.average_precision, direct_average_precision(s, a), 1e-12) << "trial " << trial;
    // The ROC curve's trapezoids give the same area.
    const auto roc = cuae::roc_curve(s, a);
    double area = 0;
    for (std::size_t k = 1; k < roc.size(); ++k)
      area += (roc[k].first - roc[k - 1].first) * (roc[k].second + roc[k - 1].second) / 2;
    EXPECT_NEAR(area, m.auroc, 1e-12);
    EXPECT_EQ(roc.back(), (std::pair<double, double>{1.0, 1.0}));
  }
}

TEST(Anomaly, ThresholdKeepsTheFalsePositiveRateOnTheNormalScores) {
  std::mt19937 rng(9);
  std::normal_distribution<double> g;
  std::vector<double> normal(1000);
  for (double& v : normal) v = g(rng);
  for (double fpr : {0.0, 0.01, 0.05, 0.2, 0.5}) {
    const double t = cuae::threshold_at_fpr(normal, fpr);
    double above = 0;
    for (double v : normal) above += v > t;
    // No ties in these scores: exactly floor(fpr·n) lie above the smallest threshold that keeps the rate.
    EXPECT_EQ(above, std::floor(fpr * 1000.0)) << fpr;
  }
  EXPECT_EQ(cuae::threshold_at_fpr({1, 2, 2, 2}, 0.5), 2.0);  // ties: none of the 2s is strictly above
}

TEST(Anomaly, RefusesWhatHasNoAnswer) {
  EXPECT_THROW(cuae::detection_metrics({1, 2}, {true, true}), cuae::Error);
  EXPECT_THROW(cuae::detection_metrics({1, 2}, {true}), cuae::Error);
  EXPECT_THROW(cuae::detection_metrics({1, std::nan("")}, {true, false}), cuae::Error);
  EXPECT_THROW(cuae::roc_curve({}, {}), cuae::Error);
  EXPECT_THROW(cuae::threshold_at_fpr({}, 0.1), cuae::Error);
  EXPECT_THROW(cuae::threshold_at_fpr({1, 2}, 1.0), cuae::Error);
  EXPECT_THROW(cuae::threshold_at_fpr({1, std::numeric_limits<double>::infinity()}, 0.1), cuae::Error);
}

}  // namespace
