// Anomaly scores of images under a model or PCA, and the report of a detector on a test set with
// its threshold chosen on held-out normal data.
#include <algorithm>
#include <cmath>
#include <string>

#include "cuae/analysis.hpp"
#include "cuae/anomaly.hpp"

namespace cuae {

namespace {

constexpr struct {
  AnomalyScore score;
  const char* name;
} kScores[] = {{AnomalyScore::Mse, "mse"},
               {AnomalyScore::Bce, "bce"},
               {AnomalyScore::Elbo, "elbo"},
               {AnomalyScore::IwBound, "iw"},
               {AnomalyScore::CodeKnn, "knn"}};

}  // namespace

const char* anomaly_score_name(AnomalyScore s) {
  for (const auto& e : kScores)
    if (e.score == s) return e.name;
  return "?";
}

AnomalyScore parse_anomaly_score(const std::string& name) {
  std::string names;
  for (const auto& e : kScores) {
    if (name == e.name) return e.score;
    names += (names.empty() ? "" : ", ") + std::string(e.name);
  }
  throw Error("unknown anomaly score \"" + name + "\" (expected one of " + names + ")");
}

AnomalyReport anomaly_report(const std::vector<double>& scores, const std::vector<bool>& anomalous,
                             const std::vector<double>& heldout_normal_scores, double target_fpr) {
  AnomalyReport r;
  r.metrics = detection_metrics(scores, anomalous);
  r.target_fpr = target_fpr;
  if (heldout_normal_scores.empty()) return r;
  r.has_threshold = true;
  r.threshold = threshold_at_fpr(heldout_normal_scores, target_fpr);
  std::int64_t flagged_anomalies = 0, flagged_normals = 0;
  for (std::size_t i = 0; i < scores.size(); ++i)
    if (scores[i] > r.threshold) (anomalous[i] ? flagged_anomalies : flagged_normals) += 1;
  r.recall = static_cast<double>(flagged_anomalies) / static_cast<double>(r.metrics.anomalies);
  r.test_fpr = static_cast<double>(flagged_normals) / static_cast<double>(r.metrics.normals);
  return r;
}

std::vector<double> reconstruction_errors(const Tensor& images, const Tensor& recon, AnomalyScore kind) {
  CUAE_REQUIRE(kind == AnomalyScore::Mse || kind == AnomalyScore::Bce,
               std::string("reconstruction_errors: \"") + anomaly_score_name(kind) + "\" is not a reconstruction error");
  CUAE_REQUIRE(images.device() == Device::CPU && recon.device() == Device::CPU && images.rank() == 2 &&
                   images.shape() == recon.shape(),
               "reconstruction_errors: images " + shape_str(images.shape()) + " vs reconstructions " +
                   shape_str(recon.shape()) + " (host tensors of one shape)");
  const std::int64_t n = images.dim(0), d = images.dim(1);
  std::vector<double> out(static_cast<std::size_t>(n));
  const float* x = images.f32();
  const float* r = recon.f32();
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    double e = 0.0;
    for (std::int64_t j = 0; j < d; ++j) {
      const double t = x[i * d + j], p = r[i * d + j];
      if (kind == AnomalyScore::Mse) {
        e += (t - p) * (t - p);
      } else {
        const double q = std::clamp(p, 1e-7, 1.0 - 1e-7);
        e -= t * std::log(q) + (1.0 - t) * std::log1p(-q);
      }
    }
    out[static_cast<std::size_t>(i)] = kind == AnomalyScore::Mse ? e / static_cast<double>(d) : e;
  }
  return out;
}

std::vector<double> knn_scores(const Tensor& codes, const Tensor& reference, int neighbours) {
  const Neighbours nb = nearest_neighbours(codes, reference, neighbours);
  std::vector<double> out(static_cast<std::size_t>(codes.dim(0)));
  for (std::size_t i = 0; i < out.size(); ++i) {
    double s = 0.0;
    for (int j = 0; j < nb.k; ++j) s += nb.distance[i * static_cast<std::size_t>(nb.k) + static_cast<std::size_t>(j)];
    out[i] = s / nb.k;
  }
  return out;
}

std::vector<double> anomaly_scores(Autoencoder& model, const Tensor& images, const AnomalyOptions& o,
                                   const Tensor& reference_codes) {
  switch (o.score) {
    case AnomalyScore::Mse:
    case AnomalyScore::Bce:
      return reconstruction_errors(images, model.reconstruct(images), o.score);
    case AnomalyScore::Elbo:
    case AnomalyScore::IwBound: {
      CUAE_REQUIRE(model.config().model.variational,
                   std::string("the anomaly score \"") + anomaly_score_name(o.score) +
                       "\" is a VAE's bound; this model is not variational (use mse, bce or knn)");
      const VaeBounds b = model.vae_bounds(images, o.samples);
      std::vector<double> out = o.score == AnomalyScore::Elbo ? b.image_elbo : b.image_iw_bound;
      for (double& v : out) v = -v;
      return out;
    }
    case AnomalyScore::CodeKnn:
      CUAE_REQUIRE(reference_codes.rank() == 2, "the anomaly score \"knn\" needs the codes of the normal training images");
      return knn_scores(model.encode(images), reference_codes, o.neighbours);
  }
  throw Error("anomaly_scores: unknown score");
}

std::vector<double> pca_anomaly_scores(const Pca& pca, const Tensor& images, const AnomalyOptions& o,
                                       const Tensor& reference_codes) {
  switch (o.score) {
    case AnomalyScore::Bce:
      return reconstruction_errors(images, pca_reconstruct(pca, images), AnomalyScore::Bce);
    case AnomalyScore::CodeKnn:
      CUAE_REQUIRE(reference_codes.rank() == 2, "the anomaly score \"knn\" needs the PCA codes of the normal training images");
      return knn_scores(pca_encode(pca, images), reference_codes, o.neighbours);
    default:
      return reconstruction_errors(images, pca_reconstruct(pca, images), AnomalyScore::Mse);
  }
}

}  // namespace cuae
