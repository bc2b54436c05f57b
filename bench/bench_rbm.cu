// bench_rbm: one contrastive-divergence step (rbm_cd, k = 1) of the restricted Boltzmann machines
// of Hinton & Salakhutdinov's 2006 deep autoencoder, on the CUDA backend, beside the same step's
// GEMMs alone done by plain cuBLAS in the same run.
//
//   ceiling/copy_1GiB, ceiling/sgemm_fp32_8192, ceiling/gemm_tf32_8192   the run's ceilings
//   cd1/NVxNH/bM          rbm_cd with every output (dW, db, dc, recon): 5 GEMMs of 2·m·nv·nh FLOPs
//                         (v0·Wᵀ, h·W, v1·Wᵀ, and the two halves of dW) plus the sampling, bias
//                         and reduction passes. Counters: TFLOP/s and pct_sgemm over the 5 GEMMs'
//                         FLOPs, gemm_us (the median time of the same 5 GEMMs issued back to back
//                         with cublasSgemm on the same buffers, measured in the same run with the
//                         same L2 flush), gemm_share (that time as a percentage of the step's:
//                         what is left is our passes and launch gaps), err.
//   Layers: 784→1000, 1000→500, 500→250 (Bernoulli visible and hidden) and 250→30 (linear hidden
//   units, as the 2006 code's top layer); batches m = 100 (the 2006 code's) and 1024.
//
// Check (once per benchmark, before timing): the CUDA op on NaN-poisoned outputs against the CPU
// op (cuae::kern::cpu_ops()) on the same inputs, seed and step; normalised error ≤ 1e-3. Not
// tighter, because a Bernoulli sample is decided by u < p and the device's expf may put p an ulp
// away from the CPU's: a uniform within that ulp samples the other way (expected ~0.1 flips per
// million draws), which moves one row's reconstruction; estimated effect on dW ~1e-4 at m = 100.
// The linear-hidden layer draws the same normals to a few ulp.
//
// Timing and flags: bench/harness.cuh (3 warm-up runs, L2 flush per iteration, CUDA events,
// manual time, 5 repetitions, aggregates only; --cuae_quick keeps batch 100 only, --cuae_reps=N,
// --cuae_min_time=S). Without a GPU the program says so and exits 0.
#include <benchmark/benchmark.h>
#include <cublas_v2.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/harness.cuh"
#include "kernels/ops.hpp"

