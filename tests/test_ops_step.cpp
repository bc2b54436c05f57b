// The step ops and the per-step values the other ops read from backend memory (kernels/ops.hpp:
// StepScalars, step_begin, record_scalars, and the step_at / weight_at / at pointers):
//
//   StepOps         step_begin against the formula written here (t = updates + 1, the random step
//                   t, 1 − β^t in double rounded once), record_scalars against a ring filled by hand
//                   (the slot recorded mod capacity, the other slots untouched, the count advanced);
//                   CUDA against CPU bit for bit. The block travels in a float slot as its bytes.
//   StepValues      each op that takes a per-step value by pointer gives, with the pointer, exactly
//                   what it gives with the same value passed by value (and a wrong by-value field
//                   beside the pointer is ignored): on the CPU, and CUDA against CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common.hpp"
#include "host/runtime/backend.hpp"
#include "kernels/ops.hpp"
#include "op_case.hpp"

namespace {

using namespace cuae;
using namespace cuae::kern;
using namespace cuae::test;

constexpr std::size_t kBlockFloats = (sizeof(StepScalars) + 3) / 4;

std::vector<float> block_floats(const StepScalars& s) {
  std::vector<float> v(kBlockFloats, 0.0f);
  std::memcpy(v.data(), &s, sizeof s);
  return v;
}
StepScalars block_of(const std::vector<float>& v) {
  StepScalars s;
  std::memcpy(&s, v.data(), sizeof s);
  return s;
}

// ---- step_begin --------------------------------------------------------------------------------

class StepBeginCase : public OpCase {
 public:
  StepBeginCase(std::int64_t updates, float beta1, float beta2) : updates_(updates), beta1_(beta1), beta2_(beta2) {}
  std::string name() const override {
    return "step_begin_u" + std::to_string(updates_) + "_b" + std::to_string(static_cast<int>(beta1_ * 1000)) + "_" +
           std::to_string(static_cast<int>(beta2_ * 1000));
  }
  std::vector<Slot> make_slots(std::uint32_t) const override {
    StepScalars s;
    s.updates = updates_;
    s.rng_step = 12345;   // overwritten
    s.recorded = 77;      // untouched
    s.lr = 0.25f;         // untouched
    s.beta1 = beta1_, s.beta2 = beta2_;
    s.bias1 = s.bias2 = -1.0f;  // overwritten
    return {inout_slot("block", block_floats(s), 0.0)};
  }
  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    StepBegin a;
    a.s = reinterpret_cast<StepScalars*>(p[0]);
    t.step_begin(ctx, a);
  }
  void check_reference(const std::vector<Slot>&, const std::vector<std::vector<float>>& after) const override {
    const StepScalars s = block_of(after[0]);
    const std::int64_t t = updates_ + 1;
    EXPECT_EQ(s.updates, t);
    EXPECT_EQ(s.rng_step, static_cast<std::uint64_t>(t));
    EXPECT_EQ(s.recorded, 77);
    EXPECT_EQ(s.lr, 0.25f);
    EXPECT_EQ(s.bias1, static_cast<float>(1.0 - std::pow(static_cast<double>(beta1_), static_cast<double>(t))));
    EXPECT_EQ(s.bias2, static_cast<float>(1.0 - std::pow(static_cast<double>(beta2_), static_cast<double>(t))));
  }

 private:
  std::int64_t updates_;
  float beta1_, beta2_;
};

// ---- record_scalars ------------------------------------------------------------------------------

class RecordCase : public OpCase {
 public:
  RecordCase(int n, int capacity, std::int64_t recorded) : n_(n), cap_(capacity), recorded_(recorded) {}
  std::string name() const override {
    return "record_scalars_n" + std::to_string(n_) + "_cap" + std::to_string(cap_) + "_at" + std::to_string(recorded_);
  }
  std::vector<Slot> make_slots(std::uint32_t seed) const override {
    StepScalars s;
    s.recorded = recorded_;
    s.updates = 9;
    return {input_slot("src", uniform(static_cast<std::size_t>(n_), seed)),
            inout_slot("ring", uniform(static_cast<std::size_t>(n_) * cap_, seed + 1), 0.0),
            inout_slot("block", block_floats(s), 0.0)};
  }
  void launch(const OpTable& t, const Context& ctx, const std::vector<float*>& p) const override {
    RecordScalars a;
    a.src = p[0], a.ring = p[1], a.s = reinterpret_cast<StepScalars*>(p[2]);
    a.n = n_, a.capacity = cap_;
    t.record_scalars(ctx, a);
  }
  void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const override {
    std::vector<float> want = slots[1].host;
    const std::int64_t slot = recorded_ % cap_;
    for (int i = 0; i < n_; ++i) want[static_cast<std::size_t>(slot * n_ + i)] = slots[0].host[static_cast<std::size_t>(i)];
    EXPECT_EQ(after[1], want) << name() << ": only ring slot " << slot << " may change, to src";
    const StepScalars s = block_of(after[2]);
    EXPECT_EQ(s.recorded, recorded_ + 1);
    EXPECT_EQ(s.updates, 9);
  }

