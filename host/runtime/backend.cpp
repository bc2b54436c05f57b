#include "host/runtime/backend.hpp"

#include <cstdlib>
#include <cstring>

#include "host/runtime/cuda_rt.hpp"

namespace cuae {

namespace {
constexpr std::size_t kWorkspaceBytes = 32u << 20;  // cuBLASLt: 32 MiB is what NVIDIA advises for Hopper
constexpr std::size_t kScratchFloats = 1u << 16;    // reduction partials: one per block, grid capped below this
}  // namespace

Backend::Backend(Device device) : device_(device) {
  if (device == Device::CPU) {
    ops_ = &kern::cpu_ops();
    return;
  }
  if (!cuda_available()) throw Error("CUDA backend requested but no usable CUDA device is present: " + cuda_unavailable_reason());
  ops_ = &kern::cuda_ops();
  // cuDNN is loaded at the first convolution (kernels/cuda/cudnn_handle.hpp), not here: every
  // other op runs on a machine whose cuDNN cannot be loaded.
  ctx_.cudnn = &cudnn_;
  try {
    cuda_rt::open(ctx_, kWorkspaceBytes, kScratchFloats);
  } catch (...) {
    cuda_rt::close(ctx_, cudnn_);
    throw;
  }
}

Backend::~Backend() {
  // Destructors never throw: errors here are ignored (the process is tearing the device down).
  if (device_ == Device::CUDA) cuda_rt::close(ctx_, cudnn_);
}

void* Backend::alloc(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  if (device_ == Device::CUDA) return cuda_rt::malloc_device(bytes);
  void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (!p) throw Error("out of host memory allocating " + std::to_string(bytes) + " bytes");
  return p;
}

void Backend::free(void* p) {
  if (!p) return;
  if (device_ == Device::CPU) std::free(p);
  else cuda_rt::free_device(p);
}

void* Backend::alloc_host(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  return device_ == Device::CPU ? alloc(bytes) : cuda_rt::malloc_host(bytes);
}

void Backend::free_host(void* p) {
  if (!p) return;
  if (device_ == Device::CPU) std::free(p);
  else cuda_rt::free_host(p);
}

void Backend::copy_to_device(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  if (device_ == Device::CPU) std::memcpy(dst, src, bytes);
  else cuda_rt::copy_async(dst, src, bytes, cuda_rt::Copy::HostToDevice, ctx_.stream);
}

void Backend::copy_to_host(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  if (device_ == Device::CPU) { std::memcpy(dst, src, bytes); return; }
  cuda_rt::copy_async(dst, src, bytes, cuda_rt::Copy::DeviceToHost, ctx_.stream);
  cuda_rt::synchronize(ctx_.stream);
}

void Backend::copy_to_host_async(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  if (device_ == Device::CPU) std::memcpy(dst, src, bytes);
  else cuda_rt::copy_async(dst, src, bytes, cuda_rt::Copy::DeviceToHost, ctx_.stream);
}

void Backend::copy_device(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  if (device_ == Device::CPU) std::memcpy(dst, src, bytes);
  else cuda_rt::copy_async(dst, src, bytes, cuda_rt::Copy::DeviceToDevice, ctx_.stream);
}

void Backend::memset(void* dst, int value, std::size_t bytes) {
  if (bytes == 0) return;
  if (device_ == Device::CPU) std::memset(dst, value, bytes);
  else cuda_rt::memset_async(dst, value, bytes, ctx_.stream);
}

Backend::Captured::~Captured() { cuda_rt::destroy_graph(exec_); }

std::unique_ptr<Backend::Captured> Backend::capture(const std::function<void()>& enqueue) {
  CUAE_CHECK(device_ == Device::CUDA, "capturing launches needs the CUDA backend");
  std::unique_ptr<Captured> c(new Captured());
  c->exec_ = cuda_rt::capture(ctx_.stream, enqueue);
  return c;
}

void Backend::replay(const Captured& c) { cuda_rt::replay(c.exec_, ctx_.stream); }

void Backend::synchronize() {
  if (device_ == Device::CUDA) cuda_rt::synchronize(ctx_.stream);
}

}  // namespace cuae