namespace {

namespace kern = cuae::kern;
using namespace cuae::bench;

constexpr std::uint64_t kSeed = 0x243F6A8885A308D3ull;
constexpr std::uint64_t kStep = 3;
constexpr double kTol = 1e-3;

struct Layer {
  int nv, nh;
  kern::RbmUnit hidden;
};

struct CdCase {
  std::string key;
  kern::RbmCD a;
  std::vector<float> rdw, rdb, rdc, rrecon;
  DevBuf v0, w, b, c, dw, db, dc, recon, ws;
  DevBuf gh, gv, gdw;  // the GEMM-only run's outputs
  double gemm_s = 0;
};
std::unique_ptr<CdCase> g_case;

CdCase& resident(const std::string& key, int m, const Layer& L) {
  if (g_case && g_case->key == key) return *g_case;
  g_case.reset();
  auto c = std::make_unique<CdCase>();
  c->key = key;
  const std::size_t MV = static_cast<std::size_t>(m) * L.nv, MH = static_cast<std::size_t>(m) * L.nh;
  const std::size_t W = static_cast<std::size_t>(L.nh) * L.nv;
  // Pixel-like visibles in [0, 1); the 2006 code's initial weights, ~N(0, 0.1²) (uniform of that
  // spread here); small biases.
  const auto hv0 = random_vec(MV, 61, 0.0f, 1.0f);
  const auto hw = random_vec(W, 62, -0.17f, 0.17f);
  const auto hb = random_vec(L.nv, 63, -0.1f, 0.1f);
  const auto hc = random_vec(L.nh, 64, -0.1f, 0.1f);
  std::size_t nws = 0;
  kern::RbmCDWorkspace q;
  q.m = m, q.nv = L.nv, q.nh = L.nh, q.floats = &nws;
  kern::cpu_ops().rbm_cd_workspace(kern::Context{}, q);

  // The CPU reference.
  std::vector<float> hws(nws);
  c->rdw.resize(W), c->rdb.resize(L.nv), c->rdc.resize(L.nh), c->rrecon.resize(1);
  kern::RbmCD r;
  r.v0 = hv0.data(), r.w = hw.data(), r.b = hb.data(), r.c = hc.data();
  r.dw = c->rdw.data(), r.db = c->rdb.data(), r.dc = c->rdc.data(), r.recon = c->rrecon.data();
  r.ws = hws.data(), r.ws_floats = nws;
  r.m = m, r.nv = L.nv, r.nh = L.nh, r.k = 1, r.hidden = L.hidden, r.seed = kSeed, r.step = kStep;
  kern::cpu_ops().rbm_cd(kern::Context{}, r);

  c->v0 = DevBuf(MV), c->w = DevBuf(W), c->b = DevBuf(L.nv), c->c = DevBuf(L.nh);
  c->dw = DevBuf(W), c->db = DevBuf(L.nv), c->dc = DevBuf(L.nh), c->recon = DevBuf(1), c->ws = DevBuf(nws);
  c->gh = DevBuf(MH), c->gv = DevBuf(MV), c->gdw = DevBuf(W);
  upload(c->v0, hv0), upload(c->w, hw), upload(c->b, hb), upload(c->c, hc);
  c->a = r;
  c->a.v0 = c->v0.get(), c->a.w = c->w.get(), c->a.b = c->b.get(), c->a.c = c->c.get();
  c->a.dw = c->dw.get(), c->a.db = c->db.get(), c->a.dc = c->dc.get(), c->a.recon = c->recon.get();
  c->a.ws = c->ws.get();
  g_case = std::move(c);
  return *g_case;
}

// The step's five GEMMs with cublasSgemm (column-major views of the row-major buffers, as in
// kernels/cuda/rbm.cu): H = v0·Wᵀ, V = H·W, H = V·Wᵀ, dW = −Hᵀ·v0/m, dW += Hᵀ·V/m.
void gemms_alone(const CdCase& c, int m, const Layer& L) {
  cublasHandle_t h = env().blas;
  const float one = 1.0f, zero = 0.0f, inv = 1.0f / m, ninv = -inv;
  const int nv = L.nv, nh = L.nh;
  CUAE_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, nh, m, nv, &one, c.w.get(), nv, c.v0.get(), nv, &zero,
                                c.gh.get(), nh));
  CUAE_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, nv, m, nh, &one, c.w.get(), nv, c.gh.get(), nh, &zero,
                                c.gv.get(), nv));
  CUAE_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, nh, m, nv, &one, c.w.get(), nv, c.gv.get(), nv, &zero,
                                c.gh.get(), nh));
  CUAE_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, nv, nh, m, &ninv, c.v0.get(), nv, c.gh.get(), nh, &zero,
                                c.gdw.get(), nv));
  CUAE_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, nv, nh, m, &inv, c.gv.get(), nv, c.gh.get(), nh, &one,
                                c.gdw.get(), nv));
}

void bm_cd(benchmark::State& st, const std::string& name, int m, Layer L) {
  CdCase* cp = nullptr;
  try {
    cp = &resident(name, m, L);
    if (cp->gemm_s == 0) cp->gemm_s = median_time([&] { gemms_alone(*cp, m, L); });
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  CdCase& c = *cp;
  const auto f = [&c] { kern::cuda_ops().rbm_cd(env().ctx(), c.a); };
  const auto check = [&]() -> Check {
    poison(c.dw), poison(c.db), poison(c.dc), poison(c.recon), poison(c.ws);
    f();
    Checker ck{kTol};
    ck.compare("dw", download(c.dw), c.rdw);
    ck.compare("db", download(c.db), c.rdb);
    ck.compare("dc", download(c.dc), c.rdc);
    ck.compare("recon", download(c.recon), c.rrecon);
    return ck.result;
  };
  const double flops = 5.0 * 2.0 * m * static_cast<double>(L.nv) * L.nh;
  const double per = run(st, name, check, f, Work{0, flops});
  if (per > 0) {
    st.counters["gemm_us"] = c.gemm_s * 1e6;
    st.counters["gemm_share"] = 100.0 * c.gemm_s / per;
  }
}

void register_all() {
  register_ceilings(true);
  const Layer layers[] = {{784, 1000, kern::RbmUnit::Bernoulli},
                          {1000, 500, kern::RbmUnit::Bernoulli},
                          {500, 250, kern::RbmUnit::Bernoulli},
                          {250, 30, kern::RbmUnit::Gaussian}};
  std::vector<int> ms = {100};
  if (!g_opt.quick) ms.push_back(1024);
  for (int m : ms)
    for (const Layer& L : layers) {
      const std::string name = "cd1/" + std::to_string(L.nv) + "x" + std::to_string(L.nh) + "/b" + std::to_string(m);
      reg(name, [=](benchmark::State& st) { bm_cd(st, name, m, L); });
    }
}

}  // namespace

int main(int argc, char** argv) {
  return bench_main(argc, argv, "bench_rbm", true, register_all, [] { g_case.reset(); });
}
