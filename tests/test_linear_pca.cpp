// A linear autoencoder (identity activations, MSE) with a k-dimensional code converges to PCA's
// subspace (Baldi & Hornik 1989): on Fashion-MNIST its test MSE comes within 2% of PCA with k
// components, and the principal angles between its decoder's column space and the top k
// principal directions are small.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "cuae/autoencoder.hpp"
#include "cuae/config.hpp"

namespace cuae {
namespace {

// Orthonormal basis (columns) of the k columns of A [d, k] (row-major, double), by modified
// Gram-Schmidt run twice (enough for the condition numbers met here).
std::vector<double> orthonormal_columns(std::vector<double> a, std::int64_t d, std::int64_t k) {
  for (int pass = 0; pass < 2; ++pass)
    for (std::int64_t j = 0; j < k; ++j) {
      for (std::int64_t p = 0; p < j; ++p) {
        double dot = 0.0;
        for (std::int64_t i = 0; i < d; ++i) dot += a[i * k + j] * a[i * k + p];
        for (std::int64_t i = 0; i < d; ++i) a[i * k + j] -= dot * a[i * k + p];
      }
      double norm = 0.0;
      for (std::int64_t i = 0; i < d; ++i) norm += a[i * k + j] * a[i * k + j];
      norm = std::sqrt(norm);
      for (std::int64_t i = 0; i < d; ++i) a[i * k + j] /= norm;
    }
  return a;
}

// Singular values of a small square matrix M [k, k] (double): square roots of the eigenvalues of
// MᵀM by cyclic Jacobi rotations.
std::vector<double> singular_values(const std::vector<double>& m, std::int64_t k) {
  std::vector<double> s(static_cast<std::size_t>(k * k), 0.0);
  for (std::int64_t i = 0; i < k; ++i)
    for (std::int64_t j = 0; j < k; ++j)
      for (std::int64_t r = 0; r < k; ++r) s[i * k + j] += m[r * k + i] * m[r * k + j];
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0.0;
    for (std::int64_t p = 0; p < k; ++p)
      for (std::int64_t q = p + 1; q < k; ++q) off += s[p * k + q] * s[p * k + q];
    if (off < 1e-30) break;
    for (std::int64_t p = 0; p < k; ++p)
      for (std::int64_t q = p + 1; q < k; ++q) {
        const double apq = s[p * k + q];
        if (std::abs(apq) < 1e-300) continue;
        const double theta = (s[q * k + q] - s[p * k + p]) / (2.0 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1.0));
        const double c = 1.0 / std::sqrt(t * t + 1.0), sn = t * c;
        for (std::int64_t r = 0; r < k; ++r) {  // columns p, q
          const double sp = s[r * k + p], sq = s[r * k + q];
          s[r * k + p] = c * sp - sn * sq;
          s[r * k + q] = sn * sp + c * sq;
        }
        for (std::int64_t r = 0; r < k; ++r) {  // rows p, q
          const double sp = s[p * k + r], sq = s[q * k + r];
          s[p * k + r] = c * sp - sn * sq;
          s[q * k + r] = sn * sp + c * sq;
        }
      }
  }
  std::vector<double> out;
  for (std::int64_t i = 0; i < k; ++i) out.push_back(std::sqrt(std::max(0.0, s[i * k + i])));
  return out;
}

TEST(LinearAutoencoder, ConvergesToThePcaSubspace) {
  const std::string dir = default_fashion_mnist_dir();
  if (!std::filesystem::exists(std::filesystem::path(dir) / "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)";
  constexpr std::int64_t k = 8, d = 784;
  Config cfg = parse_config(R"(
[model]
type = "deep"
layers = [784, 8]
activation = "identity"
code_activation = "identity"
output_activation = "identity"
[loss]
type = "mse"
reduction = "sum"
[optimizer]
type = "adam"
lr = 2e-3
[train]
batch_size = 100
epochs = 40
device = "cpu"
log_every = 1000
)",
                            "linear.toml");
  const Dataset train = subset(load_fashion_mnist(dir, true), 0, 4000);
  const Dataset test = subset(load_fashion_mnist(dir, false), 0, 1000);
  Autoencoder ae(cfg, Device::CPU);
  ae.train(train);
  const double mse_ae = ae.evaluate(test.images).mse_per_pixel;
  const Pca pca = fit_pca(train.images, static_cast<int>(k));
  const double mse_pca = reconstruction_metrics(test.images, pca_reconstruct(pca, test.images)).mse_per_pixel;
  RecordProperty("mse_linear_ae", std::to_string(mse_ae));
  RecordProperty("mse_pca", std::to_string(mse_pca));
  EXPECT_LT(mse_ae, 1.02 * mse_pca) << "linear AE " << mse_ae << " vs PCA " << mse_pca;
  // PCA is the best rank-k linear reconstruction of the training set; on test images the AE may
  // be marginally better, but not by much.
  EXPECT_GT(mse_ae, 0.95 * mse_pca);

  // Principal angles between the decoder's column space (decoder.0.weight [784, k]) and the top k
  // principal directions (pca.components [k, 784]).
  Tensor w;
  {
    const std::string ckpt = (std::filesystem::temp_directory_path() / "cuae_linear_pca.safetensors").string();
    ae.save(ckpt);
    Autoencoder back = Autoencoder::load(ckpt, Device::CPU);
    std::filesystem::remove(ckpt);
    (void)back;
  }
  // The decoder weight, read through the public encode/decode pair: decode(e_j) − decode(0) is
  // column j of the decoder's weight.
  Tensor basis({k + 1, k});
  std::fill(basis.f32(), basis.f32() + (k + 1) * k, 0.0f);
  for (std::int64_t j = 0; j < k; ++j) basis.f32()[(j + 1) * k + j] = 1.0f;
  const Tensor cols = ae.decode(basis);
  std::vector<double> a(static_cast<std::size_t>(d * k));
  for (std::int64_t j = 0; j < k; ++j)
    for (std::int64_t i = 0; i < d; ++i)
      a[static_cast<std::size_t>(i * k + j)] = static_cast<double>(cols.f32()[(j + 1) * d + i]) - cols.f32()[i];
  const std::vector<double> q = orthonormal_columns(a, d, k);
  std::vector<double> m(static_cast<std::size_t>(k * k), 0.0);  // Qᵀ·Uᵀ
  for (std::int64_t r = 0; r < k; ++r)
    for (std::int64_t c = 0; c < k; ++c)
      for (std::int64_t i = 0; i < d; ++i)
        m[static_cast<std::size_t>(r * k + c)] += q[static_cast<std::size_t>(i * k + r)] * pca.components.f32()[c * d + i];
  const std::vector<double> cosines = singular_values(m, k);
  double largest = 0.0;
  for (double cs : cosines) largest = std::max(largest, std::acos(std::min(1.0, cs)) * 180.0 / M_PI);
  RecordProperty("largest_principal_angle_deg", std::to_string(largest));
  // The stated bound: every principal angle below 10 degrees.
  EXPECT_LT(largest, 10.0) << "largest principal angle " << largest << " degrees";
}

}  // namespace
}  // namespace cuae
