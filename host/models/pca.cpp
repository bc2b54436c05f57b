// PCA baseline and reconstruction metrics, on the host. The covariance is one BLAS SYRK over the
// centred data (float), the eigen-decomposition LAPACK's dsyevr in double on the D×D matrix, so
// a 60000×784 set takes about a second on two cores.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cuae/autoencoder.hpp"

// LAPACK's symmetric eigensolver (Fortran ABI; OpenBLAS exports it).
extern "C" void dsyevr_(const char* jobz, const char* range, const char* uplo, const int* n, double* a, const int* lda,
                        const double* vl, const double* vu, const int* il, const int* iu, const double* abstol, int* m,
                        double* w, double* z, const int* ldz, int* isuppz, double* work, const int* lwork, int* iwork,
                        const int* liwork, int* info);

namespace cuae {

ReconMetrics reconstruction_metrics(const Tensor& images, const Tensor& recon) {
  CUAE_CHECK(images.device() == Device::CPU && recon.device() == Device::CPU, "reconstruction_metrics needs host tensors");
  CUAE_CHECK(images.rank() == 2 && images.shape() == recon.shape(),
             "reconstruction_metrics: images " + shape_str(images.shape()) + " vs reconstructions " + shape_str(recon.shape()));
  const std::int64_t n = images.dim(0), d = images.dim(1);
  const float* x = images.f32();
  const float* r = recon.f32();
  double se = 0.0, bce = 0.0;
#pragma omp parallel for reduction(+ : se, bce) schedule(static)
  for (std::int64_t i = 0; i < n * d; ++i) {
    const double t = x[i], p = r[i];
    se += (t - p) * (t - p);
    const double q = std::clamp(p, 1e-7, 1.0 - 1e-7);
    bce -= t * std::log(q) + (1.0 - t) * std::log1p(-q);
  }
  ReconMetrics m;
  m.images = n;
  if (n == 0) return m;
  m.mse_per_pixel = se / static_cast<double>(n * d);
  m.se_per_image = se / static_cast<double>(n);
  m.bce_per_image = bce / static_cast<double>(n);
  return m;
}

Pca fit_pca(const Tensor& images, int k) {
  CUAE_CHECK(images.device() == Device::CPU && images.rank() == 2, "fit_pca needs a host [N, D] tensor");
  const std::int64_t n = images.dim(0), d = images.dim(1);
  CUAE_CHECK(k >= 1 && k <= d && n >= 2, "fit_pca: k = " + std::to_string(k) + " components of " + shape_str(images.shape()));
  const float* x = images.f32();
  std::vector<double> mean(static_cast<std::size_t>(d), 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) mean[static_cast<std::size_t>(j)] += x[i * d + j];
  for (auto& v : mean) v /= static_cast<double>(n);
  std::vector<float> xc(static_cast<std::size_t>(n * d));
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j)
      xc[static_cast<std::size_t>(i * d + j)] = static_cast<float>(x[i * d + j] - mean[static_cast<std::size_t>(j)]);
  std::vector<float> cov(static_cast<std::size_t>(d * d), 0.0f);
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(d), static_cast<int>(n),
              1.0f / static_cast<float>(n - 1), xc.data(), static_cast<int>(d), 0.0f, cov.data(), static_cast<int>(d));
  // The matrix is symmetric, so row- and column-major agree; ssyrk filled the row-major upper
  // triangle, which is LAPACK's (column-major) lower one.
  std::vector<double> a(cov.begin(), cov.end());
  const int n_ = static_cast<int>(d), il = static_cast<int>(d - k + 1), iu = static_cast<int>(d);
  const double zero = 0.0;
  int found = 0, info = 0;
  std::vector<double> w(static_cast<std::size_t>(d)), z(static_cast<std::size_t>(d * k));
  std::vector<int> support(static_cast<std::size_t>(2 * k));
  // Workspace query, then the solve. Eigenvalues come in ascending order: ask for the top k by index.
  double wq = 0;
  int iwq = 0, lwork = -1, liwork = -1;
  dsyevr_("V", "I", "L", &n_, a.data(), &n_, &zero, &zero, &il, &iu, &zero, &found, w.data(), z.data(), &n_,
          support.data(), &wq, &lwork, &iwq, &liwork, &info);
  CUAE_CHECK(info == 0, "fit_pca: LAPACK dsyevr workspace query failed (info " + std::to_string(info) + ")");
  lwork = static_cast<int>(wq);
  liwork = iwq;
  std::vector<double> work(static_cast<std::size_t>(lwork));
  std::vector<int> iwork(static_cast<std::size_t>(liwork));
  dsyevr_("V", "I", "L", &n_, a.data(), &n_, &zero, &zero, &il, &iu, &zero, &found, w.data(), z.data(), &n_,
          support.data(), work.data(), &lwork, iwork.data(), &liwork, &info);
  CUAE_CHECK(info == 0 && found == k, "fit_pca: LAPACK dsyevr failed (info " + std::to_string(info) + ")");
  Pca p;
  p.mean = Tensor({d});
  p.components = Tensor({k, d});
  p.variances = Tensor({k});
  for (std::int64_t j = 0; j < d; ++j) p.mean.f32()[j] = static_cast<float>(mean[static_cast<std::size_t>(j)]);
  for (int c = 0; c < k; ++c) {
    const int src = k - 1 - c;  // largest first
    p.variances.f32()[c] = static_cast<float>(w[static_cast<std::size_t>(src)]);
    for (std::int64_t j = 0; j < d; ++j)
      p.components.f32()[c * d + j] = static_cast<float>(z[static_cast<std::size_t>(src * d + j)]);  // column src
  }
  return p;
}

Tensor pca_encode(const Pca& pca, const Tensor& images) {
  const std::int64_t k = pca.components.dim(0), d = pca.components.dim(1);
  CUAE_REQUIRE(images.device() == Device::CPU && images.rank() == 2 && images.dim(1) == d,
               "pca_encode: images " + shape_str(images.shape()) + " vs " + std::to_string(d) + " features");
  const std::int64_t n = images.dim(0);
  Tensor xc({n, d});
  const float* x = images.f32();
  const float* mu = pca.mean.f32();
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) xc.f32()[i * d + j] = x[i * d + j] - mu[j];
  Tensor codes({n, k});
  if (n > 0)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(k), static_cast<int>(d),
                1.0f, xc.f32(), static_cast<int>(d), pca.components.f32(), static_cast<int>(d), 0.0f, codes.f32(),
                static_cast<int>(k));
  return codes;
}

Tensor pca_decode(const Pca& pca, const Tensor& codes) {
  const std::int64_t k = pca.components.dim(0), d = pca.components.dim(1);
  CUAE_REQUIRE(codes.device() == Device::CPU && codes.rank() == 2 && codes.dim(1) == k,
               "pca_decode: codes " + shape_str(codes.shape()) + " vs " + std::to_string(k) + " components");
  const std::int64_t n = codes.dim(0);
  const float* mu = pca.mean.f32();
  Tensor out({n, d});
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) out.f32()[i * d + j] = mu[j];
  if (n > 0)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n), static_cast<int>(d), static_cast<int>(k),
                1.0f, codes.f32(), static_cast<int>(k), pca.components.f32(), static_cast<int>(d), 1.0f, out.f32(),
                static_cast<int>(d));
  return out;
}

Tensor pca_reconstruct(const Pca& pca, const Tensor& images) { return pca_decode(pca, pca_encode(pca, images)); }

}  // namespace cuae
