// Linear and nearest-neighbour probes of feature quality (cuae/probe.hpp).
#include "cuae/probe.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "cuae/analysis.hpp"

namespace cuae {

namespace {

void check_set(const char* fn, const Tensor& x, std::size_t labels) {
  CUAE_REQUIRE(x.device() == Device::CPU && x.dtype() == DType::F32 && x.rank() == 2 && x.dim(0) >= 1,
               std::string(fn) + ": features must be a non-empty float32 host [N, D] tensor, got " + shape_str(x.shape()));
  CUAE_REQUIRE(labels == static_cast<std::size_t>(x.dim(0)), std::string(fn) + ": " + std::to_string(x.dim(0)) +
                                                                  " rows of features but " + std::to_string(labels) + " labels");
}

// Row-wise softmax of logits [n, c] in place; returns the summed cross-entropy against labels.
double softmax_rows(std::vector<float>& z, const std::vector<int>& labels, std::int64_t n, int c) {
  double loss = 0.0;
#pragma omp parallel for reduction(+ : loss) schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    float* row = z.data() + i * c;
    const float mx = *std::max_element(row, row + c);
    double sum = 0.0;
    for (int j = 0; j < c; ++j) sum += std::exp(static_cast<double>(row[j] - mx));
    const double log_sum = std::log(sum) + mx;
    loss += log_sum - row[labels[static_cast<std::size_t>(i)]];
    for (int j = 0; j < c; ++j) row[j] = static_cast<float>(std::exp(row[j] - log_sum));
  }
  return loss;
}

Tensor standardised(const LinearProbe& p, const Tensor& x) {
  const std::int64_t n = x.dim(0), d = x.dim(1);
  CUAE_REQUIRE(d == p.mean.dim(0), "predict: features of width " + std::to_string(d) + " for a probe fitted on " +
                                       std::to_string(p.mean.dim(0)));
  Tensor out({n, d});
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < d; ++j) out.f32()[i * d + j] = (x.f32()[i * d + j] - p.mean.f32()[j]) * p.scale.f32()[j];
  return out;
}

// logits [n, c] = xs · Wᵀ + b
std::vector<float> logits(const Tensor& xs, const float* w, const float* b, int c) {
  const std::int64_t n = xs.dim(0), d = xs.dim(1);
  std::vector<float> z(static_cast<std::size_t>(n * c));
  for (std::int64_t i = 0; i < n; ++i) std::copy(b, b + c, z.data() + i * c);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), c, static_cast<int>(d), 1.0f, xs.f32(),
              static_cast<int>(d), w, static_cast<int>(d), 1.0f, z.data(), c);
  return z;
}

}  // namespace

std::vector<int> class_labels(const Tensor& labels) {
  std::vector<int> out(static_cast<std::size_t>(labels.rank() == 1 ? labels.dim(0) : 0));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<int>(labels.f32()[i]);
  return out;
}

