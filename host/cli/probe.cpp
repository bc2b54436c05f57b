// cuae probe: how much of the labels a model's codes keep, by a linear classifier (multinomial
// logistic regression) and a k-nearest-neighbour vote fitted on the training set's codes and
// scored on the test set, beside PCA codes of the same width and the raw pixels, in one run.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "host/cli/common.hpp"

namespace cuae::cli {

namespace {

struct ProbeOptions {
  std::string checkpoint, device = "auto";
  std::int64_t max_train = 0;
  int neighbours = 5, iterations = 300;
  bool pixels = true;
};

void probe(const ProbeOptions& o) {
  Autoencoder ae = Autoencoder::load(o.checkpoint, resolve_device(o.device));
  Config cfg = ae.config();
  cfg.data.classes.clear();  // every class: a one-class model is probed on them all
  cfg.data.contamination = 0.0;
  if (cfg.data.stream) throw Error("cuae probe: the training images are streamed; the probe needs them in memory");
  Data data = load_data(cfg);
  if (!data.train.has_labels() || !data.test.has_labels())
    throw Error("cuae probe: " + (data.train.has_labels() ? data.test.name : data.train.name) + " has no labels to probe with");
  if (o.max_train > 0 && data.train.size() > o.max_train) data.train = subset(data.train, 0, o.max_train);
  const std::vector<int> train_labels = class_labels(data.train.labels), test_labels = class_labels(data.test.labels);
  int classes = 0;
  for (const int l : train_labels) classes = std::max(classes, l + 1);
  const int k = static_cast<int>(cfg.model.layers.back());
  std::printf("cuae probe: %s; classifiers fitted on %s (%lld images), scored on %s (%lld images), %d classes\n",
              o.checkpoint.c_str(), data.train.name.c_str(), static_cast<long long>(data.train.size()),
              data.test.name.c_str(), static_cast<long long>(data.test.size()), classes);
  std::printf("  %-24s %6s %20s %8s %9s\n", "features", "width", "logistic regression", (std::to_string(o.neighbours) + "-NN").c_str(), "time");
  std::fflush(stdout);
  const auto row = [&](const std::string& name, const Tensor& train, const Tensor& test) {
    const auto t0 = std::chrono::steady_clock::now();
    LogisticRegressionOptions lo;
    lo.iterations = o.iterations;
    const LinearProbe lr = fit_logistic_regression(train, train_labels, classes, lo);
    const double linear = accuracy(predict(lr, test), test_labels);
    const double knn = accuracy(knn_classify(train, train_labels, test, o.neighbours), test_labels);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("  %-24s %6lld %20.4f %8.4f %8.1fs\n", name.c_str(), static_cast<long long>(train.dim(1)), linear, knn, sec);
    std::fflush(stdout);
  };
  row("autoencoder codes", ae.encode(data.train.images), ae.encode(data.test.images));
  if (k < data.train.features()) {
    const Pca p = fit_pca(data.train.images, k);
    row("PCA, " + std::to_string(k) + " components", pca_encode(p, data.train.images), pca_encode(p, data.test.images));
  }
  if (o.pixels) row("raw pixels", data.train.images, data.test.images);
  std::printf("  (chance: %.4f)\n", 1.0 / classes);
}

}  // namespace

void add_probe_command(CLI::App& app) {
  auto o = std::make_shared<ProbeOptions>();
  CLI::App* c = app.add_subcommand("probe", "how well the codes predict the labels, beside PCA and raw pixels");
  c->footer(
      "Fits multinomial logistic regression and a k-nearest-neighbour vote on the training set's codes and reports "
      "their test accuracy, beside PCA codes of the same width and the raw pixels, on every class of the dataset.");
  c->add_option("--checkpoint", o->checkpoint, "the checkpoint (.safetensors)")->required()->check(CLI::ExistingFile);
  add_device_option(c, o->device);
  c->add_option("--max-train", o->max_train, "fit on the first N training images only")->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  c->add_option("--neighbours", o->neighbours, "k of the nearest-neighbour vote")->check(CLI::Range(1, 1000));
  c->add_option("--iterations", o->iterations, "gradient steps of the logistic regression")->check(CLI::Range(1, 100000));
  c->add_flag("!--no-pixels", o->pixels, "leave out the raw-pixel row (the slowest)");
  c->callback([o] { probe(*o); });
}

}  // namespace cuae::cli
