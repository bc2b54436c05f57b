// bench_regularizers: the regularizer ops of the op table on the CUDA backend (input corruption,
// dropout, the activity penalties, k-sparse coding, the optimizer step's L1 weight penalty and the
// contractive penalty), against the device-copy ceiling measured in the same run.
//
//   ceiling/copy_1GiB            a 1 GiB device-to-device copy (GB/s, bytes read + written)
//   corrupt/<kind>/N             mask (ν = 0.25), gaussian (σ = 0.1), salt_pepper (ν = 0.2, values
//                                0 and 1) on x in [0, 1]: read x, write y
//   dropout_fwd/N                p = 0.2: read x, write y
//   dropout_bwd/N                read dy, write dx (the mask drawn again from the seed)
//   dropout_bwd_acc/N            read dy and dx, write dx
//   penalty/<l1|kl>_grad/MxN     value and gradient of the activity penalty on h [m, n] (l1: a ReLU
//                                output, half of it 0; kl: h in [0, 0.4), ρ = 0.05): read h, write
//                                the gradient (kl: and ρ̂ [n]); .../<l1|kl>_grad_acc/... also reads
//                                the gradient it adds into
//   ksparse_fwd/MxN/kK           read x, write y [m, n] and the kept columns [m, k]
//   ksparse_bwd/MxN/kK           read the kept columns and dy at them, write dx [m, n]
//   ksparse_bwd_acc/MxN/kK       read the kept columns, dy and dx at them, write dx at them (values
//                                only: scattered accesses move whole sectors, so this GB/s is low
//                                by construction)
//   optimizer_l1/<kind>/N        optimizer_step with λ₁ = 1e-4 and weight decay 1e-2 (sgd_momentum,
//                                adam, adamw): bench_ops's optimizer/* traffic (λ₁ adds none)
//   contractive/sigmoid/MxNxK/dense_fwd_bwd   the layer's dense_forward + dense_backward (dX, dW,
//                                db; the production variant), as the reference cost
//   contractive/sigmoid/MxNxK/penalty         contractive_penalty on the same layer's h and W,
//                                both gradients accumulated (the training path); its counters
//                                pct_of_dense = 100 × its time / the dense forward + backward time,
//                                and dense_us, that time (median of 11 runs, same flush and events,
//                                measured once per shape)
//
// Sizes: N = 4096·1000 (a batch of a 1000-unit layer) and 64 Mi + 3 (a tail off every vector
// width); activity penalties at 4096×1000 and 65536×1024; k-sparse 4096×1024 with k = 32 and
// 65536×256 with k = 25; the optimizer on the deep autoencoder's 2,837,314 parameters (4,314 of
// them biases) and on 64 Mi + 3 values; the contractive penalty on 256×1000×784, 4096×1000×784 and
// 4096×4096×4096 (m×n×k). The target: pct_copy ≥ 80 for corrupt, dropout and both activity
// penalties.
//
// Method (bench/harness.cuh, as bench_ops): every benchmark first runs its op once on NaN-poisoned
// outputs (or on the known values an accumulating op adds into) and compares the result with the
// CPU reference (cuae::kern::cpu_ops()) on the same inputs, the same seed and step; a benchmark
// whose check fails is skipped with the error and never timed. Whatever a mask selects must agree
// exactly (corrupt mask and salt_pepper, dropout, k-sparse values and kept columns); the dropout
// inputs lie on a 2^-8 grid, so x·1/(1−p), x/(1−p) and their sums are exact in float however a
// kernel orders them. The Gaussian noise and the penalties must agree to a normalised error of
// 1e-5, the optimizer to 1e-6, the dense layer to 1e-4. Timing: 3 warm-up runs, then per iteration
// an L2 flush (a memset of twice the L2 size, outside the timed region) and CUDA events around the
// op; Google Benchmark's manual time; 5 repetitions, aggregates only (the median is the number to
// read). Counters: GB/s (compulsory bytes / time), pct_copy (of the copy ceiling), TFLOP/s (the
// dense layer), err (the normalised error of the check; for indices the fraction that differ).
// The random ops draw with a fixed (seed, step) in every iteration: the same work each time.
//
// Output: --benchmark_out=FILE --benchmark_out_format=json; the context carries the device,
// driver, CUDA runtime, cuBLAS and cuDNN versions, the copy ceiling, and CUAE_COMMIT if set.
// Own flags (removed before Google Benchmark sees argv): --cuae_quick (the 4096-row sizes and the
// autoencoder's parameters only: no 64 Mi, 65536-row or 4096³ case), --cuae_reps=N,
// --cuae_min_time=SECONDS.
// Without a GPU the program says so and exits 0.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/harness.cuh"
#include "kernels/ops.hpp"

