// A build without CUDA (CMake option CUAE_CUDA=OFF): cuda_rt reports the backend unavailable and
// refuses any CUDA work, and the CUDA-only pieces the CPU backend never reaches (the CUDA op table,
// the overlapped input copy) say so if called. Nothing here is reached through the public API
// without cuda_available() having said no first.
#include "host/runtime/cuda_rt.hpp"
#include "host/runtime/input_copy.hpp"

namespace cuae {

namespace {
[[noreturn]] void refuse() { throw Error(cuda_rt::status()); }
}  // namespace

namespace cuda_rt {

const std::string& status() {
  static const std::string s = "cuae was built without CUDA (CMake option CUAE_CUDA=OFF)";
  return s;
}

void* malloc_device(std::size_t) { refuse(); }
void free_device(void*) noexcept {}
void* malloc_host(std::size_t) { refuse(); }
void free_host(void*) noexcept {}
std::size_t free_memory() noexcept { return 0; }
void copy_ordered(void*, const void*, std::size_t, Copy) { refuse(); }
void zero_ordered(void*, std::size_t) { refuse(); }
void open(kern::Context&, std::size_t, std::size_t) { refuse(); }
void close(kern::Context&, kern::CudnnSlot&) noexcept {}
void copy_async(void*, const void*, std::size_t, Copy, void*) { refuse(); }
void memset_async(void*, int, std::size_t, void*) { refuse(); }
void synchronize(void*) { refuse(); }
void* capture(void*, const std::function<void()>&) { refuse(); }
void replay(void*, void*) { refuse(); }
void destroy_graph(void*) noexcept {}

}  // namespace cuda_rt

namespace kern {
const OpTable& cuda_ops() { refuse(); }
}  // namespace kern

InputCopy::InputCopy(Backend& be, std::size_t bytes) : be_(be), bytes_(bytes) { refuse(); }
InputCopy::~InputCopy() = default;
void InputCopy::start(const void*) { refuse(); }
void InputCopy::wait_read() { refuse(); }
void InputCopy::finish(void*) { refuse(); }

}  // namespace cuae
