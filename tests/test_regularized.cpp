// Regularized autoencoders on real data: each penalty must do what it is for. Every case trains
// the regularized model and the same model without the penalty (same seed, same data: a
// Fashion-MNIST training subset on the CPU backend) and compares them on held-out test images.
//
//   sparse (KL)     the penalised layer's mean activation is within 20% of ρ; without the
//                   penalty it is several times higher
//   k-sparse        exactly k nonzero codes per sample, in the training step and when encoding
//   contractive     mean ‖∂h/∂x‖²_F on test data at least 2x lower than without the penalty
//   denoising       on corrupted test inputs, the reconstruction is closer to the clean images
//                   than the plain autoencoder's
//   L1 activity     lowers the mean activation of its (ReLU) layer
//   repeatability   noise and dropout come from the counter-based generator: two runs with the
//                   same seed give bit-identical weights, another seed different ones
//   early stopping  stops when the validation loss stops improving and keeps the best epoch
//
// The sizes keep every case to seconds on two cores; the margins were measured (see each case).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "common.hpp"
#include "cuae/autoencoder.hpp"

namespace fs = std::filesystem;

namespace cuae {
namespace {

#define SKIP_WITHOUT_DATA() \
  if (!test::have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)"

const Dataset& train_set() {
  static const Dataset d = subset(load_fashion_mnist(DataConfig{}.dir, true), 0, 5000);
  return d;
}
const Dataset& test_set() {
  static const Dataset d = subset(load_fashion_mnist(DataConfig{}.dir, false), 0, 2000);
  return d;
}

// One sigmoid hidden layer of 200 units (the code), the classic single-layer regularized
// autoencoder; `extra` adds or overrides tables.
Config one_layer(const std::string& loss, int epochs, const std::string& extra = "") {
  return parse_config(R"(
[model]
layers = [784, 200]
code_activation = "sigmoid"
output_activation = "sigmoid"
[loss]
type = ")" + loss + R"("
reduction = "sum"
[optimizer]
type = "adam"
lr = 2e-3
[train]
batch_size = 100
seed = 3
device = "cpu"
epochs = )" + std::to_string(epochs) + "\n" + extra,
                      "test config");
}

Autoencoder trained(const Config& c) {
  Autoencoder ae(c, Device::CPU);
  ae.train(train_set());
  return ae;
}

double mean_of(const Tensor& t) {
  double s = 0.0;
  for (std::int64_t i = 0; i < t.numel(); ++i) s += t.f32()[i];
  return s / static_cast<double>(t.numel());
}

// Measured: ρ̂ = 0.053 with the penalty (β = 30, 20 epochs of 5000 images), 0.51 without.
TEST(Regularized, KlSparsityHoldsMeanActivationNearTarget) {
  SKIP_WITHOUT_DATA();
  const double rho = 0.05;
  Autoencoder sparse = trained(one_layer("mse", 20, "[sparsity]\ntype = \"kl\"\ntarget = 0.05\nweight = 30\n"));
  Autoencoder plain = trained(one_layer("mse", 20));
  const double with = mean_of(sparse.activations(test_set().images, "code"));
  const double without = mean_of(plain.activations(test_set().images, "code"));
  std::printf("mean activation: KL-penalised %.4f, unpenalised %.4f (target %.2f)\n", with, without, rho);
  EXPECT_NEAR(with, rho, 0.2 * rho);
  EXPECT_GT(without, 4.0 * rho);
}

// Makhzani & Frey's k-sparse autoencoder: linear code, tied weights, MSE.
TEST(Regularized, KSparseKeepsExactlyKCodesInTrainingAndEncoding) {
  SKIP_WITHOUT_DATA();
  const int k = 20;
  Config c = one_layer("mse", 5, "[sparsity]\ntype = \"ksparse\"\nk = 20\n");
  c.model.code_activation = Activation::Identity;
  c.model.tied_weights = true;
  auto count_rows = [&](const Tensor& codes, int want) {
    int bad = 0;
    for (std::int64_t r = 0; r < codes.dim(0); ++r) {
      int nz = 0;
      for (std::int64_t j = 0; j < codes.dim(1); ++j) nz += codes.f32()[r * codes.dim(1) + j] != 0.0f;
      bad += nz != want;
    }
    return bad;
  };
  // The training step itself: the code the decoder sees has exactly k nonzeros per sample.
  {
    DeepAutoencoderGraph m = build_deep_autoencoder(c, 64, GraphMode::Train);
    m.graph.mark_output(m.code);
    ExecutorOptions o;
    o.training = true;
    o.optimizer = c.optimizer;
    Executor ex(m.graph, o);
    for (int step = 0; step < 3; ++step) {
      ex.set_input("x", train_set().images.rows(64 * step, 64 * (step + 1)));
      ex.train_step();
      EXPECT_EQ(count_rows(ex.read(m.code), k), 0) << "step " << step;
    }
  }
  Autoencoder sparse = trained(c);
  const Tensor codes = sparse.encode(test_set().images);
  EXPECT_EQ(codes.dim(1), 200);
  EXPECT_EQ(count_rows(codes, k), 0);
  // Without the selection a linear code is dense.
  Config dense = c;
  dense.sparsity.type = SparsityConfig::Kind::None;
  Autoencoder plain = trained(dense);
  EXPECT_EQ(count_rows(plain.encode(test_set().images), 200), 0);
  const ReconMetrics ms = sparse.evaluate(test_set().images);
  std::printf("k-sparse (k=%d) test MSE/pixel %.5f\n", k, ms.mse_per_pixel);
  EXPECT_LT(ms.mse_per_pixel, 0.05);  // it still reconstructs (an untrained model: ~0.1)
}

// Measured: mean ‖J‖²_F 13.1 with λ = 0.5 against 109 without (5 epochs of 5000 images).
TEST(Regularized, ContractivePenaltyLowersJacobianNorm) {
  SKIP_WITHOUT_DATA();
  Autoencoder cae = trained(one_layer("bce", 5, "[contractive]\nweight = 0.5\nlayer = \"code\"\n"));
  Autoencoder plain = trained(one_layer("bce", 5));
  const double with = cae.jacobian_norm(test_set().images, "code");
  const double without = plain.jacobian_norm(test_set().images, "code");
  std::printf("mean ||J||_F^2 on test images: contractive %.3f, plain %.3f\n", with, without);
  EXPECT_GT(with, 0.0);
  EXPECT_LT(2.0 * with, without);
}

// Measured: MSE against the clean images 0.025 (denoising) vs 0.037 (plain) at 30% masking.
TEST(Regularized, DenoisingReconstructsCorruptedInputsBetter) {
  SKIP_WITHOUT_DATA();
  Autoencoder dae = trained(one_layer("bce", 5, "[noise]\ntype = \"mask\"\nlevel = 0.3\n"));
  Autoencoder plain = trained(one_layer("bce", 5));
  const Tensor noisy = corrupt_images(test_set().images, NoiseType::Mask, 0.3f, 7);
  const double d = reconstruction_metrics(test_set().images, dae.reconstruct(noisy)).mse_per_pixel;
  const double p = reconstruction_metrics(test_set().images, plain.reconstruct(noisy)).mse_per_pixel;
  const double input = reconstruction_metrics(test_set().images, noisy).mse_per_pixel;
  std::printf("MSE vs clean on 30%%-masked test images: denoising %.5f, plain %.5f, noisy input %.5f\n", d, p, input);
  EXPECT_LT(d, p);
  EXPECT_LT(d, input);
}

TEST(Regularized, GaussianAndSaltPepperDenoisersTrain) {
  SKIP_WITHOUT_DATA();
  for (const char* noise : {"type = \"gaussian\"\nlevel = 0.2\n", "type = \"salt_pepper\"\nlevel = 0.2\n"}) {
    Autoencoder dae = trained(one_layer("bce", 2, std::string("[noise]\n") + noise));
    const ReconMetrics m = dae.evaluate(test_set().images);
    EXPECT_TRUE(std::isfinite(m.mse_per_pixel));
    EXPECT_LT(m.mse_per_pixel, 0.05) << noise;
  }
}

TEST(Regularized, L1ActivityPenaltyLowersMeanActivation) {
  SKIP_WITHOUT_DATA();
  Config c = one_layer("mse", 3, "[sparsity]\ntype = \"l1\"\nweight = 0.05\n");
  c.model.code_activation = Activation::ReLU;
  Config p = c;
  p.sparsity.type = SparsityConfig::Kind::None;
  const double with = mean_of(trained(c).activations(test_set().images, "code"));
  const double without = mean_of(trained(p).activations(test_set().images, "code"));
  std::printf("mean ReLU activation: L1-penalised %.4f, unpenalised %.4f\n", with, without);
  EXPECT_LT(with, 0.75 * without);  // measured: 0.288 against 0.513
}

// Noise, dropout and the L1 weight penalty in a deeper model with tied weights; two runs with the
// same seed agree bit for bit, a third with another seed does not.
TEST(Regularized, RandomRegularizersRepeatExactly) {
  SKIP_WITHOUT_DATA();
  Config c = one_layer("bce", 1,
                       "[noise]\ntype = \"gaussian\"\nlevel = 0.1\n[contractive]\nweight = 0.1\nlayer = \"encoder.0\"\n");
  c.model.layers = {784, 128, 64, 16};
  c.model.activation = Activation::Sigmoid;
  c.model.code_activation = Activation::Identity;
  c.model.tied_weights = true;
  c.model.dropout = 0.2f;
  c.optimizer.l1 = 1e-5f;
  c.train.max_train = 1000;
  auto weights = [&](const Config& cfg) {
    Autoencoder ae(cfg, Device::CPU);
    ae.train(train_set());
    return ae.encode(test_set().images.rows(0, 50)).values();
  };
  const auto a = weights(c);
  const auto b = weights(c);
  EXPECT_EQ(a, b);
  Config other = c;
  other.train.seed = 4;
  EXPECT_NE(weights(other), a);
}

TEST(Regularized, EarlyStoppingKeepsTheBestEpoch) {
  SKIP_WITHOUT_DATA();
  // 300 training images, 100 held out, a large model and learning rate: it overfits within a few
  // epochs, and the validation loss turns up.
  Config c = parse_config(R"(
[model]
layers = [784, 1000]
code_activation = "sigmoid"
output_activation = "sigmoid"
[loss]
type = "bce"
[optimizer]
lr = 1e-2
[train]
batch_size = 50
epochs = 60
seed = 1
device = "cpu"
max_train = 400
validation = 0.25
patience = 2
)",
                          "early");
  Autoencoder ae(c, Device::CPU);
  std::vector<double> val;
  int best_epoch = 0, stopped_at = 0;
  ae.train(train_set(), [&](const TrainProgress& p) {
    if (!p.epoch_end) return;
    ASSERT_GE(p.val_loss, 0.0);
    val.push_back(p.val_loss);
    best_epoch = p.best_epoch;
    if (p.stopping) stopped_at = p.epoch;
  });
  ASSERT_GT(stopped_at, 0) << "the validation loss never stopped improving in 60 epochs";
  EXPECT_EQ(static_cast<int>(val.size()), stopped_at);
  EXPECT_EQ(stopped_at, best_epoch + 2);
  double best = INFINITY;
  for (double v : val) best = std::min(best, v);
  EXPECT_EQ(val[static_cast<std::size_t>(best_epoch - 1)], best);
  // The model handed back is the best epoch's: same validation loss, same epoch count.
  EXPECT_EQ(ae.epochs_done(), best_epoch);
  const Tensor held_out = train_set().images.rows(300, 400);
  EXPECT_NEAR(ae.loss(held_out), best, 1e-6 * best);
}

