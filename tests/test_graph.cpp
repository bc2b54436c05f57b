// The graph layer: the liveness planner, reverse-mode autodiff of composite graphs (against finite
// differences), and the executor's contract (errors, determinism, CPU/CUDA agreement).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>

#include "common.hpp"
#include "cuae/autoencoder.hpp"
#include "cuae/executor.hpp"
#include "host/graph/planner.hpp"
#include "host/runtime/backend.hpp"

namespace cuae {
namespace {

using graph::ArenaPlan;
using graph::PlanItem;
using graph::plan_arena;
using graph::plan_is_valid;

Config config_of(const ModelConfig& m, const LossConfig& l) {
  Config c;
  c.model = m;
  c.loss = l;
  return c;
}

std::size_t live_peak_lower_bound(const std::vector<PlanItem>& items) {
  int end = 0;
  for (const auto& it : items) end = std::max(end, it.last);
  std::size_t best = 0;
  for (int t = 0; t <= end; ++t) {
    std::size_t live = 0;
    for (const auto& it : items)
      if (it.first <= t && t <= it.last) live += it.bytes;
    best = std::max(best, live);
  }
  return best;
}

TEST(Planner, RandomisedPlansNeverOverlapLiveBuffers) {
  std::mt19937 rng(20261122);
  for (int trial = 0; trial < 300; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 60);
    const int steps = 1 + static_cast<int>(rng() % 40);
    std::vector<PlanItem> items(static_cast<std::size_t>(n));
    std::size_t sum = 0;
    for (auto& it : items) {
      it.bytes = 1 + rng() % 100000;
      it.first = static_cast<int>(rng() % static_cast<unsigned>(steps));
      it.last = it.first + static_cast<int>(rng() % static_cast<unsigned>(steps - it.first));
      sum += (it.bytes + 255) / 256 * 256;
    }
    const ArenaPlan p = plan_arena(items);
    ASSERT_TRUE(plan_is_valid(items, p)) << "trial " << trial;
    for (auto off : p.offsets) ASSERT_EQ(off % 256, 0u);
    EXPECT_LE(p.peak, sum);
    EXPECT_GE(p.peak, live_peak_lower_bound(items));
  }
}

TEST(Planner, ChainReusesMemory) {
  // y_i lives from the step that writes it to the next step that reads it: two buffers suffice.
  std::vector<PlanItem> items;
  for (int i = 0; i < 8; ++i) items.push_back({1024, i, i + 1});
  const ArenaPlan p = plan_arena(items);
  EXPECT_TRUE(plan_is_valid(items, p));
  EXPECT_EQ(p.peak, 2048u);
}

TEST(Planner, ValidatorRejectsOverlap) {
  const std::vector<PlanItem> items{{512, 0, 2}, {512, 1, 3}};
  ArenaPlan bad;
  bad.offsets = {0, 256};
  bad.peak = 1024;
  EXPECT_FALSE(plan_is_valid(items, bad));
  bad.offsets = {0, 512};
  EXPECT_TRUE(plan_is_valid(items, bad));
}

// A composite graph where a hidden value feeds two consumers and one weight is used twice (once
// transposed), with every activation kind that is smooth and two loss terms.
struct Composite {
  Graph g;
  Value x;
};

Composite composite_graph(std::int64_t batch) {
  Composite c;
  Graph& g = c.g;
  c.x = g.input("x", {batch, 7});
  auto w1 = g.param("w1", {6, 7}, Init::uniform(0.6f));
  auto b1 = g.param("b1", {6}, Init::uniform(0.2f), false);
  auto w2 = g.param("w2", {4, 6}, Init::uniform(0.6f));
  auto b2 = g.param("b2", {4}, Init::uniform(0.2f), false);
  auto w3 = g.param("w3", {6, 4}, Init::uniform(0.6f));
  auto b3 = g.param("b3", {6}, Init::uniform(0.2f), false);
  auto b4 = g.param("b4", {7}, Init::uniform(0.2f), false);
  auto w5 = g.param("w5", {7, 6}, Init::uniform(0.6f));
  auto h1 = g.dense(c.x, w1, b1, Activation::Tanh);
  auto h2 = g.dense(h1, w2, b2, Activation::Sigmoid);
  auto h3 = g.dense(h2, w3, b3, Activation::GELU);
  auto out = g.dense(h3, w1, b4, Activation::Identity, /*w_transposed=*/true);  // w1 again
  auto rec = g.activation(out, Activation::Sigmoid);
  g.loss(rec, c.x, LossType::MSE, Reduction::SumPerSample);
  auto side = g.dense(h1, w5, Value{}, Activation::Identity);  // h1's second consumer, no bias
  g.loss(side, c.x, LossType::BCEWithLogits, Reduction::SumPerSample, 0.5f);
  return c;
}

std::map<std::string, Tensor> as_map(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::map<std::string, Tensor> m;
  for (const auto& [k, t] : v) m[k] = t;
  return m;
}

// One plain SGD step with lr 1 and no momentum on batch xb: parameters move by exactly minus their
// gradient, so before − after is the gradient autodiff computed.
struct UnitSgdStep {
  std::map<std::string, Tensor> before, after;
  float loss = 0.0f;
};
UnitSgdStep unit_sgd_step(const Graph& g, const Tensor& xb, std::uint64_t seed) {
  ExecutorOptions to;
  to.training = true;
  to.optimizer.type = OptimizerType::SGD;
  to.optimizer.lr = 1.0f;
  to.optimizer.momentum = 0.0f;
  to.seed = seed;
  Executor train(g, to);
  train.set_input("x", xb);
  UnitSgdStep r;
  r.before = as_map(train.parameters());
  train.train_step();  // step 1
  r.after = as_map(train.parameters());
  r.loss = train.last_loss();
  return r;
}

TEST(Autodiff, CompositeGraphMatchesFiniteDifferences) {
  const std::int64_t batch = 5;
  Composite c = composite_graph(batch);
  const Tensor xb = Tensor::from(test::uniform(batch * 7, 7, 0.0f, 1.0f), {batch, 7});

  const UnitSgdStep step = unit_sgd_step(c.g, xb, 3);
  const auto& before = step.before;
  const auto& after = step.after;

  ExecutorOptions eo;
  eo.seed = 3;
  Executor eval(c.g, eo);
  eval.set_input("x", xb);
  std::map<std::string, Tensor> theta;
  for (const auto& [k, t] : before) theta[k] = t.to(Device::CPU);
  auto loss_at = [&] {
    eval.load(theta);
    eval.forward();
    return static_cast<double>(eval.last_loss());
  };
  const double h = 1e-2;
  int checked = 0;
  for (const auto& [name, t0] : before) {
    const float* p0 = t0.f32();
    const float* p1 = after.at(name).f32();
    double rms = 0.0;
    for (std::int64_t i = 0; i < t0.numel(); ++i) rms += double(p0[i] - p1[i]) * (p0[i] - p1[i]);
    rms = std::sqrt(rms / static_cast<double>(t0.numel()));
    for (std::int64_t i = 0; i < t0.numel(); ++i) {
      float* p = theta[name].f32();
      const float orig = p[i];
      p[i] = orig + static_cast<float>(h);
      const double lp = loss_at();
      p[i] = orig - static_cast<float>(h);
      const double lm = loss_at();
      p[i] = orig;
      const double numeric = (lp - lm) / (2 * h);
      const double analytic = static_cast<double>(p0[i]) - static_cast<double>(p1[i]);
      const double scale = std::max({std::abs(numeric), std::abs(analytic), rms, 1e-3});
      EXPECT_LT(std::abs(numeric - analytic) / scale, 2e-2)
          << name << "[" << i << "]: autodiff " << analytic << " vs finite difference " << numeric;
      ++checked;
    }
  }
  EXPECT_GT(checked, 150);
}

TEST(Autodiff, UnusedParameterGetsZeroGradient) {
  Graph g;
  auto x = g.input("x", {3, 4});
  auto w = g.param("w", {4, 4}, Init::uniform(0.5f));
  g.param("unused", {5}, Init::constant(2.0f), false);
  auto y = g.dense(x, w, Value{}, Activation::Sigmoid);
  g.loss(y, x, LossType::MSE, Reduction::Mean);
  ExecutorOptions o;
  o.training = true;
  o.optimizer.type = OptimizerType::SGD;
  o.optimizer.lr = 0.5f;
  Executor ex(g, o);
  ex.set_input("x", Tensor::from(test::uniform(12, 1), {3, 4}));
  for (int i = 0; i < 3; ++i) ex.train_step();
  for (float v : ex.read("unused").values()) EXPECT_EQ(v, 2.0f);
}

TEST(Executor, PlannedArenaIsValidAndSmallerThanNaive) {
  // Random deep stacks: the executor refuses to build with an invalid plan (it checks every plan
  // with plan_is_valid), and a stack of three or more layers must reuse memory.
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    ModelConfig m;
    m.layers = {1 + static_cast<std::int64_t>(rng() % 50)};
    const int depth = 1 + static_cast<int>(rng() % 5);
    for (int i = 0; i < depth; ++i) m.layers.push_back(1 + static_cast<std::int64_t>(rng() % 40));
    m.activation = static_cast<Activation>(rng() % 6);
    m.tied_weights = rng() % 2;
    LossConfig l;
    l.type = static_cast<LossType>(rng() % 3);
    if (l.type != LossType::BCEWithLogits) m.output_activation = Activation::Identity;
    const auto ae = build_deep_autoencoder(config_of(m, l), 1 + rng() % 17, GraphMode::Train);
    ExecutorOptions o;
    o.training = true;
    Executor ex(ae.graph, o);
    const auto& r = ex.memory();
    EXPECT_GT(r.arena_bytes, 0u);
    EXPECT_LE(r.arena_bytes, r.naive_bytes);
    if (depth >= 3) EXPECT_LT(r.arena_bytes, r.naive_bytes) << "trial " << trial;
  }
}

