// The parameter store shared by executors: inference sees every training update with no copy, a
// second trainer of some of the parameters (layer-wise pretraining) updates only those, with its
// own optimizer, and the layout a store was given first never changes what training computes.
#include <gtest/gtest.h>

#include <map>

#include "common.hpp"
#include "cuae/autoencoder.hpp"
#include "cuae/executor.hpp"
#include "cuae/parameter_store.hpp"

namespace cuae {
namespace {

constexpr std::int64_t kBatch = 5;

// x [5, 7] -> tanh(w1) -> sigmoid(w2) -> identity(w3) -> loss against x.
Graph model_graph(bool with_loss = true) {
  Graph g;
  auto x = g.input("x", {kBatch, 7});
  auto w1 = g.param("w1", {6, 7}, Init::uniform(0.6f));
  auto b1 = g.param("b1", {6}, Init::uniform(0.2f), false);
  auto w2 = g.param("w2", {4, 6}, Init::uniform(0.6f));
  auto b2 = g.param("b2", {4}, Init::uniform(0.2f), false);
  auto w3 = g.param("w3", {7, 4}, Init::uniform(0.6f));
  auto b3 = g.param("b3", {7}, Init::uniform(0.2f), false);
  auto h1 = g.dense(x, w1, b1, Activation::Tanh);
  auto h2 = g.dense(h1, w2, b2, Activation::Sigmoid);
  auto out = g.dense(h2, w3, b3, Activation::Identity);
  g.mark_output(out);
  if (with_loss) g.loss(out, x, LossType::MSE, Reduction::SumPerSample);
  return g;
}

// The middle layer alone, with a parameter of its own: h [5, 6] -> sigmoid(w2, b2) -> ·w2ᵀ + c ->
// loss against h (a one-layer autoencoder with a tied decoder, as pretraining trains).
Graph middle_layer_graph() {
  Graph g;
  auto h = g.input("h", {kBatch, 6});
  auto w2 = g.param("w2", {4, 6}, Init::uniform(0.6f));
  auto b2 = g.param("b2", {4}, Init::uniform(0.2f), false);
  auto c = g.param("pre.c", {6}, Init::uniform(0.2f), false);
  auto code = g.dense(h, w2, b2, Activation::Sigmoid);
  auto rec = g.dense(code, w2, c, Activation::Identity, /*w_transposed=*/true);
  g.loss(rec, h, LossType::MSE, Reduction::SumPerSample);
  return g;
}

ExecutorOptions training(OptimizerType type, float lr, float wd = 0.0f) {
  ExecutorOptions o;
  o.training = true;
  o.optimizer.type = type;
  o.optimizer.lr = lr;
  o.optimizer.momentum = 0.0f;
  o.optimizer.weight_decay = wd;
  return o;
}

std::map<std::string, std::vector<float>> values_of(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::map<std::string, std::vector<float>> m;
  for (const auto& [k, t] : v) m[k] = t.values();
  return m;
}

std::map<std::string, Tensor> tensors_of(const std::vector<std::pair<std::string, Tensor>>& v) {
  return {v.begin(), v.end()};
}

Tensor batch_of(std::int64_t cols, std::uint64_t seed) {
  return Tensor::from(test::uniform(static_cast<std::size_t>(kBatch * cols), seed), {kBatch, cols});
}

TEST(ParameterStore, InferenceSeesEachTrainingUpdate) {
  auto store = std::make_shared<ParameterStore>(Device::CPU);
  Executor train(model_graph(), training(OptimizerType::Adam, 0.05f), store);
  const Graph ig = model_graph(false);
  Executor infer(ig, ExecutorOptions{}, store);
  EXPECT_EQ(store->names().size(), 6u);
  const Tensor x = batch_of(7, 3);
  train.set_input("x", x);
  infer.set_input("x", x);
  infer.forward();
  const auto out0 = infer.read(Value{ig.outputs().front()}).values();
  for (int s = 0; s < 3; ++s) train.train_step();
  infer.forward();
  const auto out3 = infer.read(Value{ig.outputs().front()}).values();
  // What an executor of its own computes from the trainer's current weights.
  Executor fresh(ig, ExecutorOptions{});
  fresh.load(tensors_of(train.parameters()));
  fresh.set_input("x", x);
  fresh.forward();
  EXPECT_EQ(out3, fresh.read(Value{ig.outputs().front()}).values());
  EXPECT_NE(out3, out0) << "three Adam steps left the inference output unchanged";
  EXPECT_EQ(store->read("w2").values(), train.read("w2").values());
}

TEST(ParameterStore, ASecondTrainerUpdatesOnlyItsParameters) {
  auto store = std::make_shared<ParameterStore>(Device::CPU);
  Executor model(model_graph(), training(OptimizerType::Adam, 0.05f), store);
  const std::int64_t before_floats = store->floats();
  const float lr = 1.0f, wd = 0.25f;
  Executor pre(middle_layer_graph(), training(OptimizerType::SGD, lr, wd), store);
  EXPECT_TRUE(store->contains("pre.c"));
  EXPECT_GT(store->floats(), before_floats) << "pre.c needs a segment of its own";
  const auto p0 = values_of(model.parameters());
  const auto c0 = store->read("pre.c").values();
  pre.set_input("h", batch_of(6, 8));
  pre.train_step();
  const auto grads = values_of(pre.gradients());
  const auto p1 = values_of(model.parameters());
  // SGD with lr 1: weights move by −(g + wd·p), biases by −g (no decay), in both segments.
  for (const char* name : {"w2", "b2"}) {
    const bool decay = name[0] == 'w';
    const auto& g = grads.at(name);
    for (std::size_t i = 0; i < g.size(); ++i)
      EXPECT_NEAR(p1.at(name)[i], p0.at(name)[i] - lr * (g[i] + (decay ? wd * p0.at(name)[i] : 0.0f)), 1e-6f)
          << name << "[" << i << "]";
  }
  const auto c1 = store->read("pre.c").values();
  const auto& gc = grads.at("pre.c");
  for (std::size_t i = 0; i < gc.size(); ++i) EXPECT_NEAR(c1[i], c0[i] - lr * gc[i], 1e-6f);
  for (const char* name : {"w1", "b1", "w3", "b3"}) EXPECT_EQ(p1.at(name), p0.at(name)) << name << " moved";
  // The model's own optimizer state is its own: the second trainer's steps leave it at zero.
  for (const auto& [k, t] : model.optimizer_state())
    for (float v : t.values()) ASSERT_EQ(v, 0.0f) << k;
}

TEST(ParameterStore, TrainingDoesNotDependOnTheStoresLayout) {
  // A store laid out by the middle layer first splits the model's parameters over two segments
  // (so its update is several launches); the result must be the same floats as with a store of
  // its own.
  auto split = std::make_shared<ParameterStore>(Device::CPU);
  Executor first(middle_layer_graph(), ExecutorOptions{}, split);
  Executor a(model_graph(), training(OptimizerType::AdamW, 0.02f, 0.1f), split);
  Executor b(model_graph(), training(OptimizerType::AdamW, 0.02f, 0.1f));
  for (int s = 0; s < 4; ++s) {
    const Tensor x = batch_of(7, 20 + s);
    a.set_input("x", x);
    b.set_input("x", x);
    a.train_step();
    b.train_step();
  }
  EXPECT_EQ(a.drain_losses(), b.drain_losses());
  EXPECT_EQ(values_of(a.parameters()), values_of(b.parameters()));
  EXPECT_EQ(values_of(a.optimizer_state()), values_of(b.optimizer_state()));
  EXPECT_EQ(a.memory().param_bytes, b.memory().param_bytes);
}

TEST(ParameterStore, MismatchesNameTheParameterOrSetting) {
  auto store = std::make_shared<ParameterStore>(Device::CPU);
  Executor model(model_graph(), ExecutorOptions{}, store);
  Graph g;
  auto x = g.input("x", {kBatch, 7});
  auto w = g.param("w2", {6, 7}, Init::uniform(0.1f));  // w2 is [4, 6] in the store
  g.mark_output(g.dense(x, w, Value{}, Activation::Identity));
  try {
    Executor bad(g, ExecutorOptions{}, store);
    ADD_FAILURE() << "a parameter of another shape was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"w2\""), std::string::npos) << e.what();
  }
  ExecutorOptions tf32;
  tf32.tf32 = true;
  EXPECT_THROW(Executor(model_graph(false), tf32, store), Error);
  EXPECT_THROW(store->read("nope"), Error);
  try {
    store->write("w2", Tensor({6, 4}));
    ADD_FAILURE() << "a tensor of another shape was written";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("written to parameter \"w2\""), std::string::npos) << e.what();
  }
  store->write("w2", Tensor::from(std::vector<float>(24, 0.5f), {4, 6}));
  EXPECT_EQ(model.read("w2").values(), std::vector<float>(24, 0.5f));
}

