// cuae anomaly: a model trained on "normal" classes ([data] classes) scores every test image; the
// test's other classes are the anomalies. AUROC and AUPRC, and the threshold for a target
// false-positive rate chosen on the held-out normal images (the training set's validation
// split, never the test set), beside PCA with as many components as the code, fitted on the same
// images the model trained on.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <set>
#include <string>

#include "host/cli/common.hpp"

namespace fs = std::filesystem;

namespace cuae::cli {

namespace {

struct AnomalyCliOptions {
  std::string checkpoint, device = "auto", score = "mse", out;
  int samples = 64, neighbours = 5;
  double fpr = 0.05;
};

struct Detector {
  std::string name;
  std::vector<double> test, heldout;
  AnomalyReport report;
};

std::vector<double> histogram_x(double lo, double hi, int bins) {
  std::vector<double> x;
  for (int b = 0; b < bins; ++b) x.push_back(lo + (hi - lo) * (b + 0.5) / bins);
  return x;
}

// The share of `scores` of one kind in each of `bins` bins over [lo, hi] (the last bin also takes
// everything above hi), as a density per unit of score.
std::vector<double> histogram(const std::vector<double>& scores, const std::vector<bool>& anomalous, bool which,
                              double lo, double hi, int bins) {
  std::vector<double> h(static_cast<std::size_t>(bins), 0.0);
  double n = 0;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    if (anomalous[i] != which) continue;
    const int b = std::clamp(static_cast<int>((scores[i] - lo) / (hi - lo) * bins), 0, bins - 1);
    h[static_cast<std::size_t>(b)] += 1.0;
    n += 1.0;
  }
  for (double& v : h) v /= n * (hi - lo) / bins;
  return h;
}

void write_figures(const fs::path& dir, const Dataset& test, const std::vector<bool>& anomalous, const Detector& model,
                   const Detector& pca, const std::string& score) {
  std::vector<Series> roc;
  for (const Detector* d : {&model, &pca}) {
    Series s{d->name + " (AUROC " + std::to_string(d->report.metrics.auroc).substr(0, 5) + ")", {}, {}};
    for (const auto& [x, y] : roc_curve(d->test, anomalous)) {
      s.x.push_back(x);
      s.y.push_back(y);
    }
    roc.push_back(std::move(s));
  }
  roc.push_back({"chance", {0.0, 1.0}, {0.0, 1.0}});
  write_line_plot((dir / "roc.png").string(), "ROC curve on " + test.name, "false-positive rate", "true-positive rate", roc);

  std::vector<double> sorted = model.test;
  std::sort(sorted.begin(), sorted.end());
  const double lo = sorted.front(), hi = sorted[static_cast<std::size_t>(0.995 * static_cast<double>(sorted.size() - 1))];
  const int bins = 50;
  if (hi > lo) {
    const std::vector<double> x = histogram_x(lo, hi, bins);
    write_line_plot((dir / "histogram.png").string(), "Anomaly scores (" + score + ") of the test images", "score",
                    "density",
                    {{"normal", x, histogram(model.test, anomalous, false, lo, hi, bins)},
                     {"anomalous", x, histogram(model.test, anomalous, true, lo, hi, bins)}});
  }

  std::vector<std::int64_t> order(model.test.size());
  std::iota(order.begin(), order.end(), std::int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return model.test[static_cast<std::size_t>(a)] > model.test[static_cast<std::size_t>(b)];
  });
  const std::int64_t n = std::min<std::int64_t>(20, static_cast<std::int64_t>(order.size()) / 2);
  const std::vector<std::int64_t> most(order.begin(), order.begin() + n), least(order.end() - n, order.end());
  std::vector<std::int64_t> normal_most;  // the normal images the model finds strangest: its false alarms
  for (const std::int64_t i : order)
    if (!anomalous[static_cast<std::size_t>(i)] && static_cast<std::int64_t>(normal_most.size()) < n) normal_most.push_back(i);
  std::vector<GridRow> rows;
  const auto add = [&](const std::string& label, const std::vector<std::int64_t>& idx) {
    for (std::size_t s = 0; s < idx.size(); s += 10)
      rows.push_back({s == 0 ? label : "", gather_rows(test.images, {idx.begin() + static_cast<std::ptrdiff_t>(s),
                                                                   idx.begin() + static_cast<std::ptrdiff_t>(std::min(idx.size(), s + 10))})});
  };
  add("most anomalous", most);
  add("strangest normal", normal_most);
  add("least anomalous", least);
  write_labelled_grid((dir / "extremes.png").string(), "Test images by anomaly score (" + score + ")", rows, test.rows,
                      test.cols, test.channels);
}

