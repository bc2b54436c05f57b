// Variational autoencoders: autodiff through the reparameterization and the KL term against finite
// differences (ε held fixed), the KL weight changed between steps, configs, and a dense VAE on a
// Fashion-MNIST subset whose ELBO improves epoch by epoch, whose importance-weighted bound is
// tighter than its ELBO, and whose samples vary and are not copies of training images.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "common.hpp"
#include "cuae/autoencoder.hpp"
#include "cuae/config.hpp"
#include "cuae/executor.hpp"

namespace cuae {
namespace {

using test::expect_error_contains;

std::map<std::string, Tensor> as_map(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::map<std::string, Tensor> m;
  for (const auto& [k, t] : v) m[k] = t;
  return m;
}

const char* kSmallVae = R"(
[model]
type = "deep"
variational = true
layers = [12, 9, 3]
activation = "tanh"
output_activation = "sigmoid"
[vae]
beta = 0.7
[loss]
type = "bce"
reduction = "sum"
)";

TEST(VaeGraph, AutodiffMatchesFiniteDifferencesWithEpsilonFixed) {
  const Config cfg = parse_config(kSmallVae, "vae.toml");
  const std::int64_t B = 5;
  const auto m = build_autoencoder(cfg, B, GraphMode::Train);
  const Tensor xb = Tensor::from(test::uniform(static_cast<std::size_t>(B * 12), 3, 0.0f, 1.0f), {B, 12});
  ExecutorOptions to;
  to.training = true;
  to.optimizer.type = OptimizerType::SGD;
  to.optimizer.lr = 1.0f;
  to.optimizer.momentum = 0.0f;
  to.seed = 6;
  Executor train(m.graph, to);
  train.set_input("x", xb);
  const auto before = as_map(train.parameters());
  train.train_step();  // draws ε with step 1
  const auto after = as_map(train.parameters());
  const float trained = train.last_loss();

  ExecutorOptions eo;
  eo.seed = 6;
  Executor eval(m.graph, eo);
  eval.set_input("x", xb);
  std::map<std::string, Tensor> theta = before;
  auto loss_at = [&] {
    eval.load(theta);
    eval.forward_at(1);  // the same ε as the training step
    return static_cast<double>(eval.last_loss());
  };
  EXPECT_NEAR(loss_at(), trained, 1e-5 * std::abs(trained));
  const double h = 1e-2;
  int checked = 0;
  for (const auto& [name, t0] : before) {
    for (std::int64_t i = 0; i < t0.numel(); ++i) {
      float* p = theta[name].f32();
      const float orig = p[i];
      p[i] = orig + static_cast<float>(h);
      const double lp = loss_at();
      p[i] = orig - static_cast<float>(h);
      const double lm = loss_at();
      p[i] = orig;
      const double numeric = (lp - lm) / (2 * h);
      const double analytic = static_cast<double>(t0.f32()[i]) - static_cast<double>(after.at(name).f32()[i]);
      const double scale = std::max({std::abs(numeric), std::abs(analytic), 5e-2});
      EXPECT_LT(std::abs(numeric - analytic) / scale, 1e-2)
          << name << "[" << i << "]: autodiff " << analytic << " vs finite difference " << numeric;
      ++checked;
    }
  }
  EXPECT_GT(checked, 250);
  // A different step draws a different ε, so the loss moves.
  eval.load(before);
  eval.forward_at(2);
  EXPECT_NE(eval.last_loss(), trained);
}

TEST(VaeGraph, KlWeightChangesBetweenSteps) {
  const Config cfg = parse_config(kSmallVae, "vae.toml");
  const auto m = build_autoencoder(cfg, 4, GraphMode::Train);
  ExecutorOptions o;
  o.seed = 2;
  Executor ex(m.graph, o);
  ex.set_input("x", Tensor::from(test::uniform(48, 5, 0.0f, 1.0f), {4, 12}));
  ex.forward_at(1);
  const float with_kl = ex.last_loss();
  ex.set_term_weight("kl", 0.0f);
  ex.forward_at(1);
  const float without = ex.last_loss();
  EXPECT_LT(without, with_kl);  // the KL is positive
  ex.set_term_weight("kl", 1.4f);
  ex.forward_at(1);
  EXPECT_NEAR(ex.last_loss() - without, 2.0f * (with_kl - without), 1e-3f * with_kl);
  // Any scalar term's weight changes the same way: the reconstruction term at weight 0 leaves the
  // KL term alone (at weight 1.4, twice its first value).
  ex.set_term_weight("loss", 0.0f);
  ex.forward_at(1);
  EXPECT_NEAR(ex.last_loss(), 2.0f * (with_kl - without), 1e-3f * with_kl);
  expect_error_contains([&] { ex.set_term_weight("nope", 1.0f); }, "no node");
  expect_error_contains([&] { ex.set_term_weight("kl", -1.0f); }, "must be >= 0");
}

TEST(VaeConfig, ErrorsNameTheKey) {
  expect_error_contains([&] { parse_config(std::string(kSmallVae) + "[vae]\nlikelihood = \"gaussian\"\n", "a.toml"); },
                        "cannot redefine existing table");
  const std::string base = R"(
[model]
type = "deep"
variational = true
layers = [12, 9, 3]
)";
  expect_error_contains([&] { parse_config(base + "tied_weights = true\n", "t.toml"); }, "tied_weights");
  expect_error_contains([&] { parse_config(base + "[vae]\nlikelihood = \"gaussian\"\n[loss]\ntype = \"bce\"\n", "g.toml"); },
                        "likelihood = \"gaussian\" is the loss \"mse\"");
  expect_error_contains([&] { parse_config(base + "[loss]\nreduction = \"mean\"\n", "r.toml"); }, "per image");
  expect_error_contains(
      [&] { parse_config("[model]\nlayers = [12, 3]\n[vae]\nbeta = 2.0\n", "v.toml"); }, "variational is not true");
  expect_error_contains([&] { parse_config(base + "[sparsity]\ntype = \"l1\"\nweight = 0.1\n", "s.toml"); },
                        "sampled latent");
  // A conv VAE needs its dense latent, and decoding from codes cannot unpool.
  expect_error_contains(
      [&] {
        parse_config("[model]\ntype = \"conv\"\nvariational = true\ninput = [1, 8, 8]\n[[model.encoder]]\nchannels = 2\n",
                     "c.toml");
      },
      "needs a dense latent");
  const Config pooled = parse_config(
      "[model]\ntype = \"conv\"\ninput = [1, 8, 8]\ncode = 4\n[[model.encoder]]\nchannels = 2\npool = \"max\"\n", "p.toml");
  expect_error_contains([&] { build_autoencoder(pooled, 2, GraphMode::Decode); }, "unpools");
  // Round trip of the [vae] table.
  const Config c = parse_config(base + "[vae]\nbeta = 0.5\nwarmup_epochs = 2\nsamples = 7\n", "ok.toml");
  const Config back = parse_config(to_toml(c), "back");
  EXPECT_TRUE(back.model.variational);
  EXPECT_EQ(back.vae.beta, 0.5f);
  EXPECT_EQ(back.vae.warmup_epochs, 2.0);
  EXPECT_EQ(back.vae.samples, 7);
}

