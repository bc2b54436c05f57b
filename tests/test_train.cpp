// End to end on real data: a small deep autoencoder trains on a Fashion-MNIST subset on the CPU
// backend and must reconstruct held-out test images better than PCA with as many components as
// its code; its checkpoint round-trips; configs are validated.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common.hpp"
#include "cuae/autoencoder.hpp"
#include "cuae/safetensors.hpp"

namespace fs = std::filesystem;

namespace cuae {
namespace {

Config small_config() {
  Config c = parse_config(R"(
[model]
layers = [784, 256, 30]
activation = "relu"
code_activation = "identity"
output_activation = "sigmoid"
[loss]
type = "bce"
reduction = "sum"
[optimizer]
type = "adam"
lr = 2e-3
[train]
batch_size = 128
epochs = 5
seed = 1
device = "cpu"
max_train = 12000
)",
                          "small");
  return c;
}

TEST(Train, SmallAutoencoderBeatsPcaOnFashionMnist) {
  if (!test::have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)";
  const Config cfg = small_config();
  const Dataset train_all = load_fashion_mnist(cfg.data.dir, true);
  const Dataset train = subset(train_all, 0, cfg.train.max_train);
  const Dataset test = subset(load_fashion_mnist(cfg.data.dir, false), 0, 2000);
  Autoencoder ae(cfg, Device::CPU);
  std::vector<double> epoch_losses;
  ae.train(train, [&](const TrainProgress& p) {
    if (p.epoch_end) epoch_losses.push_back(p.epoch_loss);
  });
  ASSERT_EQ(epoch_losses.size(), 5u);
  EXPECT_LT(epoch_losses.back(), epoch_losses.front());
  const ReconMetrics ours = ae.evaluate(test.images);
  const Pca pca = fit_pca(train.images, 30);
  const ReconMetrics base = reconstruction_metrics(test.images, pca_reconstruct(pca, test.images));
  std::printf("autoencoder MSE/pixel %.5f, PCA-30 %.5f\n", ours.mse_per_pixel, base.mse_per_pixel);
  EXPECT_LT(ours.mse_per_pixel, base.mse_per_pixel);
  EXPECT_LT(ours.bce_per_image, base.bce_per_image);

  // Checkpoint round trip: same reconstructions after load, on the same backend.
  const fs::path dir = fs::temp_directory_path() / ("cuae_train_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "ckpt.safetensors").string();
  ae.save(path);
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "ckpt.safetensors");
  Autoencoder back = Autoencoder::load(path, Device::CPU);
  EXPECT_EQ(back.step(), ae.step());
  EXPECT_EQ(back.epochs_done(), 5);
  const Tensor probe = test.images.rows(0, 37);
  EXPECT_EQ(back.reconstruct(probe).values(), ae.reconstruct(probe).values());
  const Tensor codes = back.encode(probe);
  EXPECT_EQ(codes.shape(), (Shape{37, 30}));
  const SafetensorsFile f = load_safetensors(path);
  EXPECT_TRUE(f.tensors.count("opt.m.encoder.0.weight"));
  EXPECT_TRUE(f.tensors.count("opt.v.decoder.1.bias"));
  fs::remove_all(dir);
}

TEST(Train, SameSeedSameRun) {
  if (!test::have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)";
  Config cfg = small_config();
  cfg.train.epochs = 1;
  cfg.train.max_train = 1024;
  cfg.train.log_every = 1;
  const Dataset train = subset(load_fashion_mnist(cfg.data.dir, true), 0, 1024);
  std::vector<double> runs[2];
  for (auto& r : runs) {
    Autoencoder ae(cfg, Device::CPU);
    ae.train(train, [&](const TrainProgress& p) { r.push_back(p.loss); });
  }
  ASSERT_EQ(runs[0].size(), 8u);
  EXPECT_EQ(runs[0], runs[1]);
}

// The whole CUDA training path — the training set copied to the device, each epoch's order
// uploaded while the previous epoch's gathers may still be queued, rows gathered on the device,
// losses read back, the model read back for evaluation — against the CPU from the same initial
// parameters. Smooth (sigmoid) layers keep fp32 differences from flipping anything discrete, so
// the two runs stay within float rounding of each other; a batch read before its data landed, or
// an epoch trained on the next epoch's order, would not.
TEST(Train, CudaFollowsCpuOnFashionMnist) {
  CUAE_SKIP_WITHOUT_GPU();
  if (!test::have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)";
  Config cfg = small_config();
  cfg.model.activation = Activation::Sigmoid;
  cfg.train.epochs = 3;
  cfg.train.max_train = 2560;
  cfg.train.log_every = 1;
  const Dataset train = subset(load_fashion_mnist(cfg.data.dir, true), 0, cfg.train.max_train);
  const Dataset test = subset(load_fashion_mnist(cfg.data.dir, false), 0, 500);
  std::vector<double> losses[2];
  double mse[2] = {0.0, 0.0};
  for (int d = 0; d < 2; ++d) {
    Autoencoder ae(cfg, d ? Device::CUDA : Device::CPU);
    ae.train(train, [&](const TrainProgress& p) { losses[d].push_back(p.loss); });
    mse[d] = ae.evaluate(test.images).mse_per_pixel;
  }
  ASSERT_EQ(losses[0].size(), 60u);  // 3 epochs of 20 steps
  ASSERT_EQ(losses[1].size(), losses[0].size());
  double worst = 0.0;
  for (std::size_t i = 0; i < losses[0].size(); ++i) {
    const double rel = std::abs(losses[1][i] - losses[0][i]) / std::abs(losses[0][i]);
    worst = std::max(worst, rel);
    EXPECT_LT(rel, 1e-3) << "step " << i + 1 << ": CUDA " << losses[1][i] << ", CPU " << losses[0][i];
  }
  ::testing::Test::RecordProperty("worst_step_loss_rel_diff", std::to_string(worst));
  EXPECT_NEAR(mse[1], mse[0], 1e-3 * mse[0]) << "test MSE per pixel, CUDA vs CPU";
}

TEST(Config, ErrorsNameFileAndKey) {
  auto expect_error = [](const std::string& text, const std::string& needle) {
    try {
      parse_config(text, "my.toml");
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("my.toml"), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  };
  expect_error("[model]\nlayers = [784, 30]\nactivaton = \"relu\"\n", "activaton");
  expect_error("[model]\nlayers = [784, -3]\n", "layers");
  expect_error("[model]\nlayers = [784, 30]\nactivation = \"swish\"\n", "swish");
  expect_error("[model]\nlayers = [784, 30]\n[optimizer]\nlr = -1\n", "lr");
  expect_error("[model]\nlayers = [784, 30]\n[train]\nbatch_size = \"big\"\n", "batch_size");
  expect_error("[model]\nlayers = [784, 30]\n[trian]\n", "trian");
  expect_error("[model]\nlayers = [784, 30]\noutput_activation = \"identity\"\n[loss]\ntype = \"bce\"\n", "bce");
  expect_error("[model\nlayers = [784, 30]\n", "syntax");
  expect_error("[model]\nlayers = [784, 30]\n[train]\nprecision = \"bf16\"\n", "precision");
  expect_error("[model]\nlayers = [784, 30]\n[train]\nprecision = \"fp32\"\ntf32 = true\n", "tf32");
}

TEST(Config, PrecisionAndTheOlderTf32Key) {
  const std::string head = "[model]\nlayers = [784, 30]\n[train]\n";
  EXPECT_EQ(parse_config(head, "t").train.precision, Precision::FP32);
  EXPECT_TRUE(parse_config(head, "t").train.cuda_graph);
  EXPECT_EQ(parse_config(head + "precision = \"tf32\"\n", "t").train.precision, Precision::TF32);
  EXPECT_EQ(parse_config(head + "tf32 = true\n", "t").train.precision, Precision::TF32);
  EXPECT_EQ(parse_config(head + "tf32 = false\n", "t").train.precision, Precision::FP32);
  EXPECT_EQ(parse_config(head + "precision = \"tf32\"\ntf32 = true\n", "t").train.precision, Precision::TF32);
  EXPECT_FALSE(parse_config(head + "cuda_graph = false\n", "t").train.cuda_graph);
}

TEST(Config, RoundTripsThroughToml) {
  Config c = small_config();
  c.model.tied_weights = true;
  c.optimizer.type = OptimizerType::AdamW;
  c.optimizer.weight_decay = 0.25f;
  c.loss.reduction = Reduction::Mean;
  c.loss.type = LossType::L1;
  c.train.precision = Precision::TF32;
  c.train.cuda_graph = false;
  const Config d = parse_config(to_toml(c), "roundtrip");
  EXPECT_EQ(d.model.layers, c.model.layers);
  EXPECT_EQ(d.model.activation, c.model.activation);
  EXPECT_TRUE(d.model.tied_weights);
  EXPECT_EQ(d.optimizer.type, OptimizerType::AdamW);
  EXPECT_FLOAT_EQ(d.optimizer.weight_decay, 0.25f);
  EXPECT_EQ(d.loss.reduction, Reduction::Mean);
  EXPECT_EQ(d.loss.type, LossType::L1);
  EXPECT_EQ(d.train.batch_size, c.train.batch_size);
  EXPECT_EQ(d.train.max_train, c.train.max_train);
  EXPECT_EQ(d.train.precision, Precision::TF32);
  EXPECT_FALSE(d.train.cuda_graph);
}

// Every shipped config survives parse -> to_toml -> parse with the same TOML, and every key that
// to_toml writes (a conv VAE and a deep model cover them all) is documented by config_reference.
TEST(Config, ShippedConfigsRoundTripAndEveryKeyIsDocumented) {
  const std::string reference = config_reference();
  for (const auto& e : fs::recursive_directory_iterator(test::source_path("configs"))) {
    if (e.path().extension() != ".toml") continue;
    SCOPED_TRACE(e.path().string());
    const std::string once = to_toml(load_config(e.path().string()));
    EXPECT_EQ(to_toml(parse_config(once, "written")), once);
    std::istringstream lines(once);
    std::string line, table;
    while (std::getline(lines, line)) {
      line.erase(0, line.find_first_not_of(' '));
      if (line.empty()) continue;
      if (line[0] == '[') {
        table = line;
        continue;
      }
      if (line.find(" = ") == std::string::npos) continue;  // a continued array
      const std::string key = line.substr(0, line.find(' '));
      // The reference lists "key = default  # doc" under each table; a key written must be there.
      EXPECT_NE(reference.find("\n" + key + " = "), std::string::npos) << table << " " << key << " is not documented";
    }
  }
}

TEST(Config, ShippedConfigsParseAndBuild) {
  int count = 0;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(test::source_path("configs")))) {
    if (e.path().extension() != ".toml") continue;
    const std::string name = e.path().filename().string();
    const Config c = load_config(e.path().string());
    EXPECT_EQ(c.model.layers.front(), 784) << name;
    // Both graphs build (the regularizers' layers, k and activations are consistent).
    EXPECT_NO_THROW(build_deep_autoencoder(c, 8, GraphMode::Train)) << name;
    EXPECT_NO_THROW(build_deep_autoencoder(c, 8, GraphMode::Infer, 0)) << name;
    ++count;
  }
  EXPECT_GE(count, 8);
  EXPECT_EQ(load_config(test::source_path("configs/deep.toml")).model.layers.back(), 30);
}

