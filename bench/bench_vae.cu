// bench_vae: the variational-autoencoder ops of the op table on the CUDA backend (the
// reparameterized sample, its backward and the KL divergence from the prior), against the
// device-copy ceiling measured in the same run.
//
//   ceiling/copy_1GiB            a 1 GiB device-to-device copy (GB/s, bytes read + written)
//   reparam_fwd/MxD              reparameterize, sample = true, eps null (the training path: the
//                                backward draws ε again): read μ and lv, write z — 12 B per element
//   reparam_fwd_eps/MxD          the same with eps written — 16 B per element
//   reparam_bwd/MxD              reparameterize_backward: read dz and lv, write both halves of
//                                dstats — 16 B per element
//   reparam_bwd_acc/MxD          the same accumulating into dstats (the encoder's gradient also
//                                receives the KL's) — 24 B per element
//   kl_grad/MxD                  gaussian_kl with the gradient written (the training path): read μ,
//                                lv, write both gradient halves — 16 B per element (+ the scalar)
//   kl_value/MxD                 gaussian_kl, value and per_row only (evaluation): 8 B per element
//                                + 4 B per row
//
// Shapes: the batch m = 128, 1024 and 65536 rows by a latent size d = 20, 32 and 128 (M×D above).
// At these sizes a call moves 30 KB to 200 MB: the small ones measure launch latency, only the
// 65536-row batches can approach the copy ceiling.
//
// Method (bench/harness.cuh, as bench_regularizers): every benchmark first runs its op once on
// NaN-poisoned outputs (or on the known values an accumulating op adds into) and compares the result
// with the CPU reference (cuae::kern::cpu_ops()) on the same inputs, seed and step; a benchmark
// whose check fails is skipped with the error and never timed. z and dstats must agree to a
// normalised error of 1e-6 (the device's expf/logf/sinf/cosf differ from glibc's by an ulp or two),
// the KL's value, per_row and gradient to 1e-6 (both backends sum in double). Timing: 3 warm-up
// runs, then per iteration an L2 flush (outside the timed region) and CUDA events around the op;
// Google Benchmark's manual time; 5 repetitions, aggregates only (the median is the number to
// read). Counters: GB/s (compulsory bytes / time), pct_copy (of the copy ceiling), err (the
// normalised error of the check). The random ops draw with a fixed (seed, step) in every
// iteration: the same work each time.
//
// Output: --benchmark_out=FILE --benchmark_out_format=json; the context carries the device,
// driver, CUDA runtime, cuBLAS and cuDNN versions, the copy ceiling, and CUAE_COMMIT if set.
// Own flags (removed before Google Benchmark sees argv): --cuae_quick (no 65536-row batch),
// --cuae_reps=N, --cuae_min_time=SECONDS.
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

namespace kern = cuae::kern;
using namespace cuae::bench;

constexpr std::uint64_t kSeed = 0x13198A2E03707344ull;  // the draws' seed and step
constexpr std::uint64_t kStep = 11;
constexpr double kTol = 1e-6;

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

// An encoder head's output: μ in [−2, 2), log σ² in [−4, 1) (σ from 0.14 to 1.6, a VAE in
// training), interleaved as stats [m, 2d] wants them.
std::vector<float> make_stats(int m, int d, std::uint32_t seed) {
  const std::size_t D = static_cast<std::size_t>(d);
  const auto mu = random_vec(static_cast<std::size_t>(m) * D, seed, -2.0f, 2.0f);
  const auto lv = random_vec(static_cast<std::size_t>(m) * D, seed + 1, -4.0f, 1.0f);
  std::vector<float> s(2 * mu.size());
  for (std::size_t i = 0; i < static_cast<std::size_t>(m); ++i)
    for (std::size_t j = 0; j < D; ++j) {
      s[i * 2 * D + j] = mu[i * D + j];
      s[i * 2 * D + D + j] = lv[i * D + j];
    }
  return s;
}

std::string shape_str(int m, int d) { return std::to_string(m) + "x" + std::to_string(d); }

// =============================================================================================
// reparameterize
// =============================================================================================

struct FwdCase : Case {
  kern::Reparameterize a;
  std::vector<float> rz, reps;
  DevBuf stats, z, eps;
};