TEST(Executor, ErrorsNameTheProblem) {
  Composite c = composite_graph(4);
  ExecutorOptions o;
  Executor ex(c.g, o);
  EXPECT_THROW(ex.train_step(), Error);
  try {
    ex.set_input("x", Tensor({3, 7}));
    FAIL() << "wrong batch shape accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[4, 7]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ex.set_input("nope", Tensor({4, 7})), Error);
  EXPECT_THROW(ex.read(c.g.find("dense0.out")), Error);  // not marked as output
  auto params = as_map(ex.parameters());
  params["w2"] = Tensor({6, 4});
  try {
    ex.load(params);
    FAIL() << "wrong shape accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("w2"), std::string::npos) << e.what();
  }
  params.erase("w2");
  EXPECT_THROW(ex.load(params), Error);
}

TEST(Executor, InitialisationIsDeterministicBySeedAndName) {
  Composite a = composite_graph(2), b = composite_graph(9);
  ExecutorOptions o;
  o.seed = 11;
  Executor ea(a.g, o), eb(b.g, o);
  const auto pa = as_map(ea.parameters()), pb = as_map(eb.parameters());
  for (const auto& [k, t] : pa) EXPECT_EQ(t.values(), pb.at(k).values()) << k;
  o.seed = 12;
  Executor ec(a.g, o);
  EXPECT_NE(as_map(ec.parameters()).at("w1").values(), pa.at("w1").values());
}

TEST(Executor, LossesAreBufferedAcrossManySteps) {
  Composite c = composite_graph(3);
  ExecutorOptions o;
  o.training = true;
  o.optimizer.lr = 1e-2f;
  Executor ex(c.g, o);
  ex.set_input("x", Tensor::from(test::uniform(21, 5, 0.0f, 1.0f), {3, 7}));
  for (int i = 0; i < 1500; ++i) ex.train_step();  // more than the loss ring holds
  const auto losses = ex.drain_losses();
  ASSERT_EQ(losses.size(), 1500u);
  EXPECT_LT(losses.back(), losses.front());
  EXPECT_TRUE(ex.drain_losses().empty());
}

// Ten Adam steps of a deep autoencoder on CUDA against the CPU: per-step losses within `tol`
// (relative), the CUDA side with TF32 allowed or not.
void expect_cuda_follows_cpu(bool tf32, double tol) {
  ModelConfig m;
  m.layers = {37, 29, 13, 5};
  m.activation = Activation::Sigmoid;
  LossConfig l;
  const auto ae = build_deep_autoencoder(config_of(m, l), 19, GraphMode::Train);
  const Tensor xb = Tensor::from(test::uniform(19 * 37, 9, 0.0f, 1.0f), {19, 37});
  std::vector<float> losses[2];
  for (int d = 0; d < 2; ++d) {
    ExecutorOptions o;
    o.device = d ? Device::CUDA : Device::CPU;
    o.training = true;
    o.tf32 = d == 1 && tf32;
    Executor ex(ae.graph, o);
    ex.set_input("x", xb);
    for (int i = 0; i < 10; ++i) ex.train_step();
    losses[d] = ex.drain_losses();
  }
  ASSERT_EQ(losses[0].size(), losses[1].size());
  for (std::size_t i = 0; i < losses[0].size(); ++i)
    EXPECT_NEAR(losses[1][i], losses[0][i], tol * std::abs(losses[0][i])) << "step " << i;
}

TEST(Executor, CudaMatchesCpuOverAdamSteps) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_cuda_follows_cpu(false, 1e-4);
}

