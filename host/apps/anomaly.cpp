#include "cuae/anomaly.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

namespace cuae {

namespace {

// Checks the inputs and returns the example indices sorted by score, highest first.
std::vector<std::size_t> ranked(const char* fn, const std::vector<double>& scores, const std::vector<bool>& anomalous,
                                std::int64_t& anomalies, std::int64_t& normals) {
  if (scores.size() != anomalous.size())
    throw Error(std::string(fn) + ": " + std::to_string(scores.size()) + " scores but " + std::to_string(anomalous.size()) +
                " labels");
  anomalies = normals = 0;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    if (!std::isfinite(scores[i]))
      throw Error(std::string(fn) + ": score " + std::to_string(i) + " is " + std::to_string(scores[i]) + ", not finite");
    (anomalous[i] ? anomalies : normals) += 1;
  }
  if (anomalies == 0 || normals == 0)
    throw Error(std::string(fn) + ": needs anomalous and normal examples, got " + std::to_string(anomalies) + " and " +
                std::to_string(normals));
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  return order;
}

}  // namespace

DetectionMetrics detection_metrics(const std::vector<double>& scores, const std::vector<bool>& anomalous) {
  DetectionMetrics m;
  const std::vector<std::size_t> order = ranked("detection_metrics", scores, anomalous, m.anomalies, m.normals);
  // Walk the thresholds from the highest score down, one group of tied scores at a time: the ROC
  // area grows by the trapezoid of each step (ties: the diagonal, i.e. 1/2 per tied pair), the
  // average precision by the recall gained times the precision there.
  double tp = 0, fp = 0, area = 0, ap = 0;
  for (std::size_t i = 0; i < order.size();) {
    double dtp = 0, dfp = 0;
    std::size_t j = i;
    for (; j < order.size() && scores[order[j]] == scores[order[i]]; ++j) (anomalous[order[j]] ? dtp : dfp) += 1;
    area += dfp * (tp + dtp / 2);
    tp += dtp, fp += dfp;
    if (dtp > 0) ap += (dtp / static_cast<double>(m.anomalies)) * (tp / (tp + fp));
    i = j;
  }
  m.auroc = area / (static_cast<double>(m.anomalies) * static_cast<double>(m.normals));
  m.average_precision = ap;
  return m;
}

std::vector<std::pair<double, double>> roc_curve(const std::vector<double>& scores, const std::vector<bool>& anomalous) {
  std::int64_t anomalies = 0, normals = 0;
  const std::vector<std::size_t> order = ranked("roc_curve", scores, anomalous, anomalies, normals);
  std::vector<std::pair<double, double>> curve{{0.0, 0.0}};
  double tp = 0, fp = 0;
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i;
    for (; j < order.size() && scores[order[j]] == scores[order[i]]; ++j) (anomalous[order[j]] ? tp : fp) += 1;
    curve.emplace_back(fp / static_cast<double>(normals), tp / static_cast<double>(anomalies));
    i = j;
  }
  return curve;
}

double threshold_at_fpr(std::vector<double> normal_scores, double fpr) {
  if (normal_scores.empty()) throw Error("threshold_at_fpr: no normal scores to choose a threshold on");
  if (!(fpr >= 0.0 && fpr < 1.0)) throw Error("threshold_at_fpr: the false-positive rate must be in [0, 1), got " + std::to_string(fpr));
  for (std::size_t i = 0; i < normal_scores.size(); ++i)
    if (!std::isfinite(normal_scores[i]))
      throw Error("threshold_at_fpr: normal score " + std::to_string(i) + " is not finite");
  std::sort(normal_scores.begin(), normal_scores.end());
  // At most floor(fpr·n) scores may exceed t: t is the score at that rank from the top.
  const auto n = normal_scores.size();
  const auto allowed = static_cast<std::size_t>(std::floor(fpr * static_cast<double>(n)));
  return normal_scores[n - 1 - allowed];
}

}  // namespace cuae