namespace {

using cuae::kern::Act;
using cuae::kern::NoiseKind;
using cuae::kern::OptKind;
using cuae::kern::PenaltyKind;
namespace kern = cuae::kern;
using namespace cuae::bench;

constexpr std::uint64_t kSeed = 0x243F6A8885A308D3ull;  // the random ops' seed and step
constexpr std::uint64_t kStep = 7;

// =============================================================================================
// cases
// =============================================================================================

// The inputs, the CPU reference and the device buffers of one benchmark stay resident while
// Google Benchmark calls it again (repetitions, iteration sizing); one case at a time, so the
// next benchmark's allocation finds the last one freed.
struct Case {
  std::string key;
  virtual ~Case() = default;
};
std::unique_ptr<Case> g_case;

template <class C, class Make>
C& resident(const std::string& key, Make make) {
  if (!g_case || g_case->key != key) {
    g_case.reset();
    std::unique_ptr<C> c = make();
    c->key = key;
    g_case = std::move(c);
  }
  return static_cast<C&>(*g_case);
}

// Values on a grid of 2^-8 in [lo, hi].
std::vector<float> grid_vec(std::size_t n, std::uint32_t seed, float lo, float hi) {
  auto v = random_vec(n, seed, lo, hi);
  for (auto& x : v) x = std::round(x * 256.0f) / 256.0f;
  return v;
}

double rms(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

// What an accumulating op adds into: values of the size of its own contribution, so that the
// comparison is not dominated by what was already there.
std::vector<float> base_like(const std::vector<float>& contribution, std::uint32_t seed) {
  const float s = static_cast<float>(std::max(rms(contribution), 1e-30));
  return random_vec(contribution.size(), seed, -s, s);
}

// =============================================================================================
// input corruption and dropout
// =============================================================================================

struct CorruptCase : Case {
  kern::Corrupt a;
  std::vector<float> ry;
  DevBuf x, y;
};

void bm_corrupt(benchmark::State& st, const std::string& name, std::int64_t count, NoiseKind kind) {
  CorruptCase* cp = nullptr;
  try {
    cp = &resident<CorruptCase>(name, [&] {
      auto c = std::make_unique<CorruptCase>();
      const auto hx = random_vec(static_cast<std::size_t>(count), 51, 0.0f, 1.0f);  // pixel-like data
      c->ry.resize(hx.size());
      kern::Corrupt r;
      r.x = hx.data(), r.y = c->ry.data(), r.count = count, r.kind = kind;
      r.level = kind == NoiseKind::Mask ? 0.25f : (kind == NoiseKind::Gaussian ? 0.1f : 0.2f);
      r.lo = 0.0f, r.hi = 1.0f, r.seed = kSeed, r.step = kStep;
      kern::cpu_ops().corrupt(kern::Context{}, r);
      c->x = DevBuf(hx.size()), c->y = DevBuf(hx.size());
      upload(c->x, hx);
      c->a = r;
      c->a.x = c->x.get(), c->a.y = c->y.get();
      return c;
    });
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  CorruptCase& c = *cp;
  const auto f = [&c] { kern::cuda_ops().corrupt(env().ctx(), c.a); };
  const auto check = [&]() -> Check {
    poison(c.y);
    f();
    Checker ck{1e-5};
    if (kind == NoiseKind::Gaussian) ck.compare("y", download(c.y), c.ry);
    else ck.exact("y", download(c.y), c.ry);
    return ck.result;
  };
  run(st, name, check, f, Work{8.0 * static_cast<double>(count), 0});
}

constexpr float kDropP = 0.2f;  // 1/(1−p) = 1.25 in float

struct DropoutCase : Case {
  kern::Dropout a;
  std::vector<float> ry;
  DevBuf x, y;
};

void bm_dropout_fwd(benchmark::State& st, const std::string& name, std::int64_t count) {
  DropoutCase* cp = nullptr;
  try {
    cp = &resident<DropoutCase>(name, [&] {
      auto c = std::make_unique<DropoutCase>();
      const auto hx = grid_vec(static_cast<std::size_t>(count), 61, -1.0f, 1.0f);
      c->ry.resize(hx.size());
      kern::Dropout r;
      r.x = hx.data(), r.y = c->ry.data(), r.count = count, r.p = kDropP, r.seed = kSeed, r.step = kStep;
      kern::cpu_ops().dropout_forward(kern::Context{}, r);
      c->x = DevBuf(hx.size()), c->y = DevBuf(hx.size());
      upload(c->x, hx);
      c->a = r;
      c->a.x = c->x.get(), c->a.y = c->y.get();
      return c;
    });
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  DropoutCase& c = *cp;
  const auto f = [&c] { kern::cuda_ops().dropout_forward(env().ctx(), c.a); };
  const auto check = [&]() -> Check {
    poison(c.y);
    f();
    Checker ck{0};
    ck.exact("y", download(c.y), c.ry);
    return ck.result;
  };
  run(st, name, check, f, Work{8.0 * static_cast<double>(count), 0});
}

struct DropoutBwdCase : Case {
  kern::DropoutBackward a;
  std::vector<float> base, rdx;
  DevBuf dy, dx;
};

void bm_dropout_bwd(benchmark::State& st, const std::string& name, std::int64_t count, bool acc) {
  DropoutBwdCase* cp = nullptr;
  try {
    cp = &resident<DropoutBwdCase>(name, [&] {
      auto c = std::make_unique<DropoutBwdCase>();
      const std::size_t N = static_cast<std::size_t>(count);
      const auto hdy = grid_vec(N, 62, -1.0f, 1.0f);
      if (acc) c->base = grid_vec(N, 63, -1.0f, 1.0f);
      c->rdx = acc ? c->base : std::vector<float>(N);
      kern::DropoutBackward r;
      r.dy = hdy.data(), r.dx = c->rdx.data(), r.count = count, r.p = kDropP, r.acc_dx = acc;
      r.seed = kSeed, r.step = kStep;
      kern::cpu_ops().dropout_backward(kern::Context{}, r);
      c->dy = DevBuf(N), c->dx = DevBuf(N);
      upload(c->dy, hdy);
      c->a = r;
      c->a.dy = c->dy.get(), c->a.dx = c->dx.get();
      return c;
    });
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  DropoutBwdCase& c = *cp;
  const auto f = [&c] { kern::cuda_ops().dropout_backward(env().ctx(), c.a); };
  const auto check = [&]() -> Check {
    if (acc) upload(c.dx, c.base);
    else poison(c.dx);
    f();
    Checker ck{0};
    ck.exact("dx", download(c.dx), c.rdx);
    return ck.result;
  };
  // The timed runs keep adding into dx; it stays finite, which is all the timing needs.
  run(st, name, check, f, Work{(acc ? 12.0 : 8.0) * static_cast<double>(count), 0});
}

// =============================================================================================
// activity penalties
// =============================================================================================

struct PenaltyCase : Case {
  kern::ActivityPenalty a;
  std::vector<float> base, rgrad, rrho;
  float rloss = 0;
  DevBuf h, grad, loss, rho;
};

void bm_penalty(benchmark::State& st, const std::string& name, int m, int n, PenaltyKind kind, bool acc) {
  const bool kl = kind == PenaltyKind::KL;
  PenaltyCase* cp = nullptr;
  try {
    cp = &resident<PenaltyCase>(name, [&] {
      auto c = std::make_unique<PenaltyCase>();
      const std::size_t MN = static_cast<std::size_t>(m) * n, N = static_cast<std::size_t>(n);
      std::vector<float> hh;
      if (kl) {
        hh = random_vec(MN, 71, 0.0f, 0.4f);  // a sigmoid layer's output, mean 0.2
      } else {
        hh = random_vec(MN, 72, -1.0f, 1.0f);  // a ReLU layer's output: half of it exactly 0
        for (auto& v : hh) v = std::max(v, 0.0f);
      }
      kern::ActivityPenalty r;
      r.h = hh.data(), r.loss = &c->rloss, r.m = m, r.n = n, r.kind = kind;
      r.weight = kl ? 0.1f : 1e-3f, r.rho = 0.05f;
      // The contribution alone first, to size the values an accumulating call adds into.
      c->rgrad.resize(MN);
      c->rrho.resize(kl ? N : 0);
      r.grad = c->rgrad.data(), r.rho_hat = kl ? c->rrho.data() : nullptr;
      kern::cpu_ops().activity_penalty(kern::Context{}, r);
      if (acc) {
        c->base = base_like(c->rgrad, 73);
        c->rgrad = c->base;
        r.grad = c->rgrad.data(), r.acc_grad = true;
        kern::cpu_ops().activity_penalty(kern::Context{}, r);
      }
      c->h = DevBuf(MN), c->grad = DevBuf(MN), c->loss = DevBuf(1);
      if (kl) c->rho = DevBuf(N);
      upload(c->h, hh);
      c->a = r;
      c->a.h = c->h.get(), c->a.grad = c->grad.get(), c->a.loss = c->loss.get();
      c->a.rho_hat = kl ? c->rho.get() : nullptr;
      return c;
    });
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  PenaltyCase& c = *cp;
  const auto f = [&c] { kern::cuda_ops().activity_penalty(env().ctx(), c.a); };
  const auto check = [&]() -> Check {
    if (acc) upload(c.grad, c.base);
    else poison(c.grad);
    poison(c.loss);
    if (kl) poison(c.rho);
    f();
    Checker ck{1e-5};
    ck.compare("loss", download(c.loss), std::vector<float>{c.rloss});
    ck.compare("grad", download(c.grad), c.rgrad);
    if (kl) ck.compare("rho_hat", download(c.rho), c.rrho);
    return ck.result;
  };
  const double MN = static_cast<double>(m) * n;
  run(st, name, check, f, Work{4.0 * (MN * (acc ? 3 : 2) + (kl ? n : 0)), 0});
}

// =============================================================================================
// k-sparse coding
// =============================================================================================

struct KsFwdCase : Case {
  kern::KSparse a;
  std::vector<float> ry;
  std::vector<std::int32_t> ridx;
  DevBuf x, y;
  DevIndex idx;
};

void bm_ksparse_fwd(benchmark::State& st, const std::string& name, int m, int n, int k) {
  KsFwdCase* cp = nullptr;
  try {
    cp = &resident<KsFwdCase>(name, [&] {
      auto c = std::make_unique<KsFwdCase>();
      const std::size_t MN = static_cast<std::size_t>(m) * n, MK = static_cast<std::size_t>(m) * k;
      // Pre-activations of a linear code layer; a few rows hold ties at the k-th value (24-bit
      // uniform floats repeat), which the lower-column rule decides.
      const auto hx = random_vec(MN, 81, -1.0f, 1.0f);
      c->ry.resize(MN);
      c->ridx.resize(MK);
      kern::KSparse r;
      r.x = hx.data(), r.y = c->ry.data(), r.index = c->ridx.data(), r.m = m, r.n = n, r.k = k;
      kern::cpu_ops().ksparse_forward(kern::Context{}, r);
      c->x = DevBuf(MN), c->y = DevBuf(MN), c->idx = DevIndex(MK);
      upload(c->x, hx);
      c->a = r;
      c->a.x = c->x.get(), c->a.y = c->y.get(), c->a.index = c->idx.get();
      return c;
    });
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  KsFwdCase& c = *cp;
  const auto f = [&c] { kern::cuda_ops().ksparse_forward(env().ctx(), c.a); };
  const auto check = [&]() -> Check {
    poison(c.y);
    poison(c.idx);
    f();
    Checker ck{0};
    ck.exact("y", download(c.y), c.ry);
    ck.exact("index", download(c.idx), c.ridx);
    return ck.result;
  };
  const double MN = static_cast<double>(m) * n, MK = static_cast<double>(m) * k;
  run(st, name, check, f, Work{4.0 * (2 * MN + MK), 0});
}

struct KsBwdCase : Case {
  kern::KSparseBackward a;
  std::vector<float> base, rdx;
  DevBuf dy, dx;
  DevIndex idx;
};

void bm_ksparse_bwd(benchmark::State& st, const std::string& name, int m, int n, int k, bool acc) {
  KsBwdCase* cp = nullptr;
  try {
    cp = &resident<KsBwdCase>(name, [&] {
      auto c = std::make_unique<KsBwdCase>();
      const std::size_t MN = static_cast<std::size_t>(m) * n, MK = static_cast<std::size_t>(m) * k;
      // The kept columns of a real forward (the CPU's), so the backward sees the same index.
      const auto hx = random_vec(MN, 81, -1.0f, 1.0f);
      std::vector<float> hy(MN);
      std::vector<std::int32_t> hidx(MK);
      kern::KSparse fw;
      fw.x = hx.data(), fw.y = hy.data(), fw.index = hidx.data(), fw.m = m, fw.n = n, fw.k = k;
      kern::cpu_ops().ksparse_forward(kern::Context{}, fw);
      const auto hdy = random_vec(MN, 82, -1.0f, 1.0f);
      if (acc) c->base = random_vec(MN, 83, -1.0f, 1.0f);
      c->rdx = acc ? c->base : std::vector<float>(MN);
      kern::KSparseBackward r;
      r.dy = hdy.data(), r.index = hidx.data(), r.dx = c->rdx.data(), r.m = m, r.n = n, r.k = k, r.acc_dx = acc;
      kern::cpu_ops().ksparse_backward(kern::Context{}, r);
      c->dy = DevBuf(MN), c->dx = DevBuf(MN), c->idx = DevIndex(MK);
      upload(c->dy, hdy);
      upload(c->idx, hidx);
      c->a = r;
      c->a.dy = c->dy.get(), c->a.index = c->idx.get(), c->a.dx = c->dx.get();
      return c;
    });
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  KsBwdCase& c = *cp;
  const auto f = [&c] { kern::cuda_ops().ksparse_backward(env().ctx(), c.a); };
  const auto check = [&]() -> Check {
    if (acc) upload(c.dx, c.base);
    else poison(c.dx);
    f();
    Checker ck{0};
    ck.exact("dx", download(c.dx), c.rdx);
    return ck.result;
  };
  const double MN = static_cast<double>(m) * n, MK = static_cast<double>(m) * k;
  // Not accumulating: the index, dy at it, all of dx. Accumulating: the index, dy and dx at it,
  // dx written back there.
  run(st, name, check, f, Work{acc ? 16.0 * MK : 4.0 * (MN + 2 * MK), 0});
}

// =============================================================================================
// optimizer step with the L1 weight penalty
// =============================================================================================

struct OptCase : Case {
  kern::OptimizerStep a;
  std::vector<float> hp, hg, hm, hv;  // the state before the step
  std::vector<float> rp, rm, rv;      // after one CPU step
  DevBuf p, g, m, v;
  void reset_state() const {
    upload(p, hp);
    upload(g, hg);
    upload(v, hv);
    if (a.kind != OptKind::SGD) upload(m, hm);
  }
};

void bm_optimizer_l1(benchmark::State& st, const std::string& name, std::int64_t n, std::int64_t n_decay,
                     OptKind kind) {
  const bool sgd = kind == OptKind::SGD;
  OptCase* cp = nullptr;
  try {
    cp = &resident<OptCase>(name, [&] {
      auto c = std::make_unique<OptCase>();
      const std::size_t N = static_cast<std::size_t>(n);
      c->hp = random_vec(N, 91, -1.0f, 1.0f);
      c->hg = random_vec(N, 92, -1.0f, 1.0f);
      c->hm = random_vec(N, 93, -0.1f, 0.1f);
      c->hv = random_vec(N, 94, 0.0f, 0.01f);
      c->rp = c->hp, c->rm = c->hm, c->rv = c->hv;
      kern::OptimizerStep r;
      r.n = n, r.n_decay = n_decay, r.kind = kind, r.lr = 1e-3f, r.weight_decay = 1e-2f, r.l1 = 1e-4f;
      r.momentum = sgd ? 0.9f : 0.0f, r.step = 10;
      r.param = c->rp.data(), r.grad = c->hg.data(), r.m = sgd ? nullptr : c->rm.data(), r.v = c->rv.data();
      kern::cpu_ops().optimizer_step(kern::Context{}, r);
      c->p = DevBuf(N), c->g = DevBuf(N), c->v = DevBuf(N);
      if (!sgd) c->m = DevBuf(N);
      c->a = r;
      c->a.param = c->p.get(), c->a.grad = c->g.get(), c->a.m = sgd ? nullptr : c->m.get(), c->a.v = c->v.get();
      return c;
    });
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  OptCase& c = *cp;
  const auto f = [&c] { kern::cuda_ops().optimizer_step(env().ctx(), c.a); };
  const auto check = [&]() -> Check {
    c.reset_state();
    f();
    Checker ck{1e-6};
    ck.compare("param", download(c.p), c.rp);
    ck.compare("v", download(c.v), c.rv);
    if (!sgd) ck.compare("m", download(c.m), c.rm);
    return ck.result;
  };
  // The timed steps keep updating the state in place; it stays finite, which is all the timing
  // needs. Each call starts from the initial state (the check, when it runs, uploads it again).
  try {
    c.reset_state();
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  // Adam/AdamW: read p, g, m, v, write p, m, v; SGD with momentum: read p, g, v, write p, v.
  run(st, name, check, f, Work{(sgd ? 20.0 : 28.0) * static_cast<double>(n), 0});
}

// =============================================================================================
// contractive penalty against its layer
// =============================================================================================

struct ContractiveCase : Case {
  int m = 0, n = 0, k = 0;
  kern::DenseForward fwd;
  kern::DenseBackward bwd;
  kern::ContractivePenalty pen;
  std::vector<float> ry, rdx, rdw, rdb;       // CPU forward and backward of the layer
  std::vector<float> base_gh, base_gw;        // what the penalty's gradients are added into
  std::vector<float> rgh, rgw;                // and the CPU result
  float rloss = 0;
  DevBuf x, w, b, dy, y, dz, dx, dw, db;      // the layer
  DevBuf h, gh, gw, loss, ws;                 // the penalty (h: the CPU forward's output)
  double dense_s = -1;                        // dense forward + backward, seconds (0: its check failed)

  void dense() const {
    const kern::Context& ctx = env().ctx();
    kern::cuda_ops().dense_forward(ctx, fwd);
    kern::cuda_ops().dense_backward(ctx, bwd);
  }
  Check check_dense() const {
    poison(y);
    poison(dx);
    poison(dw);
    poison(db);
    dense();
    Checker ck{1e-4};
    ck.compare("y", download(y), ry);
    ck.compare("db", download(db), rdb);
    ck.compare("dw", download(dw), rdw);
    ck.compare("dx", download(dx), rdx);
    return ck.result;
  }
  void penalty() const { kern::cuda_ops().contractive_penalty(env().ctx(), pen); }
  Check check_penalty() const {
    upload(gh, base_gh);
    upload(gw, base_gw);
    poison(loss);
    poison(ws);
    penalty();
    Checker ck{1e-5};
    ck.compare("loss", download(loss), std::vector<float>{rloss});
    ck.compare("grad_h", download(gh), rgh);
    ck.compare("grad_w", download(gw), rgw);
    return ck.result;
  }
};

ContractiveCase& contractive_case(const std::string& key, int m, int n, int k) {
  return resident<ContractiveCase>(key, [&] {
    auto c = std::make_unique<ContractiveCase>();
    c->m = m, c->n = n, c->k = k;
    const std::size_t M = m, N = n, K = k;
    const std::uint32_t seed = static_cast<std::uint32_t>(m * 2654435761u ^ n * 40503u ^ k);
    const float wscale = 1.0f / std::sqrt(static_cast<float>(k));  // keeps z O(1): sigmoid not saturated
    const auto hx = random_vec(M * K, seed + 1, -1.0f, 1.0f);
    const auto hw = random_vec(N * K, seed + 2, -wscale, wscale);
    const auto hb = random_vec(N, seed + 3, -0.1f, 0.1f);
    const auto hdy = random_vec(M * N, seed + 4, -1.0f, 1.0f);
    const kern::Context cpu{};

    c->ry.resize(M * N);
    std::vector<float> rdz(M * N);
    c->rdx.resize(M * K), c->rdw.resize(N * K), c->rdb.resize(N);
    kern::DenseForward f;
    f.x = hx.data(), f.w = hw.data(), f.b = hb.data(), f.y = c->ry.data(), f.m = m, f.n = n, f.k = k;
    f.act = Act::Sigmoid;
    kern::cpu_ops().dense_forward(cpu, f);
    kern::DenseBackward bw;
    bw.dy = hdy.data(), bw.y = c->ry.data(), bw.x = hx.data(), bw.w = hw.data();
    bw.dz = rdz.data(), bw.dx = c->rdx.data(), bw.dw = c->rdw.data(), bw.db = c->rdb.data();
    bw.m = m, bw.n = n, bw.k = k, bw.act = Act::Sigmoid;
    kern::cpu_ops().dense_backward(cpu, bw);

    // The penalty on the layer's output: its contribution alone first, to size what the
    // accumulating call adds into, then the accumulating call itself.
    std::vector<float> ws(2 * N);
    kern::ContractivePenalty p;
    p.h = c->ry.data(), p.w = hw.data(), p.ws = ws.data(), p.loss = &c->rloss;
    p.m = m, p.n = n, p.k = k, p.act = Act::Sigmoid, p.weight = 0.1f;
    c->rgh.resize(M * N), c->rgw.resize(N * K);
    p.grad_h = c->rgh.data(), p.grad_w = c->rgw.data();
    kern::cpu_ops().contractive_penalty(cpu, p);
    c->base_gh = base_like(c->rgh, seed + 5);
    c->base_gw = base_like(c->rgw, seed + 6);
    c->rgh = c->base_gh, c->rgw = c->base_gw;
    p.acc_grad_h = p.acc_grad_w = true;
    kern::cpu_ops().contractive_penalty(cpu, p);

    c->x = DevBuf(M * K), c->w = DevBuf(N * K), c->b = DevBuf(N), c->dy = DevBuf(M * N);
    c->y = DevBuf(M * N), c->dz = DevBuf(M * N), c->dx = DevBuf(M * K), c->dw = DevBuf(N * K), c->db = DevBuf(N);
    c->h = DevBuf(M * N), c->gh = DevBuf(M * N), c->gw = DevBuf(N * K), c->loss = DevBuf(1), c->ws = DevBuf(2 * N);
    upload(c->x, hx);
    upload(c->w, hw);
    upload(c->b, hb);
    upload(c->dy, hdy);
    upload(c->h, c->ry);

    c->fwd = f;
    c->fwd.x = c->x.get(), c->fwd.w = c->w.get(), c->fwd.b = c->b.get(), c->fwd.y = c->y.get();
    // The backward of the production path: y from the GPU forward just before it.
    c->bwd = bw;
    c->bwd.dy = c->dy.get(), c->bwd.y = c->y.get(), c->bwd.x = c->x.get(), c->bwd.w = c->w.get();
    c->bwd.dz = c->dz.get(), c->bwd.dx = c->dx.get(), c->bwd.dw = c->dw.get(), c->bwd.db = c->db.get();
    c->pen = p;
    c->pen.h = c->h.get(), c->pen.w = c->w.get(), c->pen.ws = c->ws.get(), c->pen.loss = c->loss.get();
    c->pen.grad_h = c->gh.get(), c->pen.grad_w = c->gw.get();
    return c;
  });
}

Work dense_work(int m, int n, int k) {
  const double M = m, N = n, K = k;
  Work w;
  w.flops = 6 * M * N * K;
  // Forward: read X, W, b, write Y. Backward (sigmoid): read dY, Y, X, W, write dZ, dX, dW, db
  // and read dZ back for the GEMMs (bench_ops's dense_fwd and dense_bwd counts).
  w.bytes = 4 * (M * K + N * K + N + M * N) + 4 * (4 * M * N + 2 * M * K + 2 * N * K + N);
  return w;
}

void bm_contractive_dense(benchmark::State& st, const std::string& key, const std::string& name, int m, int n,
                          int k) {
  ContractiveCase* cp = nullptr;
  try {
    cp = &contractive_case(key, m, n, k);
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  ContractiveCase& c = *cp;
  run(st, name, [&c] { return c.check_dense(); }, [&c] { c.dense(); }, dense_work(m, n, k));
}

void bm_contractive_penalty(benchmark::State& st, const std::string& key, const std::string& dense_name,
                            const std::string& name, int m, int n, int k) {
  ContractiveCase* cp = nullptr;
  try {
    cp = &contractive_case(key, m, n, k);
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  ContractiveCase& c = *cp;
  if (c.dense_s < 0) {
    // The reference time, once per shape, of a layer that passes its own check; without it the
    // penalty is still timed, only pct_of_dense is missing.
    try {
      auto it = g_checks.find(dense_name);
      if (it == g_checks.end()) it = g_checks.emplace(dense_name, c.check_dense()).first;
      c.dense_s = it->second.ok ? median_time([&c] { c.dense(); }, 11) : 0;
    } catch (const std::exception&) {
      c.dense_s = 0;
    }
  }
  const double M = m, N = n, K = k;
  // Read h and W; grad_h and grad_w read and written (accumulated). The penalty reads W twice
  // (s_j, then grad_w); the second read counts as compulsory only once.
  const Work w{4 * (3 * M * N + 3 * N * K), 0};
  const double per = run(st, name, [&c] { return c.check_penalty(); }, [&c] { c.penalty(); }, w);
  if (per > 0 && c.dense_s > 0) {
    st.counters["pct_of_dense"] = 100.0 * per / c.dense_s;
    st.counters["dense_us"] = c.dense_s * 1e6;
  }
}

// =============================================================================================
// registration and main
// =============================================================================================

void register_all() {
  register_ceilings(false);
  const bool full = !g_opt.quick;

  const std::int64_t train = 4096 * 1000;                 // a batch of a 1000-unit layer
  const std::int64_t big = (std::int64_t{1} << 26) + 3;  // 64 Mi values and a tail off every vector width
  std::vector<std::int64_t> counts = {train};
  if (full) counts.push_back(big);

  for (std::int64_t count : counts) {
    for (NoiseKind kind : {NoiseKind::Mask, NoiseKind::Gaussian, NoiseKind::SaltPepper}) {
      const std::string name = std::string("corrupt/") + kern::noise_name(kind) + "/" + std::to_string(count);
      reg(name, [=](benchmark::State& st) { bm_corrupt(st, name, count, kind); });
    }
  }
  for (std::int64_t count : counts) {
    const std::string fwd = "dropout_fwd/" + std::to_string(count);
    reg(fwd, [=](benchmark::State& st) { bm_dropout_fwd(st, fwd, count); });
    for (bool acc : {false, true}) {
      const std::string name = std::string(acc ? "dropout_bwd_acc/" : "dropout_bwd/") + std::to_string(count);
      reg(name, [=](benchmark::State& st) { bm_dropout_bwd(st, name, count, acc); });
    }
  }

  std::vector<std::pair<int, int>> hidden = {{4096, 1000}};
  if (full) hidden.push_back({65536, 1024});
  for (const auto& [m, n] : hidden) {
    for (PenaltyKind kind : {PenaltyKind::L1, PenaltyKind::KL}) {
      for (bool acc : {false, true}) {
        const std::string name = std::string("penalty/") + kern::penalty_name(kind) + (acc ? "_grad_acc/" : "_grad/") +
                                 std::to_string(m) + "x" + std::to_string(n);
        reg(name, [=](benchmark::State& st) { bm_penalty(st, name, m, n, kind, acc); });
      }
    }
  }

  struct Ks {
    int m, n, k;
  };
  std::vector<Ks> ks = {{4096, 1024, 32}};
  if (full) ks.push_back({65536, 256, 25});
  for (const Ks& s : ks) {
    const std::string shape = std::to_string(s.m) + "x" + std::to_string(s.n) + "/k" + std::to_string(s.k);
    const std::string fwd = "ksparse_fwd/" + shape;
    reg(fwd, [=](benchmark::State& st) { bm_ksparse_fwd(st, fwd, s.m, s.n, s.k); });
    for (bool acc : {false, true}) {
      const std::string name = std::string(acc ? "ksparse_bwd_acc/" : "ksparse_bwd/") + shape;
      reg(name, [=](benchmark::State& st) { bm_ksparse_bwd(st, name, s.m, s.n, s.k, acc); });
    }
  }

  // The deep autoencoder's 2,837,314 parameters (4,314 of them biases), and a large buffer.
  std::vector<std::pair<std::int64_t, std::int64_t>> sizes = {{2837314, 2837314 - 4314}};
  if (full) sizes.push_back({big, big - 4099});
  const std::pair<const char*, OptKind> opts[] = {
      {"sgd_momentum", OptKind::SGD}, {"adam", OptKind::Adam}, {"adamw", OptKind::AdamW}};
  for (const auto& [n, nd] : sizes) {
    for (const auto& [oname, kind] : opts) {
      const std::string name = std::string("optimizer_l1/") + oname + "/" + std::to_string(n);
      reg(name, [=](benchmark::State& st) { bm_optimizer_l1(st, name, n, nd, kind); });
    }
  }

  struct Layer {
    int m, n, k;
  };
  std::vector<Layer> layers = {{256, 1000, 784}, {4096, 1000, 784}};
  if (full) layers.push_back({4096, 4096, 4096});
  for (const Layer& l : layers) {
    const std::string key = "contractive/sigmoid/" + std::to_string(l.m) + "x" + std::to_string(l.n) + "x" +
                            std::to_string(l.k);
    const std::string dense = key + "/dense_fwd_bwd", pen = key + "/penalty";
    reg(dense, [=](benchmark::State& st) { bm_contractive_dense(st, key, dense, l.m, l.n, l.k); });
    reg(pen, [=](benchmark::State& st) { bm_contractive_penalty(st, key, dense, pen, l.m, l.n, l.k); });
  }
}

}  // namespace

int main(int argc, char** argv) {
  return bench_main(argc, argv, "bench_regularizers", false, register_all, [] { g_case.reset(); });
}
