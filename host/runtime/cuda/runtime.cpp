// cuda_rt with the CUDA runtime, cuBLASLt and cuDNN (host/runtime/cuda_rt.hpp).
#include "host/runtime/cuda_rt.hpp"

#include "host/runtime/check.hpp"
#include "kernels/cuda/cudnn_handle.hpp"

namespace cuae::cuda_rt {

namespace {
cudaMemcpyKind kind_of(Copy k) {
  switch (k) {
    case Copy::HostToHost: return cudaMemcpyHostToHost;
    case Copy::HostToDevice: return cudaMemcpyHostToDevice;
    case Copy::DeviceToHost: return cudaMemcpyDeviceToHost;
    case Copy::DeviceToDevice: return cudaMemcpyDeviceToDevice;
  }
  return cudaMemcpyDefault;
}

template <class F>
void ordered_with_device(F&& f) {
  CUAE_CUDA_CHECK(cudaDeviceSynchronize());
  f();
  CUAE_CUDA_CHECK(cudaDeviceSynchronize());
}
}  // namespace

const std::string& status() {
  static const std::string s = []() -> std::string {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaSuccess) return n > 0 ? std::string() : std::string("no CUDA device is present");
    cudaGetLastError();
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    auto ver = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
    if (driver == 0) return "no NVIDIA driver on this machine (" + std::string(cudaGetErrorString(e)) + ")";
    return std::string(cudaGetErrorString(e)) + " (the driver supports CUDA " + ver(driver) +
           ", cuae's runtime is CUDA " + ver(runtime) + ")";
  }();
  return s;
}

void* malloc_device(std::size_t bytes) {
  void* p = nullptr;
  CUAE_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void free_device(void* p) noexcept { cudaFree(p); }

void* malloc_host(std::size_t bytes) {
  void* p = nullptr;
  CUAE_CUDA_CHECK(cudaMallocHost(&p, bytes));
  return p;
}

void free_host(void* p) noexcept { cudaFreeHost(p); }

std::size_t free_memory() noexcept {
  std::size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) == cudaSuccess) return free;
  cudaGetLastError();
  return 0;
}

void copy_ordered(void* dst, const void* src, std::size_t bytes, Copy kind) {
  ordered_with_device([&] { CUAE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind_of(kind))); });
}

void zero_ordered(void* dst, std::size_t bytes) {
  ordered_with_device([&] { CUAE_CUDA_CHECK(cudaMemset(dst, 0, bytes)); });
}

void open(kern::Context& ctx, std::size_t workspace_bytes, std::size_t scratch_floats) {
  // The device and its properties are read once here: no launch asks the driver for them.
  CUAE_CUDA_CHECK(cudaGetDevice(&ctx.device));
  CUAE_CUDA_CHECK(cudaDeviceGetAttribute(&ctx.sm_count, cudaDevAttrMultiProcessorCount, ctx.device));
  cudaStream_t stream = nullptr;
  CUAE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ctx.stream = stream;
  cublasLtHandle_t lt = nullptr;
  CUAE_CUBLAS_CHECK(cublasLtCreate(&lt));
  ctx.blaslt = lt;
  CUAE_CUDA_CHECK(cudaMalloc(&ctx.workspace, workspace_bytes));
  ctx.workspace_bytes = workspace_bytes;
  void* scratch = nullptr;
  CUAE_CUDA_CHECK(cudaMalloc(&scratch, scratch_floats * sizeof(float)));
  ctx.scratch = static_cast<float*>(scratch);
  ctx.scratch_floats = scratch_floats;
}

void close(kern::Context& ctx, kern::CudnnSlot& cudnn) noexcept {
  cudaStreamSynchronize(static_cast<cudaStream_t>(ctx.stream));
  cudaFree(ctx.scratch);
  cudaFree(ctx.workspace);
  kern::cuda::release_cudnn(cudnn);
  if (ctx.blaslt) cublasLtDestroy(static_cast<cublasLtHandle_t>(ctx.blaslt));
  if (ctx.stream) cudaStreamDestroy(static_cast<cudaStream_t>(ctx.stream));
}

void copy_async(void* dst, const void* src, std::size_t bytes, Copy kind, void* stream) {
  CUAE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind_of(kind), static_cast<cudaStream_t>(stream)));
}

void memset_async(void* dst, int value, std::size_t bytes, void* stream) {
  CUAE_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, static_cast<cudaStream_t>(stream)));
}

void synchronize(void* stream) { CUAE_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream))); }

void* capture(void* stream, const std::function<void()>& enqueue) {
  auto s = static_cast<cudaStream_t>(stream);
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
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
  cudaGraphDestroy(g);
  CUAE_CUDA_CHECK(e);
  return exec;
}

void replay(void* graph, void* stream) {
  CUAE_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), static_cast<cudaStream_t>(stream)));
}

void destroy_graph(void* graph) noexcept {
  if (graph) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph));
}

}  // namespace cuae::cuda_rt
