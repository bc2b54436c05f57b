// The harness the bench_*.cu programs share: device buffers, the CUDA environment (stream, cuBLAS,
// events, the L2 flush buffer), the check of an op against the CPU reference before it is timed,
// timing with CUDA events, the ceilings measured in the same run, the JSON context, the own
// --cuae_* flags and main().
//
// Method (every program): a benchmark first runs its op once on NaN-poisoned outputs and compares
// the result with the CPU reference (cuae::kern::cpu_ops()) on the same random inputs; one whose
// check fails is skipped with the error and never timed. Timing: 3 warm-up runs, then per iteration
// an L2 flush (a memset of twice the L2 size, outside the timed region) and CUDA events around the
// op; Google Benchmark's manual time; --cuae_reps repetitions, aggregates only (the median is the
// number to read). Counters: GB/s (compulsory bytes / time), TFLOP/s, the percentage of the
// measured ceiling (pct_copy, pct_sgemm) and err (the normalised error of the check).
//
// Each program is one translation unit, so everything here is inline in cuae::bench.
#pragma once

#include <benchmark/benchmark.h>
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cuae/tensor.hpp"
#include "host/runtime/backend.hpp"
#include "host/runtime/check.hpp"
#include "kernels/ops.hpp"

namespace cuae::bench {

struct Options {
  int reps = 5;
  double min_time = 0.005;  // seconds of GPU time per repetition
  bool quick = false;       // each program's reduced set of shapes
};
inline Options g_opt;

// =============================================================================================
// device environment
// =============================================================================================

// An owning device array of n values of T.
template <class T>
class DevArray {
 public:
  DevArray() = default;
  explicit DevArray(std::size_t n) : n_(n) {
    if (n) CUAE_CUDA_CHECK(cudaMalloc(&p_, n * sizeof(T)));
  }
  ~DevArray() {
    if (p_) cudaFree(p_);
  }
  DevArray(DevArray&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  DevArray& operator=(DevArray&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  DevArray(const DevArray&) = delete;
  DevArray& operator=(const DevArray&) = delete;
  T* get() const { return static_cast<T*>(p_); }
  std::size_t size() const { return n_; }

 private:
  void* p_ = nullptr;
  std::size_t n_ = 0;
};
using DevBuf = DevArray<float>;
using DevIndex = DevArray<std::int32_t>;

struct Env {
  std::unique_ptr<cuae::Backend> backend;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  cudaDeviceProp prop{};
  void* flush = nullptr;
  std::size_t flush_bytes = 0;
  double copy_gbps = 0, sgemm_tflops = 0, tf32_tflops = 0;  // ceilings, measured before the benchmarks

  Env() {
    backend = std::make_unique<cuae::Backend>(cuae::Device::CUDA);
    stream = static_cast<cudaStream_t>(backend->ctx().stream);
    int dev = 0;
    CUAE_CUDA_CHECK(cudaGetDevice(&dev));
    CUAE_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    CUAE_CUBLAS_CHECK(cublasCreate(&blas));
    CUAE_CUBLAS_CHECK(cublasSetStream(blas, stream));
    CUAE_CUDA_CHECK(cudaEventCreate(&start));
    CUAE_CUDA_CHECK(cudaEventCreate(&stop));
    // Twice the L2, so a memset of it leaves nothing of the last iteration's data in the cache.
    flush_bytes = std::max<std::size_t>(2 * static_cast<std::size_t>(prop.l2CacheSize), 64u << 20);
    CUAE_CUDA_CHECK(cudaMalloc(&flush, flush_bytes));
  }
  ~Env() {
    cudaStreamSynchronize(stream);
    cudaFree(flush);
    cudaEventDestroy(stop);
    cudaEventDestroy(start);
    cublasDestroy(blas);
  }
  const kern::Context& ctx() const { return backend->ctx(); }
  void sync() const { CUAE_CUDA_CHECK(cudaStreamSynchronize(stream)); }
};

inline Env* g_env = nullptr;
inline Env& env() { return *g_env; }

// All copies go through the backend's stream (a non-blocking one: plain cudaMemcpy on the legacy
// stream would not be ordered with it).
template <class T>
void upload(const DevArray<T>& d, const std::vector<T>& h) {
  CUAE_CHECK(d.size() == h.size(), "upload of " + std::to_string(h.size()) + " into " + std::to_string(d.size()));
  CUAE_CUDA_CHECK(cudaMemcpyAsync(d.get(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice, env().stream));
  env().sync();
}
template <class T>
std::vector<T> download(const DevArray<T>& d) {
  std::vector<T> h(d.size());
  CUAE_CUDA_CHECK(cudaMemcpyAsync(h.data(), d.get(), h.size() * sizeof(T), cudaMemcpyDeviceToHost, env().stream));
  env().sync();
  return h;
}
template <class T>
void poison(const DevArray<T>& d) {  // all bits set: a NaN in every float, -1 in every index
  CUAE_CUDA_CHECK(cudaMemsetAsync(d.get(), 0xFF, d.size() * sizeof(T), env().stream));
}

inline std::vector<float> random_vec(std::size_t n, std::uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// =============================================================================================
// checking and timing
// =============================================================================================

// ‖got − want‖₂ / max(‖want‖₂, tiny); +inf when got has a non-finite value (a poisoned element
// the op never wrote, or a real NaN).
inline double nerr(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return INFINITY;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

struct Check {
  bool ok = false;
  double err = 0;
  std::string msg;
};

// Accumulates named comparisons; the worst error decides.
struct Checker {
  double tol;
  Check result{true, 0, ""};
  void compare(const char* what, const std::vector<float>& got, const std::vector<float>& want) {
    const double e = nerr(got, want);
    result.err = std::max(result.err, e);
    if (!(e <= tol)) {
      result.ok = false;
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s%s: normalised error %.3g > %.3g", result.msg.empty() ? "" : "; ", what, e, tol);
      result.msg += buf;
    }
  }
  // Element-for-element equality (masks, kept entries, indices), whatever tol says. The error it
  // records is the normalised error for floats and the fraction of differing elements for indices.
  template <class T>
  void exact(const char* what, const std::vector<T>& got, const std::vector<T>& want) {
    std::size_t bad = 0, first = 0;
    if (got.size() != want.size()) {
      bad = std::max(got.size(), want.size());
    } else {
      for (std::size_t i = 0; i < got.size(); ++i)
        if (!(got[i] == want[i]) && bad++ == 0) first = i;
    }
    double e = 0;
    if constexpr (std::is_same_v<T, float>) e = nerr(got, want);
    else e = want.empty() ? (bad ? 1.0 : 0.0) : static_cast<double>(bad) / static_cast<double>(want.size());
    if (bad && e == 0) e = INFINITY;  // e.g. a size mismatch
    result.err = std::max(result.err, e);
    if (bad) {
      result.ok = false;
      char buf[200];
      std::snprintf(buf, sizeof buf, "%s%s: %zu of %zu elements differ (first at %zu), must be exact",
                    result.msg.empty() ? "" : "; ", what, bad, want.size(), first);
      result.msg += buf;
    }
  }
};

// Checks run once per benchmark name (Google Benchmark calls a benchmark function several times:
// per repetition and while it sizes the iteration count).
inline std::map<std::string, Check> g_checks;

struct Work {
  double bytes = 0;
  double flops = 0;
};

inline double time_once(const std::function<void()>& f) {
  Env& e = env();
  CUAE_CUDA_CHECK(cudaMemsetAsync(e.flush, 0, e.flush_bytes, e.stream));
  CUAE_CUDA_CHECK(cudaEventRecord(e.start, e.stream));
  f();
  CUAE_CUDA_CHECK(cudaEventRecord(e.stop, e.stream));
  CUAE_CUDA_CHECK(cudaEventSynchronize(e.stop));
  float ms = 0;
  CUAE_CUDA_CHECK(cudaEventElapsedTime(&ms, e.start, e.stop));
  return ms * 1e-3;
}

// check: run once on poisoned outputs and compare with the CPU reference (cached per name).
// Then warm up and time f. Every CUDA or cuae error ends the benchmark with SkipWithError.
// Returns the mean seconds per iteration of this call, 0 when nothing was timed.
inline double run(benchmark::State& st, const std::string& name, const std::function<Check()>& check,
                  const std::function<void()>& f, const Work& w) {
  try {
    auto it = g_checks.find(name);
    if (it == g_checks.end()) it = g_checks.emplace(name, check()).first;
    const Check& c = it->second;
    if (!c.ok) {
      st.SkipWithError(("correctness check failed: " + c.msg).c_str());
      return 0;
    }
    for (int i = 0; i < 3; ++i) f();
    env().sync();
    double total = 0;
    std::int64_t iters = 0;
    for (auto _ : st) {
      const double s = time_once(f);
      st.SetIterationTime(s);
      total += s;
      ++iters;
    }
    if (iters == 0 || total <= 0) return 0;
    const double per = total / static_cast<double>(iters);
    if (w.bytes > 0) {
      const double gbps = w.bytes / per * 1e-9;
      st.counters["GB/s"] = gbps;
      if (env().copy_gbps > 0) st.counters["pct_copy"] = 100.0 * gbps / env().copy_gbps;
    }
    if (w.flops > 0) {
      const double tflops = w.flops / per * 1e-12;
      st.counters["TFLOP/s"] = tflops;
      if (env().sgemm_tflops > 0) st.counters["pct_sgemm"] = 100.0 * tflops / env().sgemm_tflops;
    }
    st.counters["err"] = c.err;
    return per;
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return 0;
  }
}

// Median of n timed runs (same flush and events as the benchmarks), for the ceilings and for
// reference times a benchmark compares itself with.
inline double median_time(const std::function<void()>& f, int n = 7) {
  for (int i = 0; i < 2; ++i) f();
  env().sync();
  std::vector<double> t;
  for (int i = 0; i < n; ++i) t.push_back(time_once(f));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

inline benchmark::internal::Benchmark* configure(benchmark::internal::Benchmark* b) {
  return b->UseManualTime()
      ->Unit(benchmark::kMicrosecond)
      ->Repetitions(g_opt.reps)
      ->ReportAggregatesOnly(true)
      ->MinTime(g_opt.min_time);
}

// Registers fn (callable with benchmark::State&) under name, configured as above.
template <class F>
void reg(const std::string& name, F fn) {
  configure(benchmark::RegisterBenchmark(name.c_str(), fn));
}

// =============================================================================================
// ceilings
// =============================================================================================

struct Ceilings {
  DevBuf src, dst, a, b, c;
  static constexpr std::size_t kCopyFloats = std::size_t{1} << 28;  // 1 GiB
  static constexpr int kGemm = 8192;
  void copy() const {
    CUAE_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), kCopyFloats * 4, cudaMemcpyDeviceToDevice, env().stream));
  }
  void sgemm() const {
    const float one = 1.0f, zero = 0.0f;
    CUAE_CUBLAS_CHECK(cublasSgemm(env().blas, CUBLAS_OP_N, CUBLAS_OP_N, kGemm, kGemm, kGemm, &one, a.get(), kGemm,
                                  b.get(), kGemm, &zero, c.get(), kGemm));
  }
  void tf32() const {
    const float one = 1.0f, zero = 0.0f;
    CUAE_CUBLAS_CHECK(cublasGemmEx(env().blas, CUBLAS_OP_N, CUBLAS_OP_N, kGemm, kGemm, kGemm, &one, a.get(), CUDA_R_32F,
                                   kGemm, b.get(), CUDA_R_32F, kGemm, &zero, c.get(), CUDA_R_32F, kGemm,
                                   CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
  }
};
inline std::unique_ptr<Ceilings> g_ceil;

// The copy ceiling always; the two GEMM ceilings when gemm (they need 768 MiB and a few seconds).
inline void measure_ceilings(bool gemm) {
  g_ceil = std::make_unique<Ceilings>();
  Ceilings& c = *g_ceil;
  c.src = DevBuf(Ceilings::kCopyFloats), c.dst = DevBuf(Ceilings::kCopyFloats);
  CUAE_CUDA_CHECK(cudaMemsetAsync(c.src.get(), 0x3c, Ceilings::kCopyFloats * 4, env().stream));
  if (gemm) {
    const std::size_t gg = static_cast<std::size_t>(Ceilings::kGemm) * Ceilings::kGemm;
    c.a = DevBuf(gg), c.b = DevBuf(gg), c.c = DevBuf(gg);
    // Random-ish operands (a GEMM on zeros runs measurably faster than on data).
    const auto h = random_vec(gg, 41, -1.0f, 1.0f);
    upload(c.a, h);
    upload(c.b, h);
  }
  env().copy_gbps = 2.0 * Ceilings::kCopyFloats * 4 / median_time([&] { c.copy(); }) * 1e-9;
  if (gemm) {
    const double gflop = 2.0 * Ceilings::kGemm * Ceilings::kGemm * static_cast<double>(Ceilings::kGemm);
    env().sgemm_tflops = gflop / median_time([&] { c.sgemm(); }) * 1e-12;
    env().tf32_tflops = gflop / median_time([&] { c.tf32(); }) * 1e-12;
  }
}

inline void bm_ceiling(benchmark::State& st, const std::string& name, int which) {
  const auto f = [which] {
    if (which == 0) g_ceil->copy();
    else if (which == 1) g_ceil->sgemm();
    else g_ceil->tf32();
  };
  const double n = Ceilings::kGemm;
  Work w;
  if (which == 0) w.bytes = 2.0 * Ceilings::kCopyFloats * 4;
  else w.flops = 2 * n * n * n;
  // The ceilings are the libraries themselves: nothing of ours to check.
  run(st, name, [] { return Check{true, 0, ""}; }, f, w);
}

// ceiling/copy_1GiB, and with gemm ceiling/sgemm_fp32_8192 and ceiling/gemm_tf32_8192.
inline void register_ceilings(bool gemm) {
  reg("ceiling/copy_1GiB", [](benchmark::State& st) { bm_ceiling(st, "ceiling/copy", 0); });
  if (!gemm) return;
  reg("ceiling/sgemm_fp32_8192", [](benchmark::State& st) { bm_ceiling(st, "ceiling/sgemm", 1); });
  reg("ceiling/gemm_tf32_8192", [](benchmark::State& st) { bm_ceiling(st, "ceiling/tf32", 2); });
}

// =============================================================================================
// context, flags and main
// =============================================================================================

inline std::string version_str(int v, int major_div, int minor_div, int minor_mod) {
  return std::to_string(v / major_div) + "." + std::to_string((v / minor_div) % minor_mod) + " (" + std::to_string(v) + ")";
}

inline void add_context(bool gemm) {
  const cudaDeviceProp& p = env().prop;
  int driver = 0, runtime = 0;
  CUAE_CUDA_CHECK(cudaDriverGetVersion(&driver));
  CUAE_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  int blas_v = 0;
  CUAE_CUBLAS_CHECK(cublasGetVersion(env().blas, &blas_v));
  benchmark::AddCustomContext("device", p.name);
  benchmark::AddCustomContext("compute_capability", std::to_string(p.major) + "." + std::to_string(p.minor));
  benchmark::AddCustomContext("sm_count", std::to_string(p.multiProcessorCount));
  benchmark::AddCustomContext("l2_bytes", std::to_string(p.l2CacheSize));
  benchmark::AddCustomContext("global_mem_bytes", std::to_string(p.totalGlobalMem));
  benchmark::AddCustomContext("cuda_driver", version_str(driver, 1000, 10, 100));
  benchmark::AddCustomContext("cuda_runtime", version_str(runtime, 1000, 10, 100));
  benchmark::AddCustomContext("cublas", version_str(blas_v, 10000, 100, 100));
  benchmark::AddCustomContext("cublasLt", std::to_string(cublasLtGetVersion()));
  benchmark::AddCustomContext("cudnn", std::to_string(cudnnGetVersion()));
  if (const char* commit = std::getenv("CUAE_COMMIT")) benchmark::AddCustomContext("cuae_commit", commit);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f", env().copy_gbps);
  benchmark::AddCustomContext("ceiling_copy_GBps", buf);
  if (!gemm) return;
  std::snprintf(buf, sizeof buf, "%.2f", env().sgemm_tflops);
  benchmark::AddCustomContext("ceiling_sgemm_fp32_TFLOPs", buf);
  std::snprintf(buf, sizeof buf, "%.2f", env().tf32_tflops);
  benchmark::AddCustomContext("ceiling_gemm_tf32_TFLOPs", buf);
}

// Strips our own --cuae_* flags from argv.
inline void parse_own_flags(int* argc, char** argv) {
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string a = argv[i];
    if (a == "--cuae_quick") g_opt.quick = true;
    else if (a.rfind("--cuae_reps=", 0) == 0) g_opt.reps = std::max(1, std::atoi(a.c_str() + 12));
    else if (a.rfind("--cuae_min_time=", 0) == 0) g_opt.min_time = std::max(1e-4, std::atof(a.c_str() + 16));
    else argv[out++] = argv[i];
  }
  *argc = out;
}

// The whole program: own flags, the no-GPU exit (0), Google Benchmark's flags, the environment, the
// ceilings (the GEMM ones when gemm_ceilings), the context, register_all(), the run; release()
// frees the program's resident cases while the device is still up.
inline int bench_main(int argc, char** argv, const char* program, bool gemm_ceilings,
                      const std::function<void()>& register_all, const std::function<void()>& release) {
  parse_own_flags(&argc, argv);
  if (!cuae::cuda_available()) {
    std::printf("%s: no usable CUDA device on this machine; nothing was benchmarked.\n", program);
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  int rc = 0;
  try {
    Env e;
    g_env = &e;
    measure_ceilings(gemm_ceilings);
    add_context(gemm_ceilings);
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    release();
    g_ceil.reset();
    g_env = nullptr;
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "%s: %s\n", program, ex.what());
    rc = 1;
  }
  benchmark::Shutdown();
  return rc;
}

}  // namespace cuae::bench