 private:
  int n_, cap_;
  std::int64_t recorded_;
};

std::vector<CasePtr> step_cases() {
  std::vector<CasePtr> c;
  for (std::int64_t u : {std::int64_t{0}, std::int64_t{1}, std::int64_t{999}, (std::int64_t{1} << 31) + 5})
    for (auto [b1, b2] : {std::pair{0.9f, 0.999f}, std::pair{0.5f, 0.25f}, std::pair{0.0f, 0.0f}})
      c.push_back(std::make_shared<StepBeginCase>(u, b1, b2));
  for (auto [n, cap, rec] : {std::tuple{1, 1, 0}, std::tuple{1, 4, 0}, std::tuple{3, 4, 3}, std::tuple{3, 4, 6},
                             std::tuple{5, 1024, 1023}, std::tuple{7, 3, 7}, std::tuple{300, 5, 123456789}})
    c.push_back(std::make_shared<RecordCase>(n, cap, rec));
  return c;
}

class StepOps : public ::testing::TestWithParam<CasePtr> {};

TEST_P(StepOps, CpuMatchesReference) { expect_cpu_matches_reference(*GetParam(), InputCheck::Unchanged); }

TEST_P(StepOps, CudaMatchesCpu) {
  CUAE_SKIP_WITHOUT_GPU();
  expect_cuda_matches_cpu(*GetParam(), InputCheck::Unchanged);
}

INSTANTIATE_TEST_SUITE_P(Step, StepOps, ::testing::ValuesIn(step_cases()), case_name);

// ---- per-step values by pointer -----------------------------------------------------------------

// One op run twice on a backend from the same inputs: with its per-step value passed by value, and
// with it read through a pointer into backend memory (the by-value field then set wrong). Returns
// both results.
struct PointerRun {
  std::string what;
  std::size_t in_floats, out_floats;
  // run(t, ctx, in, out, block, by_pointer): the op on in -> out; block holds a StepScalars and,
  // after it, one weight.
  std::function<void(const OpTable&, const Context&, float*, float*, float*, bool)> run;
};

std::pair<std::vector<float>, std::vector<float>> run_both(Backend& be, const PointerRun& r) {
  DeviceBuffer in(be, r.in_floats), block(be, kBlockFloats + 1);
  in.upload(uniform(r.in_floats, seed_from(r.what), 0.05f, 0.95f));
  StepScalars s;
  s.rng_step = 11;
  s.updates = 11;
  s.lr = 0.05f;
  s.momentum = 0.6f;
  // Adam's corrections of update 11 as OptimizerStep forms them from its step (1 − β^t in double).
  s.bias1 = static_cast<float>(1.0 - std::pow(static_cast<double>(0.9f), 11.0));
  s.bias2 = static_cast<float>(1.0 - std::pow(static_cast<double>(0.999f), 11.0));
  std::vector<float> b = block_floats(s);
  b.push_back(0.75f);  // the weight
  block.upload(b);
  std::vector<float> outs[2];
  for (int by_pointer = 0; by_pointer < 2; ++by_pointer) {
    DeviceBuffer out(be, r.out_floats);
    out.upload(uniform(r.out_floats, 99, 0.0f, 1.0f));  // the optimizer's state (v >= 0) starts from these
    r.run(be.ops(), be.ctx(), in.data(), out.data(), block.data(), by_pointer == 1);
    be.synchronize();
    outs[by_pointer] = out.download();
  }
  return {outs[0], outs[1]};
}

