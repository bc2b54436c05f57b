// Anomaly-detection metrics: how well a score (higher = more anomalous, e.g. a reconstruction
// error) separates anomalous from normal examples, and the threshold for a target false-positive
// rate chosen on held-out normal data (never on the set being evaluated).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

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

}  // namespace cuae
