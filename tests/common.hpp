// Utilities shared by every test program (tests/CMakeLists.txt compiles common.cpp into each).
//
//   source files  source_path(): golden fixtures and configs, wherever the tree now is
//   random data   seeded, reproducible fills (std::mt19937, our own mapping to floats so the
//                 values do not depend on the standard library's distributions)
//   poisoning     NaN fills for outputs, so an op that leaves an element unwritten fails
//   DeviceBuffer  RAII memory on a Backend, with guard zones around it that catch writes past
//                 either end (ggml's sentinels)
//   errors        normalised error ‖a−b‖/max(‖b‖, tiny) and max-abs error; a NaN or Inf in the
//                 tested values makes both +inf, so a poisoned output can never pass
//   GPU skip      CUAE_SKIP_WITHOUT_GPU(): a CUDA test on a machine without a GPU is reported as
//                 skipped with the reason, never as passed
//   gradients     a central-difference gradient checker in double with a "kink" allowance
//                 (Caffe's GradientChecker)
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "cuae/tensor.hpp"
#include "host/runtime/backend.hpp"

namespace cuae {
struct Config;  // cuae/config.hpp (not included here: its enums share names with the kernels')
}

namespace cuae::test {

inline constexpr const char* kNoGpuReason = "no CUDA device: CUDA test skipped, not run";

// ---- files of the source tree ---------------------------------------------------------------

// A path inside the source tree: under $CUAE_SOURCE_DIR when set (a test program carried to
// another machine), else under the tree the program was built from.
std::string source_path(const std::string& relative);

// ---- random data --------------------------------------------------------------------------

// A seed derived from a string (a test's name), so every case has its own reproducible stream.
std::uint32_t seed_from(const std::string& s);

// n values uniform in [lo, hi), from std::mt19937 seeded with seed.
std::vector<float> uniform(std::size_t n, std::uint32_t seed, float lo = -1.0f, float hi = 1.0f);
void fill_uniform(std::span<float> out, std::mt19937& gen, float lo = -1.0f, float hi = 1.0f);
float uniform_float(std::mt19937& gen, float lo, float hi);

// ---- poisoning ----------------------------------------------------------------------------

inline float nan_value() { return std::numeric_limits<float>::quiet_NaN(); }
void poison(std::span<float> out);  // every element NaN

// ---- memory on a backend ------------------------------------------------------------------

// count floats on a backend, between two guard zones of kGuardFloats filled with a sentinel bit
// pattern. The guard size keeps data() 256-byte aligned, as Backend::alloc promises.
class DeviceBuffer {
 public:
  static constexpr std::size_t kGuardFloats = 64;

  DeviceBuffer(Backend& backend, std::size_t count);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  float* data() const { return base_ ? base_ + kGuardFloats : nullptr; }
  std::size_t size() const { return count_; }

  void upload(std::span<const float> values);  // values.size() == size()
  std::vector<float> download() const;
  void fill(float value);
  void poison() { fill(nan_value()); }
  // True when both guard zones still hold the sentinel (nothing wrote out of bounds).
  bool guards_intact() const;

 private:
  Backend* backend_;
  float* base_ = nullptr;  // start of the front guard
  std::size_t count_;
};

// ---- errors -------------------------------------------------------------------------------

// ‖a−b‖₂ / max(‖b‖₂, tiny). +inf if a holds a non-finite value where b is finite, or if the
// sizes differ.
double normalized_error(std::span<const float> a, std::span<const double> b);
double normalized_error(std::span<const float> a, std::span<const float> b);
// As above with the denominator max(‖b‖, ‖magnitude‖): for a value computed as a sum, magnitude
// is the sum of the absolute values of its terms (|X|·|W|ᵀ + |b| for a GEMM), the scale float
// rounding is proportional to. It keeps a result that cancels to ~0 (a 1×1 GEMM, x·w ≈ −b) from
// turning a rounding error into a large relative one. An empty magnitude means none.
double normalized_error(std::span<const float> a, std::span<const double> b, std::span<const double> magnitude);
double normalized_error(std::span<const float> a, std::span<const float> b, std::span<const double> magnitude);
// max |a_i − b_i|; +inf under the same conditions.
double max_abs_error(std::span<const float> a, std::span<const double> b);
double max_abs_error(std::span<const float> a, std::span<const float> b);
std::size_t count_nonfinite(std::span<const float> a);
std::vector<double> to_double(std::span<const float> a);

// ---- GPU skip -----------------------------------------------------------------------------

// GTEST_SKIP returns from the enclosing test body, so this must be called in the test body
// itself (or a void helper whose caller checks IsSkipped()).
#define CUAE_SKIP_WITHOUT_GPU()                                       \
  do {                                                                \
    if (!::cuae::cuda_available())                                    \
      GTEST_SKIP() << ::cuae::test::kNoGpuReason << " (" << ::cuae::cuda_unavailable_reason() << ")"; \
  } while (0)

// ---- finite-difference gradient check -----------------------------------------------------

struct GradCheckOptions {
  double step = 1e-4;  // h of the central difference (f(x+h) − f(x−h)) / 2h
  // Pass when |analytic − numeric| <= rel_tol · max(|analytic|, |numeric|, floor), floor being
  // the RMS of the analytic gradient over the whole tensor (times floor_fraction): an element whose
  // true gradient cancels to ~0 is judged on the tensor's scale, not on its own vanishing size.
  double rel_tol = 1e-4;
  double floor_fraction = 1.0;
  std::size_t max_reported = 5;  // failures spelled out in the report
};

struct GradCheckResult {
  std::size_t checked = 0;   // points compared
  std::size_t kinks = 0;     // points skipped because ±h could cross a non-differentiable point
  std::size_t failures = 0;
  double worst = 0.0;        // largest |a − n| / max(|a|, |n|, floor) seen
  std::size_t worst_index = 0;
  double floor = 0.0;
  std::string report;        // the first failures, one per line
};

// Checks analytic[i] ≈ ∂f/∂x[i] for every i in indices. f reads x (captured by the caller) and
// returns the scalar in double; the checker perturbs x[i] by ±h in place and restores it.
// near_kink(i, h) says whether moving x[i] by up to h may cross a non-differentiable point of f
// (ReLU's 0, L1's 0): such points are counted in kinks and not compared (pass nullptr when f
// is smooth everywhere).
GradCheckResult check_gradient(const std::function<double()>& f, std::vector<double>& x,
                               std::span<const float> analytic, std::span<const std::size_t> indices,
                               const std::function<bool(std::size_t, double)>& near_kink,
                               const GradCheckOptions& opt = {});

// Up to max_count distinct indices of [0, n) (all of them when n <= max_count), sorted.
std::vector<std::size_t> sample_indices(std::size_t n, std::size_t max_count, std::uint32_t seed);

// Fashion-MNIST is where DataConfig looks for it (the Debian package dataset-fashion-mnist).
bool have_fashion_mnist();
// A small dense autoencoder for real-data tests, on the CPU: ReLU hidden layers, a linear code, a
// sigmoid output trained with BCE per image, Adam at lr, batch 64, seed 1.
Config small_dense_config(const std::vector<std::int64_t>& layers, int epochs, double lr = 2e-3);

// f must throw cuae::Error whose message contains `part`.
template <class F>
void expect_error_contains(F&& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing \"" << part << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

}  // namespace cuae::test