std::vector<PointerRun> pointer_runs() {
  constexpr int kM = 9, kN = 13, kMN = kM * kN;
  auto step_at = [](float* block) { return &reinterpret_cast<StepScalars*>(block)->rng_step; };
  auto weight_at = [](float* block) { return block + kBlockFloats; };
  using Fn = std::function<void(const OpTable&, const Context&, float*, float*, float*, bool)>;
  std::vector<PointerRun> v;
  auto add = [&](const char* what, std::size_t in, std::size_t out, Fn f) { v.push_back({what, in, out, std::move(f)}); };
  add("corrupt", kMN, kMN, [=](const OpTable& t, const Context& c, float* in, float* out, float* blk, bool p) {
    Corrupt a;
    a.x = in, a.y = out, a.count = kMN, a.kind = NoiseKind::Mask, a.level = 0.4f, a.seed = 5;
    a.step = p ? 999 : 11;
    if (p) a.step_at = step_at(blk);
    t.corrupt(c, a);
  });
  add("dropout", kMN, kMN, [=](const OpTable& t, const Context& c, float* in, float* out, float* blk, bool p) {
    Dropout a;
    a.x = in, a.y = out, a.count = kMN, a.p = 0.3f, a.seed = 5;
    a.step = p ? 999 : 11;
    if (p) a.step_at = step_at(blk);
    t.dropout_forward(c, a);
  });
  add("reparameterize", 2 * kMN, kMN, [=](const OpTable& t, const Context& c, float* in, float* out, float* blk, bool p) {
    Reparameterize a;
    a.stats = in, a.z = out, a.m = kM, a.d = kN, a.seed = 5;
    a.step = p ? 999 : 11;
    if (p) a.step_at = step_at(blk);
    t.reparameterize(c, a);
  });
  add("loss", kMN, kMN + 1, [=](const OpTable& t, const Context& c, float* in, float* out, float* blk, bool p) {
    Loss a;
    a.pred = in, a.target = in + 1, a.grad = out + 1, a.loss = out, a.count = kMN - 1;
    a.kind = LossKind::BCEWithLogits;
    a.scale = p ? 0.125f : 0.125f * 0.75f;  // by pointer the weight 0.75 multiplies it
    if (p) a.weight_at = weight_at(blk);
    t.loss(c, a);
  });
  add("activity_penalty", kMN, kMN + kN + 1,
      [=](const OpTable& t, const Context& c, float* in, float* out, float* blk, bool p) {
        ActivityPenalty a;
        a.h = in, a.loss = out, a.rho_hat = out + 1, a.grad = out + 1 + kN, a.m = kM, a.n = kN;
        a.kind = PenaltyKind::KL, a.rho = 0.1f;
        a.weight = p ? 9.0f : 0.75f;
        if (p) a.weight_at = weight_at(blk);
        t.activity_penalty(c, a);
      });
  add("gaussian_kl", 2 * kMN, 2 * kMN + 1,
      [=](const OpTable& t, const Context& c, float* in, float* out, float* blk, bool p) {
        GaussianKL a;
        a.stats = in, a.loss = out, a.grad = out + 1, a.m = kM, a.d = kN;
        a.weight = p ? 9.0f : 0.75f;
        if (p) a.weight_at = weight_at(blk);
        t.gaussian_kl(c, a);
      });
  // param, m and v in the output (restored before each run), the gradient in the input.
  add("optimizer_step", kMN, 3 * kMN, [=](const OpTable& t, const Context& c, float* in, float* out, float* blk, bool p) {
    OptimizerStep a;
    a.grad = in, a.param = out, a.m = out + kMN, a.v = out + 2 * kMN;
    a.n = kMN, a.n_decay = kMN / 2, a.kind = OptKind::AdamW, a.weight_decay = 0.01f;
    a.lr = p ? 9.0f : 0.05f;
    a.step = p ? 2 : 11;
    if (p) a.at = reinterpret_cast<const StepScalars*>(blk);
    t.optimizer_step(c, a);
  });
  add("optimizer_step_sgd_momentum", kMN, 2 * kMN,
      [=](const OpTable& t, const Context& c, float* in, float* out, float* blk, bool p) {
        OptimizerStep a;
        a.grad = in, a.param = out, a.v = out + kMN;
        a.n = kMN, a.n_decay = kMN / 2, a.kind = OptKind::SGD, a.weight_decay = 0.01f, a.nesterov = true;
        a.lr = p ? 9.0f : 0.05f;
        a.momentum = p ? 0.1f : 0.6f;
        if (p) a.at = reinterpret_cast<const StepScalars*>(blk);
        t.optimizer_step(c, a);
      });
  // v0, W, b, c and the workspace in the input (the workspace is written before it is read);
  // dW, db, dc and the reconstruction error out. Sampled visibles, so both kinds of draw move.
  constexpr int kNv = 13, kNh = 5, kWs = 4096;
  add("rbm_cd", kM * kNv + kNh * kNv + kNv + kNh + kWs, kNh * kNv + kNv + kNh + 1,
      [=](const OpTable& t, const Context& c, float* in, float* out, float* blk, bool p) {
        RbmCD a;
        a.v0 = in, a.w = in + kM * kNv, a.b = a.w + kNh * kNv, a.c = a.b + kNv;
        a.ws = const_cast<float*>(a.c) + kNh, a.ws_floats = kWs;
        a.dw = out, a.db = out + kNh * kNv, a.dc = a.db + kNv, a.recon = a.dc + kNh;
        a.m = kM, a.nv = kNv, a.nh = kNh, a.k = 2, a.sample_visible = true, a.seed = 5;
        a.step = p ? 999 : 11;
        if (p) a.step_at = step_at(blk);
        t.rbm_cd(c, a);
      });
  return v;
}

TEST(StepValues, CpuReadsThePointerInsteadOfTheValue) {
  Backend cpu(Device::CPU);
  for (const PointerRun& r : pointer_runs()) {
    const auto [by_value, by_pointer] = run_both(cpu, r);
    EXPECT_EQ(by_pointer, by_value) << r.what;
  }
}

TEST(StepValues, CudaMatchesCpuThroughThePointer) {
  CUAE_SKIP_WITHOUT_GPU();
  Backend cpu(Device::CPU), gpu(Device::CUDA);
  for (const PointerRun& r : pointer_runs()) {
    const auto [cpu_value, cpu_pointer] = run_both(cpu, r);
    const auto [gpu_value, gpu_pointer] = run_both(gpu, r);
    EXPECT_LE(normalized_error(gpu_pointer, cpu_pointer), 1e-5) << r.what;
    EXPECT_EQ(gpu_pointer, gpu_value) << r.what << ": the CUDA op differs by pointer and by value";
  }
}

}  // namespace