TEST(Regularized, ConfigErrorsNameTheKey) {
  auto error_of = [](const std::string& text) {
    try {
      parse_config(text, "cfg.toml");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string relu = "[model]\nlayers = [784, 100, 30]\nactivation = \"relu\"\n";
  EXPECT_NE(error_of(relu + "[sparsity]\ntype = \"kl\"\nlayer = \"encoder.0\"\n").find("[sparsity] type: KL sparsity needs"),
            std::string::npos);
  EXPECT_NE(error_of(relu + "[sparsity]\ntype = \"ksparse\"\nk = 31\n").find("[sparsity] k: must be in [1, 30]"),
            std::string::npos);
  EXPECT_NE(error_of(relu + "[sparsity]\ntype = \"l1\"\nlayer = \"encoder.2\"\n").find("[sparsity] layer"), std::string::npos);
  EXPECT_NE(error_of(relu + "[sparsity]\ntype = \"dense\"\n").find("[sparsity] type: expected one of none, kl, l1, ksparse, got \"dense\""),
            std::string::npos);
  EXPECT_NE(error_of(relu + "[noise]\ntype = \"mask\"\nlevel = 1.5\n").find("[noise] level"), std::string::npos);
  EXPECT_NE(error_of(relu + "[noise]\ntype = \"pink\"\n").find("[noise] type"), std::string::npos);
  EXPECT_NE(error_of(relu + "[contractive]\nweight = -1\n").find("[contractive] weight"), std::string::npos);
  EXPECT_NE(error_of("[model]\nlayers = [784, 30]\ncode_activation = \"gelu\"\n[contractive]\nweight = 1\nlayer = \"code\"\n")
                .find("[contractive] layer"),
            std::string::npos);
  EXPECT_NE(error_of(relu + "[model]\n").find("cfg.toml"), std::string::npos);
  EXPECT_NE(error_of(relu + "[train]\npatience = 3\n").find("[train] patience: early stopping needs a validation split"),
            std::string::npos);
  EXPECT_NE(error_of(relu + "[train]\nvalidation = 1.0\n").find("[train] validation"), std::string::npos);
  EXPECT_NE(error_of(relu.substr(0, relu.size() - 1) + "\ndropout = 1.0\n").find("[model] dropout"), std::string::npos);
  // A valid regularized config round-trips through its TOML form (checkpoints store it).
  const Config c = parse_config(relu +
                                    "dropout = 0.1\n[noise]\ntype = \"salt_pepper\"\nlevel = 0.2\n[sparsity]\ntype = \"ksparse\"\n"
                                    "k = 5\n[contractive]\nweight = 0.3\nlayer = \"encoder.0\"\n[optimizer]\nl1 = 1e-4\n"
                                    "[train]\nvalidation = 0.1\npatience = 4\n",
                                "ok.toml");
  const Config back = parse_config(to_toml(c), "back.toml");
  EXPECT_EQ(to_toml(back), to_toml(c));
  EXPECT_TRUE(back.noise.enabled);
  EXPECT_EQ(back.noise.type, NoiseType::SaltPepper);
  EXPECT_EQ(back.sparsity.type, SparsityConfig::Kind::KSparse);
  EXPECT_EQ(back.sparsity.k, 5);
  EXPECT_FLOAT_EQ(back.contractive.weight, 0.3f);
  EXPECT_FLOAT_EQ(back.optimizer.l1, 1e-4f);
  EXPECT_EQ(back.train.patience, 4);
  EXPECT_FLOAT_EQ(back.model.dropout, 0.1f);
}

}  // namespace
}  // namespace cuae
