// The anomaly-detection pipeline below the metrics: the normal-class training set (and its
// contamination), k-nearest-neighbour search against a brute-force search, per-image errors
// against their definitions, the report's threshold chosen on held-out scores, and on real data a
// one-class detector that must beat the same model with random weights and stay near PCA.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "common.hpp"
#include "cuae/analysis.hpp"
#include "cuae/anomaly.hpp"

namespace fs = std::filesystem;

namespace cuae {
namespace {

using test::expect_error_contains;

Dataset labelled(std::int64_t n, int classes) {
  Dataset d;
  d.images = Tensor({n, 3});
  d.labels = Tensor({n});
  for (std::int64_t i = 0; i < n; ++i) {
    d.labels.f32()[i] = static_cast<float>(i % classes);
    for (int j = 0; j < 3; ++j) d.images.f32()[i * 3 + j] = static_cast<float>(i) + 0.25f * static_cast<float>(j);
  }
  d.rows = 3;
  d.cols = 1;
  d.name = "toy";
  return d;
}

TEST(SelectClasses, KeepsTheClassesInOrderWithTheirPixels) {
  const Dataset d = labelled(50, 5);
  const Dataset s = select_classes(d, {3, 1}, 0.0, 7);
  ASSERT_EQ(s.size(), 20);
  std::int64_t prev = -1;
  for (std::int64_t i = 0; i < s.size(); ++i) {
    const float l = s.labels.f32()[i];
    EXPECT_TRUE(l == 1.0f || l == 3.0f);
    const auto orig = static_cast<std::int64_t>(s.images.f32()[i * 3]);
    EXPECT_GT(orig, prev);  // the set's order is kept
    prev = orig;
    EXPECT_EQ(d.labels.f32()[orig], l);
    EXPECT_EQ(s.images.f32()[i * 3 + 2], static_cast<float>(orig) + 0.5f);
  }
  EXPECT_EQ(s.name, "toy[classes 3, 1]");
}

TEST(SelectClasses, ContaminationIsTheStatedShareDrawnBySeed) {
  const Dataset d = labelled(1000, 10);
  const Dataset a = select_classes(d, {0}, 0.2, 11), b = select_classes(d, {0}, 0.2, 11), c = select_classes(d, {0}, 0.2, 12);
  ASSERT_EQ(a.size(), 125);  // 100 of class 0 and round(0.2·100/0.8) = 25 others
  std::int64_t others = 0, others_in_tail = 0;
  for (std::int64_t i = 0; i < a.size(); ++i) {
    others += a.labels.f32()[i] != 0.0f;
    if (i >= 100) others_in_tail += a.labels.f32()[i] != 0.0f;
  }
  EXPECT_EQ(others, 25);
  EXPECT_LT(others_in_tail, 25);  // interleaved, not appended
  EXPECT_EQ(a.images.values(), b.images.values());
  EXPECT_NE(a.images.values(), c.images.values());
}

TEST(SelectClasses, BadRequestsAreNamed) {
  Dataset unlabelled = labelled(10, 2);
  unlabelled.labels = Tensor();
  expect_error_contains([&] { select_classes(unlabelled, {0}, 0.0, 1); }, "toy has no labels");
  expect_error_contains([&] { select_classes(labelled(10, 2), {4}, 0.0, 1); }, "class 4 has no images in toy");
  expect_error_contains([&] { select_classes(labelled(10, 2), {0}, 1.0, 1); }, "contamination");
  expect_error_contains([&] { select_classes(labelled(10, 2), {0}, 0.9, 1); }, "needs 45 images of other classes");
}

TEST(NearestNeighbours, MatchesABruteForceSearch) {
  std::mt19937 gen(5);
  std::normal_distribution<float> g;
  Tensor q({37, 13}), r({101, 13});
  for (std::int64_t i = 0; i < q.numel(); ++i) q.f32()[i] = g(gen);
  for (std::int64_t i = 0; i < r.numel(); ++i) r.f32()[i] = g(gen);
  const int k = 4;
  const Neighbours nb = nearest_neighbours(q, r, k);
  ASSERT_EQ(nb.index.size(), 37u * k);
  for (std::int64_t i = 0; i < 37; ++i) {
    std::vector<std::pair<double, std::int64_t>> all;
    for (std::int64_t t = 0; t < 101; ++t) {
      double e = 0;
      for (int j = 0; j < 13; ++j) e += std::pow(double(q.f32()[i * 13 + j]) - r.f32()[t * 13 + j], 2);
      all.emplace_back(e, t);
    }
    std::sort(all.begin(), all.end());
    for (int j = 0; j < k; ++j) {
      EXPECT_EQ(nb.index[static_cast<std::size_t>(i * k + j)], all[static_cast<std::size_t>(j)].second) << i << "," << j;
      EXPECT_NEAR(nb.distance[static_cast<std::size_t>(i * k + j)], all[static_cast<std::size_t>(j)].first, 1e-4);
    }
  }
  // A query that is a reference row finds it at distance 0.
  const Neighbours self = nearest_neighbours(r.rows(17, 18), r, 1);
  EXPECT_EQ(self.index[0], 17);
  EXPECT_NEAR(self.distance[0], 0.0, 1e-5);
  expect_error_contains([&] { nearest_neighbours(q, r, 102); }, "k = 102 with 101 reference rows");
  expect_error_contains([&] { nearest_neighbours(q, Tensor({5, 12}), 1); }, "the same width");
}

TEST(AnomalyScores, ErrorsFollowTheirDefinitions) {
  Tensor x({2, 3}), r({2, 3});
  const float xs[] = {0, 1, 0.5f, 1, 1, 0}, rs[] = {0.1f, 0.8f, 0.5f, 0, 1, 0.25f};
  std::copy(xs, xs + 6, x.f32());
  std::copy(rs, rs + 6, r.f32());
  const auto mse = reconstruction_errors(x, r, AnomalyScore::Mse);
  EXPECT_NEAR(mse[0], (0.01 + 0.04) / 3, 1e-7);
  EXPECT_NEAR(mse[1], (1 + 0.0625) / 3, 1e-7);
  const auto bce = reconstruction_errors(x, r, AnomalyScore::Bce);
  EXPECT_NEAR(bce[0], -std::log(0.9) - std::log(0.8) - std::log(0.5), 1e-6);
  EXPECT_NEAR(bce[1], -std::log(1e-7) - std::log(1 - 1e-7) - std::log(0.75), 1e-5);  // clamped
  const auto knn = knn_scores(x, r, 2);
  EXPECT_GT(knn[0], 0.0);
  EXPECT_EQ(parse_anomaly_score("iw"), AnomalyScore::IwBound);
  expect_error_contains([] { parse_anomaly_score("l2"); }, "expected one of mse, bce, elbo, iw, knn");
}

TEST(AnomalyScores, ReportChoosesTheThresholdOnHeldOutScores) {
  // Held-out normals 1..10: at a 10% false-positive rate, one may lie above: t = 9.
  std::vector<double> held;
  for (int i = 1; i <= 10; ++i) held.push_back(i);
  const std::vector<double> scores = {2, 9.5, 12, 8, 10, 20};
  const std::vector<bool> anomalous = {false, false, true, true, true, true};
  const AnomalyReport r = anomaly_report(scores, anomalous, held, 0.1);
  ASSERT_TRUE(r.has_threshold);
  EXPECT_EQ(r.threshold, 9.0);
  EXPECT_DOUBLE_EQ(r.recall, 3.0 / 4.0);  // 12, 10, 20 flagged; 8 missed
  EXPECT_DOUBLE_EQ(r.test_fpr, 0.5);      // 9.5 flagged
  EXPECT_FALSE(anomaly_report(scores, anomalous, {}, 0.1).has_threshold);
}

// T-shirts normal, pullovers anomalous (a hard pair: similar silhouettes), on the CPU.
TEST(AnomalyScores, OneClassModelBeatsRandomWeightsAndStaysNearPca) {
  if (!test::have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)";
  Config cfg = test::small_dense_config({784, 128, 16}, 8);
  cfg.data.classes = {0};
  const Dataset train = select_classes(load_fashion_mnist(cfg.data.dir, true), {0}, 0.0, 1);
  const Dataset test = select_classes(load_fashion_mnist(cfg.data.dir, false), {0, 2}, 0.0, 1);
  std::vector<bool> anomalous;
  for (std::int64_t i = 0; i < test.size(); ++i) anomalous.push_back(test.labels.f32()[i] == 2.0f);
  Autoencoder random(cfg, Device::CPU), trained(cfg, Device::CPU);
  trained.train(subset(train, 0, 3000));
  const double auc_random = detection_metrics(anomaly_scores(random, test.images, {}), anomalous).auroc;
  const double auc_trained = detection_metrics(anomaly_scores(trained, test.images, {}), anomalous).auroc;
  const Pca pca = fit_pca(subset(train, 0, 3000).images, 16);
  const double auc_pca = detection_metrics(pca_anomaly_scores(pca, test.images, {}), anomalous).auroc;
  AnomalyOptions knn;
  knn.score = AnomalyScore::CodeKnn;
  const Tensor codes = trained.encode(subset(train, 0, 3000).images);
  const double auc_knn = detection_metrics(anomaly_scores(trained, test.images, knn, codes), anomalous).auroc;
  std::printf("AUROC: trained %.4f, random weights %.4f, PCA-16 %.4f, code-space kNN %.4f\n", auc_trained, auc_random,
              auc_pca, auc_knn);
  EXPECT_GT(auc_trained, auc_random + 0.05);
  EXPECT_GT(auc_trained, auc_pca - 0.03);
  EXPECT_GT(auc_knn, 0.6);
  expect_error_contains([&] { anomaly_scores(trained, test.images, {AnomalyScore::Elbo, 8, 5}); }, "not variational");
}

}  // namespace
}  // namespace cuae
