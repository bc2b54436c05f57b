// Image quality (PSNR, SSIM) against scikit-image's values, and the feature probes: logistic
// regression and the k-NN vote on data whose answer is known, and on Fashion-MNIST a trained
// model's codes far above chance.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "common.hpp"
#include "cuae/analysis.hpp"
#include "cuae/autoencoder.hpp"
#include "cuae/probe.hpp"

namespace fs = std::filesystem;

namespace cuae {
namespace {

using test::expect_error_contains;

// A 9×11×2 image and a perturbed copy, as in the command that gave the expected values:
//   i = np.arange(198).reshape(9, 11, 2); x = ((np.sin(0.37 i) + 1) / 2).astype(np.float32)
//   y = np.clip(x + 0.2 cos(1.3 i), 0, 1).astype(np.float32)
//   skimage.metrics.structural_similarity(x, y, data_range=1.0, channel_axis=2)  -> 0.9363385
//   skimage.metrics.peak_signal_noise_ratio(x, y, data_range=1.0)                -> 18.03332746941306
TEST(Quality, PsnrAndSsimMatchScikitImage) {
  Tensor x({2, 198}), y({2, 198});
  for (int i = 0; i < 198; ++i) {
    x.f32()[i] = static_cast<float>((std::sin(i * 0.37) + 1) / 2);
    y.f32()[i] = static_cast<float>(std::clamp(static_cast<double>(x.f32()[i]) + 0.2 * std::cos(i * 1.3), 0.0, 1.0));
    x.f32()[198 + i] = y.f32()[198 + i] = x.f32()[i];  // the second image: identical
  }
  const auto s = ssim(x, y, 9, 11, 2);
  const auto p = psnr(x, y);
  EXPECT_NEAR(s[0], 0.9363385, 2e-6);
  EXPECT_NEAR(p[0], 18.03332746941306, 1e-4);
  EXPECT_DOUBLE_EQ(s[1], 1.0);
  EXPECT_DOUBLE_EQ(p[1], 100.0);
  expect_error_contains([&] { ssim(x, y, 9, 10, 2); }, "are not 9×10×2");
  expect_error_contains([&] { psnr(x, Tensor({2, 197})); }, "one shape");
}

// Three Gaussian blobs in 5-D, well apart: both probes must find them; labels by blob.
void blobs(std::int64_t n, unsigned seed, Tensor& x, std::vector<int>& labels) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> g(0.0f, 0.5f);
  x = Tensor({n, 5});
  labels.assign(static_cast<std::size_t>(n), 0);
  for (std::int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % 3);
    labels[static_cast<std::size_t>(i)] = c;
    for (int j = 0; j < 5; ++j) x.f32()[i * 5 + j] = g(gen) + (j == c ? 4.0f : 0.0f) + 100.0f * (j == 4);
  }
}

TEST(Probe, LogisticRegressionAndKnnSeparateBlobs) {
  Tensor train, test;
  std::vector<int> ltrain, ltest;
  blobs(301, 1, train, ltrain);
  blobs(97, 2, test, ltest);
  const LinearProbe lr = fit_logistic_regression(train, ltrain, 3);
  EXPECT_GT(accuracy(predict(lr, test), ltest), 0.98);
  EXPECT_LT(lr.train_loss, 0.1);
  EXPECT_GT(lr.scale.f32()[4], 0.0f);  // the offset column is standardised, not dropped
  EXPECT_GT(accuracy(knn_classify(train, ltrain, test, 5), ltest), 0.98);
  // Five steps leave the (convex) objective above where 300 bring it.
  LogisticRegressionOptions few;
  few.iterations = 5;
  EXPECT_GT(fit_logistic_regression(train, ltrain, 3, few).train_loss, lr.train_loss);
  std::vector<int> bad = ltrain;
  bad[7] = 3;
  expect_error_contains([&] { fit_logistic_regression(train, bad, 3); }, "label 3 of row 7");
  expect_error_contains([&] { fit_logistic_regression(train, std::vector<int>(301, 1), 3); }, "one class only");
  expect_error_contains([&] { accuracy({1}, {1, 2}); }, "1 predictions for 2 labels");
}

TEST(Probe, TrainedCodesPredictFashionMnistFarAboveChance) {
  if (!test::have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)";
  const Config cfg = test::small_dense_config({784, 128, 16}, 3);
  const Dataset train = subset(load_fashion_mnist(cfg.data.dir, true), 0, 4000);
  const Dataset test = subset(load_fashion_mnist(cfg.data.dir, false), 0, 1000);
  Autoencoder ae(cfg, Device::CPU);
  ae.train(train);
  const std::vector<int> ltrain = class_labels(train.labels), ltest = class_labels(test.labels);
  const Tensor ctrain = ae.encode(train.images), ctest = ae.encode(test.images);
  const double linear = accuracy(predict(fit_logistic_regression(ctrain, ltrain, 10), ctest), ltest);
  const double knn = accuracy(knn_classify(ctrain, ltrain, ctest, 5), ltest);
  std::printf("16-d codes: logistic regression %.4f, 5-NN %.4f (chance 0.1)\n", linear, knn);
  EXPECT_GT(linear, 0.65);
  EXPECT_GT(knn, 0.65);
}

}  // namespace
}  // namespace cuae