TEST(ParameterStore, CudaTrainerAndInferenceShareTheDevice) {
  CUAE_SKIP_WITHOUT_GPU();
  auto store = std::make_shared<ParameterStore>(Device::CUDA);
  ExecutorOptions to = training(OptimizerType::Adam, 0.05f);
  to.device = Device::CUDA;
  Executor train(model_graph(), to, store);
  const Graph ig = model_graph(false);
  ExecutorOptions io;
  io.device = Device::CUDA;
  Executor infer(ig, io, store);
  const Tensor x = batch_of(7, 3);
  train.set_input("x", x);
  infer.set_input("x", x);
  for (int s = 0; s < 3; ++s) train.train_step();  // the third replays a captured CUDA graph
  infer.forward();
  const auto got = infer.read(Value{ig.outputs().front()}).values();
  Executor cpu(ig, ExecutorOptions{});
  cpu.load(tensors_of(train.parameters()));
  cpu.set_input("x", x);
  cpu.forward();
  EXPECT_LE(test::normalized_error(got, cpu.read(Value{ig.outputs().front()}).values()), 1e-5);
  ExecutorOptions on_cpu;
  EXPECT_THROW(Executor(ig, on_cpu, store), Error);  // a CPU executor on a CUDA store
}

}  // namespace
}  // namespace cuae