void bm_reparam_fwd(benchmark::State& st, const std::string& name, int m, int d, bool with_eps) {
  FwdCase* cp = nullptr;
  try {
    cp = &resident<FwdCase>(name, [&] {
      auto c = std::make_unique<FwdCase>();
      const std::size_t n = static_cast<std::size_t>(m) * d;
      const auto hs = make_stats(m, d, 91);
      c->rz.resize(n);
      if (with_eps) c->reps.resize(n);
      kern::Reparameterize r;
      r.stats = hs.data(), r.z = c->rz.data(), r.eps = with_eps ? c->reps.data() : nullptr;
      r.m = m, r.d = d, r.sample = true, r.seed = kSeed, r.step = kStep;
      kern::cpu_ops().reparameterize(kern::Context{}, r);
      c->stats = DevBuf(2 * n), c->z = DevBuf(n);
      if (with_eps) c->eps = DevBuf(n);
      upload(c->stats, hs);
      c->a = r;
      c->a.stats = c->stats.get(), c->a.z = c->z.get(), c->a.eps = with_eps ? c->eps.get() : nullptr;
      return c;
    });
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  FwdCase& c = *cp;
  const auto f = [&c] { kern::cuda_ops().reparameterize(env().ctx(), c.a); };
  const auto check = [&]() -> Check {
    poison(c.z);
    if (with_eps) poison(c.eps);
    f();
    Checker ck{kTol};
    ck.compare("z", download(c.z), c.rz);
    if (with_eps) ck.compare("eps", download(c.eps), c.reps);
    return ck.result;
  };
  run(st, name, check, f, Work{(with_eps ? 16.0 : 12.0) * static_cast<double>(m) * d, 0});
}

struct BwdCase : Case {
  kern::ReparameterizeBackward a;
  std::vector<float> base, rds;
  DevBuf dz, stats, ds;
};

void bm_reparam_bwd(benchmark::State& st, const std::string& name, int m, int d, bool acc) {
  BwdCase* cp = nullptr;
  try {
    cp = &resident<BwdCase>(name, [&] {
      auto c = std::make_unique<BwdCase>();
      const std::size_t n = static_cast<std::size_t>(m) * d;
      const auto hs = make_stats(m, d, 92);
      const auto hdz = random_vec(n, 93, -1.0f, 1.0f);
      if (acc) c->base = random_vec(2 * n, 94, -1.0f, 1.0f);
      c->rds = acc ? c->base : std::vector<float>(2 * n);
      kern::ReparameterizeBackward r;
      r.dz = hdz.data(), r.stats = hs.data(), r.dstats = c->rds.data();
      r.m = m, r.d = d, r.acc = acc, r.seed = kSeed, r.step = kStep;
      kern::cpu_ops().reparameterize_backward(kern::Context{}, r);
      c->dz = DevBuf(n), c->stats = DevBuf(2 * n), c->ds = DevBuf(2 * n);
      upload(c->dz, hdz);
      upload(c->stats, hs);
      c->a = r;
      c->a.dz = c->dz.get(), c->a.stats = c->stats.get(), c->a.dstats = c->ds.get();
      return c;
    });
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  BwdCase& c = *cp;
  const auto f = [&c] { kern::cuda_ops().reparameterize_backward(env().ctx(), c.a); };
  const auto check = [&]() -> Check {
    if (acc) upload(c.ds, c.base);
    else poison(c.ds);
    f();
    Checker ck{kTol};
    ck.compare("dstats", download(c.ds), c.rds);
    return ck.result;
  };
  // The timed runs keep adding into dstats; it stays finite, which is all the timing needs.
  run(st, name, check, f, Work{(acc ? 24.0 : 16.0) * static_cast<double>(m) * d, 0});
}

// =============================================================================================
// gaussian_kl
// =============================================================================================

struct KLCase : Case {
  kern::GaussianKL a;
  std::vector<float> rgrad, rrow;
  float rloss = 0;
  DevBuf stats, grad, loss, row;
};

void bm_kl(benchmark::State& st, const std::string& name, int m, int d, bool grad) {
  KLCase* cp = nullptr;
  try {
    cp = &resident<KLCase>(name, [&] {
      auto c = std::make_unique<KLCase>();
      const std::size_t n = static_cast<std::size_t>(m) * d;
      const auto hs = make_stats(m, d, 95);
      if (grad) c->rgrad.resize(2 * n);
      else c->rrow.resize(static_cast<std::size_t>(m));
      kern::GaussianKL r;
      r.stats = hs.data(), r.loss = &c->rloss, r.m = m, r.d = d, r.weight = 0.5f;
      r.grad = grad ? c->rgrad.data() : nullptr;
      r.per_row = grad ? nullptr : c->rrow.data();
      kern::cpu_ops().gaussian_kl(kern::Context{}, r);
      c->stats = DevBuf(2 * n), c->loss = DevBuf(1);
      if (grad) c->grad = DevBuf(2 * n);
      else c->row = DevBuf(static_cast<std::size_t>(m));
      upload(c->stats, hs);
      c->a = r;
      c->a.stats = c->stats.get(), c->a.loss = c->loss.get();
      c->a.grad = grad ? c->grad.get() : nullptr;
      c->a.per_row = grad ? nullptr : c->row.get();
      return c;
    });
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  KLCase& c = *cp;
  const auto f = [&c] { kern::cuda_ops().gaussian_kl(env().ctx(), c.a); };
  const auto check = [&]() -> Check {
    poison(c.loss);
    if (grad) poison(c.grad);
    else poison(c.row);
    f();
    Checker ck{kTol};
    ck.compare("loss", download(c.loss), std::vector<float>{c.rloss});
    if (grad) ck.compare("grad", download(c.grad), c.rgrad);
    else ck.compare("per_row", download(c.row), c.rrow);
    return ck.result;
  };
  const double MD = static_cast<double>(m) * d;
  run(st, name, check, f, Work{grad ? 16.0 * MD + 4.0 : 8.0 * MD + 4.0 * m + 4.0, 0});
}

// =============================================================================================
// registration and main
// =============================================================================================

void register_all() {
  register_ceilings(false);
  std::vector<int> ms = {128, 1024};
  if (!g_opt.quick) ms.push_back(65536);
  const int ds[] = {20, 32, 128};
  for (int m : ms) {
    for (int d : ds) {
      const std::string shape = shape_str(m, d);
      for (bool eps : {false, true}) {
        const std::string name = std::string(eps ? "reparam_fwd_eps/" : "reparam_fwd/") + shape;
        reg(name, [=](benchmark::State& st) { bm_reparam_fwd(st, name, m, d, eps); });
      }
      for (bool acc : {false, true}) {
        const std::string name = std::string(acc ? "reparam_bwd_acc/" : "reparam_bwd/") + shape;
        reg(name, [=](benchmark::State& st) { bm_reparam_bwd(st, name, m, d, acc); });
      }
      for (bool grad : {true, false}) {
        const std::string name = std::string(grad ? "kl_grad/" : "kl_value/") + shape;
        reg(name, [=](benchmark::State& st) { bm_kl(st, name, m, d, grad); });
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  return bench_main(argc, argv, "bench_vae", false, register_all, [] { g_case.reset(); });
}
