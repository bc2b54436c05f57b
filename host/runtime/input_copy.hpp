// A graph input's host-to-device copy that overlaps the step in flight (CUDA). Internal header.
//
// The batch travels on a copy stream of its own into a device staging buffer, while the compute
// stream still runs the previous step; the next step starts with a device-to-device move from the
// staging buffer into the input (outside any captured graph: the captured step keeps reading the
// input's fixed address). Events order the three:
//
//   host      start(src): [memcpy into pinned buffer k]              wait_read(): read_ (pinned src)
//   copy      wait consumed_ -> H2D staging -> record read_
//   compute   finish(dst): wait read_ -> D2D staging -> dst -> record consumed_ -> the step ...
//
// A pinned source (cudaMallocHost, cudaHostRegister: an image stream's buffers) is read by the copy
// engine directly, and wait_read() blocks until it has been, not until the step that uses it has
// run. A pageable source is first copied by the host into one of two pinned buffers (waiting only
// for the copy that last read that buffer), so the caller may reuse it as soon as start() returns.
#pragma once

#include <cstddef>

#include "host/runtime/backend.hpp"

namespace cuae {

class InputCopy {
 public:
  InputCopy(Backend& be, std::size_t bytes);
  ~InputCopy();
  InputCopy(const InputCopy&) = delete;
  InputCopy& operator=(const InputCopy&) = delete;

  // Starts copying `bytes` from host memory toward the input.
  void start(const void* src);
  // Blocks until the host memory of the last start() has been read.
  void wait_read();
  // Enqueues on the compute stream the move of a started batch into dst; nothing when none is
  // pending.
  void finish(void* dst);
  // Forgets a started batch (the input was since written on the compute stream).
  void cancel() { pending_ = false; }

 private:
  Backend& be_;
  std::size_t bytes_;
  void* copy_stream_ = nullptr;  // cudaStream_t
  void* staging_ = nullptr;      // device
  void* pinned_[2] = {nullptr, nullptr};
  void* pinned_read_[2] = {nullptr, nullptr};  // cudaEvent_t: the H2D that last read pinned_[k]
  void* read_ = nullptr;         // cudaEvent_t: the last H2D is done
  void* consumed_ = nullptr;     // cudaEvent_t: the staging buffer was moved into the input
  int next_ = 0;
  bool pending_ = false;
  bool direct_ = false;          // the last start() read the caller's pinned memory
};

}  // namespace cuae