// [train] precision = "tf32": every GEMM rounds its operands to 10 mantissa bits, so each step's
// loss moves by ~1e-3 of itself and the ten steps' drift stays within the documented 1e-2.
TEST(Executor, CudaTf32FollowsCpuOverAdamSteps) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_cuda_follows_cpu(true, 1e-2);
}

}  // namespace
}  // namespace cuae

namespace cuae {
namespace {

// SGD with momentum keeps a velocity: two identical steps on the same batch move the parameters
// by g and then by μ·g + g' (not by the same amount twice), and the velocity is exported.
TEST(Executor, SgdMomentumKeepsVelocity) {
  Graph g;
  auto x = g.input("x", {4, 3});
  auto w = g.param("w", {3, 3}, Init::uniform(0.5f));
  auto y = g.dense(x, w, Value{}, Activation::Identity);
  g.loss(y, x, LossType::MSE, Reduction::Mean);
  ExecutorOptions o;
  o.training = true;
  o.optimizer.type = OptimizerType::SGD;
  o.optimizer.lr = 0.1f;
  o.optimizer.momentum = 0.9f;
  Executor ex(g, o);
  ex.set_input("x", Tensor::from(test::uniform(12, 3), {4, 3}));
  const auto p0 = ex.read("w").values();
  ex.train_step();
  const auto g0 = ex.gradients()[0].second.values();
  const auto p1 = ex.read("w").values();
  ex.train_step();
  const auto g1 = ex.gradients()[0].second.values();
  const auto p2 = ex.read("w").values();
  for (std::size_t i = 0; i < p0.size(); ++i) {
    EXPECT_NEAR(p0[i] - p1[i], 0.1f * g0[i], 1e-6f);
    EXPECT_NEAR(p1[i] - p2[i], 0.1f * (0.9f * g0[i] + g1[i]), 1e-6f);
  }
  const auto state = ex.optimizer_state();
  ASSERT_EQ(state.size(), 1u);
  EXPECT_EQ(state[0].first, "opt.v.w");
}

}  // namespace
}  // namespace cuae

