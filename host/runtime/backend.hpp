// A backend = a device, its op table and the per-device resources the ops need (stream, cuBLASLt
// handle, GEMM workspace, reduction scratch, the device's properties, and a cuDNN handle made at
// the first convolution). The graph executor holds one; so do tests and
// benchmarks that call ops directly. Internal header (not installed).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "cuae/tensor.hpp"
#include "kernels/ops.hpp"

namespace cuae {

class Backend {
 public:
  // Throws cuae::Error if device is CUDA and no usable GPU is present.
  explicit Backend(Device device);
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  Device device() const { return device_; }
  const kern::OpTable& ops() const { return *ops_; }
  const kern::Context& ctx() const { return ctx_; }
  kern::Context& ctx() { return ctx_; }

  // Raw memory on this backend's device (256-byte aligned). alloc(0) returns nullptr.
  void* alloc(std::size_t bytes);
  void free(void* p);
  // Host memory the device can copy to asynchronously (pinned on CUDA, plain on the CPU backend).
  void* alloc_host(std::size_t bytes);
  void free_host(void* p);
  // Copies on this backend's stream; host pointers may be pageable. Synchronous w.r.t. the host
  // for copies to the host (the caller reads the result next).
  void copy_to_device(void* dst, const void* src, std::size_t bytes);
  void copy_to_host(void* dst, const void* src, std::size_t bytes);
  void copy_device(void* dst, const void* src, std::size_t bytes);
  void memset(void* dst, int value, std::size_t bytes);
  // Enqueued asynchronously on the stream (pinned host memory needed for true overlap).
  void copy_to_host_async(void* dst, const void* src, std::size_t bytes);
  // Blocks until everything enqueued so far has run.
  void synchronize();
  // A sequence of launches recorded once and replayed as a unit (a CUDA graph of this backend's
  // stream). capture() records what enqueue() enqueues without running it; replay() runs it again,
  // with the pointers it was recorded with (the values behind them are read at replay time).
  // CUDA only.
  class Captured {
   public:
    ~Captured();
    Captured(const Captured&) = delete;
    Captured& operator=(const Captured&) = delete;

   private:
    friend class Backend;
    Captured() = default;
    void* exec_ = nullptr;  // cudaGraphExec_t
  };
  std::unique_ptr<Captured> capture(const std::function<void()>& enqueue);
  void replay(const Captured& c);

 private:
  Device device_;
  const kern::OpTable* ops_;
  kern::Context ctx_;
  kern::CudnnSlot cudnn_;  // ctx_.cudnn points here; the handle is made at the first convolution
};

}  // namespace cuae
