#include "host/cli/common.hpp"

#include <algorithm>
#include <cstdio>
#include <map>

namespace cuae::cli {

int& exit_code() {
  static int code = 0;
  return code;
}

CLI::Validator finite_in(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        double v = 0.0;
        if (!CLI::detail::lexical_cast(text, v)) return "\"" + text + "\" is not a number";
        if (!(v >= lo && v <= hi)) return "\"" + text + "\" is not a number in [" + CLI::detail::to_string(lo) + ", " + CLI::detail::to_string(hi) + "]";
        return {};
      },
      "NUMBER in [" + CLI::detail::to_string(lo) + ", " + CLI::detail::to_string(hi) + "]");
}

CLI::Option* add_device_option(CLI::App* cmd, std::string& device) {
  return cmd->add_option("--device", device, "where to run: auto (a GPU when one is usable), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
}

ImageSpec image_spec(const Config& c) {
  ImageSpec s;
  s.channels = static_cast<int>(c.data.image_size.at(0));
  s.height = static_cast<int>(c.data.image_size.at(1));
  s.width = static_cast<int>(c.data.image_size.at(2));
  s.fit = c.data.fit;
  return s;
}

Data load_data(const Config& c, bool with_train) {
  Data d;
  const bool train = with_train && !c.data.stream;
  switch (c.data.dataset) {
    case DatasetKind::Idx:
      if (train) d.train = load_idx_dataset(c.data.train_images, c.data.train_labels);
      d.test = load_idx_dataset(c.data.test_images, c.data.test_labels);
      break;
    case DatasetKind::Cifar10:
      if (train) d.train = load_cifar10_dir(c.data.dir, true);
      d.test = load_cifar10_dir(c.data.dir, false);
      break;
    case DatasetKind::Images:
      if (train) d.train = load_image_folder(c.data.train_dir, image_spec(c), c.data.on_error, c.data.threads);
      d.test = load_image_folder(c.data.test_dir, image_spec(c), c.data.on_error, c.data.threads);
      break;
    case DatasetKind::FashionMnist:
      if (train) d.train = load_fashion_mnist(c.data.dir, true);
      d.test = load_fashion_mnist(c.data.dir, false);
      break;
  }
  if (d.test.size() == 0) throw Error("the test set " + d.test.name + " holds no images: nothing to evaluate on");
  if (train && d.train.size() == 0) throw Error("the training set " + d.train.name + " holds no images");
  if (c.data.max_test > 0 && d.test.size() > c.data.max_test) d.test = subset(d.test, 0, c.data.max_test);
  if (train && !c.data.classes.empty()) d.train = select_classes(d.train, c.data.classes, c.data.contamination, c.train.seed);
  // The training images are checked by Autoencoder::train; the test images here, once.
  check_pixels(d.test.images, d.test.name, c.loss.type == LossType::BCEWithLogits);
  return d;
}

void print_metrics(const char* who, const ReconMetrics& m) {
  std::printf("  %-26s MSE/pixel %.5f   squared error/image %8.3f   BCE/image %8.3f\n", who, m.mse_per_pixel,
              m.se_per_image, m.bce_per_image);
}

std::string fmt_time(double sec) {
  char buf[32];
  const long s = static_cast<long>(sec + 0.5);
  std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

std::string layer_string(const ModelConfig& m) {
  std::string s;
  for (auto l : m.layers) {
    if (!s.empty()) s += '-';
    s += std::to_string(l);
  }
  return s;
}

std::string count(long long n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string model_description(const Config& c) {
  auto num = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return std::string(buf);
  };
  std::vector<std::string> parts;
  if (c.model.variational) {
    std::string p = "beta " + num(c.vae.beta) + ", " + config_name(c.vae.likelihood) + " likelihood";
    if (c.vae.warmup_epochs > 0.0) p += ", KL warm-up " + num(c.vae.warmup_epochs) + " epochs";
    parts.push_back(p);
  }
  if (c.noise.enabled) parts.push_back(std::string("denoising: ") + noise_type_name(c.noise.type) + " noise " + num(c.noise.level));
  switch (c.sparsity.type) {
    case SparsityConfig::Kind::None: break;
    case SparsityConfig::Kind::KL:
      parts.push_back("KL sparsity on " + c.sparsity.layer + ": rho " + num(c.sparsity.target) + ", weight " + num(c.sparsity.weight));
      break;
    case SparsityConfig::Kind::L1:
      parts.push_back("L1 sparsity on " + c.sparsity.layer + ": weight " + num(c.sparsity.weight));
      break;
    case SparsityConfig::Kind::KSparse:
      parts.push_back("k-sparse " + c.sparsity.layer + ": k " + std::to_string(c.sparsity.k));
      break;
  }
  if (c.contractive.weight > 0.0f) parts.push_back("contractive on " + c.contractive.layer + ": weight " + num(c.contractive.weight));
  if (c.model.dropout > 0.0f) parts.push_back("dropout " + num(c.model.dropout));
  if (c.model.tied_weights) parts.push_back("tied weights");
  if (c.optimizer.l1 > 0.0f) parts.push_back("L1 weight penalty " + num(c.optimizer.l1));
  std::string d = std::string(c.model.variational ? "variational " : "") + config_name(c.model.type) + " autoencoder " +
                  layer_string(c.model);
  for (std::size_t i = 0; i < parts.size(); ++i) d += (i == 0 ? " (" : "; ") + parts[i];
  return parts.empty() ? d : d + ")";
}

std::vector<std::string> class_names(const Config& c) {
  switch (c.data.dataset) {
    case DatasetKind::FashionMnist:
      return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
    case DatasetKind::Cifar10:
      return {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
    case DatasetKind::Images: return image_folder_classes(c.data.test_dir);
    case DatasetKind::Idx: return {};
  }
  return {};
}

std::vector<std::int64_t> spread_indices(const Dataset& d, std::int64_t count) {
  const std::int64_t n = d.size();
  count = std::min(count, n);
  std::vector<std::int64_t> idx;
  if (!d.has_labels()) {
    for (std::int64_t i = 0; i < count; ++i) idx.push_back(i * n / count);
    return idx;
  }
  std::map<int, std::vector<std::int64_t>> by_class;
  for (std::int64_t i = 0; i < n; ++i) by_class[static_cast<int>(d.labels.f32()[i])].push_back(i);
  for (std::size_t round = 0; static_cast<std::int64_t>(idx.size()) < count; ++round)
    for (const auto& [k, members] : by_class)
      if (round < members.size() && static_cast<std::int64_t>(idx.size()) < count) idx.push_back(members[round]);
  return idx;
}

Tensor gather_rows(const Tensor& images, const std::vector<std::int64_t>& idx) {
  const std::int64_t d = images.dim(1);
  Tensor out({static_cast<std::int64_t>(idx.size()), d});
  for (std::size_t i = 0; i < idx.size(); ++i)
    std::copy(images.f32() + idx[i] * d, images.f32() + (idx[i] + 1) * d, out.f32() + static_cast<std::int64_t>(i) * d);
  return out;
}

void write_row_blocks(const std::string& path, const std::string& title, const Dataset& like,
                      const std::vector<std::pair<std::string, Tensor>>& blocks, int per_row) {
  std::vector<GridRow> rows;
  const std::int64_t n = blocks.front().second.dim(0);
  for (std::int64_t start = 0; start < n; start += per_row)
    for (const auto& [label, images] : blocks)
      rows.push_back({label, images.rows(start, std::min<std::int64_t>(n, start + per_row))});
  write_labelled_grid(path, title, rows, like.rows, like.cols, like.channels, 56,
                      blocks.size() > 1 ? static_cast<int>(blocks.size()) : 0);
}

}  // namespace cuae::cli
