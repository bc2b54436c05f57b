// The CUDA runtime calls the engine's host code makes (tensors, backends, device memory), behind
// plain C++: no CUDA header is needed to include this. host/runtime/cuda/runtime.cpp implements
// it with the CUDA runtime; a build without CUDA links host/runtime/no_cuda/ instead, where
// status() says so and everything else refuses. Streams and graphs are opaque pointers
// (cudaStream_t, cudaGraphExec_t). Internal header (not installed).
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "kernels/ops.hpp"

namespace cuae::cuda_rt {

// "" when a CUDA device is usable, else why not (asked of the runtime once per process).
const std::string& status();

// Device and pinned host memory; the frees ignore errors (they run in destructors).
void* malloc_device(std::size_t bytes);
void free_device(void* p) noexcept;
void* malloc_host(std::size_t bytes);
void free_host(void* p) noexcept;
// Free bytes on the current device (0 when the runtime cannot say).
std::size_t free_memory() noexcept;

enum class Copy { HostToHost, HostToDevice, DeviceToHost, DeviceToDevice };
// Synchronous copies and fills on the legacy default stream, between two device-wide
// synchronisations (see Tensor: the backends' streams are non-blocking).
void copy_ordered(void* dst, const void* src, std::size_t bytes, Copy kind);
void zero_ordered(void* dst, std::size_t bytes);

// A backend's resources: the device's properties, a non-blocking stream, a cuBLASLt handle, the
// GEMM workspace and the reduction scratch; released by close() (errors ignored), which also
// releases the cuDNN handle made at the first convolution.
void open(kern::Context& ctx, std::size_t workspace_bytes, std::size_t scratch_floats);
void close(kern::Context& ctx, kern::CudnnSlot& cudnn) noexcept;

// Work on a stream.
void copy_async(void* dst, const void* src, std::size_t bytes, Copy kind, void* stream);
void memset_async(void* dst, int value, std::size_t bytes, void* stream);
void synchronize(void* stream);
// Records what enqueue() launches on the stream (thread-local capture mode) into an executable
// graph; replay() launches it again; destroy_graph() frees it.
void* capture(void* stream, const std::function<void()>& enqueue);
void replay(void* graph, void* stream);
void destroy_graph(void* graph) noexcept;

}  // namespace cuae::cuda_rt
