// CPU reference for the dense layer: the oracle the CUDA kernels are tested against, so it is
// written to be obviously right rather than fast. The GEMMs go to OpenBLAS (a naive triple loop
// would make the model tests crawl); everything around them is a plain loop.
//
// Row-major throughout. With W stored [n,k] (w_kn false):
//   Y[m,n]  = X[m,k]·Wᵀ                 dW[n,k] = dZᵀ·X        dX[m,k] = dZ·W[n,k]
// and with W stored [k,n] (w_kn, the tied decoder reads the encoder's weight unchanged):
//   Y[m,n]  = X[m,k]·W                  dW[k,n] = Xᵀ·dZ        dX[m,k] = dZ·Wᵀ
#include <cblas.h>

#include <vector>

#include "kernels/act_math.hpp"
#include "kernels/cpu/parallel.hpp"
#include "kernels/ops.hpp"
#include "kernels/validate.hpp"

namespace cuae::kern::cpu {

void dense_forward(const Context&, const DenseForward& a) {
  validate(a);
  const int m = a.m, n = a.n, k = a.k;
  // Y = X·Wᵀ (or X·W). beta = 0: OpenBLAS clears C instead of scaling it, so whatever Y held
  // before (the tests poison it with NaN) cannot leak into the result.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, a.w_kn ? CblasNoTrans : CblasTrans, m, n, k, 1.0f, a.x, k, a.w,
              a.w_kn ? n : k, 0.0f, a.y, n);
  // Epilogue: bias, keep z if asked, activation. Rows are independent.
#pragma omp parallel for schedule(static) if (static_cast<std::int64_t>(m) * n >= kParallelMin)
  for (int i = 0; i < m; ++i) {
    float* yrow = a.y + static_cast<std::size_t>(i) * n;
    float* zrow = a.z ? a.z + static_cast<std::size_t>(i) * n : nullptr;
    for (int j = 0; j < n; ++j) {
      const float z = yrow[j] + (a.b ? a.b[j] : 0.0f);
      if (zrow) zrow[j] = z;
      yrow[j] = act_forward(a.act, z, a.slope);
    }
  }
}

void dense_backward(const Context&, const DenseBackward& a) {
  validate(a);
  const int m = a.m, n = a.n, k = a.k;
  // One pass over dY: dZ = dY ⊙ act'(y, z), and the column sums of dZ for db. The sums are kept in
  // double so the oracle's db is more accurate than anything it is compared against. The loop
  // runs down the rows in order (not in parallel): it is O(m·n) next to the O(m·n·k) GEMMs.
  std::vector<double> colsum(a.db ? n : 0, 0.0);
  for (int i = 0; i < m; ++i) {
    const std::size_t row = static_cast<std::size_t>(i) * n;
    for (int j = 0; j < n; ++j) {
      const std::size_t e = row + j;
      const float y = a.y ? a.y[e] : 0.0f;  // identity reads neither y nor z, GELU only z
      const float z = a.z ? a.z[e] : 0.0f;
      const float dz = a.dy[e] * act_derivative(a.act, y, z, a.slope);
      a.dz[e] = dz;
      if (a.db) colsum[j] += dz;
    }
  }
  if (a.db) {
    for (int j = 0; j < n; ++j) {
      const double prev = a.acc_db ? static_cast<double>(a.db[j]) : 0.0;
      a.db[j] = static_cast<float>(prev + colsum[j]);
    }
  }
  if (a.dw) {
    const float beta = a.acc_dw ? 1.0f : 0.0f;
    if (a.w_kn)  // dW[k,n] = Xᵀ·dZ
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, n, m, 1.0f, a.x, k, a.dz, n, beta, a.dw, n);
    else  // dW[n,k] = dZᵀ·X
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, k, m, 1.0f, a.dz, n, a.x, k, beta, a.dw, k);
  }
  if (a.dx) {
    const float beta = a.acc_dx ? 1.0f : 0.0f;
    // dX[m,k] = dZ·W when W is [n,k]; dZ·Wᵀ when W is [k,n].
    cblas_sgemm(CblasRowMajor, CblasNoTrans, a.w_kn ? CblasTrans : CblasNoTrans, m, k, n, 1.0f, a.dz, n, a.w,
                a.w_kn ? n : k, beta, a.dx, k);
  }
}

}  // namespace cuae::kern::cpu
