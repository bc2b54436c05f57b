// Small helpers shared by the .cu files of kernels/cuda: the stream of a Context, launch sizing,
// alignment tests and the compile-time dispatch of an activation or loss kind. Internal header,
// included only from .cu files; no kernels live here (the shared kernels are in reduce.cuh and
// epilogue.cuh).
//
// Naming, in every .cu file of kernels/cuda: a kernel is <what>_kernel; the host function that
// sizes and enqueues it on a stream is <what>_cuda(args..., stream) (it may take the Context when
// it needs the device's properties or the scratch); the op entry is the op table's name and only
// validates, picks the launcher and passes ctx's stream.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "host/runtime/check.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/ops.hpp"

namespace cuae::kern::cuda::launch {

inline cudaStream_t stream_of(const Context& ctx) { return static_cast<cudaStream_t>(ctx.stream); }

// The multiprocessor count of the context's device, read once by the backend that made the
// context (a grid sized from it costs no driver call). A context not made by a backend is an error.
inline int sm_count(const Context& ctx) {
  if (ctx.sm_count <= 0)
    ::cuae::fail_at(__FILE__, __LINE__, "the CUDA context has no device properties (make it through a cuae Backend)");
  return ctx.sm_count;
}

// Blocks for a grid-stride loop over `work` items with `threads` per block: enough to fill every
// multiprocessor `waves` times over (2048 resident threads per SM on Hopper), never more than the
// work needs.
inline int grid_for(const Context& ctx, std::int64_t work, int threads, int waves = 4) {
  const std::int64_t need = (work + threads - 1) / threads;
  const std::int64_t full = static_cast<std::int64_t>(sm_count(ctx)) * (2048 / threads) * waves;
  const std::int64_t g = need < full ? need : full;
  return static_cast<int>(g > 0 ? g : 1);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

// The compile-time dispatch of kernels/dispatch.hpp, shared with the CPU backend.
using kern::dispatch_act;
using kern::dispatch_bool;
using kern::dispatch_loss;

}  // namespace cuae::kern::cuda::launch
