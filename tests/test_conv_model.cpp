// Convolutional graphs and models: autodiff through every convolutional node (against finite
// differences), reshape aliasing in the memory plan, CPU/CUDA agreement, shape inference and its
// errors, and a convolutional autoencoder that learns on Fashion-MNIST.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "common.hpp"
#include "host/graph/node.hpp"
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

// Every convolutional node, with values used more than once (c1 by two pools; u by an unpooling,
// an upsampling and a deconvolution, through a reshape) so gradients accumulate through aliases.
Graph conv_graph(std::int64_t B) {
  Graph g;
  const Value x = g.input("x", {B, 6 * 6 * 2});
  const Value r = g.reshape(x, {B, 6, 6, 2}, "x4");
  const Value w1 = g.param("w1", {4, 3, 3, 2}, Init::uniform(0.4f));
  const Value b1 = g.param("b1", {4}, Init::uniform(0.2f), false);
  const Value c1 = g.conv2d(r, w1, b1, Activation::Tanh, Conv2dOptions::make(1, 1), 0.01f, "c1");
  const Value p1 = g.max_pool2d(c1, Pool2dOptions::make(2, 2), "p1");
  Pool2dOptions avg = Pool2dOptions::make(3, 1, 1);
  avg.count_include_pad = false;
  const Value a1 = g.avg_pool2d(c1, avg, "a1");
  const Value f = g.reshape(p1, {B, 36}, "flat");
  const Value wd = g.param("wd", {5, 36}, Init::uniform(0.3f));
  const Value bd = g.param("bd", {5}, Init::uniform(0.1f), false);
  const Value code = g.dense(f, wd, bd, Activation::Sigmoid, false, 0.01f, "code");
  const Value wu = g.param("wu", {36, 5}, Init::uniform(0.5f));
  const Value hu = g.dense(code, wu, Value{}, Activation::Identity, false, 0.01f, "up");
  const Value u = g.reshape(hu, {B, 3, 3, 4}, "u");
  const Value un = g.max_unpool2d(u, p1, "unpool");
  const Value up = g.upsample2d(u, 6, 6, UpsampleMode::Bilinear, "bilinear");
  // Decoder branches, each with its own loss term (the objective is their sum).
  const Value wt = g.param("wt", {4, 3, 3, 2}, Init::uniform(0.4f));
  const Value bt = g.param("bt", {2}, Init::uniform(0.1f), false);
  const Value d1 = g.conv_transpose2d(un, wt, bt, Activation::Identity, Conv2dOptions::make(1, 1), 0.01f, "d1");
  g.loss(g.reshape(d1, {B, 72}, "d1f"), x, LossType::MSE, Reduction::SumPerSample);
  const Value wt2 = g.param("wt2", {4, 3, 3, 2}, Init::uniform(0.4f));
  const Value d2 = g.conv_transpose2d(u, wt2, Value{}, Activation::Sigmoid, Conv2dOptions::make(2, 1, 1, 1), 0.01f, "d2");
  g.loss(g.reshape(d2, {B, 72}, "d2f"), x, LossType::MSE, Reduction::SumPerSample, 0.5f);
  const Value w3 = g.param("w3", {2, 1, 1, 4}, Init::uniform(0.5f));
  const Value d3 = g.conv2d(a1, w3, Value{}, Activation::Identity, {}, 0.01f, "d3");
  g.loss(g.reshape(d3, {B, 72}, "d3f"), x, LossType::MSE, Reduction::Mean, 3.0f);
  const Value w4 = g.param("w4", {2, 3, 3, 4}, Init::uniform(0.3f));
  const Value b4 = g.param("b4", {2}, Init::uniform(0.1f), false);
  const Value d4 = g.conv2d(up, w4, b4, Activation::Sigmoid, Conv2dOptions::make(1, 2, 2), 0.01f, "d4");
  g.loss(g.reshape(d4, {B, 72}, "d4f"), x, LossType::BCEWithLogits, Reduction::SumPerSample, 0.25f);
  return g;
}

