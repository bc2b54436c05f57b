// Feature quality: how well a linear classifier and a k-nearest-neighbour vote recover the labels
// from features (an autoencoder's codes, PCA's, raw pixels). Host tensors, plain results.
//
//   const cuae::LinearProbe lr = cuae::fit_logistic_regression(train_codes, train_labels, 10);
//   double acc = cuae::accuracy(cuae::predict(lr, test_codes), test_labels);
#pragma once

#include <cstdint>
#include <vector>

#include "cuae/error.hpp"
#include "cuae/tensor.hpp"

namespace cuae {

// Multinomial logistic regression on standardised features (each column centred and scaled by
// its training standard deviation), fitted by full-batch accelerated gradient descent (Nesterov)
// on the mean cross-entropy plus (l2/2)·‖W‖², the step size 1/L from the gradient's Lipschitz
// bound (power iteration on the features' second moment). Deterministic.
struct CUAE_API LogisticRegressionOptions {
  double l2 = 1e-4;
  int iterations = 300;
};
struct CUAE_API LinearProbe {
  Tensor mean, scale;   // [D]: x' = (x − mean) · scale
  Tensor weight, bias;  // [C, D], [C]
  double train_loss = 0.0;  // the objective at the end
};
// features [N, D], labels in [0, classes). Throws cuae::Error for mismatched sizes, a label out of
// range, non-finite features (naming the first) or fewer than two classes present.
CUAE_API LinearProbe fit_logistic_regression(const Tensor& features, const std::vector<int>& labels, int classes,
                                             const LogisticRegressionOptions& options = {});
CUAE_API std::vector<int> predict(const LinearProbe& probe, const Tensor& features);

// The majority label of each query's k nearest training rows (Euclidean; between labels with as
// many votes, the one that reached that count first, counting from the nearest neighbour).
CUAE_API std::vector<int> knn_classify(const Tensor& train, const std::vector<int>& labels, const Tensor& queries, int k);

// The share of predictions equal to the truth; throws cuae::Error for different lengths or none.
CUAE_API double accuracy(const std::vector<int>& predicted, const std::vector<int>& truth);

// A labelled set's labels (float class indices, as Dataset holds them) as ints.
CUAE_API std::vector<int> class_labels(const Tensor& labels);

}  // namespace cuae
