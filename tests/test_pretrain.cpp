// Greedy layer-wise pretraining: the unrolled stack has the deep autoencoder's parameters (decoder
// weights the transposed encoder weights), and with plain SGD and the same number of fine-tuning
// epochs the pretrained deep sigmoid autoencoder reaches a lower test error than the same network
// from random initialisation. Fashion-MNIST subsets, CPU. The RBM's graph ops (rbm_cd, the free
// energy) against direct kernel calls, and their misuse.
#include <gtest/gtest.h>

#include <filesystem>

#include "common.hpp"
#include "cuae/autoencoder.hpp"
#include "cuae/config.hpp"
#include "host/graph/compiler.hpp"
#include "host/runtime/backend.hpp"
#include "kernels/philox.hpp"

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

// ---- the RBM graph ops ----------------------------------------------------------------------

namespace cuae {
namespace {

constexpr std::int64_t kM = 6, kNv = 11, kNh = 5;

struct RbmGraph {
  Graph g;
  Value v, w, b, c, out;
};

RbmGraph rbm_graph(bool cd, const RbmOptions& o) {
  RbmGraph r;
  r.v = r.g.input("v", {kM, kNv});
  r.w = r.g.param("w", {kNh, kNv}, Init::normal(0.3f));
  r.b = r.g.param("b", {kNv}, Init::uniform(0.2f), false);
  r.c = r.g.param("c", {kNh}, Init::uniform(0.2f), false);
  r.out = cd ? r.g.rbm_cd(r.v, r.w, r.b, r.c, o, "rbm") : r.g.rbm_free_energy(r.v, r.w, r.b, r.c, o, "fe");
  if (!cd) r.g.mark_output(r.out);
  return r;
}

// The kernel called directly on the executor's parameters, as the graph op must call it.
struct Direct {
  std::vector<float> dw, db, dc, recon, fe;
};
Direct direct(const std::map<std::string, Tensor>& p, const Tensor& v, const RbmOptions& o, std::uint64_t seed,
              std::uint64_t step) {
  Backend be(Device::CPU);
  std::size_t floats = 0;
  kern::RbmCDWorkspace q{static_cast<int>(kM), static_cast<int>(kNv), static_cast<int>(kNh), &floats};
  be.ops().rbm_cd_workspace(be.ctx(), q);
  Direct d;
  d.dw.resize(kNh * kNv), d.db.resize(kNv), d.dc.resize(kNh), d.recon.resize(1), d.fe.resize(kM);
  std::vector<float> ws(std::max<std::size_t>(floats, kM * kNh));
  kern::RbmCD a;
  a.v0 = v.f32(), a.w = p.at("w").f32(), a.b = p.at("b").f32(), a.c = p.at("c").f32();
  a.dw = d.dw.data(), a.db = d.db.data(), a.dc = d.dc.data(), a.recon = d.recon.data();
  a.ws = ws.data(), a.ws_floats = ws.size();
  a.m = kM, a.nv = kNv, a.nh = kNh, a.k = o.k, a.sample_visible = o.sample_visible;
  a.visible = o.gaussian_visible ? kern::RbmUnit::Gaussian : kern::RbmUnit::Bernoulli;
  a.hidden = o.linear_hidden ? kern::RbmUnit::Gaussian : kern::RbmUnit::Bernoulli;
  a.seed = seed, a.step = step;
  be.ops().rbm_cd(be.ctx(), a);
  kern::RbmFreeEnergy f;
  f.v = a.v0, f.w = a.w, f.b = a.b, f.c = a.c, f.fe = d.fe.data(), f.ws = ws.data();
  f.m = kM, f.nv = kNv, f.nh = kNh, f.visible = a.visible, f.hidden = a.hidden;
  be.ops().rbm_free_energy(be.ctx(), f);
  return d;
}

std::map<std::string, Tensor> tensors_of(const std::vector<std::pair<std::string, Tensor>>& v) {
  return {v.begin(), v.end()};
}

TEST(RbmGraph, CdTermStepsByTheKernelsEstimate) {
  for (const bool sampled : {false, true}) {
    RbmOptions o;
    o.k = 2;
    o.sample_visible = sampled;
    o.linear_hidden = sampled;  // both unit kinds
    const RbmGraph r = rbm_graph(true, o);
    ExecutorOptions eo;
    eo.training = true;
    eo.seed = 17;
    eo.optimizer.type = OptimizerType::SGD;
    eo.optimizer.lr = 1.0f;
    eo.optimizer.momentum = 0.0f;
    Executor ex(r.g, eo);
    const Tensor v = Tensor::from(test::uniform(kM * kNv, 3, 0.0f, 1.0f), {kM, kNv});
    const auto before = tensors_of(ex.parameters());
    ex.set_input("v", v);
    ex.train_step();  // update 1: the chain draws at step 1 from the node's own stream
    const Direct d = direct(before, v, o, kern::philox_mix_seed(17, name_hash("rbm")), 1);
    const auto after = tensors_of(ex.parameters());
    const auto grads = tensors_of(ex.gradients());
    EXPECT_EQ(grads.at("w").values(), d.dw) << "sampled " << sampled;
    EXPECT_EQ(grads.at("b").values(), d.db);
    EXPECT_EQ(grads.at("c").values(), d.dc);
    for (std::size_t i = 0; i < d.dw.size(); ++i) EXPECT_FLOAT_EQ(after.at("w").f32()[i], before.at("w").f32()[i] - d.dw[i]);
    const auto losses = ex.drain_losses();
    ASSERT_EQ(losses.size(), 1u);
    EXPECT_EQ(losses[0], d.recon[0]) << "the term's value is the reconstruction error";
    EXPECT_GT(losses[0], 0.0f);
  }
}

TEST(RbmGraph, FreeEnergyIsTheKernels) {
  RbmOptions o;
  o.gaussian_visible = true;
  const RbmGraph r = rbm_graph(false, o);
  Executor ex(r.g, ExecutorOptions{});
  const Tensor v = Tensor::from(test::uniform(kM * kNv, 4), {kM, kNv});
  ex.set_input("v", v);
  ex.forward();
  EXPECT_EQ(ex.read(r.out).values(), direct(tensors_of(ex.parameters()), v, o, 0, 1).fe);
}

TEST(RbmGraph, RejectsMisuse) {
  RbmOptions o;
  {
    // A second CD term on the same parameters: its estimate cannot be added to the first's.
    RbmGraph r = rbm_graph(true, o);
    r.g.rbm_cd(r.v, r.w, r.b, r.c, o, "again");
    ExecutorOptions eo;
    eo.training = true;
    try {
      Executor ex(r.g, eo);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("again"), std::string::npos) << e.what();
    }
  }
  {
    const RbmGraph r = rbm_graph(true, o);
    ExecutorOptions eo;
    eo.training = true;
    Executor ex(r.g, eo);
    EXPECT_THROW(ex.set_term_weight("rbm", 0.5f), Error);
  }
  Graph g;
  auto v = g.input("v", {kM, kNv});
  auto w = g.param("w", {kNh, kNv + 1}, Init::zeros());
  auto b = g.param("b", {kNv}, Init::zeros(), false);
  auto c = g.param("c", {kNh}, Init::zeros(), false);
  EXPECT_THROW(g.rbm_cd(v, w, b, c, o), Error);
  auto w2 = g.param("w2", {kNh, kNv}, Init::zeros());
  RbmOptions k0;
  k0.k = 0;
  EXPECT_THROW(g.rbm_cd(v, w2, b, c, k0), Error);
  EXPECT_THROW(g.rbm_cd(v, w2, c, b, o), Error);  // biases swapped
  EXPECT_NO_THROW(g.rbm_cd(v, w2, b, c, o));
}

}  // namespace
}  // namespace cuae
