#include "cuae/tensor.hpp"

#include <cstdlib>
#include <cstring>
#include <sstream>

#include "host/runtime/cuda_rt.hpp"

namespace cuae {

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

std::size_t dtype_size(DType t) { return t == DType::F32 || t == DType::I32 ? 4 : 2; }

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::I32: return "I32";
  }
  return "?";
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (std::size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

std::int64_t shape_numel(const Shape& s) {
  std::int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

void* alloc_host_buffer(std::size_t bytes, Device device) {
  if (bytes == 0) return nullptr;
  if (device == Device::CUDA) return cuda_rt::malloc_host(bytes);
  void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (!p) throw Error("out of host memory allocating " + std::to_string(bytes) + " bytes");
  return p;
}

void free_host_buffer(void* p, Device device) {
  if (!p) return;
  if (device == Device::CUDA) cuda_rt::free_host(p);
  else std::free(p);
}

bool cuda_available() { return cuda_rt::status().empty(); }

std::string cuda_unavailable_reason() { return cuda_rt::status(); }

namespace {
std::shared_ptr<void> allocate(std::size_t bytes, Device device) {
  if (bytes == 0) return {};
  if (device == Device::CPU) {
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) throw Error("out of host memory allocating " + std::to_string(bytes) + " bytes");
    return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  }
  if (!cuda_available()) throw Error("cannot allocate a CUDA tensor: " + cuda_unavailable_reason());
  return std::shared_ptr<void>(cuda_rt::malloc_device(bytes), [](void* q) { cuda_rt::free_device(q); });
}

// A copy or fill that touches a CUDA tensor runs between two device-wide synchronisations
// (cuda_rt::copy_ordered). The backends' streams are non-blocking (they never wait for the legacy
// default stream that cudaMemcpy/cudaMemset use, nor it for them), so without the first a read
// could overtake the step still writing the memory (or a write the step still reading it), and
// without the second a pageable host-to-device copy may return before its data has landed.
cuda_rt::Copy kind_of(Device dst, Device src) {
  if (dst == Device::CPU) return src == Device::CPU ? cuda_rt::Copy::HostToHost : cuda_rt::Copy::DeviceToHost;
  return src == Device::CPU ? cuda_rt::Copy::HostToDevice : cuda_rt::Copy::DeviceToDevice;
}
}  // namespace

Tensor::Tensor(Shape shape, DType dtype, Device device)
    : shape_(std::move(shape)), dtype_(dtype), device_(device) {
  for (auto d : shape_) CUAE_CHECK(d >= 0, "negative dimension in shape " + shape_str(shape_));
  storage_ = allocate(nbytes(), device);
  data_ = storage_.get();
}

Tensor Tensor::view(void* data, Shape shape, DType dtype, Device device) {
  Tensor t;
  t.data_ = data;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.device_ = device;
  return t;
}

Tensor Tensor::zeros(Shape shape, Device device) {
  Tensor t(std::move(shape), DType::F32, device);
  if (t.nbytes() == 0) return t;
  if (device == Device::CPU) std::memset(t.data_, 0, t.nbytes());
  else cuda_rt::zero_ordered(t.data_, t.nbytes());
  return t;
}

Tensor Tensor::from(const std::vector<float>& values, Shape shape) {
  CUAE_CHECK(static_cast<std::int64_t>(values.size()) == shape_numel(shape),
             std::to_string(values.size()) + " values do not fill shape " + shape_str(shape));
  Tensor t(std::move(shape));
  if (!values.empty()) std::memcpy(t.data_, values.data(), t.nbytes());
  return t;
}

std::int64_t Tensor::dim(int i) const {
  CUAE_CHECK(i >= 0 && i < rank(), "dimension " + std::to_string(i) + " of a tensor of shape " + shape_str(shape_));
  return shape_[static_cast<std::size_t>(i)];
}

float* Tensor::f32() const {
  CUAE_CHECK(dtype_ == DType::F32, std::string("tensor is ") + dtype_name(dtype_) + ", not F32");
  return static_cast<float*>(data_);
}

Tensor Tensor::to(Device device) const {
  Tensor t(shape_, dtype_, device);
  t.copy_from(*this);
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  CUAE_CHECK(src.numel() == numel() && src.dtype_ == dtype_,
             "copy of " + shape_str(src.shape_) + " " + dtype_name(src.dtype_) + " into " + shape_str(shape_) + " " +
                 dtype_name(dtype_));
  if (nbytes() == 0) return;
  if (device_ == Device::CPU && src.device_ == Device::CPU) {
    std::memcpy(data_, src.data_, nbytes());
    return;
  }
  cuda_rt::copy_ordered(data_, src.data_, nbytes(), kind_of(device_, src.device_));
}

Tensor Tensor::reshape(Shape shape) const {
  CUAE_CHECK(shape_numel(shape) == numel(), "cannot reshape " + shape_str(shape_) + " to " + shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::rows(std::int64_t begin, std::int64_t end) const {
  CUAE_CHECK(rank() >= 1 && begin >= 0 && begin <= end && end <= shape_[0],
             "rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " + shape_str(shape_));
  Tensor t = *this;
  const std::int64_t row = shape_[0] ? numel() / shape_[0] : 0;
  t.data_ = static_cast<char*>(data_) + static_cast<std::size_t>(begin * row) * dtype_size(dtype_);
  t.shape_[0] = end - begin;
  return t;
}

std::vector<float> Tensor::values() const {
  CUAE_CHECK(dtype_ == DType::F32, "values() needs an F32 tensor");
  std::vector<float> v(static_cast<std::size_t>(numel()));
  if (v.empty()) return v;
  if (device_ == Device::CPU) std::memcpy(v.data(), data_, nbytes());
  else cuda_rt::copy_ordered(v.data(), data_, nbytes(), cuda_rt::Copy::DeviceToHost);
  return v;
}

}  // namespace cuae
