// cuBLASLt GEMMs shared by the CUDA ops (dense layers, the RBM's contrastive divergence): one
// GEMM in column-major terms with an algorithm chosen by cuBLASLt's heuristic once per shape,
// device, workspace and pointer alignment and kept (kernels/cuda/gemm.cu). A call site that
// repeats its call passes an OpCache and an entry index: the first call builds that site's own
// descriptors (its pointers set once) and later identical calls go straight to cublasLtMatmul.
// Internal header, included only from .cu files.
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
  bool operator==(const Gemm&) const = default;
};

inline bool epi_uses_bias(cublasLtEpilogue_t e) {
  return e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_RELU_BIAS || e == CUBLASLT_EPILOGUE_GELU_BIAS ||
         e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS || e == CUBLASLT_EPILOGUE_BGRADA || e == CUBLASLT_EPILOGUE_BGRADB;
}
inline bool epi_uses_aux(cublasLtEpilogue_t e) {
  return e == CUBLASLT_EPILOGUE_GELU_AUX || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
}

// The bias vector of a BIAS or BGRAD epilogue must be 16-byte aligned: cuBLASLt's preferences
// carry no alignment for it, and an algorithm chosen for an aligned bias may fault on a pointer
// that is only 4-byte aligned (a bias inside a flat parameter buffer, e.g. an RBM's hidden bias at
// param + nh·nv + nv). Such a request is refused (gemm returns false, nothing enqueued) and the
// caller adds the bias in a pass of its own.
bool bias_epilogue_allowed(const void* bias);

// Whether cuBLASLt has an algorithm for g (its epilogue included); enqueues nothing.
bool gemm_supported(const Context& ctx, const Gemm& g, OpCache* cache = nullptr, int entry = 0);
// Enqueues the GEMM on ctx's stream; false when cuBLASLt has no algorithm for this epilogue or the
// epilogue's bias is not allowed (nothing enqueued). A DEFAULT-epilogue GEMM without an algorithm
// is an error. cache/entry: the call site's OpCache and the entry it keeps this GEMM in (each GEMM
// an op runs gets its own entry).
bool gemm(const Context& ctx, const Gemm& g, OpCache* cache = nullptr, int entry = 0);

}  // namespace cuae::kern::cuda::blas