namespace cuae {
namespace {

// The regularizer nodes inside one graph: input corruption, KL sparsity and the contractive penalty
// on a sigmoid layer, dropout after it, a k-sparse code with an L1 activity penalty, and a tied
// decoder. One SGD step with lr 1 moves every parameter by minus its gradient; that gradient must
// match central differences of the objective (reconstruction plus every penalty), evaluated by a
// forward-only executor with the same seed and step, so it draws the same noise and dropout masks.
Graph regularized_graph(std::int64_t batch) {
  Graph g;
  auto x = g.input("x", {batch, 9});
  auto w1 = g.param("w1", {8, 9}, Init::uniform(0.7f));
  auto b1 = g.param("b1", {8}, Init::uniform(0.3f), false);
  auto w2 = g.param("w2", {6, 8}, Init::uniform(0.7f));
  auto b2 = g.param("b2", {6}, Init::uniform(0.3f), false);
  auto b3 = g.param("b3", {8}, Init::uniform(0.3f), false);
  auto w4 = g.param("w4", {9, 8}, Init::uniform(0.7f));
  auto b4 = g.param("b4", {9}, Init::uniform(0.3f), false);
  auto xn = g.corrupt(x, NoiseType::Gaussian, 0.1f, "noise");
  auto h1 = g.dense(xn, w1, b1, Activation::Sigmoid, false, 0.01f, "enc0");
  g.activity_penalty(h1, PenaltyType::KL, 0.7f, 0.2f, true, "kl");
  g.contractive_penalty(h1, 0.3f, true, "cae");
  auto d1 = g.dropout(h1, 0.25f, "drop");
  auto code = g.dense(d1, w2, b2, Activation::Identity, false, 0.01f, "enc1");
  auto sparse = g.ksparse(code, 3, "ks");
  g.activity_penalty(sparse, PenaltyType::L1, 0.2f, 0.05f, true, "l1");
  auto h3 = g.dense(sparse, w2, b3, Activation::Tanh, /*w_transposed=*/true, 0.01f, "dec0");
  auto out = g.dense(h3, w4, b4, Activation::Identity, false, 0.01f, "dec1");
  g.loss(out, x, LossType::BCEWithLogits, Reduction::SumPerSample, 1.0f, "loss");
  return g;
}

TEST(Autodiff, RegularizedGraphGradientMatchesFiniteDifferences) {
  const std::int64_t batch = 6;
  const Graph g = regularized_graph(batch);
  const Tensor xb = Tensor::from(test::uniform(batch * 9, 21, 0.0f, 1.0f), {batch, 9});
  const UnitSgdStep step = unit_sgd_step(g, xb, 5);
  const auto& before = step.before;
  const auto& after = step.after;
  const float trained_loss = step.loss;

  ExecutorOptions eo;
  eo.seed = 5;
  Executor eval(g, eo);
  eval.set_input("x", xb);
  std::map<std::string, Tensor> theta = before;
  auto loss_at = [&] {
    eval.load(theta, /*step=*/1);  // forward() then draws with step 1, as the training step did
    eval.forward();
    return static_cast<double>(eval.last_loss());
  };
  // The objective includes every penalty: the same value the training step reported.
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
      const double numeric = (lp - lm) / (2 * h);
      const double analytic = static_cast<double>(t0.f32()[i]) - static_cast<double>(after.at(name).f32()[i]);
      // A step across a kink (a change of which k codes are kept, or an L1 term's |h| crossing 0)
      // makes the one-sided differences disagree by more than the curvature and rounding do.
      if (std::abs((lp - l0) - (l0 - lm)) > 0.02 * std::max(std::abs(lp - l0), 1e-3)) {
        ++kinks;
        continue;
      }
      const double scale = std::max({std::abs(numeric), std::abs(analytic), 1e-2});
      EXPECT_LT(std::abs(numeric - analytic) / scale, 2e-2)
          << name << "[" << i << "]: autodiff " << analytic << " vs finite difference " << numeric;
      ++checked;
    }
  }
  std::printf("%d parameters checked, %d steps across a kink skipped\n", checked, kinks);
  EXPECT_GT(checked, 200);
  EXPECT_LT(kinks, 20);
}