TEST(ConvGraph, ShapesAndErrors) {
  Graph g;
  const Value x = g.input("x", {2, 9, 7, 3});
  const Value w = g.param("w", {5, 3, 3, 3}, Init::zeros());
  const Value y = g.conv2d(x, w, Value{}, Activation::ReLU, Conv2dOptions::make(2, 1));
  EXPECT_EQ(g.info(y).shape, (Shape{2, 5, 4, 5}));
  const Value wt = g.param("wt", {5, 3, 3, 3}, Init::zeros());
  Conv2dOptions o = Conv2dOptions::make(2, 1);
  o.out_pad_h = 0;
  o.out_pad_w = 0;
  const Value back = g.conv_transpose2d(y, wt, Value{}, Activation::Identity, o);
  EXPECT_EQ(g.info(back).shape, (Shape{2, 9, 7, 3}));
  const Value p = g.max_pool2d(y, Pool2dOptions::make(2, 2));
  EXPECT_EQ(g.info(p).shape, (Shape{2, 2, 2, 5}));
  EXPECT_EQ(g.info(g.max_unpool2d(p, p)).shape, (Shape{2, 5, 4, 5}));
  EXPECT_EQ(g.info(g.upsample2d(p, 5, 3, UpsampleMode::Nearest)).shape, (Shape{2, 5, 3, 5}));
  // Errors name the op and the shapes.
  const Value wbad = g.param("wbad", {5, 3, 3, 4}, Init::zeros());
  expect_error_contains([&] { g.conv2d(x, wbad, Value{}, Activation::ReLU); }, "[2, 9, 7, 3]");
  const Value big = g.param("big", {5, 11, 11, 3}, Init::zeros());
  expect_error_contains([&] { g.conv2d(x, big, Value{}, Activation::ReLU); }, "does not fit");
  Conv2dOptions bad_out = Conv2dOptions::make(2, 1, 1, 2);
  expect_error_contains([&] { g.conv_transpose2d(y, wt, Value{}, Activation::Identity, bad_out); }, "output padding");
  expect_error_contains([&] { g.max_unpool2d(y, y); }, "is not the output of a max pool");
  expect_error_contains([&] { g.reshape(y, {3, 40}); }, "cannot reshape");
}

TEST(ConvGraph, ReshapeIsAnAliasNotACopy) {
  const std::int64_t B = 3;
  const Graph g = conv_graph(B);
  ExecutorOptions o;
  o.training = true;
  Executor ex(g, o);
  // The same graph with every reshape's output counted separately would need more: the plan
  // places no buffer for a reshape's output (nor its gradient).
  int reshapes = 0;
  for (const auto& n : detail::GraphAccess::nodes(g)) reshapes += n->desc->alias();
  EXPECT_EQ(reshapes, 7);
  std::int64_t values = 0;
  for (const auto& v : g.values()) values += v.kind == Graph::ValueKind::Activation || v.kind == Graph::ValueKind::Input;
  // Planned values = activations + inputs + gradients + workspaces − reshape outputs and their
  // gradients; at least the 7 reshape outputs are missing from the count.
  EXPECT_LT(ex.memory().values_planned, static_cast<int>(values) * 2 + 16 - 7);
}

