#include <filesystem>
#include "common.hpp"

#include "cuae/config.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <sstream>

namespace cuae::test {

// ---- files of the source tree ---------------------------------------------------------------

std::string source_path(const std::string& relative) {
  const char* env = std::getenv("CUAE_SOURCE_DIR");
  return std::string(env && *env ? env : CUAE_SOURCE_DIR) + "/" + relative;
}

// ---- random data --------------------------------------------------------------------------

std::uint32_t seed_from(const std::string& s) {
  // FNV-1a: stable across runs and platforms, unlike std::hash.
  std::uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

float uniform_float(std::mt19937& gen, float lo, float hi) {
  // 24 random bits -> [0, 1) exactly representable in float; std::uniform_real_distribution's
  // output differs between standard libraries, this does not.
  const float u = static_cast<float>(gen() >> 8) * (1.0f / 16777216.0f);
  return lo + (hi - lo) * u;
}

void fill_uniform(std::span<float> out, std::mt19937& gen, float lo, float hi) {
  for (float& v : out) v = uniform_float(gen, lo, hi);
}

std::vector<float> uniform(std::size_t n, std::uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::vector<float> v(n);
  fill_uniform(v, gen, lo, hi);
  return v;
}

void poison(std::span<float> out) { std::fill(out.begin(), out.end(), nan_value()); }

// ---- memory on a backend ------------------------------------------------------------------

namespace {
// A NaN with a payload no arithmetic produces, so an op that writes a NaN of its own into a guard
// is still caught.
constexpr std::uint32_t kSentinelBits = 0x7fa5a5a5u;

float sentinel() {
  float f;
  std::memcpy(&f, &kSentinelBits, sizeof f);
  return f;
}
}  // namespace

DeviceBuffer::DeviceBuffer(Backend& backend, std::size_t count) : backend_(&backend), count_(count) {
  const std::size_t total = count + 2 * kGuardFloats;
  base_ = static_cast<float*>(backend.alloc(total * sizeof(float)));
  std::vector<float> init(total, sentinel());
  std::fill(init.begin() + kGuardFloats, init.begin() + kGuardFloats + count, 0.0f);
  backend.copy_to_device(base_, init.data(), total * sizeof(float));
}

DeviceBuffer::~DeviceBuffer() {
  if (base_) backend_->free(base_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : backend_(other.backend_), base_(other.base_), count_(other.count_) {
  other.base_ = nullptr;
  other.count_ = 0;
}

void DeviceBuffer::upload(std::span<const float> values) {
  if (values.size() != count_) throw Error("DeviceBuffer::upload: size mismatch");
  backend_->copy_to_device(data(), values.data(), count_ * sizeof(float));
}

std::vector<float> DeviceBuffer::download() const {
  std::vector<float> v(count_);
  backend_->copy_to_host(v.data(), data(), count_ * sizeof(float));
  return v;
}

void DeviceBuffer::fill(float value) {
  std::vector<float> v(count_, value);
  upload(v);
}

bool DeviceBuffer::guards_intact() const {
  const std::size_t total = count_ + 2 * kGuardFloats;
  std::vector<std::uint32_t> bits(total);
  backend_->copy_to_host(bits.data(), base_, total * sizeof(float));
  for (std::size_t i = 0; i < kGuardFloats; ++i)
    if (bits[i] != kSentinelBits || bits[total - 1 - i] != kSentinelBits) return false;
  return true;
}

// ---- errors -------------------------------------------------------------------------------

namespace {
template <class B>
double norm_err(std::span<const float> a, std::span<const B> b, std::span<const double> magnitude = {}) {
  if (a.size() != b.size() || (!magnitude.empty() && magnitude.size() != b.size()))
    return std::numeric_limits<double>::infinity();
  double diff = 0.0, ref = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double bi = static_cast<double>(b[i]);
    if (!std::isfinite(a[i]) && std::isfinite(bi)) return std::numeric_limits<double>::infinity();
    const double d = static_cast<double>(a[i]) - bi;
    diff += d * d;
    ref += bi * bi;
  }
  double mag = 0.0;
  for (double v : magnitude) mag += v * v;
  return std::sqrt(diff) / std::max({std::sqrt(ref), std::sqrt(mag), 1e-30});
}

template <class B>
double max_abs(std::span<const float> a, std::span<const B> b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double bi = static_cast<double>(b[i]);
    if (!std::isfinite(a[i]) && std::isfinite(bi)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - bi));
  }
  return worst;
}
}  // namespace

double normalized_error(std::span<const float> a, std::span<const double> b) { return norm_err(a, b); }
double normalized_error(std::span<const float> a, std::span<const float> b) { return norm_err(a, b); }
double normalized_error(std::span<const float> a, std::span<const double> b, std::span<const double> magnitude) {
  return norm_err(a, b, magnitude);
}
double normalized_error(std::span<const float> a, std::span<const float> b, std::span<const double> magnitude) {
  return norm_err(a, b, magnitude);
}
double max_abs_error(std::span<const float> a, std::span<const double> b) { return max_abs(a, b); }
double max_abs_error(std::span<const float> a, std::span<const float> b) { return max_abs(a, b); }

std::size_t count_nonfinite(std::span<const float> a) {
  return static_cast<std::size_t>(std::count_if(a.begin(), a.end(), [](float v) { return !std::isfinite(v); }));
}

std::vector<double> to_double(std::span<const float> a) { return std::vector<double>(a.begin(), a.end()); }

// ---- finite-difference gradient check -----------------------------------------------------

GradCheckResult check_gradient(const std::function<double()>& f, std::vector<double>& x,
                               std::span<const float> analytic, std::span<const std::size_t> indices,
                               const std::function<bool(std::size_t, double)>& near_kink,
                               const GradCheckOptions& opt) {
  GradCheckResult r;
  if (analytic.size() != x.size()) {
    r.failures = 1;
    r.report = "analytic gradient has " + std::to_string(analytic.size()) + " values for " +
               std::to_string(x.size()) + " inputs";
    return r;
  }
  double sq = 0.0;
  for (float g : analytic) sq += static_cast<double>(g) * g;
  r.floor = std::max(opt.floor_fraction * std::sqrt(sq / std::max<std::size_t>(analytic.size(), 1)), 1e-30);

  std::ostringstream rep;
  for (std::size_t i : indices) {
    if (near_kink && near_kink(i, opt.step)) {
      ++r.kinks;
      continue;
    }
    const double x0 = x[i];
    x[i] = x0 + opt.step;
    const double fp = f();
    x[i] = x0 - opt.step;
    const double fm = f();
    x[i] = x0;
    const double numeric = (fp - fm) / (2.0 * opt.step);
    const double a = analytic[i];
    const double scale = std::max({std::abs(a), std::abs(numeric), r.floor});
    // A NaN analytic value must fail: (NaN > tol) is false, so test the negation of "passes".
    const double err = std::abs(a - numeric) / scale;
    ++r.checked;
    const bool pass = err <= opt.rel_tol;
    if (!(err <= r.worst)) {  // also true for NaN, which is recorded as +inf
      r.worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
      r.worst_index = i;
    }
    if (!pass) {
      if (r.failures < opt.max_reported)
        rep << "  [" << i << "] analytic " << a << " numeric " << numeric << " rel err " << err << "\n";
      ++r.failures;
    }
  }
  r.report = rep.str();
  return r;
}

std::vector<std::size_t> sample_indices(std::size_t n, std::size_t max_count, std::uint32_t seed) {
  std::vector<std::size_t> all(n);
  std::iota(all.begin(), all.end(), std::size_t{0});
  if (n <= max_count) return all;
  std::mt19937 gen(seed);
  // Partial Fisher-Yates: the first max_count entries become a uniform sample without repeats.
  for (std::size_t i = 0; i < max_count; ++i) {
    const std::size_t j = i + gen() % (n - i);
    std::swap(all[i], all[j]);
  }
  all.resize(max_count);
  std::sort(all.begin(), all.end());
  return all;
}

bool have_fashion_mnist() {
  return std::filesystem::exists(std::filesystem::path(DataConfig{}.dir) / "train-images-idx3-ubyte.gz");
}

Config small_dense_config(const std::vector<std::int64_t>& layers, int epochs, double lr) {
  std::ostringstream toml;
  toml << "[model]\nlayers = [";
  for (std::size_t i = 0; i < layers.size(); ++i) toml << (i ? ", " : "") << layers[i];
  toml << "]\nactivation = \"relu\"\ncode_activation = \"identity\"\noutput_activation = \"sigmoid\"\n"
       << "[loss]\ntype = \"bce\"\nreduction = \"sum\"\n[optimizer]\nlr = " << lr << "\n"
       << "[train]\nbatch_size = 64\nepochs = " << epochs << "\nseed = 1\ndevice = \"cpu\"\n";
  return parse_config(toml.str(), "small_dense_config");
}

}  // namespace cuae::test
