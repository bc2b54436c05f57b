#include "host/runtime/backend.hpp"

#include <cstdlib>
#include <cstring>

#include "host/runtime/check.hpp"
#include "kernels/cuda/cudnn_handle.hpp"

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
  if (!cuda_available()) throw Error("CUDA backend requested but no usable CUDA device is present");
  ops_ = &kern::cuda_ops();
  // The device and its properties are read once here: no launch asks the driver for them.
  CUAE_CUDA_CHECK(cudaGetDevice(&ctx_.device));
  CUAE_CUDA_CHECK(cudaDeviceGetAttribute(&ctx_.sm_count, cudaDevAttrMultiProcessorCount, ctx_.device));
  cudaStream_t stream = nullptr;
  CUAE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ctx_.stream = stream;
  cublasLtHandle_t lt = nullptr;
  CUAE_CUBLAS_CHECK(cublasLtCreate(&lt));
  ctx_.blaslt = lt;
  // cuDNN is loaded at the first convolution (kernels/cuda/cudnn_handle.hpp), not here: every
  // other op runs on a machine whose cuDNN cannot be loaded.
  ctx_.cudnn = &cudnn_;
  CUAE_CUDA_CHECK(cudaMalloc(&ctx_.workspace, kWorkspaceBytes));
  ctx_.workspace_bytes = kWorkspaceBytes;
  void* scratch = nullptr;
  CUAE_CUDA_CHECK(cudaMalloc(&scratch, kScratchFloats * sizeof(float)));
  ctx_.scratch = static_cast<float*>(scratch);
  ctx_.scratch_floats = kScratchFloats;
}

Backend::~Backend() {
  if (device_ != Device::CUDA) return;
  // Destructors never throw: errors here are ignored (the process is tearing the device down).
  cudaStreamSynchronize(static_cast<cudaStream_t>(ctx_.stream));
  cudaFree(ctx_.scratch);
  cudaFree(ctx_.workspace);
  kern::cuda::release_cudnn(cudnn_);
  cublasLtDestroy(static_cast<cublasLtHandle_t>(ctx_.blaslt));
  cudaStreamDestroy(static_cast<cudaStream_t>(ctx_.stream));
}

void* Backend::alloc(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  if (device_ == Device::CPU) {
    void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (!p) throw Error("out of host memory allocating " + std::to_string(bytes) + " bytes");
    return p;
  }
  void* p = nullptr;
  CUAE_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void Backend::free(void* p) {
  if (!p) return;
  if (device_ == Device::CPU) std::free(p);
  else cudaFree(p);
}

void* Backend::alloc_host(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  if (device_ == Device::CPU) return alloc(bytes);
  void* p = nullptr;
  CUAE_CUDA_CHECK(cudaMallocHost(&p, bytes));
  return p;
}

void Backend::free_host(void* p) {
  if (!p) return;
  if (device_ == Device::CPU) std::free(p);
  else cudaFreeHost(p);
}

void Backend::copy_to_device(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  if (device_ == Device::CPU) { std::memcpy(dst, src, bytes); return; }
  CUAE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(ctx_.stream)));
}

void Backend::copy_to_host(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  if (device_ == Device::CPU) { std::memcpy(dst, src, bytes); return; }
  auto s = static_cast<cudaStream_t>(ctx_.stream);
  CUAE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  CUAE_CUDA_CHECK(cudaStreamSynchronize(s));
}

void Backend::copy_to_host_async(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  if (device_ == Device::CPU) { std::memcpy(dst, src, bytes); return; }
  CUAE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(ctx_.stream)));
}

void Backend::copy_device(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  if (device_ == Device::CPU) { std::memcpy(dst, src, bytes); return; }
  CUAE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(ctx_.stream)));
}

void Backend::memset(void* dst, int value, std::size_t bytes) {
  if (bytes == 0) return;
  if (device_ == Device::CPU) { std::memset(dst, value, bytes); return; }
  CUAE_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, static_cast<cudaStream_t>(ctx_.stream)));
}

Backend::Captured::~Captured() {
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
}

std::unique_ptr<Backend::Captured> Backend::capture(const std::function<void()>& enqueue) {
  CUAE_CHECK(device_ == Device::CUDA, "capturing launches needs the CUDA backend");
  auto s = static_cast<cudaStream_t>(ctx_.stream);
  // Thread-local mode: a call from this thread that would synchronise or allocate during the
  // capture is an error instead of a silent break in the graph.
  CUAE_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t g = nullptr;
  try {
    enqueue();
  } catch (...) {
    cudaStreamEndCapture(s, &g);  // leaves the stream usable; the partial graph is dropped
    if (g) cudaGraphDestroy(g);
    throw;
  }
  CUAE_CUDA_CHECK(cudaStreamEndCapture(s, &g));
  std::unique_ptr<Captured> c(new Captured());
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
  cudaGraphDestroy(g);
  CUAE_CUDA_CHECK(e);
  c->exec_ = exec;
  return c;
}

void Backend::replay(const Captured& c) {
  CUAE_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(c.exec_), static_cast<cudaStream_t>(ctx_.stream)));
}

void Backend::synchronize() {
  if (device_ == Device::CUDA) CUAE_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(ctx_.stream)));
}

}  // namespace cuae
