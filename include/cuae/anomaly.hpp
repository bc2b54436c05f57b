// Anomaly-detection metrics: how well a score (higher = more anomalous, e.g. a reconstruction
// error) separates anomalous from normal examples, and the threshold for a target false-positive
// rate chosen on held-out normal data (never on the set being evaluated).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cuae/autoencoder.hpp"
#include "cuae/error.hpp"

namespace cuae {

struct CUAE_API DetectionMetrics {
  double auroc = 0.0;              // area under the ROC curve: P(score of an anomaly > score of a normal), ties count 1/2
  double average_precision = 0.0;  // Σ_k (R_k − R_{k−1}) P_k over the distinct thresholds, highest first (AUPRC)
  std::int64_t anomalies = 0, normals = 0;
};
// Throws cuae::Error when the lengths differ, a score is not finite (naming its index), or either
// class is empty (neither metric exists then).
CUAE_API DetectionMetrics detection_metrics(const std::vector<double>& scores, const std::vector<bool>& anomalous);

// The ROC curve's points (false-positive rate, true-positive rate) from (0, 0) to (1, 1), one per
// distinct score, thresholds from the highest score down. Same errors as detection_metrics.
CUAE_API std::vector<std::pair<double, double>> roc_curve(const std::vector<double>& scores,
                                                         const std::vector<bool>& anomalous);

// The smallest threshold t such that at most a fraction `fpr` of `normal_scores` lie strictly above
// it (an example is flagged when its score > t). Throws cuae::Error for no scores, a non-finite
// score, or fpr outside [0, 1).
CUAE_API double threshold_at_fpr(std::vector<double> normal_scores, double fpr);

// A detector's figures on a labelled test set, with its threshold chosen on held-out normal
// scores for a target false-positive rate: the recall (share of the test anomalies flagged) and
// the false-positive rate actually found on the test's normal examples at that threshold.
struct CUAE_API AnomalyReport {
  DetectionMetrics metrics;
  double target_fpr = 0.0;
  bool has_threshold = false;  // false when no held-out normal scores were given
  double threshold = 0.0, recall = 0.0, test_fpr = 0.0;
};
CUAE_API AnomalyReport anomaly_report(const std::vector<double>& scores, const std::vector<bool>& anomalous,
                                      const std::vector<double>& heldout_normal_scores, double target_fpr);

// How an image is scored (higher = more anomalous).
enum class AnomalyScore {
  Mse,      // "mse": the reconstruction's mean squared error per pixel
  Bce,      // "bce": its binary cross-entropy summed over pixels (reconstruction clamped to [1e-7, 1 − 1e-7])
  Elbo,     // "elbo": a VAE's negative ELBO, in nats
  IwBound,  // "iw": a VAE's negative importance-weighted bound (Burda et al.), in nats
  CodeKnn,  // "knn": the mean squared distance from the image's code to its k nearest training codes
};
CUAE_API const char* anomaly_score_name(AnomalyScore s);
// Throws cuae::Error naming the choices for anything else.
CUAE_API AnomalyScore parse_anomaly_score(const std::string& name);

struct CUAE_API AnomalyOptions {
  AnomalyScore score = AnomalyScore::Mse;
  int samples = 64;    // elbo, iw: posterior samples per image
  int neighbours = 5;  // knn: k
};

// Per image errors of recon [N, D] against images [N, D] (host): Mse or Bce as above.
CUAE_API std::vector<double> reconstruction_errors(const Tensor& images, const Tensor& recon, AnomalyScore kind);
// Per row of codes [N, k]: the mean of the squared distances to its `neighbours` nearest rows of
// reference [M, k].
CUAE_API std::vector<double> knn_scores(const Tensor& codes, const Tensor& reference, int neighbours);

// The scores of images [N, D] (host) under a trained model; knn needs reference_codes, the codes
// of the normal training images (model.encode of them). Throws cuae::Error when the score does
// not apply (elbo and iw need a VAE; knn needs the reference codes).
CUAE_API std::vector<double> anomaly_scores(Autoencoder& model, const Tensor& images, const AnomalyOptions& options,
                                            const Tensor& reference_codes = {});
// The same protocol with PCA as the model (the classical baseline): mse and bce score PCA's
// reconstruction (elbo and iw score its mse, the Gaussian likelihood's ordering), knn its codes
// (reference_codes: pca_encode of the normal training images).
CUAE_API std::vector<double> pca_anomaly_scores(const Pca& pca, const Tensor& images, const AnomalyOptions& options,
                                                const Tensor& reference_codes = {});

}  // namespace cuae
