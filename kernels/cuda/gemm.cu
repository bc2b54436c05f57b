// The cuBLASLt GEMM of kernels/cuda/gemm.cuh: a descriptor, layouts and an algorithm chosen by
// cuBLASLt's heuristic once per shape and kept (so a step repeats exactly), looked up under one
// lock with the enqueue (the cached descriptor's pointer attributes are set per call).
#include <cublasLt.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm.cuh"

namespace cuae::kern::cuda::blas {

namespace {

// The largest power of two (≤ 256) dividing the address: cuBLASLt's heuristic assumes 256-byte
// alignment unless told otherwise, and an algorithm chosen for aligned buffers may fault on a
// pointer into the middle of an arena.
std::int64_t align_of(const void* p) {
  if (!p) return 256;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::int64_t r = 1;
  while (r < 256 && (a & static_cast<std::uintptr_t>(r)) == 0) r <<= 1;
  return r;
}

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false;  // false: the heuristic offered nothing for this request (remembered, not retried)
  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    // Host-side objects only; destroying them needs no device and never fails in practice.
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

// Everything the algorithm choice depends on. The device is part of it (an algorithm is chosen
// for one GPU model and SM count); the handle is not: an algorithm found through one handle is
// valid with any other on the same device, and a handle's address may be reused after it dies.
using PlanKey = std::array<std::int64_t, 18>;

PlanKey key_of(const Context& ctx, const Gemm& g) {
  int device = 0;
  CUAE_CUDA_CHECK(cudaGetDevice(&device));
  return {device,
          static_cast<std::int64_t>(ctx.workspace_bytes),
          ctx.tf32 ? 1 : 0,
          g.ta,
          g.tb,
          g.M,
          g.N,
          g.K,
          g.lda,
          g.ldb,
          g.ldd,
          static_cast<std::int64_t>(g.epi),
          g.aux_ld,
          align_of(g.A),
          align_of(g.B),
          align_of(g.D),
          epi_uses_bias(g.epi) ? align_of(g.bias) : 0,
          epi_uses_aux(g.epi) ? align_of(g.aux) : 0};
}

std::unique_ptr<Plan> make_plan(const Context& ctx, const Gemm& g) {
  auto p = std::make_unique<Plan>();
  const cublasComputeType_t compute = ctx.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  CUAE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, compute, CUDA_R_32F));
  CUAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &g.ta, sizeof(g.ta)));
  CUAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &g.tb, sizeof(g.tb)));
  CUAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &g.epi, sizeof(g.epi)));
  // The heuristic reads the bias/aux pointers' values for their alignment, so they are set now
  // (and again, to the call's own pointers, before every matmul).
  if (epi_uses_bias(g.epi))
    CUAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)));
  if (epi_uses_aux(g.epi)) {
    CUAE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &g.aux, sizeof(g.aux)));
    CUAE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &g.aux_ld, sizeof(g.aux_ld)));
  }
  const bool an = g.ta == CUBLAS_OP_N, bn = g.tb == CUBLAS_OP_N;
  CUAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_32F, an ? g.M : g.K, an ? g.K : g.M, g.lda));
  CUAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_32F, bn ? g.K : g.N, bn ? g.N : g.K, g.ldb));
  CUAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->d, CUDA_R_32F, g.M, g.N, g.ldd));

  cublasLtMatmulPreference_t pref = nullptr;
  CUAE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  // The preference is destroyed on every path out, a throw included.
  struct PrefGuard {
    cublasLtMatmulPreference_t p;
    ~PrefGuard() { cublasLtMatmulPreferenceDestroy(p); }
  } guard{pref};
  const std::uint64_t ws = ctx.workspace_bytes;
  CUAE_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  const std::uint32_t al_a = static_cast<std::uint32_t>(align_of(g.A));
  const std::uint32_t al_b = static_cast<std::uint32_t>(align_of(g.B));
  const std::uint32_t al_d = static_cast<std::uint32_t>(align_of(g.D));
  CUAE_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a)));
  CUAE_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b)));
  CUAE_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof(al_d)));
  CUAE_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof(al_d)));

  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(static_cast<cublasLtHandle_t>(ctx.blaslt), p->desc, p->a,
                                                           p->b, p->d, p->d, pref, 1, &res, &found);
  // NOT_SUPPORTED (or no result) is an answer, not an error: the caller falls back to a plain GEMM.
  if (st == CUBLAS_STATUS_SUCCESS && found > 0 && res.state == CUBLAS_STATUS_SUCCESS) {
    p->algo = res.algo;
    p->ok = true;
  } else if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED) {
    CUAE_CUBLAS_CHECK(st);
  }
  return p;
}

std::string gemm_desc(const Gemm& g) {
  return "cuBLASLt GEMM (column-major M=" + std::to_string(g.M) + ", N=" + std::to_string(g.N) +
         ", K=" + std::to_string(g.K) + ", opA=" + (g.ta == CUBLAS_OP_N ? "N" : "T") +
         ", opB=" + (g.tb == CUBLAS_OP_N ? "N" : "T") + ", epilogue=" + std::to_string(static_cast<int>(g.epi)) + ")";
}

std::mutex& plan_mutex() {
  static std::mutex mu;
  return mu;
}

// The plan for g, made (and its heuristic run) on first use. Caller holds plan_mutex().
Plan& plan_for(const Context& ctx, const Gemm& g) {
  static std::map<PlanKey, std::unique_ptr<Plan>> cache;
  const PlanKey key = key_of(ctx, g);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, make_plan(ctx, g)).first;
  return *it->second;
}

}  // namespace

bool gemm_supported(const Context& ctx, const Gemm& g) {
  std::lock_guard<std::mutex> lock(plan_mutex());
  return plan_for(ctx, g).ok;
}

bool gemm(const Context& ctx, const Gemm& g) {
  // One lock around lookup, pointer attributes and enqueue: the cached descriptor is shared, and
  // cublasLtMatmul reads its attributes at enqueue time (so a captured CUDA graph keeps them).
  std::lock_guard<std::mutex> lock(plan_mutex());
  Plan& p = plan_for(ctx, g);
  if (!p.ok) {
    CUAE_CHECK(g.epi != CUBLASLT_EPILOGUE_DEFAULT, gemm_desc(g) + ": cuBLASLt found no algorithm");
    return false;
  }
  if (epi_uses_bias(g.epi))
    CUAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)));
  if (epi_uses_aux(g.epi))
    CUAE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &g.aux, sizeof(g.aux)));
  CUAE_CUBLAS_CHECK(cublasLtMatmul(static_cast<cublasLtHandle_t>(ctx.blaslt), p.desc, &g.alpha, g.A, p.a, g.B, p.b,
                                   &g.beta, g.D, p.d, g.D, p.d, &p.algo, ctx.workspace, ctx.workspace_bytes,
                                   launch::stream_of(ctx)));
  return true;
}


}  // namespace cuae::kern::cuda::blas
