// Status checks for CUDA, cuBLAS(Lt) and cuDNN calls: a failure throws cuae::Error naming the
// call's file:line and the library's own message. Include only from .cpp/.cu files.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

#include "cuae/error.hpp"

namespace cuae::detail {
[[noreturn]] void fail_cuda(cudaError_t e, const char* expr, const char* file, int line);
[[noreturn]] void fail_cublas(cublasStatus_t s, const char* expr, const char* file, int line);
[[noreturn]] void fail_cudnn(cudnnStatus_t s, const char* expr, const char* file, int line);
}  // namespace cuae::detail

#define CUAE_CUDA_CHECK(expr)                                                         \
  do {                                                                                \
    cudaError_t cuae_e_ = (expr);                                                     \
    if (cuae_e_ != cudaSuccess) ::cuae::detail::fail_cuda(cuae_e_, #expr, __FILE__, __LINE__); \
  } while (0)
#define CUAE_CUBLAS_CHECK(expr)                                                       \
  do {                                                                                \
    cublasStatus_t cuae_s_ = (expr);                                                  \
    if (cuae_s_ != CUBLAS_STATUS_SUCCESS)                                             \
      ::cuae::detail::fail_cublas(cuae_s_, #expr, __FILE__, __LINE__);                \
  } while (0)
#define CUAE_CUDNN_CHECK(expr)                                                        \
  do {                                                                                \
    cudnnStatus_t cuae_s_ = (expr);                                                   \
    if (cuae_s_ != CUDNN_STATUS_SUCCESS)                                              \
      ::cuae::detail::fail_cudnn(cuae_s_, #expr, __FILE__, __LINE__);                 \
  } while (0)
// After a kernel launch: catches bad launch configurations at once (no synchronisation).
#define CUAE_CUDA_LAUNCH_CHECK() CUAE_CUDA_CHECK(cudaGetLastError())