TEST(ConvGraph, AutodiffMatchesFiniteDifferences) {
  const std::int64_t B = 3;
  const Graph g = conv_graph(B);
  // Distinct pixel values, so max pooling has no ties that a finite step could flip.
  std::vector<float> xs = test::uniform(static_cast<std::size_t>(B * 72), 11, 0.05f, 0.95f);
  const Tensor xb = Tensor::from(xs, {B, 72});
  ExecutorOptions to;
  to.training = true;
  to.optimizer.type = OptimizerType::SGD;
  to.optimizer.lr = 1.0f;
  to.optimizer.momentum = 0.0f;
  to.seed = 4;
  Executor train(g, to);
  train.set_input("x", xb);
  const auto before = as_map(train.parameters());
  train.train_step();
  const auto after = as_map(train.parameters());
  const float trained_loss = train.last_loss();

  ExecutorOptions eo;
  eo.seed = 4;
  Executor eval(g, eo);
  eval.set_input("x", xb);
  std::map<std::string, Tensor> theta = before;
  auto loss_at = [&] {
    eval.load(theta);
    eval.forward();
    return static_cast<double>(eval.last_loss());
  };
  EXPECT_NEAR(loss_at(), trained_loss, 1e-5 * std::abs(trained_loss));
  const double h = 5e-3;
  int checked = 0, kinks = 0;
  for (const auto& [name, t0] : before) {
    for (std::int64_t i = 0; i < t0.numel(); ++i) {
      float* p = theta[name].f32();
      const float orig = p[i];
      p[i] = orig + static_cast<float>(h);
      const double lp = loss_at();
      p[i] = orig - static_cast<float>(h);
      const double lm = loss_at();
      p[i] = orig;
      const double l0 = loss_at();
      // A step that changes which pixel wins a max pool is a kink: skip it (counted, bounded).
      if (std::abs((lp - l0) - (l0 - lm)) > 0.05 * std::max(std::abs(lp - l0), 1e-3)) {
        ++kinks;
        continue;
      }
      const double numeric = (lp - lm) / (2 * h);
      const double analytic = static_cast<double>(t0.f32()[i]) - static_cast<double>(after.at(name).f32()[i]);
      // The float loss rounds to ~4e-4 in (lp − lm)/2h: judged against a 5e-2 floor, that noise is
      // under 1%.
      const double scale = std::max({std::abs(numeric), std::abs(analytic), 5e-2});
      EXPECT_LT(std::abs(numeric - analytic) / scale, 2e-2)
          << name << "[" << i << "]: autodiff " << analytic << " vs finite difference " << numeric;
      ++checked;
    }
  }
  EXPECT_GT(checked, 300);
  EXPECT_LE(kinks, checked / 20) << "too many kinks skipped";
}

TEST(ConvGraph, CudaMatchesCpuOverAdamSteps) {
  CUAE_SKIP_WITHOUT_GPU();
  const std::int64_t B = 5;
  const Graph g = conv_graph(B);
  const Tensor xb = Tensor::from(test::uniform(static_cast<std::size_t>(B * 72), 12, 0.05f, 0.95f), {B, 72});
  std::vector<float> losses[2];
  std::map<std::string, Tensor> params[2];
  for (int d = 0; d < 2; ++d) {
    ExecutorOptions o;
    o.device = d ? Device::CUDA : Device::CPU;
    o.training = true;
    o.seed = 9;
    Executor ex(g, o);
    ex.set_input("x", xb);
    for (int i = 0; i < 10; ++i) ex.train_step();
    losses[d] = ex.drain_losses();
    params[d] = as_map(ex.parameters());
  }
  ASSERT_EQ(losses[0].size(), losses[1].size());
  for (std::size_t i = 0; i < losses[0].size(); ++i)
    EXPECT_NEAR(losses[1][i], losses[0][i], 1e-4 * std::abs(losses[0][i])) << "step " << i;
  for (const auto& [k, t] : params[0]) {
    const auto a = t.values(), b = params[1].at(k).values();
    for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 1e-4 + 1e-4 * std::abs(a[i])) << k << "[" << i << "]";
  }
}

// ---- configs and shape inference ------------------------------------------------------------

const char* kConvModel = R"(
[model]
type = "conv"
input = [1, 28, 28]
code = 30
activation = "relu"
[[model.encoder]]
channels = 8
kernel = 3
stride = 2
[[model.encoder]]
channels = 16
kernel = 3
stride = 2
pool = "max"
)";

TEST(ConvConfig, ShapesAreInferredAndLayersDerived) {
  const Config c = parse_config(kConvModel, "conv.toml");
  // 28 -> 14 (conv/2) -> 7 (conv/2) -> 3 (max pool 2), then the 30-wide code.
  EXPECT_EQ(c.model.layers, (std::vector<std::int64_t>{784, 14 * 14 * 8, 3 * 3 * 16, 30}));
  const auto shapes = conv_layer_shapes(c.model, true);
  ASSERT_FALSE(shapes.empty());
  EXPECT_EQ(shapes.back().shape, (std::vector<std::int64_t>{28, 28, 1}));
  // The mirror: unpooling back to 7x7 (with the pool's indices), then deconvolutions whose output
  // padding restores the odd sizes exactly.
  bool unpool = false;
  for (const auto& l : shapes) unpool = unpool || l.what.find("unpool") != std::string::npos;
  EXPECT_TRUE(unpool);
  const auto m = build_autoencoder(c, 4, GraphMode::Infer);
  EXPECT_EQ(m.graph.info(m.code).shape, (Shape{4, 30}));
  EXPECT_EQ(m.graph.info(m.recon).shape, (Shape{4, 784}));
  // TOML round trip keeps the blocks.
  const Config back = parse_config(to_toml(c), "roundtrip");
  EXPECT_EQ(back.model.layers, c.model.layers);
  EXPECT_EQ(back.model.encoder.size(), 2u);
  EXPECT_EQ(back.model.encoder[1].pool, PoolKind::Max);
}

