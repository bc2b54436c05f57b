// The backend's cuDNN handle, made at the first convolution (Context::cudnn). Plain C++ (the
// backend includes it); implemented in kernels/cuda/cudnn_handle.cu.
//
// cuDNN 9's libcudnn.so.9 is a small loader: the API lives in libraries it opens at the first call
// (libcudnn_graph, _ops, _cnn, the engines), and when one of them is missing the loader prints
// "cannot load symbol" and aborts the process. So before the first cudnnCreate the libraries are
// opened here, the way the loader opens them (first from the loader's own folder, then by the
// usual search), and a missing one is a cuae::Error naming it and the loader's reason. Ops that
// never convolve never get here: a machine without cuDNN's engines runs everything else.
#pragma once

#include <cudnn.h>

#include <string>
#include <vector>

#include "kernels/ops.hpp"

namespace cuae::kern::cuda {

// ctx's cuDNN handle, bound to ctx's stream; made on first use (throws cuae::Error naming `op` and
// the library when cuDNN cannot be loaded, or when the context has no CudnnSlot).
cudnnHandle_t cudnn_handle(const Context& ctx, const char* op);

// Destroys the slot's handle, if one was made. Never throws.
void release_cudnn(CudnnSlot& slot) noexcept;

// The libraries cuDNN's legacy convolution API needs besides its loader.
const std::vector<std::string>& cudnn_engine_libraries();

// Empty when every library (by soname) can be opened as cuDNN's loader would open it; otherwise
// one line naming the first that cannot and why.
std::string cudnn_load_problem(const std::vector<std::string>& sonames);

}  // namespace cuae::kern::cuda
