#include "host/cli/common.hpp"

#include <algorithm>
#include <cstdio>

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
  for (auto l : m.layers) s += (s.empty() ? "" : "-") + std::to_string(l);
  return s;
}

void write_images(const std::string& path, const Tensor& images, const Dataset& like, int per_row) {
  const std::int64_t n = images.dim(0);
  const int rows = static_cast<int>((n + per_row - 1) / per_row);
  write_image_grid(path, images, rows, per_row, like.rows, like.cols, like.channels);
}

void write_reconstruction_grid(const std::string& path, const Dataset& test, const Tensor& recon) {
  // Rows of 16 (8 for large images, fewer for a small test set).
  const std::int64_t d = test.features();
  const int per_row = static_cast<int>(std::min<std::int64_t>(d > 64 * 64 * 3 ? 8 : 16, test.size()));
  const int pairs = static_cast<int>(std::min<std::int64_t>(4, test.size() / std::max(per_row, 1)));
  if (per_row == 0 || pairs == 0) return;
  Tensor grid({per_row * pairs * 2, d});
  for (int p = 0; p < pairs; ++p)
    for (int j = 0; j < per_row; ++j) {
      const std::int64_t img = p * per_row + j;
      std::copy(test.images.f32() + img * d, test.images.f32() + (img + 1) * d, grid.f32() + ((2 * p) * per_row + j) * d);
      std::copy(recon.f32() + img * d, recon.f32() + (img + 1) * d, grid.f32() + ((2 * p + 1) * per_row + j) * d);
    }
  write_image_grid(path, grid, pairs * 2, per_row, test.rows, test.cols, test.channels);
}

}  // namespace cuae::cli