TEST(ConvConfig, ImpossibleShapesListEveryLayer) {
  // Three stride-4 convolutions cannot fit a 28x28 image: the error names the layer and prints the
  // shapes up to it.
  const std::string text = R"(
[model]
type = "conv"
input = [1, 28, 28]
[[model.encoder]]
channels = 4
kernel = 5
stride = 4
padding = 0
[[model.encoder]]
channels = 4
kernel = 7
stride = 4
padding = 0
)";
  try {
    parse_config(text, "bad.toml");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.toml"), std::string::npos) << msg;
    EXPECT_NE(msg.find("encoder.1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("input: 28x28x1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("encoder.0 conv 5x5/4"), std::string::npos) << msg;
    EXPECT_NE(msg.find("does not fit 6x6x4"), std::string::npos) << msg;
    EXPECT_NE(msg.find("6x6x4"), std::string::npos) << msg;
  }
  // A decoder that does not return to the input's size.
  const std::string dec = std::string(kConvModel) + R"(
[[model.decoder]]
type = "deconv"
channels = 8
kernel = 3
stride = 2
[[model.decoder]]
type = "deconv"
channels = 1
kernel = 3
stride = 2
)";
  expect_error_contains([&] { parse_config(dec, "dec.toml"); }, "the reconstruction is");
  expect_error_contains(
      [&] { parse_config(std::string(kConvModel) + "[[model.decoder]]\ntype = \"unpool\"\n", "u.toml"); },
      "must be a conv or deconv");
  expect_error_contains(
      [&] { parse_config(std::string(kConvModel) + "[[model.decoder]]\ntype = \"deconv\"\nstrides = 2\n", "k.toml"); },
      "[model.decoder[0]] strides: unknown key");
  expect_error_contains(
      [&] {
        parse_config(std::string(kConvModel) + "[contractive]\nweight = 0.1\nlayer = \"encoder.0\"\n", "c.toml");
      },
      "dense code layer");
}

// ---- training ------------------------------------------------------------------------------

TEST(ConvTrain, LearnsFashionMnistSubset) {
  const std::string dir = default_fashion_mnist_dir();
  if (!std::filesystem::exists(std::filesystem::path(dir) / "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)";
  Config c = parse_config(kConvModel, "conv.toml");
  c.loss.type = LossType::MSE;
  c.loss.reduction = Reduction::SumPerSample;
  c.train.batch_size = 50;
  c.train.epochs = 3;
  c.optimizer.lr = 2e-3f;
  const Dataset train = subset(load_fashion_mnist(dir, true), 0, 3000);
  const Dataset test = subset(load_fashion_mnist(dir, false), 0, 500);
  Autoencoder ae(c, Device::CPU);
  const double before = ae.evaluate(test.images).mse_per_pixel;
  std::vector<double> epoch_loss;
  ae.train(train, [&](const TrainProgress& p) {
    if (p.epoch_end) epoch_loss.push_back(p.epoch_loss);
  });
  const double after = ae.evaluate(test.images).mse_per_pixel;
  ASSERT_EQ(epoch_loss.size(), 3u);
  EXPECT_LT(epoch_loss[2], epoch_loss[0]);
  EXPECT_LT(after, 0.5 * before) << "test MSE " << before << " -> " << after;
  EXPECT_EQ(ae.encode(test.images).shape(), (Shape{500, 30}));
}

}  // namespace
}  // namespace cuae
