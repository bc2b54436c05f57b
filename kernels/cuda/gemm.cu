// The cuBLASLt GEMM of kernels/cuda/gemm.cuh.
//
// Two levels of caching:
//   process-wide  per (device, workspace, tf32, shape, transposes, epilogue, pointer alignments)
//                 one Plan: descriptors and the algorithm cuBLASLt's heuristic chose, made on first
//                 use and kept (so a step repeats exactly); looked up under one lock. An uncached
//                 call sets its pointers on the shared descriptor and enqueues under that lock.
//   per call site an OpCache entry (Site) with descriptors of its own, its bias/aux pointers set
//                 once and the algorithm copied from the Plan: a repeated call with the same Gemm
//                 and context compares two small structs and calls cublasLtMatmul, with no lock,
//                 map lookup or driver query.
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

int device_of(const Context& ctx) {
  CUAE_CHECK(ctx.device >= 0, "cuBLASLt GEMM: the context names no CUDA device (make it through a cuae Backend)");
  return ctx.device;
}

PlanKey key_of(const Context& ctx, const Gemm& g) {
  return {device_of(ctx),
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

// The bias/aux pointers of g on p's descriptor (cublasLtMatmul reads them at enqueue time).
void set_pointers(Plan& p, const Gemm& g) {
  if (epi_uses_bias(g.epi))
    CUAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)));
  if (epi_uses_aux(g.epi))
    CUAE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &g.aux, sizeof(g.aux)));
}

// Creates the descriptor and layouts of g in p, with g's bias/aux pointers set (the heuristic reads
// them for their alignment; a Site keeps them).
void make_descs(Plan& p, const Context& ctx, const Gemm& g) {
  const cublasComputeType_t compute = ctx.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  CUAE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, compute, CUDA_R_32F));
  CUAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &g.ta, sizeof(g.ta)));
  CUAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &g.tb, sizeof(g.tb)));
  CUAE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &g.epi, sizeof(g.epi)));
  set_pointers(p, g);
  if (epi_uses_aux(g.epi))
    CUAE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &g.aux_ld, sizeof(g.aux_ld)));
  const bool an = g.ta == CUBLAS_OP_N, bn = g.tb == CUBLAS_OP_N;
  CUAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_32F, an ? g.M : g.K, an ? g.K : g.M, g.lda));
  CUAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_32F, bn ? g.K : g.N, bn ? g.N : g.K, g.ldb));
  CUAE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, CUDA_R_32F, g.M, g.N, g.ldd));
}

std::unique_ptr<Plan> make_plan(const Context& ctx, const Gemm& g) {
  auto p = std::make_unique<Plan>();
  make_descs(*p, ctx, g);

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

// One call site's GEMM: the Gemm and context it was made for, and descriptors of its own with
// their pointers set, so a repeated call shares nothing mutable with any other site.
struct Site : OpCache::Entry {
  Gemm g;
  int device = -1;
  std::size_t workspace_bytes = 0;
  bool tf32 = false;
  bool ok = false;  // false: refused (bias alignment) or no algorithm
  Plan own;

  bool made_for(const Context& ctx, const Gemm& call) const {
    return call == g && ctx.device == device && ctx.workspace_bytes == workspace_bytes && ctx.tf32 == tf32;
  }
};

// The site of `entry` in cache, (re)made for g when it was made for another call.
Site& site_for(const Context& ctx, const Gemm& g, OpCache& cache, int entry) {
  CUAE_CHECK(entry >= 0 && entry < OpCache::kEntries, "cuBLASLt GEMM: OpCache entry " + std::to_string(entry));
  auto& slot = cache.entries[entry];
  if (auto* s = dynamic_cast<Site*>(slot.get()); s && s->made_for(ctx, g)) return *s;
  auto s = std::make_unique<Site>();
  s->g = g;
  s->device = device_of(ctx);
  s->workspace_bytes = ctx.workspace_bytes;
  s->tf32 = ctx.tf32;
  if (!epi_uses_bias(g.epi) || bias_epilogue_allowed(g.bias)) {
    cublasLtMatmulAlgo_t algo{};
    {
      std::lock_guard<std::mutex> lock(plan_mutex());
      const Plan& p = plan_for(ctx, g);
      s->ok = p.ok;
      algo = p.algo;
    }
    if (s->ok) {
      make_descs(s->own, ctx, g);
      s->own.algo = algo;
      s->own.ok = true;
    }
  }
  slot = std::move(s);
  return static_cast<Site&>(*slot);
}

void enqueue(const Context& ctx, const Gemm& g, const Plan& p) {
  CUAE_CUBLAS_CHECK(cublasLtMatmul(static_cast<cublasLtHandle_t>(ctx.blaslt), p.desc, &g.alpha, g.A, p.a, g.B, p.b,
                                   &g.beta, g.D, p.d, g.D, p.d, &p.algo, ctx.workspace, ctx.workspace_bytes,
                                   launch::stream_of(ctx)));
}

}  // namespace

bool bias_epilogue_allowed(const void* bias) { return bias != nullptr && launch::aligned16(bias); }

bool gemm_supported(const Context& ctx, const Gemm& g, OpCache* cache, int entry) {
  if (cache) return site_for(ctx, g, *cache, entry).ok;
  if (epi_uses_bias(g.epi) && !bias_epilogue_allowed(g.bias)) return false;
  std::lock_guard<std::mutex> lock(plan_mutex());
  return plan_for(ctx, g).ok;
}

bool gemm(const Context& ctx, const Gemm& g, OpCache* cache, int entry) {
  if (cache) {
    const Site& s = site_for(ctx, g, *cache, entry);
    if (!s.ok) {
      CUAE_CHECK(g.epi != CUBLASLT_EPILOGUE_DEFAULT, gemm_desc(g) + ": cuBLASLt found no algorithm");
      return false;
    }
    enqueue(ctx, g, s.own);
    return true;
  }
  if (epi_uses_bias(g.epi) && !bias_epilogue_allowed(g.bias)) return false;
  // One lock around lookup, pointer attributes and enqueue: the cached descriptor is shared, and
  // cublasLtMatmul reads its attributes at enqueue time.
  std::lock_guard<std::mutex> lock(plan_mutex());
  Plan& p = plan_for(ctx, g);
  if (!p.ok) {
    CUAE_CHECK(g.epi != CUBLASLT_EPILOGUE_DEFAULT, gemm_desc(g) + ": cuBLASLt found no algorithm");
    return false;
  }
  set_pointers(p, g);
  enqueue(ctx, g, p);
  return true;
}

}  // namespace cuae::kern::cuda::blas
