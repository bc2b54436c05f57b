// The lazily made cuDNN handle of kernels/cuda/cudnn_handle.hpp.
#include <dlfcn.h>

#include <string>
#include <vector>

#include "host/runtime/check.hpp"
#include "kernels/cuda/cudnn_handle.hpp"

namespace cuae::kern::cuda {

namespace {

// The folder of the libcudnn.so.9 this process loaded: the loader opens its libraries from there
// first (its RUNPATH is $ORIGIN).
std::string loader_folder() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&cudnnCreate), &info) == 0 || info.dli_fname == nullptr) return {};
  const std::string path = info.dli_fname;
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

}  // namespace

const std::vector<std::string>& cudnn_engine_libraries() {
  static const std::vector<std::string> libs = {"libcudnn_graph.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9",
                                                "libcudnn_engines_precompiled.so.9", "libcudnn_heuristic.so.9"};
  return libs;
}

std::string cudnn_load_problem(const std::vector<std::string>& sonames) {
  const std::string dir = loader_folder();
  for (const std::string& name : sonames) {
    // The handles stay open: cuDNN's loader opens the same libraries next, and they stay loaded.
    if (!dir.empty() && dlopen((dir + "/" + name).c_str(), RTLD_NOW | RTLD_LOCAL) != nullptr) continue;
    if (dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL) != nullptr) continue;
    const char* why = dlerror();
    return name + " cannot be loaded (" + (why ? why : "not found") + "); searched " +
           (dir.empty() ? std::string() : dir + ", then ") + "the library path";
  }
  return {};
}

cudnnHandle_t cudnn_handle(const Context& ctx, const char* op) {
  CUAE_CHECK(ctx.cudnn != nullptr, std::string(op) + ": the context has no cuDNN slot (make it through a cuae Backend)");
  CudnnSlot& slot = *ctx.cudnn;
  if (slot.handle == nullptr) {
    // Checked once per process; a failure is reported on every attempt.
    static const std::string problem = cudnn_load_problem(cudnn_engine_libraries());
    if (!problem.empty())
      throw Error(std::string(op) + ": cuDNN (needed for convolutions) is not usable on this machine: " + problem);
    cudnnHandle_t h = nullptr;
    CUAE_CUDNN_CHECK(cudnnCreate(&h));
    slot.handle = h;
    slot.stream = nullptr;
  }
  auto h = static_cast<cudnnHandle_t>(slot.handle);
  // Bound to the context's stream, so cuDNN's work and our kernels stay ordered; rebound only when
  // a context names another stream (a pointer comparison, no call, on every other use).
  if (slot.stream != ctx.stream) {
    CUAE_CUDNN_CHECK(cudnnSetStream(h, static_cast<cudaStream_t>(ctx.stream)));
    slot.stream = ctx.stream;
  }
  return h;
}

void release_cudnn(CudnnSlot& slot) noexcept {
  if (slot.handle) cudnnDestroy(static_cast<cudnnHandle_t>(slot.handle));
  slot.handle = nullptr;
  slot.stream = nullptr;
}

}  // namespace cuae::kern::cuda