TEST(Executor, RandomNodesDrawPerStepAndRepeatPerSeed) {
  Graph g;
  auto x = g.input("x", {4, 50});
  auto n = g.corrupt(x, NoiseType::Mask, 0.5f, "noise");
  auto d = g.dropout(n, 0.5f, "drop");
  g.mark_output(d);
  const Tensor ones = Tensor::from(std::vector<float>(200, 1.0f), {4, 50});
  auto draw = [&](std::uint64_t seed, std::int64_t step) {
    ExecutorOptions o;
    o.seed = seed;
    Executor ex(g, o);
    ex.set_input("x", ones);
    ex.load({}, step);
    ex.forward();
    return ex.read(d).values();
  };
  const auto a = draw(1, 0);
  EXPECT_EQ(draw(1, 0), a);
  EXPECT_NE(draw(1, 1), a);
  EXPECT_NE(draw(2, 0), a);
  int kept = 0;
  for (float v : a) {
    EXPECT_TRUE(v == 0.0f || v == 2.0f) << v;  // masked, dropped, or kept and scaled by 1/(1-p)
    kept += v != 0.0f;
  }
  EXPECT_GT(kept, 20);
  EXPECT_LT(kept, 80);
}

TEST(Graph, RegularizerNodesRejectBadUse) {
  Graph g;
  auto x = g.input("x", {4, 10});
  auto w = g.param("w", {5, 10}, Init::uniform(0.1f));
  auto relu = g.dense(x, w, Value{}, Activation::ReLU);
  EXPECT_THROW(g.activity_penalty(relu, PenaltyType::KL, 1.0f, 0.05f), Error);  // not in (0, 1)
  EXPECT_THROW(g.ksparse(relu, 6), Error);
  EXPECT_THROW(g.ksparse(relu, 0), Error);
  EXPECT_THROW(g.dropout(relu, 1.0f), Error);
  EXPECT_THROW(g.corrupt(x, NoiseType::Mask, 1.5f), Error);
  EXPECT_THROW(g.contractive_penalty(x, 1.0f), Error);  // not a dense layer's output
  auto gelu = g.dense(x, w, Value{}, Activation::GELU);
  EXPECT_THROW(g.contractive_penalty(gelu, 1.0f), Error);
  auto tied = g.dense(relu, w, Value{}, Activation::Sigmoid, /*w_transposed=*/true);
  EXPECT_THROW(g.contractive_penalty(tied, 1.0f), Error);
  EXPECT_NO_THROW(g.activity_penalty(tied, PenaltyType::KL, 1.0f, 0.05f));
  EXPECT_NO_THROW(g.contractive_penalty(relu, 1.0f));
}

