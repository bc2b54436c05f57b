#include "host/runtime/check.hpp"

#include <sstream>

namespace cuae {

void fail_at(const char* file, int line, const std::string& message) {
  std::ostringstream os;
  os << file << ":" << line << ": " << message;
  throw Error(os.str());
}

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
