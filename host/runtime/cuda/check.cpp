// The throwers behind CUAE_CUDA_CHECK, CUAE_CUBLAS_CHECK and CUAE_CUDNN_CHECK
// (host/runtime/check.hpp): each names the call and the library's own message.
#include "host/runtime/check.hpp"

namespace cuae {

namespace detail {

void fail_cuda(cudaError_t e, const char* expr, const char* file, int line) {
  fail_at(file, line, std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                          ") in " + expr);
}

void fail_cublas(cublasStatus_t s, const char* expr, const char* file, int line) {
  fail_at(file, line, std::string("cuBLAS error ") + cublasGetStatusName(s) + " (" +
                          cublasGetStatusString(s) + ") in " + expr);
}

void fail_cudnn(cudnnStatus_t s, const char* expr, const char* file, int line) {
  fail_at(file, line, std::string("cuDNN error ") + cudnnGetErrorString(s) + " in " + expr);
}

}  // namespace detail

}  // namespace cuae