TEST(Pca, RecoversALowRankSubspace) {
  // Data on a 3-dimensional affine subspace of R^10: PCA with 3 components reconstructs it exactly.
  const std::int64_t n = 200, d = 10;
  const auto basis = test::uniform(3 * d, 4);
  const auto coef = test::uniform(n * 3, 5);
  Tensor x({n, d});
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) {
      double v = 0.5 + 0.01 * j;
      for (int k = 0; k < 3; ++k) v += coef[static_cast<std::size_t>(i * 3 + k)] * basis[static_cast<std::size_t>(k * d + j)] * 0.1;
      x.f32()[i * d + j] = static_cast<float>(v);
    }
  const Pca p3 = fit_pca(x, 3);
  EXPECT_LT(reconstruction_metrics(x, pca_reconstruct(p3, x)).mse_per_pixel, 1e-10);
  const Pca p2 = fit_pca(x, 2);
  EXPECT_GT(reconstruction_metrics(x, pca_reconstruct(p2, x)).mse_per_pixel, 1e-6);
  // Orthonormal components, variances in decreasing order.
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) {
      double dot = 0;
      for (std::int64_t j = 0; j < d; ++j) dot += double(p3.components.f32()[a * d + j]) * p3.components.f32()[b * d + j];
      EXPECT_NEAR(dot, a == b ? 1.0 : 0.0, 1e-5);
    }
  EXPECT_GE(p3.variances.f32()[0], p3.variances.f32()[1]);
  EXPECT_GE(p3.variances.f32()[1], p3.variances.f32()[2]);
}

}  // namespace
}  // namespace cuae
