// Greedy layer-wise pretraining: the unrolled stack has the deep autoencoder's parameters (decoder
// weights the transposed encoder weights), and with plain SGD and the same number of fine-tuning
// epochs the pretrained deep sigmoid autoencoder reaches a lower test error than the same network
// from random initialisation. Fashion-MNIST subsets, CPU.
#include <gtest/gtest.h>

#include <filesystem>

#include "cuae/autoencoder.hpp"
#include "cuae/config.hpp"

namespace cuae {
namespace {

bool have_data() {
  return std::filesystem::exists(std::filesystem::path(default_fashion_mnist_dir()) / "train-images-idx3-ubyte.gz");
}

Config deep_config(const std::string& method) {
  return parse_config(R"(
[model]
type = "deep"
layers = [784, 256, 64, 16]
activation = "sigmoid"
code_activation = "identity"
output_activation = "sigmoid"
[pretrain]
method = ")" + method + R"("
epochs = 3
batch_size = 50
lr = 0.1
momentum_switch_epoch = 1
[loss]
type = "bce"
reduction = "sum"
[optimizer]
type = "sgd"
lr = 0.002
momentum = 0.9
[train]
batch_size = 50
epochs = 4
device = "cpu"
log_every = 1000
)",
                      "pretrain.toml");
}

TEST(Pretrain, RbmStackUnrollsAndBeatsRandomInitialisationWithSgd) {
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)";
  const std::string dir = default_fashion_mnist_dir();
  const Dataset train = subset(load_fashion_mnist(dir, true), 0, 4000);
  const Dataset test = subset(load_fashion_mnist(dir, false), 0, 1000);
  const Config cfg = deep_config("rbm");
  std::vector<PretrainProgress> log;
  const auto stack = pretrain_stack(cfg, train, Device::CPU, [&](const PretrainProgress& p) { log.push_back(p); });
  ASSERT_EQ(log.size(), 9u);  // 3 layers x 3 epochs
  // Each layer's reconstruction error falls over its epochs.
  for (int l = 0; l < 3; ++l) EXPECT_LT(log[l * 3 + 2].recon_error, log[l * 3].recon_error) << "layer " << l;
  // The unrolled parameters: decoder j mirrors encoder i = depth − 1 − j with the transposed weight.
  ASSERT_EQ(stack.size(), 12u);
  const Tensor& w0 = stack.at("encoder.0.weight");
  const Tensor& d2 = stack.at("decoder.2.weight");
  ASSERT_EQ(w0.shape(), (Shape{256, 784}));
  ASSERT_EQ(d2.shape(), (Shape{784, 256}));
  for (int r = 0; r < 256; r += 37)
    for (int c = 0; c < 784; c += 51) ASSERT_EQ(w0.f32()[r * 784 + c], d2.f32()[c * 256 + r]);
  EXPECT_EQ(stack.at("decoder.2.bias").shape(), (Shape{784}));
  EXPECT_EQ(stack.at("encoder.2.weight").shape(), (Shape{16, 64}));

  Autoencoder pre(cfg, Device::CPU);
  pre.load_parameters(stack);
  const double before_finetune = pre.evaluate(test.images).mse_per_pixel;
  pre.train(train);
  Autoencoder rnd(cfg, Device::CPU);
  rnd.train(train);
  const double mse_pre = pre.evaluate(test.images).mse_per_pixel;
  const double mse_rnd = rnd.evaluate(test.images).mse_per_pixel;
  RecordProperty("mse_unrolled", std::to_string(before_finetune));
  RecordProperty("mse_pretrained", std::to_string(mse_pre));
  RecordProperty("mse_random", std::to_string(mse_rnd));
  EXPECT_LT(mse_pre, mse_rnd) << "pretrained " << mse_pre << " vs random " << mse_rnd;
  EXPECT_LT(mse_pre, before_finetune) << "fine-tuning must improve the unrolled stack";
}

TEST(Pretrain, DenoisingStackUnrolls) {
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)";
  const Dataset train = subset(load_fashion_mnist(default_fashion_mnist_dir(), true), 0, 1000);
  Config cfg = deep_config("dae");
  cfg.pretrain.epochs = 1;
  cfg.optimizer.type = OptimizerType::Adam;
  cfg.optimizer.lr = 1e-3f;
  int calls = 0;
  const auto stack = pretrain_stack(cfg, train, Device::CPU, [&](const PretrainProgress&) { ++calls; });
  EXPECT_EQ(calls, 3);
  ASSERT_EQ(stack.size(), 12u);
  EXPECT_EQ(stack.at("decoder.0.weight").shape(), (Shape{64, 16}));
  Autoencoder ae(cfg, Device::CPU);
  ae.load_parameters(stack);
  EXPECT_EQ(ae.encode(train.images).shape(), (Shape{1000, 16}));
}

TEST(Pretrain, RejectsModelsItCannotPretrain) {
  Config cfg = deep_config("rbm");
  cfg.model.activation = Activation::ReLU;
  Dataset d;
  d.images = Tensor::zeros({200, 784});
  d.rows = d.cols = 28;
  try {
    pretrain_stack(cfg, d, Device::CPU);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sigmoid hidden layers"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_config("[model]\nlayers = [4, 2]\n[pretrain]\nmethod = \"gibbs\"\n", "p.toml"), Error);
}

}  // namespace
}  // namespace cuae