LinearProbe fit_logistic_regression(const Tensor& x, const std::vector<int>& labels, int c,
                                    const LogisticRegressionOptions& o) {
  check_set("fit_logistic_regression", x, labels.size());
  CUAE_REQUIRE(c >= 2, "fit_logistic_regression: needs at least two classes, got " + std::to_string(c));
  CUAE_REQUIRE(o.iterations >= 1 && o.l2 >= 0.0, "fit_logistic_regression: iterations >= 1 and l2 >= 0");
  const std::int64_t n = x.dim(0), d = x.dim(1);
  std::vector<int> present(static_cast<std::size_t>(c), 0);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    CUAE_REQUIRE(labels[i] >= 0 && labels[i] < c, "fit_logistic_regression: label " + std::to_string(labels[i]) +
                                                      " of row " + std::to_string(i) + " is not in [0, " + std::to_string(c) + ")");
    present[static_cast<std::size_t>(labels[i])] = 1;
  }
  CUAE_REQUIRE(std::count(present.begin(), present.end(), 1) >= 2, "fit_logistic_regression: the labels hold one class only");
  for (std::int64_t i = 0; i < n * d; ++i)
    CUAE_REQUIRE(std::isfinite(x.f32()[i]), "fit_logistic_regression: feature " + std::to_string(i % d) + " of row " +
                                                std::to_string(i / d) + " is not finite");
  LinearProbe p;
  p.mean = Tensor({d});
  p.scale = Tensor({d});
  for (std::int64_t j = 0; j < d; ++j) {
    double m = 0, m2 = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const double v = x.f32()[i * d + j];
      m += v;
      m2 += v * v;
    }
    m /= static_cast<double>(n);
    const double sd = std::sqrt(std::max(0.0, m2 / static_cast<double>(n) - m * m));
    p.mean.f32()[j] = static_cast<float>(m);
    p.scale.f32()[j] = sd > 1e-6 ? static_cast<float>(1.0 / sd) : 0.0f;  // a constant column carries nothing
  }
  const Tensor xs = standardised(p, x);
  // L ≤ λmax(XᵀX/n)/2 + l2 for the softmax cross-entropy (bias as a column of ones: + 1/2).
  std::vector<float> v(static_cast<std::size_t>(d), 1.0f), xv(static_cast<std::size_t>(n));
  double lambda = 1.0;
  for (int it = 0; it < 30; ++it) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(n), static_cast<int>(d), 1.0f, xs.f32(), static_cast<int>(d),
                v.data(), 1, 0.0f, xv.data(), 1);
    cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(n), static_cast<int>(d), 1.0f / static_cast<float>(n), xs.f32(),
                static_cast<int>(d), xv.data(), 1, 0.0f, v.data(), 1);
    lambda = cblas_snrm2(static_cast<int>(d), v.data(), 1);
    if (lambda <= 0.0) break;
    for (float& e : v) e = static_cast<float>(e / lambda);
  }
  const double step = 1.0 / (0.5 * (lambda + 1.0) + o.l2);
  const std::size_t wn = static_cast<std::size_t>(c * d);
  // Parameters θ = (W, b), the look-ahead point y, gradients g.
  std::vector<float> w(wn, 0.0f), b(static_cast<std::size_t>(c), 0.0f), yw = w, yb = b, gw(wn), gb(b.size());
  double t = 1.0;
  for (int it = 0; it < o.iterations; ++it) {
    std::vector<float> z = logits(xs, yw.data(), yb.data(), c);
    softmax_rows(z, labels, n, c);
    for (std::int64_t i = 0; i < n; ++i) z[static_cast<std::size_t>(i * c + labels[static_cast<std::size_t>(i)])] -= 1.0f;
    // g_W = (P − Y)ᵀ X / n + l2·W, g_b = column sums / n
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c, static_cast<int>(d), static_cast<int>(n), 1.0f / static_cast<float>(n),
                z.data(), c, xs.f32(), static_cast<int>(d), 0.0f, gw.data(), static_cast<int>(d));
    std::fill(gb.begin(), gb.end(), 0.0f);
    for (std::int64_t i = 0; i < n; ++i)
      for (int j = 0; j < c; ++j) gb[static_cast<std::size_t>(j)] += z[static_cast<std::size_t>(i * c + j)] / static_cast<float>(n);
    const double t_next = 0.5 * (1.0 + std::sqrt(1.0 + 4.0 * t * t)), mom = (t - 1.0) / t_next;
    for (std::size_t k = 0; k < wn; ++k) {
      const float next = yw[k] - static_cast<float>(step) * (gw[k] + static_cast<float>(o.l2) * yw[k]);
      yw[k] = next + static_cast<float>(mom) * (next - w[k]);
      w[k] = next;
    }
    for (std::size_t k = 0; k < b.size(); ++k) {
      const float next = yb[k] - static_cast<float>(step) * gb[k];
      yb[k] = next + static_cast<float>(mom) * (next - b[k]);
      b[k] = next;
    }
    t = t_next;
  }
  std::vector<float> z = logits(xs, w.data(), b.data(), c);
  double l2 = 0.0;
  for (const float e : w) l2 += 0.5 * o.l2 * e * e;
  p.train_loss = softmax_rows(z, labels, n, c) / static_cast<double>(n) + l2;
  p.weight = Tensor({c, d});
  p.bias = Tensor({c});
  std::copy(w.begin(), w.end(), p.weight.f32());
  std::copy(b.begin(), b.end(), p.bias.f32());
  return p;
}

std::vector<int> predict(const LinearProbe& p, const Tensor& features) {
  const int c = static_cast<int>(p.bias.dim(0));
  const std::vector<float> z = logits(standardised(p, features), p.weight.f32(), p.bias.f32(), c);
  std::vector<int> out(static_cast<std::size_t>(features.dim(0)));
  for (std::size_t i = 0; i < out.size(); ++i) {
    const float* row = z.data() + i * static_cast<std::size_t>(c);
    out[i] = static_cast<int>(std::max_element(row, row + c) - row);
  }
  return out;
}

std::vector<int> knn_classify(const Tensor& train, const std::vector<int>& labels, const Tensor& queries, int k) {
  check_set("knn_classify", train, labels.size());
  const Neighbours nb = nearest_neighbours(queries, train, k);
  std::vector<int> out(static_cast<std::size_t>(queries.dim(0)));
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < queries.dim(0); ++i) {
    std::map<int, int> votes;
    int best = -1, best_votes = 0;
    // Neighbours come nearest first: a label reaching a higher count first wins ties by distance.
    for (int j = 0; j < k; ++j) {
      const int l = labels[static_cast<std::size_t>(nb.index[static_cast<std::size_t>(i * k + j)])];
      const int v = ++votes[l];
      if (v > best_votes) best = l, best_votes = v;
    }
    out[static_cast<std::size_t>(i)] = best;
  }
  return out;
}

double accuracy(const std::vector<int>& predicted, const std::vector<int>& truth) {
  CUAE_REQUIRE(!truth.empty() && predicted.size() == truth.size(),
               "accuracy: " + std::to_string(predicted.size()) + " predictions for " + std::to_string(truth.size()) + " labels");
  std::size_t right = 0;
  for (std::size_t i = 0; i < truth.size(); ++i) right += predicted[i] == truth[i];
  return static_cast<double>(right) / static_cast<double>(truth.size());
}

}  // namespace cuae
