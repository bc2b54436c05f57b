// cuae::Tensor: a dense, row-major, contiguous array with a shape, a dtype and a device.
//
// A tensor either owns its storage (shared between copies of the handle, freed with the last one)
// or is a view of memory someone else owns. Copies between host and device are always explicit
// (to(), copy_from()); nothing moves data behind the caller's back.
//
// Every copy or fill that touches a CUDA tensor (to, copy_from, values, zeros) is synchronous with
// the whole device: it waits for all work already enqueued there (a training step of an Executor
// on its own stream included), runs, and has completed when it returns. So a tensor read after a
// step sees the step's results, and memory a step reads is complete before the step starts. These
// are for set-up and results, not for the inside of a training loop (Executor::set_input and
// gather_input are the asynchronous, stream-ordered ways in).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuae/error.hpp"

namespace cuae {

enum class Device { CPU, CUDA };
// float32 is the compute type today; bf16/fp16 are named so storage and checkpoints can grow into
// them; int32 holds indices (batch row gathers).
enum class DType { F32, BF16, F16, I32 };

CUAE_API const char* device_name(Device d);
CUAE_API std::size_t dtype_size(DType t);
CUAE_API const char* dtype_name(DType t);  // safetensors spelling: F32, BF16, F16, I32

using Shape = std::vector<std::int64_t>;
CUAE_API std::string shape_str(const Shape& s);     // "[256, 784]"
CUAE_API std::int64_t shape_numel(const Shape& s);

// True when a CUDA device is present and usable (false on machines without a GPU or driver).
CUAE_API bool cuda_available();
// Why cuda_available() is false (empty when it is true): no driver, no device, or a driver too old
// for the CUDA runtime cuae was built with (both versions named).
CUAE_API std::string cuda_unavailable_reason();
// What the CPU backend runs on: its thread count and the GEMM library's kernels, e.g.
// "2 threads, OpenBLAS 0.3.21 SkylakeX kernels" (OPENBLAS_CORETYPE chooses them; see the README).
CUAE_API std::string cpu_backend_description();
// Bytes a device can still allocate: the GPU's free memory (cudaMemGetInfo), or the host's
// MemAvailable (/proc/meminfo) for the CPU; 0 when unknown.
CUAE_API std::size_t available_memory(Device device);

// Host memory for buffers the device copies from: page-locked (pinned) when `device` is CUDA, so
// host-to-device copies run asynchronously at full bus speed; plain 256-byte-aligned memory for the
// CPU. Free with free_host_buffer(p, device) (the same device).
CUAE_API void* alloc_host_buffer(std::size_t bytes, Device device);
CUAE_API void free_host_buffer(void* p, Device device);

class CUAE_API Tensor {
 public:
  Tensor() = default;
  // Allocates (uninitialised) storage on the device.
  Tensor(Shape shape, DType dtype = DType::F32, Device device = Device::CPU);
  // A view of memory owned elsewhere; the caller keeps it alive.
  static Tensor view(void* data, Shape shape, DType dtype, Device device);
  static Tensor zeros(Shape shape, Device device = Device::CPU);
  // Host tensor holding a copy of the given values.
  static Tensor from(const std::vector<float>& values, Shape shape);

  const Shape& shape() const { return shape_; }
  std::int64_t dim(int i) const;
  int rank() const { return static_cast<int>(shape_.size()); }
  std::int64_t numel() const { return shape_numel(shape_); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool defined() const { return data_ != nullptr || numel() == 0; }
  bool owning() const { return static_cast<bool>(storage_); }

  void* data() const { return data_; }
  float* f32() const;  // checks dtype == F32

  // A copy on the given device (a new owning tensor, even when the device is the same).
  Tensor to(Device device) const;
  // Copies src's contents into this tensor (same numel and dtype; any devices).
  void copy_from(const Tensor& src);
  // Same storage, new shape with the same element count.
  Tensor reshape(Shape shape) const;
  // Rows [begin, end) of the first dimension, as a view sharing storage.
  Tensor rows(std::int64_t begin, std::int64_t end) const;
  // Host copy of the values (copies from the device if needed).
  std::vector<float> values() const;

 private:
  std::shared_ptr<void> storage_;
  void* data_ = nullptr;
  Shape shape_;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
};

}  // namespace cuae