// Which test images are anomalies: those of a class the model was not trained on. Labelled sets
// compare class indices with [data] classes. Image folders compare class names (sub-folders), as
// the training and test folders may hold different sets of them: the normal classes are the
// training folder's (those of [data] classes, or all of them: a folder of normal images).
std::vector<bool> anomalous_test_images(const Config& cfg, const Dataset& test) {
  std::vector<bool> anomalous(static_cast<std::size_t>(test.size()));
  if (cfg.data.dataset != DatasetKind::Images) {
    const std::set<std::int64_t> normal(cfg.data.classes.begin(), cfg.data.classes.end());
    for (std::int64_t i = 0; i < test.size(); ++i)
      anomalous[static_cast<std::size_t>(i)] = !normal.count(static_cast<std::int64_t>(test.labels.f32()[i]));
    return anomalous;
  }
  const std::vector<std::string> train_names = image_folder_classes(cfg.data.train_dir);
  const std::vector<std::string> test_names = image_folder_classes(cfg.data.test_dir);
  std::set<std::string> normal;
  for (std::size_t k = 0; k < train_names.size(); ++k)
    if (cfg.data.classes.empty() || std::count(cfg.data.classes.begin(), cfg.data.classes.end(), static_cast<int>(k)))
      normal.insert(train_names[k]);
  for (std::int64_t i = 0; i < test.size(); ++i)
    anomalous[static_cast<std::size_t>(i)] = !normal.count(test_names[static_cast<std::size_t>(test.labels.f32()[i])]);
  return anomalous;
}

