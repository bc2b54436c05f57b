#include "host/runtime/input_copy.hpp"

#include <cstring>

#include "host/runtime/check.hpp"

namespace cuae {

namespace {
cudaEvent_t ev(void* e) { return static_cast<cudaEvent_t>(e); }
void* make_event() {
  cudaEvent_t e = nullptr;
  CUAE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return e;
}
}  // namespace

InputCopy::InputCopy(Backend& be, std::size_t bytes) : be_(be), bytes_(bytes) {
  CUAE_CHECK(be.device() == Device::CUDA, "overlapped input copies need the CUDA backend");
  cudaStream_t s = nullptr;
  CUAE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  copy_stream_ = s;
  staging_ = be.alloc(bytes);
  read_ = make_event();
  consumed_ = make_event();
  for (auto& e : pinned_read_) e = make_event();
}

InputCopy::~InputCopy() {
  // Destructors never throw: errors are ignored here.
  cudaStreamSynchronize(static_cast<cudaStream_t>(copy_stream_));
  for (int k = 0; k < 2; ++k) {
    cudaEventDestroy(ev(pinned_read_[k]));
    if (pinned_[k]) cudaFreeHost(pinned_[k]);
  }
  cudaEventDestroy(ev(read_));
  cudaEventDestroy(ev(consumed_));
  be_.synchronize();
  be_.free(staging_);
  cudaStreamDestroy(static_cast<cudaStream_t>(copy_stream_));
}

void InputCopy::start(const void* src) {
  const auto cs = static_cast<cudaStream_t>(copy_stream_);
  cudaPointerAttributes attr{};
  CUAE_CUDA_CHECK(cudaPointerGetAttributes(&attr, src));
  direct_ = attr.type == cudaMemoryTypeHost;
  const void* from = src;
  int k = -1;
  if (!direct_) {
    k = next_;
    next_ ^= 1;
    if (!pinned_[k]) CUAE_CUDA_CHECK(cudaMallocHost(&pinned_[k], bytes_));
    CUAE_CUDA_CHECK(cudaEventSynchronize(ev(pinned_read_[k])));  // the copy two batches ago has read it
    std::memcpy(pinned_[k], src, bytes_);
    from = pinned_[k];
  }
  // The staging buffer is free once the previous batch in it was moved into the input.
  CUAE_CUDA_CHECK(cudaStreamWaitEvent(cs, ev(consumed_), 0));
  CUAE_CUDA_CHECK(cudaMemcpyAsync(staging_, from, bytes_, cudaMemcpyHostToDevice, cs));
  CUAE_CUDA_CHECK(cudaEventRecord(ev(read_), cs));
  if (k >= 0) CUAE_CUDA_CHECK(cudaEventRecord(ev(pinned_read_[k]), cs));
  pending_ = true;
}

void InputCopy::wait_read() {
  if (direct_) CUAE_CUDA_CHECK(cudaEventSynchronize(ev(read_)));
}

void InputCopy::finish(void* dst) {
  if (!pending_) return;
  const auto s = static_cast<cudaStream_t>(be_.ctx().stream);
  CUAE_CUDA_CHECK(cudaStreamWaitEvent(s, ev(read_), 0));
  CUAE_CUDA_CHECK(cudaMemcpyAsync(dst, staging_, bytes_, cudaMemcpyDeviceToDevice, s));
  CUAE_CUDA_CHECK(cudaEventRecord(ev(consumed_), s));
  pending_ = false;
}

}  // namespace cuae
