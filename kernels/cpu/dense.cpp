// CPU reference for the dense layer: the oracle the CUDA kernels are tested against, so it is
// written to be obviously right rather than fast. The GEMMs go to OpenBLAS (a naive triple loop
// would make the model tests crawl); the passes around them are kernels/cpu/epilogue's plain loops
// (shared with the convolutions).
//
// Row-major throughout. With W stored [n,k] (w_kn false):
//   Y[m,n]  = X[m,k]·Wᵀ                 dW[n,k] = dZᵀ·X        dX[m,k] = dZ·W[n,k]
// and with W stored [k,n] (w_kn, the tied decoder reads the encoder's weight unchanged):
//   Y[m,n]  = X[m,k]·W                  dW[k,n] = Xᵀ·dZ        dX[m,k] = dZ·Wᵀ
#include <cblas.h>

#include "kernels/cpu/epilogue.hpp"
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
  bias_act_rows(a.y, a.z, a.b, m, n, a.act, a.slope);  // bias, z if asked, activation
}

void dense_backward(const Context&, const DenseBackward& a) {
  validate(a);
  const int m = a.m, n = a.n, k = a.k;
  // One pass over dY: dZ = dY ⊙ act'(y, z), and the column sums of dZ for db, kept in double so the
  // oracle's db is more accurate than anything it is compared against.
  act_backward_bias(a.dy, a.y, a.z, a.dz, a.db, a.acc_db, m, n, a.act, a.slope);
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