namespace cuae {
namespace {

// Executor::plan allocates nothing and says what the constructor then takes, for every shipped
// config's training and inference graphs.
TEST(MemoryPlan, PlanMatchesTheExecutorsMemory) {
  for (const char* name : {"deep.toml", "conv.toml", "vae.toml", "contractive.toml"}) {
    SCOPED_TRACE(name);
    Config cfg = load_config(test::source_path(std::string("configs/") + name));
    cfg.train.batch_size = 8;
    for (const bool training : {true, false}) {
      const Graph g = build_autoencoder(cfg, 8, training ? GraphMode::Train : GraphMode::Infer).graph;
      ExecutorOptions o;
      o.device = Device::CPU;
      o.training = training;
      o.optimizer = cfg.optimizer;
      const MemoryReport planned = Executor::plan(g, o);
      const Executor ex(g, o);
      const MemoryReport& real = ex.memory();
      EXPECT_EQ(planned.arena_bytes, real.arena_bytes);
      EXPECT_EQ(planned.values_planned, real.values_planned);
      EXPECT_EQ(planned.naive_bytes, real.naive_bytes);
      // The store pads each parameter to its alignment; the plan counts exact sizes.
      EXPECT_LE(planned.param_bytes, real.param_bytes);
      EXPECT_GE(planned.param_bytes, real.param_bytes * 9 / 10);
      EXPECT_EQ(planned.state_bytes > 0, training);
    }
  }
}

}  // namespace
}  // namespace cuae
