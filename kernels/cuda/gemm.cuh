// cuBLASLt GEMMs shared by the CUDA ops (dense layers, the RBM's contrastive divergence): one
// GEMM in column-major terms with a cached descriptor and algorithm per shape, device, workspace
// and pointer alignment (kernels/cuda/gemm.cu). Internal header, included only from .cu files.
#pragma once

#include <cublasLt.h>

#include <cstdint>

#include "kernels/ops.hpp"

namespace cuae::kern::cuda::blas {

// D[M,N] = alpha·op(A)[M,K]·op(B)[K,N] (+ beta·D), all column-major.
struct Gemm {
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
  int M = 0, N = 0, K = 0;
  const float* A = nullptr;
  int lda = 0;
  const float* B = nullptr;
  int ldb = 0;
  float* D = nullptr;
  int ldd = 0;
  float alpha = 1.0f;
  float beta = 0.0f;
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  const float* bias = nullptr;  // BIAS epilogues read it; BGRADA/BGRADB write it
  float* aux = nullptr;         // GELU_AUX epilogues: the pre-activation
  std::int64_t aux_ld = 0;
};

inline bool epi_uses_bias(cublasLtEpilogue_t e) {
  return e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_RELU_BIAS || e == CUBLASLT_EPILOGUE_GELU_BIAS ||
         e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS || e == CUBLASLT_EPILOGUE_BGRADA || e == CUBLASLT_EPILOGUE_BGRADB;
}
inline bool epi_uses_aux(cublasLtEpilogue_t e) {
  return e == CUBLASLT_EPILOGUE_GELU_AUX || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
}

// Whether cuBLASLt has an algorithm for g (its epilogue included); enqueues nothing.
bool gemm_supported(const Context& ctx, const Gemm& g);
// Enqueues the GEMM on ctx's stream; false when cuBLASLt has no algorithm for this epilogue
// (nothing enqueued). A DEFAULT-epilogue GEMM without an algorithm is an error.
bool gemm(const Context& ctx, const Gemm& g);

}  // namespace cuae::kern::cuda::blas