TEST(Executor, RegularizedCudaMatchesCpuOverAdamSteps) {
  CUAE_SKIP_WITHOUT_GPU();
  const Graph g = regularized_graph(33);
  const Tensor xb = Tensor::from(test::uniform(33 * 9, 4, 0.0f, 1.0f), {33, 9});
  std::vector<float> losses[2];
  std::map<std::string, Tensor> params[2];
  for (int d = 0; d < 2; ++d) {
    ExecutorOptions o;
    o.device = d ? Device::CUDA : Device::CPU;
    o.training = true;
    o.seed = 8;
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

// The step block: the optimizer reads the learning rate when it runs, and a term reads its weight
// when it runs, so values changed between steps take effect on the next one (the mechanism that
// lets a CUDA graph replay a captured step; the CPU backend reads the same block).
TEST(Executor, StepValuesChangeBetweenSteps) {
  const Graph g = regularized_graph(12);
  ExecutorOptions o;
  o.training = true;
  o.seed = 3;
  Executor ex(g, o);
  ex.set_input("x", Tensor::from(test::uniform(12 * 9, 6, 0.0f, 1.0f), {12, 9}));
  ex.train_step();
  const auto before = as_map(ex.parameters());
  ex.set_learning_rate(0.0f);
  ex.train_step();
  for (const auto& [k, t] : as_map(ex.parameters())) EXPECT_EQ(t.values(), before.at(k).values()) << k << " moved at lr 0";
  ex.set_learning_rate(1e-2f);
  ex.train_step();
  EXPECT_NE(as_map(ex.parameters()).at("w1").values(), before.at("w1").values());
  EXPECT_EQ(ex.step(), 3);
  // A term's weight: the loss with the KL term off, then at three times its weight.
  ex.forward();
  const float base = ex.last_loss();
  ex.set_term_weight("kl", 0.0f);
  ex.forward();
  const float without = ex.last_loss();
  ex.set_term_weight("kl", 2.1f);
  ex.forward();
  EXPECT_NEAR(ex.last_loss() - without, 3.0f * (base - without), 1e-4f * std::abs(base));
  EXPECT_THROW(ex.set_learning_rate(-1.0f), Error);
}

// On CUDA a training step is captured once as a CUDA graph and replayed: the replayed steps must be
// the eager steps, bit for bit, losses and parameters, with the learning rate and a term weight
// changed between steps (read from the step block, not frozen into the graph).
TEST(Executor, CudaGraphReplaysTheEagerStepsBitForBit) {
  CUAE_SKIP_WITHOUT_GPU();
  const Graph g = regularized_graph(33);
  const Tensor xb = Tensor::from(test::uniform(33 * 9, 4, 0.0f, 1.0f), {33, 9});
  std::vector<float> losses[2];
  std::map<std::string, Tensor> params[2];
  for (int graph = 0; graph < 2; ++graph) {
    ExecutorOptions o;
    o.device = Device::CUDA;
    o.training = true;
    o.seed = 8;
    o.cuda_graph = graph == 1;
    Executor ex(g, o);
    ex.set_input("x", xb);
    for (int i = 0; i < 12; ++i) {
      if (i == 5) ex.set_learning_rate(3e-3f);
      if (i == 7) ex.set_term_weight("kl", 0.1f);
      ex.train_step();
    }
    losses[graph] = ex.drain_losses();
    params[graph] = as_map(ex.parameters());
  }
  ASSERT_EQ(losses[0].size(), 12u);
  EXPECT_EQ(losses[1], losses[0]);
  for (const auto& [k, t] : params[0]) EXPECT_EQ(params[1].at(k).values(), t.values()) << k;
}

// Host batches travel on a copy stream while the previous step runs: pageable batches (refilled
// as soon as set_input returns), pinned batches (refilled after wait_inputs_read) and device
// batches gathered on the stream must train identically, bit for bit, in a captured step.
TEST(Executor, CudaOverlappedHostBatchesMatchDeviceBatches) {
  CUAE_SKIP_WITHOUT_GPU();
  constexpr std::int64_t kRows = 33, kSteps = 9;
  const Graph g = regularized_graph(kRows);
  const auto all = test::uniform(kRows * 9 * kSteps, 12, 0.0f, 1.0f);
  const Tensor source = Tensor::from(all, {kRows * kSteps, 9});
  std::vector<float> losses[3];
  std::map<std::string, Tensor> params[3];
  for (int how = 0; how < 3; ++how) {
    ExecutorOptions o;
    o.device = Device::CUDA;
    o.training = true;
    o.seed = 8;
    Executor ex(g, o);
    const Tensor dev_source = source.to(Device::CUDA);
    Tensor order({kRows * kSteps}, DType::I32);
    for (std::int64_t i = 0; i < kRows * kSteps; ++i) static_cast<std::int32_t*>(order.data())[i] = static_cast<std::int32_t>(i);
    const Tensor dev_order = order.to(Device::CUDA);
    Backend pin_owner(Device::CUDA);
    float* pinned = static_cast<float*>(pin_owner.alloc_host(kRows * 9 * sizeof(float)));
    std::vector<float> pageable(kRows * 9);
    for (std::int64_t s = 0; s < kSteps; ++s) {
      const float* rows = all.data() + s * kRows * 9;
      if (how == 0) {
        std::copy(rows, rows + kRows * 9, pageable.begin());
        ex.set_input("x", Tensor::view(pageable.data(), {kRows, 9}, DType::F32, Device::CPU));
        std::fill(pageable.begin(), pageable.end(), -7.0f);  // reused at once: the copy was staged
      } else if (how == 1) {
        ex.wait_inputs_read();
        std::copy(rows, rows + kRows * 9, pinned);
        ex.set_input("x", Tensor::view(pinned, {kRows, 9}, DType::F32, Device::CPU));
      } else {
        ex.gather_input("x", dev_source, dev_order, s * kRows);
      }
      ex.train_step();
    }
    ex.synchronize();
    pin_owner.free_host(pinned);
    losses[how] = ex.drain_losses();
    params[how] = as_map(ex.parameters());
  }
  ASSERT_EQ(losses[2].size(), static_cast<std::size_t>(kSteps));
  for (int how = 0; how < 2; ++how) {
    EXPECT_EQ(losses[how], losses[2]) << (how == 0 ? "pageable" : "pinned");
    for (const auto& [k, t] : params[2]) EXPECT_EQ(params[how].at(k).values(), t.values()) << k;
  }
}

}  // namespace
}  // namespace cuae