void anomaly(const AnomalyCliOptions& o) {
  Autoencoder ae = Autoencoder::load(o.checkpoint, resolve_device(o.device));
  const Config& cfg = ae.config();
  const bool folders = cfg.data.dataset == DatasetKind::Images;
  if (cfg.data.classes.empty() && !folders)
    throw Error("cuae anomaly: " + o.checkpoint +
                " was trained on every class; train the detector on its normal classes ([data] classes = [...])");
  AnomalyOptions opt;
  opt.score = parse_anomaly_score(o.score);
  opt.samples = o.samples;
  opt.neighbours = o.neighbours;
  if (cfg.data.stream) throw Error("cuae anomaly: the training images were streamed; the detector needs them in memory");
  const Data data = load_data(cfg);
  const Dataset& test = data.test;
  if (!test.has_labels()) throw Error("cuae anomaly: the test set " + test.name + " has no labels to tell anomalies by");
  const TrainSplit split = training_split(cfg.train, data.train.size());
  const Tensor train = data.train.images.rows(0, split.train);
  const Tensor heldout = data.train.images.rows(split.train, split.train + split.validation);
  const std::vector<bool> anomalous = anomalous_test_images(cfg, test);

  const int k = static_cast<int>(cfg.model.layers.back());
  std::printf("cuae anomaly: %s trained on %s; scoring %s (%lld images) by %s\n", o.checkpoint.c_str(),
              data.train.name.c_str(), test.name.c_str(), static_cast<long long>(test.size()), o.score.c_str());
  std::fflush(stdout);
  const bool bound = opt.score == AnomalyScore::Elbo || opt.score == AnomalyScore::IwBound;
  Detector model{"autoencoder", {}, {}, {}}, pca{"PCA, " + std::to_string(k) + " components" + (bound ? " (mse)" : ""), {}, {}, {}};
  const Tensor codes = opt.score == AnomalyScore::CodeKnn ? ae.encode(train) : Tensor();
  model.test = anomaly_scores(ae, test.images, opt, codes);
  if (split.validation > 0) model.heldout = anomaly_scores(ae, heldout, opt, codes);
  const Pca p = fit_pca(train, std::min<int>(k, static_cast<int>(train.dim(1))));
  const Tensor pca_codes = opt.score == AnomalyScore::CodeKnn ? pca_encode(p, train) : Tensor();
  pca.test = pca_anomaly_scores(p, test.images, opt, pca_codes);
  if (split.validation > 0) pca.heldout = pca_anomaly_scores(p, heldout, opt, pca_codes);
  model.report = anomaly_report(model.test, anomalous, model.heldout, o.fpr);
  pca.report = anomaly_report(pca.test, anomalous, pca.heldout, o.fpr);

  const fs::path dir = o.out.empty() ? fs::path(o.checkpoint).parent_path() / "anomaly" : fs::path(o.out);
  fs::create_directories(dir);
  std::printf("  %lld normal test images, %lld anomalous; threshold for a %g%% false-positive rate chosen on %s\n",
              static_cast<long long>(model.report.metrics.normals), static_cast<long long>(model.report.metrics.anomalies),
              100.0 * o.fpr,
              split.validation > 0 ? (std::to_string(split.validation) + " held-out training images").c_str()
                                   : "nothing (no held-out images: set [train] validation)");
  std::printf("  %-24s %7s %7s %12s %8s %9s\n", "", "AUROC", "AUPRC", "threshold", "recall", "test FPR");
  std::ofstream summary(dir / "summary.csv");
  summary << "detector,score,auroc,average_precision,target_fpr,threshold,recall,test_fpr\n";
  for (const Detector* d : {&model, &pca}) {
    const AnomalyReport& r = d->report;
    if (r.has_threshold)
      std::printf("  %-24s %7.4f %7.4f %12.6g %8.4f %9.4f\n", d->name.c_str(), r.metrics.auroc,
                  r.metrics.average_precision, r.threshold, r.recall, r.test_fpr);
    else
      std::printf("  %-24s %7.4f %7.4f\n", d->name.c_str(), r.metrics.auroc, r.metrics.average_precision);
    summary << (d == &model ? "autoencoder" : "pca") << ',' << o.score << ',' << r.metrics.auroc << ','
            << r.metrics.average_precision << ',' << o.fpr << ',';
    if (r.has_threshold) summary << r.threshold << ',' << r.recall << ',' << r.test_fpr << '\n';
    else summary << ",,\n";
  }
  std::ofstream csv(dir / "scores.csv");
  csv << "index,label,anomalous,score,pca_score\n";
  csv.precision(9);
  for (std::int64_t i = 0; i < test.size(); ++i)
    csv << i << ',' << static_cast<int>(test.labels.f32()[i]) << ',' << (anomalous[static_cast<std::size_t>(i)] ? 1 : 0)
        << ',' << model.test[static_cast<std::size_t>(i)] << ',' << pca.test[static_cast<std::size_t>(i)] << '\n';
  if (!summary || !csv) throw Error("cuae anomaly: cannot write to " + dir.string());
  write_figures(dir, test, anomalous, model, pca, o.score);
  std::printf("wrote %s: scores.csv, summary.csv, roc.png, histogram.png, extremes.png\n", dir.string().c_str());
}

}  // namespace

void add_anomaly_command(CLI::App& app) {
  auto o = std::make_shared<AnomalyCliOptions>();
  CLI::App* c = app.add_subcommand("anomaly", "score test images as normal or anomalous, beside PCA");
  c->footer(
      "The model must have been trained on its normal classes ([data] classes = [...], or for image folders a "
      "training folder of normal images); the test set's other classes (sub-folders) are the anomalies. Prints AUROC, AUPRC and, with a validation split, the threshold for --fpr chosen on the "
      "held-out normal images, with the recall and false-positive rate it gives on the test set; the same for PCA with "
      "as many components as the code. Writes scores.csv, summary.csv, roc.png, histogram.png and extremes.png.");
  c->add_option("--checkpoint", o->checkpoint, "the checkpoint (.safetensors)")->required()->check(CLI::ExistingFile);
  add_device_option(c, o->device);
  c->add_option("--score", o->score, "mse | bce | elbo | iw (a VAE's bounds) | knn (distance to the nearest training codes)")
      ->check(CLI::IsMember({"mse", "bce", "elbo", "iw", "knn"}));
  c->add_option("--samples", o->samples, "elbo, iw: posterior samples per image")->check(CLI::Range(1, 100000));
  c->add_option("--neighbours", o->neighbours, "knn: how many nearest training codes")->check(CLI::Range(1, 1000));
  c->add_option("--fpr", o->fpr, "the target false-positive rate of the threshold")->check(finite_in(0.0, 0.999));
  c->add_option("--out", o->out, "the folder to write (default: anomaly/ beside the checkpoint)");
  c->callback([o] { anomaly(*o); });
}

}  // namespace cuae::cli
