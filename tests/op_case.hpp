// The op-test machinery shared by tests/test_ops*.cpp (header only, so only the programs that
// include it compile it):
//
//   bit patterns   float ↔ uint32 / int32 reinterpretations (an int32 index buffer travels in a
//                  float DeviceBuffer as its bit patterns)
//   error reports  expect_close(): a normalised error against a tolerance, recorded as a test
//                  property (--gtest_output=json) so tolerances can be re-measured
//   formulas       act_d(), the activations in double, written from the comments in
//                  kernels/ops.hpp
//   gradients      the finite-difference settings and expect_grad_ok()
//   the case framework
//                  an OpCase declares its buffers (slots) with their roles and fresh random
//                  contents, launches its op through an op table and checks the CPU outputs
//                  against its double reference; expect_cpu_matches_reference() and
//                  expect_cuda_matches_cpu() run it on the backends
//   validation     expect_rejects_bad_calls(): both backends reject the same bad calls
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <ostream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "common.hpp"
#include "cuae/error.hpp"
#include "host/runtime/backend.hpp"
#include "kernels/ops.hpp"

namespace cuae::test {

// ---- bit patterns -------------------------------------------------------------------------

inline std::uint32_t float_bits(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}
inline float bits_float(std::uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
inline float int_bits(std::int32_t v) {
  float f;
  std::memcpy(&f, &v, sizeof f);
  return f;
}
inline std::int32_t bits_int(float f) {
  std::int32_t v;
  std::memcpy(&v, &f, sizeof v);
  return v;
}

// ---- error reports ------------------------------------------------------------------------

inline std::string fmt_err(double e, double tol) {
  std::ostringstream os;
  os << "normalised error " << e << " (tolerance " << tol << ")";
  return os.str();
}

// Every measured error is also recorded as a test property (see --gtest_output=json), which is
// how the tolerances were sized and how they can be re-checked on a new device.
inline void record_error(const std::string& key, double err) {
  std::ostringstream os;
  os << err;
  ::testing::Test::RecordProperty(key, os.str());
}

// Expects got ≈ want by normalised error (with the magnitude denominator when one is given).
inline void expect_close(const std::string& what, std::span<const float> got, std::span<const double> want,
                         double tol, std::span<const double> magnitude = {}) {
  const double err = normalized_error(got, want, magnitude);
  record_error("ref_err " + what, err);
  EXPECT_LE(err, tol) << what << ": " << fmt_err(err, tol) << ", max abs " << max_abs_error(got, want)
                      << ", non-finite " << count_nonfinite(got);
}

// ---- double helpers -----------------------------------------------------------------------

inline std::vector<double> abs_d(std::span<const float> v) {
  std::vector<double> a(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) a[i] = std::abs(static_cast<double>(v[i]));
  return a;
}
inline std::vector<double> abs_d(std::span<const double> v) {
  std::vector<double> a(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) a[i] = std::abs(v[i]);
  return a;
}
// a + b elementwise over the common length (b may be empty: a unchanged).
inline std::vector<double> plus(std::vector<double> a, std::span<const double> b) {
  for (std::size_t i = 0; i < b.size() && i < a.size(); ++i) a[i] += b[i];
  return a;
}
inline std::vector<double> plus(std::vector<double> a, std::span<const float> b) {
  for (std::size_t i = 0; i < b.size() && i < a.size(); ++i) a[i] += b[i];
  return a;
}

// ---- formulas -----------------------------------------------------------------------------

inline constexpr double kSqrt2OverPi = 0.79788456080286535588;  // GELU, tanh approximation

// act(z) in double, from the comments in kernels/ops.hpp (not from act_math.hpp, so a wrong
// shared formula cannot agree with itself).
inline double act_d(kern::Act a, double z, double slope) {
  using kern::Act;
  switch (a) {
    case Act::Identity: return z;
    case Act::ReLU: return z > 0 ? z : 0.0;
    case Act::LeakyReLU: return z > 0 ? z : slope * z;
    case Act::Sigmoid: return 1.0 / (1.0 + std::exp(-z));
    case Act::Tanh: return std::tanh(z);
    case Act::GELU: return 0.5 * z * (1.0 + std::tanh(kSqrt2OverPi * (z + 0.044715 * z * z * z)));
  }
  return NAN;
}

// ---- finite differences -------------------------------------------------------------------

// Float backward vs double central differences of the double forward. The step h = 1e-4 leaves
// truncation error ~h²·f‴/6 ~ 1e-9 and rounding ~1e-16·|L|/h ~ 1e-11, so the comparison measures
// the float backward alone (largest measured over the op tests: 7.4e-7).
// CUDA against the CPU with TF32 allowed (OpCase::tf32, [train] precision = "tf32"): TF32 rounds
// both operands of each product to 10 mantissa bits (relative error up to 2^-11 ≈ 4.9e-4 each), so
// a product is off by up to ~1e-3 of its magnitude and a sum of them, with random signs, by a few
// 1e-4 of the magnitude sum; 5e-3 of the normalised error is the documented TF32 tolerance.
inline constexpr double kCudaTf32Tol = 5e-3;
inline constexpr double kGradRelTol = 1e-5;
inline constexpr double kGradStep = 1e-4;
// The kink allowance may skip at most this fraction of the checked points, so it cannot hide a
// broken gradient.
inline constexpr double kMaxKinkFraction = 0.2;

inline GradCheckOptions grad_options() {
  GradCheckOptions opt;
  opt.step = kGradStep;
  opt.rel_tol = kGradRelTol;
  return opt;
}

// Expects a gradient check to have compared points, found them all within tolerance, and skipped
// no more than kMaxKinkFraction of them as kinks.
inline void expect_grad_ok(const std::string& what, const GradCheckResult& r) {
  record_error("grad_worst " + what, r.worst);
  record_error("grad_kinks " + what, static_cast<double>(r.kinks));
  EXPECT_GT(r.checked, 0u) << what << ": no point compared";
  EXPECT_EQ(r.failures, 0u) << what << ": " << r.failures << " of " << r.checked << " points off (worst rel err "
                            << r.worst << " at " << r.worst_index << ", floor " << r.floor << ")\n"
                            << r.report;
  EXPECT_LE(static_cast<double>(r.kinks), kMaxKinkFraction * static_cast<double>(r.checked + r.kinks))
      << what << ": " << r.kinks << " kink points skipped of " << (r.checked + r.kinks);
}

// ---- the case framework -------------------------------------------------------------------

enum class Role { In, Out, InOut };

struct Slot {
  std::string name;
  Role role = Role::In;
  bool present = true;         // false: the op gets a null pointer here
  std::vector<float> host;     // contents for In / InOut; the size for Out
  double cuda_tol = 0.0;       // tolerance of CUDA vs CPU for Out / InOut
  bool compare = true;         // false for workspaces whose contents are not part of the contract
  bool compare_delta = false;  // compare (out − initial) instead of out (optimizer parameters)
};

inline Slot input_slot(std::string name, std::vector<float> v) {
  return Slot{std::move(name), Role::In, true, std::move(v)};
}
inline Slot null_slot(std::string name) { return Slot{std::move(name), Role::In, false, {}}; }
inline Slot output_slot(std::string name, std::size_t n, double tol) {
  return Slot{std::move(name), Role::Out, true, std::vector<float>(n), tol};
}
inline Slot inout_slot(std::string name, std::vector<float> v, double tol) {
  return Slot{std::move(name), Role::InOut, true, std::move(v), tol};
}

class OpCase {
 public:
  virtual ~OpCase() = default;
  virtual std::string name() const = 0;
  virtual bool tf32() const { return false; }
  // Kernel variants (Context::variant) the CUDA backend has for this op; each must match the CPU.
  virtual std::vector<int> variants() const { return {0}; }
  // The tolerance of CUDA vs CPU for an output slot under a variant (the slot's own by default; a
  // variant that is documented to round differently, such as a library epilogue, may widen it).
  virtual double cuda_tol(const Slot& s, int variant) const { return s.cuda_tol; }
  virtual std::vector<Slot> make_slots(std::uint32_t seed) const = 0;
  // Per slot, the magnitude (sum of absolute terms) behind each output value, for outputs that are
  // sums (see normalized_error); an empty vector where the plain norm is the right scale.
  virtual std::vector<std::vector<double>> magnitudes(const std::vector<Slot>& slots) const {
    return std::vector<std::vector<double>>(slots.size());
  }
  virtual void launch(const kern::OpTable& t, const kern::Context& ctx, const std::vector<float*>& p) const = 0;
  // Called with the slots as made and the CPU backend's values of every slot after the op.
  virtual void check_reference(const std::vector<Slot>& slots, const std::vector<std::vector<float>>& after) const = 0;
};

// The test parameter: a shared case, printed by name in gtest's messages.
class CasePtr {
 public:
  template <class T>
  CasePtr(std::shared_ptr<T> c) : c_(std::move(c)) {}  // NOLINT: implicit, so make_shared results convert
  const OpCase& operator*() const { return *c_; }
  const OpCase* operator->() const { return c_.get(); }
  friend void PrintTo(const CasePtr& c, std::ostream* os) { *os << c->name(); }

 private:
  std::shared_ptr<const OpCase> c_;
};

// The name generator for INSTANTIATE_TEST_SUITE_P over cases.
inline std::string case_name(const ::testing::TestParamInfo<CasePtr>& info) { return info.param->name(); }

inline std::uint32_t case_seed(const OpCase& c) { return seed_from(c.name()); }

// Runs the case on a backend: allocates every present slot between guards, uploads inputs,
// poisons outputs with NaN, launches, and returns every slot's contents afterwards.
inline std::vector<std::vector<float>> run_on(Backend& be, const OpCase& c, const std::vector<Slot>& slots,
                                              int variant = 0) {
  std::vector<DeviceBuffer> bufs;
  std::vector<float*> ptrs;
  bufs.reserve(slots.size());
  for (const Slot& s : slots) {
    if (!s.present) {
      ptrs.push_back(nullptr);
      bufs.emplace_back(be, 0);
      continue;
    }
    bufs.emplace_back(be, s.host.size());
    if (s.role == Role::Out) bufs.back().poison();
    else bufs.back().upload(s.host);
    ptrs.push_back(bufs.back().data());
  }
  be.ctx().tf32 = c.tf32();
  be.ctx().variant = variant;
  c.launch(be.ops(), be.ctx(), ptrs);
  be.synchronize();
  std::vector<std::vector<float>> after;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    after.push_back(slots[i].present ? bufs[i].download() : std::vector<float>{});
    EXPECT_TRUE(bufs[i].guards_intact()) << device_name(be.device()) << " " << c.name() << " variant " << variant
                                         << ": write out of bounds of " << slots[i].name;
  }
  return after;
}

// Whether the drivers also expect every input slot to come back unchanged.
enum class InputCheck { Skip, Unchanged };

inline void expect_inputs_unchanged(const OpCase& c, const std::vector<Slot>& slots,
                                    const std::vector<std::vector<float>>& after) {
  for (std::size_t i = 0; i < slots.size(); ++i)
    if (slots[i].role == Role::In && slots[i].present)
      EXPECT_EQ(after[i], slots[i].host) << c.name() << ": input " << slots[i].name << " was modified";
}

// The CPU op against the case's double reference.
inline void expect_cpu_matches_reference(const OpCase& c, InputCheck inputs = InputCheck::Skip) {
  const auto slots = c.make_slots(case_seed(c));
  Backend cpu(Device::CPU);
  const auto after = run_on(cpu, c, slots);
  if (inputs == InputCheck::Unchanged) expect_inputs_unchanged(c, slots, after);
  c.check_reference(slots, after);
}

// The CUDA op, every kernel variant, against the CPU op on the same inputs: each compared output
// by normalised error under its slot's cuda_tol. The caller skips without a GPU.
inline void expect_cuda_matches_cpu(const OpCase& c, InputCheck inputs = InputCheck::Skip) {
  const auto slots = c.make_slots(case_seed(c));
  Backend cpu(Device::CPU);
  Backend gpu(Device::CUDA);
  const auto want = run_on(cpu, c, slots);
  // Denominators: the case's magnitudes, plus |initial| for an accumulated output (out = init + new).
  std::vector<std::vector<double>> mags = c.magnitudes(slots);
  for (std::size_t i = 0; i < slots.size(); ++i) {
    if (slots[i].role != Role::InOut || slots[i].compare_delta) continue;
    mags[i].resize(slots[i].host.size(), 0.0);
    for (std::size_t e = 0; e < mags[i].size(); ++e) mags[i][e] += std::abs(slots[i].host[e]);
  }
  for (int variant : c.variants()) {
    const auto got = run_on(gpu, c, slots, variant);
    if (inputs == InputCheck::Unchanged) expect_inputs_unchanged(c, slots, got);
    for (std::size_t i = 0; i < slots.size(); ++i) {
      const Slot& s = slots[i];
      if (s.role == Role::In || !s.present || !s.compare) continue;
      double err;
      if (s.compare_delta) {
        std::vector<float> dg(s.host.size()), dw(s.host.size());
        for (std::size_t e = 0; e < s.host.size(); ++e) {
          dg[e] = static_cast<float>(static_cast<double>(got[i][e]) - s.host[e]);
          dw[e] = static_cast<float>(static_cast<double>(want[i][e]) - s.host[e]);
        }
        err = count_nonfinite(got[i]) ? INFINITY : normalized_error(dg, dw);
      } else {
        err = normalized_error(got[i], want[i], mags[i]);
      }
      record_error("cuda_err " + s.name + " variant " + std::to_string(variant), err);
      const double tol = c.cuda_tol(s, variant);
      EXPECT_LE(err, tol) << c.name() << " variant " << variant << " output " << s.name << ": " << fmt_err(err, tol)
                          << ", max abs " << max_abs_error(got[i], want[i]) << ", non-finite " << count_nonfinite(got[i]);
    }
  }
}

// ---- validation ---------------------------------------------------------------------------

struct BadCall {
  std::string what;
  std::function<void(const kern::OpTable&, const kern::Context&, float*)> call;  // float* = a valid buffer of 256
};

// Every call must throw cuae::Error on the device's backend without writing out of bounds. With
// initial contents (256 floats) the buffer starts from them and must still hold them, bit for bit,
// afterwards: a rejected call touches no memory.
inline void expect_rejects_bad_calls(Device device, const std::vector<BadCall>& calls,
                                     std::span<const float> initial = {}) {
  Backend be(device);
  DeviceBuffer buf(be, 256);
  if (!initial.empty()) buf.upload(initial);
  for (const BadCall& bc : calls) {
    EXPECT_THROW(
        {
          bc.call(be.ops(), be.ctx(), buf.data());
          be.synchronize();
        },
        cuae::Error)
        << device_name(device) << ": " << bc.what;
  }
  EXPECT_TRUE(buf.guards_intact()) << device_name(device) << ": a rejected call wrote out of bounds";
  if (!initial.empty()) {
    const std::vector<float> after = buf.download();
    EXPECT_EQ(0, std::memcmp(after.data(), initial.data(), initial.size() * sizeof(float)))
        << device_name(device) << ": a rejected call wrote to its buffers";
  }
}

}  // namespace cuae::test