TEST(VaeTrain, ElboImprovesBoundsAndSamplesOnFashionMnistSubset) {
  const std::string dir = default_fashion_mnist_dir();
  if (!std::filesystem::exists(std::filesystem::path(dir) / "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)";
  Config cfg = parse_config(R"(
[model]
type = "deep"
variational = true
layers = [784, 256, 10]
activation = "relu"
[vae]
beta = 1.0
[loss]
type = "bce"
reduction = "sum"
[optimizer]
type = "adam"
lr = 1e-3
[train]
batch_size = 100
epochs = 4
device = "cpu"
log_every = 1000
)",
                            "vae.toml");
  const Dataset train = subset(load_fashion_mnist(dir, true), 0, 6000);
  const Dataset test = subset(load_fashion_mnist(dir, false), 0, 500);
  Autoencoder ae(cfg, Device::CPU);
  std::vector<double> elbo;
  ae.train(train, [&](const TrainProgress& p) {
    if (p.epoch_end) elbo.push_back(ae.vae_bounds(test.images, 4).elbo);
  });
  ASSERT_EQ(elbo.size(), 4u);
  for (std::size_t e = 1; e < elbo.size(); ++e) EXPECT_GT(elbo[e], elbo[e - 1]) << "epoch " << e + 1;
  // The stated bound: −ELBO below 275 nats per image after four epochs on 6000 images (a
  // Gaussian-initialised model starts near 545).
  EXPECT_GT(elbo.back(), -275.0);
  const VaeBounds b = ae.vae_bounds(test.images, 32);
  EXPECT_GT(b.iw_bound, b.elbo) << "the importance-weighted bound must be tighter";
  EXPECT_GT(b.kl, 1.0);
  // Samples: varied, and not copies of training images.
  const Tensor s = ae.sample(32, 9);
  const std::int64_t d = 784;
  double var = 0.0;
  for (std::int64_t p = 0; p < d; ++p) {
    double m = 0.0, m2 = 0.0;
    for (std::int64_t i = 0; i < 32; ++i) {
      const double v = s.f32()[i * d + p];
      m += v / 32.0;
      m2 += v * v / 32.0;
    }
    var += (m2 - m * m) / static_cast<double>(d);
  }
  EXPECT_GT(var, 0.01) << "samples barely differ";
  double nearest = INFINITY;
  for (std::int64_t i = 0; i < 32; ++i)
    for (std::int64_t t = 0; t < train.size(); ++t) {
      double e = 0.0;
      for (std::int64_t p = 0; p < d; ++p) {
        const double diff = s.f32()[i * d + p] - train.images.f32()[t * d + p];
        e += diff * diff;
      }
      nearest = std::min(nearest, e / static_cast<double>(d));
    }
  EXPECT_GT(nearest, 1e-3) << "a sample reproduces a training image";
  // Decoding the posterior means reconstructs like reconstruct() does.
  const Tensor codes = ae.encode(test.images);
  ASSERT_EQ(codes.shape(), (Shape{500, 10}));
  const auto r1 = ae.decode(codes).values(), r2 = ae.reconstruct(test.images).values();
  for (std::size_t i = 0; i < r1.size(); ++i) ASSERT_NEAR(r1[i], r2[i], 1e-5f) << i;
}

}  // namespace
}  // namespace cuae
